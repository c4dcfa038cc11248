"""Extraction and probes under torchrun: 2 CPU ranks with gloo against one process.

Each spawn costs seconds of imports, so the default run has one: extraction, the probe
protocol and the solver on 2 ranks. A killed rank and its resume, and the bad launches (a
world larger than a split, ranks with other settings), are slow tests.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dcgan_features.cli import main
from dcgan_features.extract.parts import part_path
from dcgan_features.probes.newton import SolverConfig, fit_torch
from dcgan_features.probes.rows import open_split
from dcgan_features.extract.store import FeatureFile, partial_path
from cli_checks import same_file

REPO = Path(__file__).resolve().parents[1]
EXTRACT = ["extract", "--random-init", "--arch", "dcgan32", "--width", "4", "--dataset", "digits", "--batch-size",
           "64", "--device", "cpu"]
PROBE = ["probe", "digits", "--probe", "logreg", "--C", "0.1,1", "--draws", "2", "--device", "cpu"]
# At the default tol the fits stop within the solver's tolerance of the optimum, where 2 ranks
# and 1 process (another float32 summation order) may stop a Newton step apart (measured on
# these features at C=1: weights 1.2% apart, as far as one process's own tol=1e-4 and tol=1e-8
# fits are). Judged at a tight tol, the weights must agree to round-off (measured 6e-6).
FIT = dict(probe="svm", Cs=[0.01, 1.0], n_classes=10, device="cpu", config=dict(tol=1e-8, max_newton=300))

WORKER = """
import json, os, sys
import torch
from dcgan_features.cli import main

from dcgan_features.core.devices import init_distributed

init_distributed("cpu")  # the worker owns the group: the commands below join it and leave it up
rank = int(os.environ["RANK"])
mode, commands = sys.argv[1], json.loads(sys.argv[2])
if mode == "kill" and rank == 1:
    sys.path.insert(0, os.path.join(os.environ["PYTHONPATH"], "tests"))
    import faults

    faults.kill_after_rows(128)  # rank 1 dies (SIGKILL) after two of its batches
for argv in commands:
    if mode == "differ" and rank == 1:  # rank 1 gets FLAG VALUE (sys.argv[3:5]) instead of rank 0's
        argv[argv.index(sys.argv[3]) + 1] = sys.argv[4]
    try:
        main(argv)
    except SystemExit as e:
        if e.code:
            raise
if mode == "fit":  # the solver itself, every rank on its share: the weights each rank ends with
    from dcgan_features.probes.newton import SolverConfig, fit_torch
    from dcgan_features.probes.rows import open_split
    from dcgan_features.extract.store import FeatureFile

    kw = json.loads(sys.argv[4])
    with FeatureFile(sys.argv[3]) as ff:
        fit = fit_torch(source=open_split(ff, "train", "cpu"), **{**kw, "config": SolverConfig(**kw["config"])})
    torch.save({"coef": fit.coef, "intercept": fit.intercept, "passes": fit.passes}, sys.argv[3] + f".rank{rank}")
"""


def torchrun(tmp_path: Path, mode: str, *commands, extra=(), nproc: int = 2) -> subprocess.CompletedProcess:
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), str(worker), mode, json.dumps([list(map(str, c)) for c in commands]),
                           *map(str, extra)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def run_main(*argv) -> None:
    with pytest.raises(SystemExit) as e:
        main([*map(str, argv)])
    assert e.value.code == 0


def test_two_ranks_extract_and_probe_as_one_process(tmp_path):
    """The file bit for bit (with --bn recompute), the same records, written once, and the
    solver's weights: the same on both ranks, one process's up to round-off."""
    out, ref = tmp_path / "d.h5", tmp_path / "ref.h5"
    p = torchrun(tmp_path, "fit", [*EXTRACT, "--out", out], [*PROBE, "--features", out, "--out", tmp_path / "r2"],
                 extra=[out, json.dumps(FIT)])
    assert p.returncode == 0, p.stderr[-3000:]
    assert not list(tmp_path.glob("d.h5.*.partial")) and not partial_path(out).exists()
    run_main(*EXTRACT, "--out", ref)
    same_file(out, ref)
    run_main(*PROBE, "--features", ref, "--out", tmp_path / "r1")
    keys = ("protocol", "probe", "C", "n_labels", "mean", "ci95", "n_runs")
    one, two = ([{k: r[k] for k in keys} for r in _csv(tmp_path / d / "probes.csv")] for d in ("r1", "r2"))
    assert one == two and len(one) == 2
    assert (tmp_path / "r2" / "probes.csv").read_text().count("\n") == 3  # header + 2: rank 0 alone wrote
    with FeatureFile(ref) as ff:
        fit = fit_torch(source=open_split(ff, "train", "cpu"), **{**FIT, "config": SolverConfig(**FIT["config"])})
        assert fit.converged.all() and fit.accuracy(open_split(ff, "test", "cpu")).min() > 0.8
    r0, r1 = (torch.load(f"{out}.rank{r}") for r in (0, 1))
    assert torch.equal(r0["coef"], r1["coef"]) and r0["passes"] == r1["passes"]  # one iteration on both ranks
    for two, one in ((r0["coef"], fit.coef), (r0["intercept"], fit.intercept)):
        dims = tuple(range(1, one.ndim))
        gap = ((two - one).abs().amax(dims) / one.abs().amax(dims)).max()
        assert gap < 1e-4, gap


@pytest.mark.slow
def test_killed_rank_stops_the_job_and_the_same_command_resumes(tmp_path):
    out, ref = tmp_path / "d.h5", tmp_path / "ref.h5"
    p = torchrun(tmp_path, "kill", [*EXTRACT, "--out", out])
    assert p.returncode != 0
    lines = our_lines(p.stderr)  # one line from rank 0; torchrun's own summary follows
    assert len(lines) == 1 and ("lost contact with another rank" in lines[0] or "SIGTERM" in lines[0]), p.stderr
    assert "run the same command again to resume" in lines[0]
    assert "dcgan_features/" not in p.stderr and 'worker.py", line' not in p.stderr  # only torchrun's traceback
    assert not out.exists()
    with FeatureFile(partial_path(part_path(out, 0, 2))) as ff:
        with pytest.raises(Exception, match="unfinished extraction|incomplete"):
            ff.read("train", 0, 1)
    p = torchrun(tmp_path, "run", [*EXTRACT, "--out", out])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming" in p.stderr and "re-estimating" not in p.stderr  # the kept BN statistics are reused
    assert not list(tmp_path.glob("d.h5.*"))
    run_main(*EXTRACT, "--out", ref)
    same_file(out, ref)


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_world_larger_than_a_split_and_ranks_with_other_settings(tmp_path):
    small = [*EXTRACT, "--limit", "2", "--out", tmp_path / "a.h5"]
    p = torchrun(tmp_path, "run", small, nproc=3)
    lines = our_lines(p.stderr)
    assert p.returncode != 0 and len(lines) == 1, p.stderr
    assert "3 ranks but split 'train' has only 2 rows; start at most 2 processes" in lines[0]
    p = torchrun(tmp_path, "differ", [*EXTRACT, "--out", tmp_path / "b.h5"], extra=["--batch-size", "32"])
    lines = our_lines(p.stderr)
    assert p.returncode != 0 and len(lines) == 1, p.stderr
    assert "rank 1 was launched with other settings than rank 0 (batch_size 32 vs 64" in lines[0]
    assert not list(tmp_path.glob("*.h5*"))
    # probe: rank 1 asks for 3 label draws where rank 0 asks for 2; refused before any fit or write
    feats = tmp_path / "f.h5"
    run_main(*EXTRACT, "--out", feats)
    p = torchrun(tmp_path, "differ", [*PROBE, "--features", feats, "--out", tmp_path / "p"], extra=["--draws", "3"])
    lines = our_lines(p.stderr)
    assert p.returncode != 0 and len(lines) == 1, p.stderr
    assert "rank 1 was launched with other settings than rank 0 (draws 3 vs 2" in lines[0], lines[0]
    assert "dcgan_features/" not in p.stderr and 'worker.py", line' not in p.stderr  # only torchrun's traceback
    assert not (tmp_path / "p" / "probes.csv").exists()
    # a missing file is agreed on by the group: one line, from rank 0
    p = torchrun(tmp_path, "run", [*PROBE, "--features", tmp_path / "none.h5"])
    lines = our_lines(p.stderr)
    assert p.returncode != 0 and len(lines) == 1 and "not found" in lines[0], p.stderr
