"""The quickstart (``make demo``): a small ``reproduce`` on one dataset, with its outputs copied out.

``dcgan-features quickstart`` trains a DCGAN on the dataset itself (the embedded ``digits``
by default), extracts every D block of it and of a random D of the same architecture, and
probes those features and the raw pixels under the dataset's protocol: the chain of
:mod:`dcgan_features.reproduce`, run in ``out`` with its skip/resume. Everything it writes is
in ``out`` (``runs/``, ignored by git: ``make demo`` leaves the checkout clean). With
``results`` set (``make example-results``: ``results/quickstart.csv``) it also copies the
table there (CSV, DESIGN section 6's columns plus kind/command/date/note), the last sample grid
beside it (``<name>_samples.png``) and the report (``<name>_report.html``). On ``digits``
with the defaults its time on two CPU cores is a row of results/demo_time.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import SETUPS


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of one quickstart; None means the dataset's own (``reproduce.SETUPS``)."""

    dataset: str = "digits"
    arch: str | None = None
    width: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    data_dir: str | None = None
    seed: int = 0
    probes: tuple[str, ...] = ("svm", "logreg")
    draws: int | None = None  # the protocol's when None (API only: smaller runs in tests)
    c_grid: tuple[float, ...] | None = None
    out: str = "runs/reproduce_digits"  # the reproduce run folder: model, features, probes, table, report
    results: str | None = None  # a copy of the table, the sample grid and the report go there; None: none
    threads: int | None = None  # CPU threads of every stage; None: core.threads' policy or OMP_NUM_THREADS


@dataclass
class QuickstartResult:
    records: list[dict]
    csv: Path
    samples: Path | None
    report: Path
    checkpoint: Path
    seconds: dict[str, float]


def _copy(src: Path, dst: Path) -> None:
    from ..core.atomic import atomic_path

    with atomic_path(dst) as tmp:
        tmp.write_bytes(Path(src).read_bytes())


def run(cfg: QuickstartConfig, log: Callable[[str], None] = print) -> QuickstartResult:
    """``reproduce`` ``cfg.dataset``, training on it, then copy the table, samples and report out."""
    from ..core.atomic import check_output_file
    from ..core.errors import UserError
    from . import ReproduceConfig
    from . import run as reproduce

    if cfg.dataset not in SETUPS:
        raise UserError(f"the quickstart needs a dataset with a probe protocol ({', '.join(SETUPS)}), "
                        f"got {cfg.dataset!r}")
    if cfg.results is not None:
        check_output_file(cfg.results, parents=True)  # a table that cannot be written is known before the work
    res = reproduce(ReproduceConfig(cfg.dataset, out=cfg.out, train_dataset=cfg.dataset, arch=cfg.arch,
                                    width=cfg.width, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                                    data_dir=cfg.data_dir, device=cfg.device, probes=tuple(cfg.probes), draws=cfg.draws,
                                    c_grid=cfg.c_grid, threads=cfg.threads), log=log)
    grids = sorted((Path(cfg.out) / "train" / "samples").glob("epoch_*.png"))
    csv_path, report, samples = Path(res["results"]), Path(res["report"]), grids[-1] if grids else None
    if cfg.results is not None:  # the published copies
        csv_path = Path(cfg.results)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        _copy(res["results"], csv_path)
        report = csv_path.with_name(csv_path.stem + "_report.html")
        _copy(res["report"], report)
        if samples is not None:
            _copy(samples, csv_path.with_name(csv_path.stem + "_samples.png"))
            samples = csv_path.with_name(csv_path.stem + "_samples.png")
    chain = res["chain"]
    seconds = {r["stage"]: float(r.get("seconds") or 0) for r in res["stages"]}
    return QuickstartResult(chain.records(), csv_path, samples, report, Path(chain.model["checkpoint"]), seconds)
