"""The CUDA-graph step: refused in one line where it cannot apply (CPU, checked here), and on
a GPU (skipped without one) the same training as the eager step, exact resume, and DDP."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dcgan_features.nets import checkpoint
from dcgan_features.train.loop import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_graph_asked_for_on_cpu_is_one_line_and_no_run(tmp_path, run_cli):
    out = tmp_path / "r"
    code, _, err = run_cli("train", "--dataset", "synthetic", "--arch", "dcgan32", "--width", "4",
                       "--device", "cpu", "--cuda-graph", "--out", str(out))
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: --cuda-graph: it needs a CUDA device and this run is on the CPU")
    assert not out.exists()  # refused before any work


def test_cuda_graph_by_default_on_cpu_trains_eagerly_and_says_nothing(tmp_path, run_cli):
    code, _, err = run_cli("train", "--dataset", "synthetic", "--arch", "dcgan32", "--width", "4",
                       "--batch-size", "100", "--device", "cpu", "--max-steps", "2", "--sample-every", "5",
                       "--out", str(tmp_path / "r"))
    assert code in (0, None) and err == "", err
    rec = json.loads((tmp_path / "r" / "config.json").read_text())
    assert rec["cuda_graph_effective"] is False and rec["config"]["cuda_graph"] is False


def test_cuda_graph_is_off_by_default_even_on_cuda():
    """The graphed step has never run on a GPU (issue 24): a CUDA run trains eagerly unless asked."""
    from dcgan_features.core.devices import DistContext
    from dcgan_features.train import loop as T

    cfg = TrainConfig(dataset="synthetic", arch="dcgan32", out="unused")
    assert cfg.cuda_graph is False
    assert T._use_cuda_graph(cfg, torch.device("cuda", 0), DistContext()) is False  # no CUDA needed to decide
    asked = TrainConfig(dataset="synthetic", arch="dcgan32", out="unused", cuda_graph=True)
    assert T._use_cuda_graph(asked, torch.device("cuda", 0), DistContext()) is True


def test_help_and_report_name_the_rows_that_verify_gpu_paths(run_cli):
    from dcgan_features.reproduce.report import _gpu_section
    from dcgan_features.train.config import GPU_VERIFIED

    _, out, _ = run_cli("train", "--help")
    page = _gpu_section()
    assert "[default: no-cuda-graph]" in " ".join(out.split())
    readme = (REPO / "README.md").read_text()
    for path, row in GPU_VERIFIED:
        assert path in out and row in out, path
        assert path in page
        assert f"| {path} | {row} |" in readme, path  # the README's table is the same table
    assert any("--cuda-graph" == p and "no GPU row" in r for p, r in GPU_VERIFIED)
    rows = [r for _, r in GPU_VERIFIED if r.startswith("results/")]
    assert rows and all((REPO / r.split(",")[0]).is_file() for r in rows)  # a cited file exists


def test_oom_during_capture_names_the_batch_and_the_memory(monkeypatch):
    from dcgan_features.train import graph as train_graph

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 77.5 * 2**30)
    msg = train_graph._oom_message(torch.device("cuda:0"), 1024)
    assert "batch 1024 per GPU" in msg and "77.5 GiB" in msg and "3.0 of 80.0 GiB free" in msg
    assert "last checkpoint is intact" in msg and "\n" not in msg


# ------------------------------------------------------------------------ on a GPU


def gpu_config(out: Path, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", arch="dcgan32", width=8, batch_size=100, device="cuda", progress=False,
                epochs=10, max_steps=20, log_every=5, ckpt_every=10, sample_every=100)
    return TrainConfig(out=str(out), **{**base, **kw})


def weights(path: Path) -> dict:
    ckpt = checkpoint.load(path)
    return {**{"G." + k: v for k, v in ckpt["G"].items()}, **{"D." + k: v for k, v in ckpt["D"].items()}}


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@needs_cuda
def test_twenty_graphed_steps_match_twenty_eager_steps(tmp_path):
    train(gpu_config(tmp_path / "eager", cuda_graph=False))
    train(gpu_config(tmp_path / "graph", cuda_graph=True))
    assert json.loads((tmp_path / "graph" / "config.json").read_text())["cuda_graph_effective"] is True
    a, b = weights(tmp_path / "eager" / "checkpoints" / "last.pt"), weights(tmp_path / "graph" / "checkpoints" / "last.pt")
    for k in a:
        if a[k].is_floating_point():  # bf16 autocast: the same step, not the same bits
            assert torch.allclose(a[k], b[k], rtol=2e-2, atol=2e-3), k
        else:
            assert torch.equal(a[k], b[k]), k  # num_batches_tracked: same number of BN updates
    for ra, rb in zip(metrics(tmp_path / "eager"), metrics(tmp_path / "graph"), strict=True):
        assert ra["step"] == rb["step"]
        assert abs(ra["loss_d"] - rb["loss_d"]) < 0.05 * abs(ra["loss_d"]) + 1e-3
        assert abs(ra["loss_g"] - rb["loss_g"]) < 0.05 * abs(ra["loss_g"]) + 1e-3


@needs_cuda
def test_resume_after_a_graphed_run_is_exact(tmp_path, monkeypatch):
    # Deterministic cuDNN algorithms: the test is about the graph and the RNG/optimizer state
    # restored before capture, not about cuDNN's atomics.
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    train(gpu_config(tmp_path / "straight", cuda_graph=True))
    train(gpu_config(tmp_path / "broken", cuda_graph=True, max_steps=10))
    train(gpu_config(tmp_path / "broken", cuda_graph=True, resume=True))
    a = weights(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "broken" / "checkpoints" / "last.pt")
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, unequal[:5]
    ca = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    cb = checkpoint.load(tmp_path / "broken" / "checkpoints" / "last.pt")
    assert torch.equal(ca["rng"]["z"], cb["rng"]["z"]) and ca["step"] == cb["step"] == 20
    assert [(r["loss_d"], r["loss_g"]) for r in metrics(tmp_path / "straight")] == \
        [(r["loss_d"], r["loss_g"]) for r in metrics(tmp_path / "broken")]


DDP_WORKER = """
import sys, torch
from dcgan_features.train import loop as T
run = T._Run.run
def run_and_dump(self):
    result = run(self)
    assert self.graph is not None
    torch.save({k: v.detach().cpu() for k, v in self.G.state_dict().items()}, sys.argv[2] + f"/rank{self.dist.rank}.pt")
    return result
T._Run.run = run_and_dump
T.train(T.TrainConfig(dataset="synthetic", arch="dcgan32", width=8, batch_size=100, epochs=1, max_steps=6,
                      log_every=3, device="cuda", cuda_graph=True, out=sys.argv[1], progress=False))
"""


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_graphed_ddp_under_torchrun(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(DDP_WORKER))
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(worker), str(tmp_path / "ddp"), str(tmp_path)], cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0 if "running" not in k and "num_batches" not in k)
    assert [r["step"] for r in metrics(tmp_path / "ddp")] == [3, 6]


# ------------------------------------------- the graphed step's logic, on a CPU


class ReplayBody:
    """Stands in for a CUDA graph on a CPU: replay() runs the recorded Python body again,
    so everything around the capture (warm-up undone in place, z drawn into the static buffer
    from the run's generator, the static index buffer, statistics inside the body, resume
    state loaded before capture) runs for real."""

    def __init__(self, body):
        self.replay = body


@pytest.fixture
def graph_logic_on_cpu(monkeypatch):
    from dcgan_features.train import loop as T
    from dcgan_features.train import graph as train_graph

    class CPUGraphedStep(train_graph.GraphedStep):
        def _capture(self):
            self.graph = ReplayBody(self._body)

    class NoStream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: NoStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(train_graph, "GraphedStep", CPUGraphedStep)
    monkeypatch.setattr(T, "_use_cuda_graph", lambda cfg, device, dist_ctx: True)


@pytest.fixture
def verdicts(monkeypatch):
    """Every self-check verdict of the runs in the test, in order."""
    from dcgan_features.train import graph as train_graph

    seen, verdict = [], train_graph.SelfCheck.verdict

    def spy(self):
        seen.append(verdict(self))
        return seen[-1]

    monkeypatch.setattr(train_graph.SelfCheck, "verdict", spy)
    return seen


def cpu_config(out: Path, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", arch="dcgan32", width=4, batch_size=100, device="cpu", progress=False,
                epochs=2, max_steps=6, log_every=3, ckpt_every=3, sample_every=100)
    return TrainConfig(out=str(out), **{**base, **kw})


def test_graphed_step_logic_equals_eager_and_resumes_exactly(tmp_path, graph_logic_on_cpu, verdicts):
    train(cpu_config(tmp_path / "straight"))
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["cuda_graph_effective"] is True
    train(cpu_config(tmp_path / "broken", max_steps=3))
    train(cpu_config(tmp_path / "broken", resume=True))
    a = weights(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "broken" / "checkpoints" / "last.pt")
    assert not [k for k in a if not torch.equal(a[k], b[k])]  # resume after a graphed run: exact
    assert metrics(tmp_path / "straight") == [{**r, "img_per_s": m["img_per_s"]} for r, m in
                                              zip(metrics(tmp_path / "broken"), metrics(tmp_path / "straight"))]
    assert verdicts == [None, None, None]  # every graphed run, resumed ones too, checked itself and passed


def test_graphed_step_logic_trains_like_the_eager_step(tmp_path, graph_logic_on_cpu, monkeypatch):
    train(cpu_config(tmp_path / "graph"))
    from dcgan_features.train import loop as T

    monkeypatch.setattr(T, "_use_cuda_graph", lambda cfg, device, dist_ctx: False)
    train(cpu_config(tmp_path / "eager"))
    a = weights(tmp_path / "eager" / "checkpoints" / "last.pt")
    b = weights(tmp_path / "graph" / "checkpoints" / "last.pt")
    # The same steps: only Adam's implementation differs (fused+capturable vs foreach), so the
    # weights agree to float32 round-off. Warm-up steps left in place would move them by ~lr.
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), rtol=1e-5, atol=1e-6), k
    for ra, rb in zip(metrics(tmp_path / "eager"), metrics(tmp_path / "graph"), strict=True):
        assert ra["step"] == rb["step"] and abs(ra["loss_d"] - rb["loss_d"]) < 1e-5


# --------------------------------- the self-check: eager vs replayed, first window


class StaleBufferGraph:
    """A wrong graph: it recorded a static buffer's values at capture and replays those, as a
    buffer the replay never refreshes would (the planted bug the self-check must catch):
    ``buffer`` is "z_raw" (z drawn at capture only) or "idx" (the batch indices)."""

    def __init__(self, graphed, buffer: str):
        self.graphed, self.buffer = graphed, buffer
        self.frozen = getattr(graphed, buffer).clone()

    def replay(self):
        live = getattr(self.graphed, self.buffer)
        fresh = live.clone()
        live.copy_(self.frozen)
        self.graphed._body()
        live.copy_(fresh)


@pytest.mark.parametrize("buffer", ["z_raw", "idx"])
def test_self_check_stops_a_stale_graph_in_one_line_and_keeps_the_last_checkpoint(
        tmp_path, graph_logic_on_cpu, verdicts, monkeypatch, run_cli, buffer):
    from dcgan_features.train import graph as train_graph
    from dcgan_features.train import loop as T

    out = tmp_path / "g"
    train(cpu_config(out, max_steps=3))  # a good checkpoint at step 3 (graphed, checked)
    good = (out / "checkpoints" / "last.pt").read_bytes()

    class StaleGraphedStep(train_graph.GraphedStep):
        def _capture(self):
            self.graph = StaleBufferGraph(self, buffer)

    monkeypatch.setattr(train_graph, "GraphedStep", StaleGraphedStep)
    line = run_cli.error("train", "--dataset", "synthetic", "--arch", "dcgan32", "--width", "4", "--batch-size", "100",
                         "--device", "cpu", "--epochs", "2", "--max-steps", "6", "--log-every", "3", "--ckpt-every",
                         "3", "--sample-every", "100", "--out", out, "--resume",
                         match="--cuda-graph: the replayed step disagrees with the eager step at step 4")
    assert f"last good checkpoint: {out / 'checkpoints' / 'last.pt'}" in line and "drop --cuda-graph" in line
    assert verdicts[0] is None and verdicts[1] is not None
    assert (out / "checkpoints" / "last.pt").read_bytes() == good  # nothing of the wrong graph was saved
    assert [r["step"] for r in metrics(out)] == [3]
    assert issubclass(T.GraphMismatch, T.UserError)


def test_self_check_verdict_tolerances():
    """One bf16 rounding on the losses, 2% on each tensor's update; both steps diverged is left
    to the loop's NaN check, one diverged is a mismatch."""
    from dcgan_features.train.graph import SelfCheck

    def verdict(graph_loss, gaps=(0.0, 0.001)):
        return SelfCheck(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor(graph_loss, dtype=torch.float64),
                         torch.tensor(gaps, dtype=torch.float64)).verdict()

    assert verdict([1.0 + 2e-3, 2.0 - 4e-3]) is None  # within 2^-8 relative
    assert "loss_D 1.0100 replayed vs 1.0000 eager" in verdict([1.01, 2.0])
    assert "up to 3.0% apart" in verdict([1.0, 2.0], gaps=(0.0, 0.03))
    assert verdict([float("nan"), 2.0]) is not None
    nan = float("nan")
    assert SelfCheck(torch.tensor([nan, 2.0], dtype=torch.float64), torch.tensor([nan, 2.0], dtype=torch.float64),
                     torch.tensor([nan], dtype=torch.float64)).verdict() is None
