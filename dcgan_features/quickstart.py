"""The main job end to end: train a DCGAN, extract D's features, probe them against baselines.

``dcgan-features quickstart`` (and ``make demo``) runs, on one dataset:

1. ``train``: a DCGAN without labels (:mod:`~dcgan_features.train`);
2. ``extract``: every D block, 4x4 max-pooled and concatenated, to HDF5, for the trained D
   and for a randomly initialised D of the same architecture (:mod:`~dcgan_features.extract`);
3. ``probe``: the dataset's protocol (:mod:`~dcgan_features.probes.protocols`) on the trained
   features, the random-D features and the raw pixels, through the same probes;

then prints one table, writes every record as a CSV row (DESIGN section 6 columns) and
copies the last sample grid next to it. On the embedded ``digits`` with the defaults it
takes a few minutes on two CPU cores; ``dataset``, ``arch``, ``width``, ``epochs`` and
``device`` turn it into real work.

The quickstart only composes the library: the training loop knows nothing of probes, and
every step is the same code the separate commands run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import UserError

FEATURE_SETS = ("pixels", "random D", "trained D")


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of one quickstart; the defaults finish in minutes on two CPU cores."""

    dataset: str = "digits"
    arch: str = "dcgan32"
    # width 32, batch 64, 30 epochs: the smallest setting whose digits samples were
    # recognisable here; at width 16 and batch 64 D won outright (loss_D ~0.003) and
    # G never left grey noise.
    width: int = 32
    epochs: int = 30
    batch_size: int = 64
    device: str = "auto"
    data_dir: str | None = None
    seed: int = 0
    probes: tuple[str, ...] = ("svm", "logreg")
    out: str = "runs/quickstart"  # run folder: checkpoints, samples, feature files
    results: str = "results/quickstart.csv"  # the table as CSV; the sample grid goes beside it


@dataclass
class QuickstartResult:
    records: list[dict]
    csv: Path
    samples: Path | None
    checkpoint: Path
    seconds: dict[str, float]


def run(cfg: QuickstartConfig, log: Callable[[str], None] = print) -> QuickstartResult:
    """Run the whole pipeline as ``cfg`` says; see the module docstring."""
    from .architectures import get_arch
    from .atomic import atomic_path, check_output_file, check_output_folder, write_error
    from .data import load
    from .extract import ExtractConfig, checkpoint_model, extract, random_init_model
    from .features import to_model_input
    from .probes.protocols import PROTOCOLS, from_arrays, from_file, get_protocol, run_protocol
    from .store import FeatureFile
    from .train import TrainConfig, train

    if cfg.dataset not in PROTOCOLS:
        raise UserError(f"the quickstart needs a dataset with a probe protocol ({', '.join(PROTOCOLS)}), "
                        f"got {cfg.dataset!r}")
    spec = get_arch(cfg.arch)
    protocol = get_protocol(cfg.dataset)
    # every output is checked before the work: a table that cannot be written is known now
    check_output_folder(cfg.out)
    check_output_file(cfg.results, parents=True)
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(out, e) from None
    seconds: dict[str, float] = {}

    # (1) train a DCGAN without labels; a finished run of the same config is reused
    t0 = time.perf_counter()
    resume = (out / "checkpoints" / "last.pt").is_file()
    log(f"[1/3] train {cfg.arch} width {cfg.width} on {cfg.dataset}, {cfg.epochs} epochs"
        + (" (resuming the run in this folder)" if resume else ""))
    result = train(TrainConfig(dataset=cfg.dataset, arch=cfg.arch, width=cfg.width, epochs=cfg.epochs,
                               batch_size=cfg.batch_size, data_dir=cfg.data_dir, seed=cfg.seed,
                               device=cfg.device, out=str(out), resume=resume, progress=False))
    seconds["train"] = time.perf_counter() - t0

    # (2) features of every D block for the trained D and a random D of the same architecture
    t0 = time.perf_counter()
    data = {s: load(cfg.dataset, s, data_dir=cfg.data_dir, image_size=spec.image_size)
            for s in (protocol.train_split, protocol.test_split)}
    ecfg = ExtractConfig(dataset=cfg.dataset, splits=(protocol.train_split, protocol.test_split),
                         device=cfg.device, data_dir=cfg.data_dir, overwrite=True)
    files = {"trained D": out / "features_trained.h5", "random D": out / "features_random.h5"}
    log(f"[2/3] extract all D blocks (4x4 max-pool, BN re-estimated on train) -> {out}/features_*.h5")
    extract(checkpoint_model(result.checkpoint), files["trained D"], ecfg, data=data)
    extract(random_init_model(cfg.arch, cfg.width, cfg.seed), files["random D"], ecfg, data=data)
    seconds["extract"] = time.perf_counter() - t0

    # (3) the same probes and protocol on each feature set
    t0 = time.perf_counter()
    log(f"[3/3] probes {', '.join(cfg.probes)} under the {cfg.dataset} protocol "
        f"(C chosen on {protocol.val_size} validation rows, never on test)")
    records: list[dict] = []
    tr, te = data[protocol.train_split], data[protocol.test_split]
    # raw pixels = the model's own input, flattened: uint8 (N, 3, S, S) -> (N, 3*S*S) in [-1, 1]
    pixels = from_arrays(to_model_input(tr.images, "cpu").flatten(1), tr.labels.numpy(),
                         to_model_input(te.images, "cpu").flatten(1), te.labels.numpy(), name="pixels",
                         dataset=cfg.dataset, trained_on="none")
    records += _label(run_protocol(cfg.dataset, pixels, cfg.probes, protocol, seed=cfg.seed, device=cfg.device),
                      "pixels")
    for name in ("random D", "trained D"):
        with FeatureFile(files[name]) as ff:
            feats = from_file(ff, protocol, device=cfg.device)
            records += _label(run_protocol(cfg.dataset, feats, cfg.probes, protocol, seed=cfg.seed,
                                           device=cfg.device), name)
    seconds["probe"] = time.perf_counter() - t0

    csv_path = write_csv(records, cfg.results)
    samples = sorted((out / "samples").glob("epoch_*.png"))
    grid = None
    if samples:
        grid = csv_path.with_name(csv_path.stem + "_samples.png")
        with atomic_path(grid) as tmp:
            shutil.copyfile(samples[-1], tmp)
    return QuickstartResult(records, csv_path, grid, result.checkpoint, seconds)


def _label(records: list[dict], name: str) -> list[dict]:
    for r in records:
        r["features"] = name
    return records


def write_csv(records: Sequence[dict], path: str | Path) -> Path:
    """All records as one CSV with DESIGN section 6's columns, written atomically."""
    from .atomic import write_csv_atomic
    from .records import CSV_COLUMNS, csv_value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(path, CSV_COLUMNS, records, value=csv_value)
    return path


def format_summary(records: Sequence[dict]) -> str:
    """Feature sets as rows, probe x protocol column as columns: ``mean +- ci95`` in percent."""
    columns = list(dict.fromkeys((r["probe"], r["protocol"].split("/", 1)[1]) for r in records))
    rows = list(dict.fromkeys(r["features"] for r in records))
    cell = {(r["features"], r["probe"], r["protocol"].split("/", 1)[1]): r for r in records}
    metric = records[0]["metric"] if records else "accuracy"
    heads = [f"{p} {c}" for p, c in columns]
    width = max([len(h) for h in heads] + [15])
    lines = [f"{metric + ' (%)':<12}" + "".join(f"{h:>{width + 2}}" for h in heads)]
    for name in rows:
        cells = []
        for p, c in columns:
            r = cell.get((name, p, c))
            cells.append("-" if r is None else f"{r['mean']:.2f} +- {r['ci95']:.2f}")
        dims = next(r["dim"] for r in records if r["features"] == name)
        lines.append(f"{name:<12}" + "".join(f"{s:>{width + 2}}" for s in cells) + f"   ({dims}-d)")
    return "\n".join(lines)

