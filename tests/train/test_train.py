"""The training loop and the `train` command: outputs, exact resume, signals, NaN, DDP, bad input.

Everything runs on the CPU at dcgan32 width 4 on the `synthetic` dataset (1000 images,
so batch 100 gives 10 steps per epoch). Subprocesses are used only where the test needs a
real process: SIGKILL, SIGINT/SIGTERM and torchrun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dcgan_features.nets import checkpoint
from dcgan_features.data import registry as data
from dcgan_features.nets.architectures import get_arch, sample_z
from dcgan_features.core.errors import CheckpointError
from dcgan_features.train.loop import TrainConfig, _Run, make_generators, to_unit_range, train

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "synthetic", "--arch", "dcgan32", "--width", "4", "--batch-size", "100", "--device", "cpu"]


def spawn(*args: str, env: dict | None = None, fault: tuple[str, ...] = ()) -> subprocess.Popen:
    """`dcgan-features train ...` in a fresh Python process (output captured); ``fault``:
    a tests/faults.py fault and its argument, injected from outside the product."""
    launcher = [str(REPO / "tests" / "faults.py"), *fault, "--"] if fault else ["-m", "dcgan_features.cli"]
    return subprocess.Popen([sys.executable, *launcher, "train", *args], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def tiny_config(out: Path, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", arch="dcgan32", width=4, batch_size=100, device="cpu", progress=False)
    return TrainConfig(out=str(out), **{**base, **kw})


def states(ckpt: dict) -> dict:
    """Every tensor a resumed run must reproduce: weights, BN buffers, both Adam states."""
    flat = {}
    for part in ("G", "D"):
        flat.update({f"{part}.{k}": v for k, v in ckpt[part].items()})
    for part in ("optimizer_G", "optimizer_D"):
        for idx, st in ckpt[part]["state"].items():
            flat.update({f"{part}.{idx}.{k}": v for k, v in st.items()})
    return flat


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    train(tiny_config(out, epochs=2, log_every=4, keep_every=1))
    return out


# ------------------------------------------------------------------------- outputs


def test_run_folder_is_well_formed(finished_run):
    rec = json.loads((finished_run / "config.json").read_text())
    cfg = rec["config"]
    assert {"dataset", "arch", "width", "nz", "batch_size", "lr", "beta1", "seed", "device", "amp", "compile",
            "epochs", "sample_every", "ckpt_every"} <= set(cfg)
    assert (cfg["arch"], cfg["width"], cfg["nz"], cfg["lr"], cfg["beta1"]) == ("dcgan32", 4, 100, 2e-4, 0.5)
    assert rec["package_version"] and rec["torch_version"] == torch.__version__
    assert rec["amp_effective"] is False and rec["steps_per_epoch"] == 10

    rows = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    # log every 4 steps, plus the epoch ends (10, 20) where a checkpoint is also written
    assert [r["step"] for r in rows] == [4, 8, 10, 12, 16, 20]
    for r in rows:
        assert set(r) == {"step", "epoch", "loss_d", "loss_g", "d_x", "d_g_z", "img_per_s"}
        assert 0 < r["d_x"] < 1 and 0 < r["d_g_z"] < 1 and r["loss_d"] > 0 and r["img_per_s"] > 0
    assert rows[-1]["epoch"] == 2.0

    from PIL import Image

    for epoch in (1, 2):
        with Image.open(finished_run / "samples" / f"epoch_{epoch:03d}.png") as im:
            assert im.size == (8 * 34 + 2, 8 * 34 + 2)  # 8 x 8 grid of 32 px, 2 px padding
    with Image.open(finished_run / "losses.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert not list(finished_run.rglob(".*.tmp"))  # no temp file left behind


def test_checkpoint_loads_for_extract_and_holds_training_state(finished_run):
    G, D, ckpt = checkpoint.load_models(finished_run / "checkpoints" / "last.pt")
    assert (ckpt["arch"], ckpt["width"], ckpt["step"], ckpt["epoch"]) == ("dcgan32", 4, 20, 2.0)
    kept = sorted(p.name for p in (finished_run / "checkpoints").glob("epoch_*.pt"))
    assert kept == ["epoch_001.pt", "epoch_002.pt"]  # --keep-every 1
    assert checkpoint.load(finished_run / "checkpoints" / "epoch_001.pt")["step"] == 10
    assert {"optimizer_G", "optimizer_D", "rng", "config"} <= set(ckpt)
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python", "data", "z"}
    assert ckpt["config"]["dataset"] == "synthetic"
    z = sample_z(get_arch("dcgan32"), 3)
    assert D.eval()(G.eval()(z)).shape == (3,)


# -------------------------------------------------------------------------- resume


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    # Straight: 25 steps. Broken: SIGKILL right after the step-14 checkpoint (mid epoch 2,
    # checkpoints every 7 steps), then --resume to 25. Every tensor must be identical.
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    common = dict(epochs=3, max_steps=25, ckpt_every=7, log_every=7)
    args = [*TINY, "--epochs", "3", "--max-steps", "25", "--ckpt-every", "7", "--log-every", "7", "--out", str(broken)]
    p = spawn(*args, fault=("kill-after-checkpoint", "14"))  # runs on the other core while the straight run goes here
    train(tiny_config(straight, **common))
    _, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL, err
    assert checkpoint.load(broken / "checkpoints" / "last.pt")["step"] == 14

    train(tiny_config(broken, resume=True, **common))
    a = checkpoint.load(straight / "checkpoints" / "last.pt")
    b = checkpoint.load(broken / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 25
    sa, sb = states(a), states(b)
    assert sa.keys() == sb.keys() and len(sa) > 20
    unequal = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not unequal, unequal[:5]
    assert torch.equal(a["rng"]["z"], b["rng"]["z"])
    # metrics: the resumed run dropped nothing and repeated nothing; losses identical
    ra = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert [(r["loss_d"], r["loss_g"]) for r in ra] == [(r["loss_d"], r["loss_g"]) for r in rb]


def test_sigint_and_sigterm_write_checkpoint_and_resume_hint(tmp_path):
    # Both runs at once (one per core): the test costs one process start-up, not two.
    sigs = (signal.SIGINT, signal.SIGTERM)
    outs = {sig: tmp_path / sig.name for sig in sigs}
    procs = {sig: spawn(*TINY, "--epochs", "1000", "--log-every", "1", "--ckpt-every", "100000",
                        "--out", str(outs[sig])) for sig in sigs}
    deadline = time.monotonic() + 120
    for sig, p in procs.items():
        metrics = outs[sig] / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):  # training, not starting up
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        p.send_signal(sig)
    for sig, p in procs.items():
        _, err = p.communicate(timeout=60)
        assert p.returncode == 128 + sig, err  # 130 for SIGINT, 143 for SIGTERM
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted by " + sig.name), err
        assert f"--out {outs[sig]} --resume" in lines[0] and "--width 4" in lines[0] and "--batch-size 100" in lines[0]
        ckpt = checkpoint.load(outs[sig] / "checkpoints" / "last.pt")
        assert ckpt["step"] >= 2  # the step reached when the signal landed (no periodic one before)
        assert json.loads((outs[sig] / "metrics.jsonl").read_text().splitlines()[-1])["step"] == ckpt["step"]


# ----------------------------------------------------------------- non-finite loss


def test_nonfinite_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path, run_cli, monkeypatch):
    real_step = _Run._train_step

    def poisoned(self, real, z):
        stats = real_step(self, real, z)
        if self.step + 1 >= 7:  # the step being taken is self.step + 1
            return (stats[0] * float("nan"),) + tuple(stats[1:])
        return stats

    monkeypatch.setattr(_Run, "_train_step", poisoned)
    out = tmp_path / "r"
    code, _, err = run_cli("train", *TINY, "--epochs", "2", "--ckpt-every", "5", "--log-every", "3",
                       "--out", str(out))
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "non-finite loss at step 7" in err, err
    ckpt = checkpoint.load(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == 5  # the checkpoint at step 10 was never written
    assert all(torch.isfinite(v).all() for v in ckpt["G"].values() if v.is_floating_point())


# -------------------------------------------------------------------------- torchrun

DDP_WORKER = """
import sys, torch
from dcgan_features.nets import checkpoint
from dcgan_features.train import loop as T
from dcgan_features.train.state import RunFolder

rank = int(__import__("os").environ["RANK"])
if rank != 0:  # rank 0 alone writes: any write from another rank fails the run
    def forbidden(*a, **k):
        raise AssertionError(f"rank {rank} wrote to the run folder")
    for name in ("create", "write_config", "append_metrics", "save_samples", "plot_losses", "truncate_metrics"):
        setattr(RunFolder, name, forbidden)
    checkpoint.save = forbidden

run = T._Run.run
def run_and_dump(self):
    result = run(self)
    torch.save({k: v.detach().clone() for k, v in list(self.G.state_dict().items()) + [
        ("D." + k, v) for k, v in self.D.state_dict().items()]}, sys.argv[2] + f"/rank{rank}.pt")
    return result
T._Run.run = run_and_dump
T.train(T.TrainConfig(dataset="synthetic", arch="dcgan32", width=4, batch_size=100, epochs=1, max_steps=STEPS,
                      log_every=2, device="cpu", out=sys.argv[1], progress=False))
"""


def reference_ghost_bn(steps: int, batch: int, groups: int) -> dict:
    """One process doing what `groups` DDP ranks do: each 1/groups slice of the global batch
    is a separate forward (its own BN batch statistics), gradients are averaged."""
    spec = get_arch("dcgan32")
    G, D = spec.build(4, nz=100, seed=0)
    images = data.load("synthetic", "train", image_size=32).images
    data_gen, z_gen = make_generators(0, torch.device("cpu"))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    perm = torch.randperm(len(images), generator=data_gen)
    b = batch // groups
    for i in range(steps):
        real = to_unit_range(images[perm[i * batch:(i + 1) * batch]]).split(b)
        z = sample_z(spec, batch, 100, generator=z_gen).split(b)
        fakes = [G(zh) for zh in z]
        opt_d.zero_grad()
        for rh, fh in zip(real, fakes):
            out_r, out_f = D(rh), D(fh.detach())
            loss = (F.binary_cross_entropy_with_logits(out_r, torch.ones_like(out_r))
                    + F.binary_cross_entropy_with_logits(out_f, torch.zeros_like(out_f)))
            (loss / groups).backward()
        opt_d.step()
        opt_g.zero_grad()
        for fh in fakes:
            out = D(fh)
            (F.binary_cross_entropy_with_logits(out, torch.ones_like(out)) / groups).backward(
                inputs=list(G.parameters()))
        opt_g.step()
    return {**{k: v for k, v in G.named_parameters()}, **{"D." + k: v for k, v in D.named_parameters()}}


def test_torchrun_two_ranks_gloo(tmp_path):
    steps = 4
    out = tmp_path / "ddp"
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(DDP_WORKER).replace("STEPS", str(steps)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(worker), str(out), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    params = [k for k in r0 if "running" not in k and "num_batches" not in k]
    # DDP keeps the weights of both ranks identical (BN running stats are per rank, by design)
    assert all(torch.equal(r0[k], r1[k]) for k in params)
    assert any(not torch.equal(r0[k], r1[k]) for k in r0 if "running_mean" in k)
    ckpt = checkpoint.load(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == steps and torch.equal(ckpt["G"]["net.0.weight"], r0["net.0.weight"])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # one writer: no duplicated rows

    # With per-rank BN, 2 ranks x 50 equal one process normalising each half of the global
    # batch of 100 separately (ghost BN) and averaging gradients, up to float summation order.
    # They do NOT equal one process with plain BN over all 100: that reference must differ.
    ghost = reference_ghost_bn(steps, 100, groups=2)
    plain = reference_ghost_bn(steps, 100, groups=1)
    with torch.no_grad():
        worst = max((ghost[k] - r0[k]).abs().max().item() for k in ghost)
        plain_gap = max((plain[k] - r0[k]).abs().max().item() for k in plain)
    # measured here: worst ~2e-6, plain_gap ~1.5e-3
    assert worst < 2e-5, worst
    assert plain_gap > 50 * max(worst, 1e-7), (plain_gap, worst)


# ------------------------------------------------------------------------ bad input


def _one_line_error(code: int, err: str) -> str:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--arch", "nope", "--dataset", "synthetic"], "unknown architecture 'nope'"),
    (["--arch", "dcgan32", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["--arch", "dcgan32", "--dataset", "synthetic", "--batch-size", "5000"], "larger than the 1000 images"),
    (["--arch", "dcgan32", "--dataset", "synthetic", "--lr", "0"], "--lr"),
])
def test_bad_flags_one_line(tmp_path, run_cli, args, needle):
    code, _, err = run_cli("train", *args, "--width", "4", "--device", "cpu", "--out", str(tmp_path / "r"))
    assert needle in _one_line_error(code, err)
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_resume_missing_corrupt_and_foreign_checkpoints(tmp_path, run_cli, finished_run):
    missing = tmp_path / "missing"
    code, _, err = run_cli("train", *TINY, "--out", str(missing), "--resume")
    assert "no checkpoint at" in _one_line_error(code, err)
    assert not missing.exists()  # nothing created by a failed resume

    corrupt = tmp_path / "corrupt"
    (corrupt / "checkpoints").mkdir(parents=True)
    good = (finished_run / "checkpoints" / "last.pt").read_bytes()
    (corrupt / "checkpoints" / "last.pt").write_bytes(good[: len(good) // 2])
    code, _, err = run_cli("train", *TINY, "--out", str(corrupt), "--resume")
    assert "corrupt or truncated" in _one_line_error(code, err)

    code, _, err = run_cli("train", "--dataset", "synthetic", "--arch", "svhn32", "--width", "4",
                       "--batch-size", "100", "--device", "cpu", "--out", str(finished_run), "--resume")
    assert "trained with --arch dcgan32" in _one_line_error(code, err)
    code, _, err = run_cli("train", *TINY[:-4], "--batch-size", "50", "--device", "cpu",
                       "--out", str(finished_run), "--resume")
    assert "--batch-size 100" in _one_line_error(code, err)


def test_out_not_writable_and_existing_run(tmp_path, run_cli, finished_run):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli("train", *TINY, "--out", str(blocker / "run"))
    assert "a_file' is a file, not a folder" in _one_line_error(code, err)  # checked at parse time
    code, _, err = run_cli("train", *TINY, "--out", str(finished_run))
    assert "already holds a run" in _one_line_error(code, err)


def test_resume_means_the_same_run(tmp_path, run_cli, finished_run):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(finished_run, run)
    config = (run / "config.json").read_text()
    code, _, err = run_cli("train", *TINY, "--epochs", "1", "--out", str(run), "--resume")
    assert "already trained 2 epochs (step 20); --epochs 1 is fewer" in _one_line_error(code, err)
    code, _, err = run_cli("train", *TINY, "--epochs", "3", "--max-steps", "5", "--out", str(run), "--resume")
    assert "--max-steps 5 is fewer" in _one_line_error(code, err)
    code, _, err = run_cli("train", *TINY, "--epochs", "3", "--data-dir", str(tmp_path), "--out", str(run),
                       "--resume")
    assert "trained without --data-dir" in _one_line_error(code, err)
    other = torch.from_numpy(data.make_synthetic(1000, seed=5)[0])  # same name and count, other images
    with pytest.raises(CheckpointError, match=r"trained on other images \(1000x3x32x32:"):
        train(tiny_config(run, epochs=3, resume=True), images=other)
    assert (run / "config.json").read_text() == config  # nothing rewritten by a refused resume


def test_out_with_foreign_files_is_refused_unless_overwrite(tmp_path, run_cli, finished_run):
    import shutil

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"lr": 1}')
    (theirs / "metrics.jsonl").write_text('{"their": "metrics"}\n')
    code, _, err = run_cli("train", *TINY, "--out", str(theirs))
    assert "holds files this tool did not write (config.json)" in _one_line_error(code, err)
    (theirs / "notes.txt").write_text("mine")
    code, _, err = run_cli("train", *TINY, "--out", str(theirs))
    assert "(notes.txt)" in _one_line_error(code, err)
    assert (theirs / "config.json").read_text() == '{"lr": 1}'
    code, _, err = run_cli("train", *TINY, "--max-steps", "1", "--out", str(theirs), "--overwrite")
    assert code == 0, err
    assert json.loads((theirs / "config.json").read_text())["config"]["max_steps"] == 1
    assert [json.loads(line)["step"] for line in (theirs / "metrics.jsonl").read_text().splitlines()] == [1]
    # --overwrite on a finished run of ours starts it afresh: its old last.pt can no longer be resumed
    run = tmp_path / "r"
    shutil.copytree(finished_run, run)
    code, _, err = run_cli("train", *TINY, "--max-steps", "1", "--out", str(run), "--overwrite")
    assert code == 0, err
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is absent")
def test_cuda_without_cuda(tmp_path, run_cli):
    code, _, err = run_cli("train", *TINY[:-2], "--device", "cuda", "--out", str(tmp_path / "r"))
    assert "CUDA is not available" in _one_line_error(code, err)


def test_help_shows_paper_defaults(run_cli):
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    out = " ".join(out.split())  # undo click's line wrapping
    for text in ("[default: 128", "[default: 0.0002", "[default: 0.5", "--resume", "--compile", "--amp / --no-amp"):
        assert text in out, text


def test_train_on_given_images_checks_their_shape(tmp_path):
    from dcgan_features.core.errors import UserError

    with pytest.raises(UserError, match=r"uint8 images of shape \(N, 3, 32, 32\)"):
        train(tiny_config(tmp_path / "r"), images=torch.zeros(200, 1, 28, 28, dtype=torch.uint8))
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="real Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_learns_to_tell_real_from_fake(tmp_path):
    result = train(TrainConfig(dataset="fashion-mnist", arch="dcgan32", width=8, batch_size=64, epochs=1,
                               max_steps=60, log_every=20, out=str(tmp_path / "fm"), device="cpu", progress=False))
    m = result.last_metrics
    assert result.step == 60 and m["d_x"] > m["d_g_z"]  # D has learned something about the real images
