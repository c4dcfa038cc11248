"""How long ``make demo`` (``dcgan-features quickstart``) takes from nothing: the figure the README states.

Runs the quickstart as ``make demo`` does (same command, default thread policy: no
``OMP_NUM_THREADS`` in its environment) into a fresh ``--out`` under ``runs/`` and writes one
row to ``results/demo_time.csv``: the wall time of the whole command, each stage's seconds
from its stage record, the threads each stage used, and the load average before and after
(the machine's cores may be shared: say so with ``--note``). ``--env-threads N`` runs it
with ``OMP_NUM_THREADS=N`` instead (the user's choice, which the policy leaves alone).

    nice -n 10 python benchmarks/demo_time.py --note "cores shared with 7 other jobs"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import load_average, provenance, upsert  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/demo_time", help="the quickstart's --out (removed first)")
    ap.add_argument("--env-threads", type=int, default=None, help="run with OMP_NUM_THREADS set to this")
    ap.add_argument("--note", default="")
    ap.add_argument("--csv", default=str(REPO / "results" / "demo_time.csv"))
    args = ap.parse_args(argv)
    out = REPO / args.out
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if args.env_threads is not None:
        env["OMP_NUM_THREADS"] = str(args.env_threads)
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "dcgan_features.cli", "quickstart", "--out", str(out)]
    prov = provenance(note=args.note)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"quickstart failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    stages = {}
    for rec_path in sorted((out / "stages").glob("*.json")):
        rec = json.loads(rec_path.read_text())
        stages[rec.get("name", rec_path.stem)] = rec
    row = {"case": "make demo" if args.env_threads is None else f"make demo, OMP_NUM_THREADS={args.env_threads}",
           "wall_s": round(wall, 1),
           **{f"{name}_s": round(float(r.get("seconds", 0)), 1) for name, r in stages.items()},
           "threads": "policy" if args.env_threads is None else f"OMP_NUM_THREADS={args.env_threads}",
           "load_after": load_average(), **prov}
    upsert(args.csv, [row], key=("case",))
    print(proc.stdout)
    print(f"{row['case']}: {wall:.0f} s; wrote {args.csv}")


if __name__ == "__main__":
    main()
