"""The disk's own sequential write speed, the yardstick of the extraction target.

Runs ``dd if=/dev/zero of=DIR/.disk_speed.bin bs=BS count=N oflag=direct conv=fsync`` (direct
I/O: the page cache does not flatter the figure; fsync: the data is on the device when dd
stops the clock), parses dd's own summary line, deletes the file, and writes one row (replacing its own earlier one) to
``results/disk_speed.csv`` naming the machine (``--device``: the GPU of the machine when there
is one, so the row sits beside that machine's extraction rows), the folder and its filesystem.
DESIGN section 7: extraction should reach >= 90% of this speed on the same machine::

    python benchmarks/disk_speed.py --dir .gpu/work --mb 4096 --device cuda
    python benchmarks/disk_speed.py --dir /tmp --mb 256 --device cpu
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provenance import provenance, this_command, upsert  # noqa: E402  (benchmarks/provenance.py)

KEY = ("dir", "filesystem", "bytes", "block", "device")  # a rerun replaces only its own row


def parse_dd(stderr: str) -> tuple[int, float]:
    """Bytes and seconds from dd's last line: '1073741824 bytes (1.1 GB, 1.0 GiB) copied, 1.23 s, 873 MB/s'.

    >>> parse_dd("4+0 records in\\n4+0 records out\\n4194304 bytes (4.2 MB, 4.0 MiB) copied, 0.0105 s, 400 MB/s")
    (4194304, 0.0105)
    """
    m = re.search(r"^(\d+) bytes.*copied, ([0-9.eE+-]+) s", stderr, re.MULTILINE)
    if not m:
        raise ValueError(f"cannot read dd's summary: {stderr.strip()[-200:]!r}")
    return int(m.group(1)), float(m.group(2))


def filesystem(folder: str) -> str:
    p = subprocess.run(["df", "--output=source,fstype", folder], capture_output=True, text=True)
    lines = p.stdout.split("\n")
    return " ".join(lines[1].split()) if p.returncode == 0 and len(lines) > 1 else ""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=".", help="folder on the disk to measure (where features are written)")
    p.add_argument("--mb", type=int, default=4096, help="MiB to write")
    p.add_argument("--block-mb", type=int, default=64, help="dd block size, MiB")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="names the machine's row")
    p.add_argument("--note", default="")
    p.add_argument("--csv", default=str(REPO / "results" / "disk_speed.csv"))
    args = p.parse_args(argv)
    from dcgan_features.core.devices import resolve_device

    command = this_command(["benchmarks/disk_speed.py", *(sys.argv[1:] if argv is None else argv)])
    prov = provenance(device=resolve_device(args.device).type, note=args.note, command=command)
    target = Path(args.dir) / ".disk_speed.bin"
    count = max(1, args.mb // args.block_mb)
    dd = ["dd", "if=/dev/zero", f"of={target}", f"bs={args.block_mb}M", f"count={count}", "oflag=direct",
          "conv=fsync"]
    try:
        proc = subprocess.run(dd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    finally:
        target.unlink(missing_ok=True)
    if proc.returncode != 0:
        sys.exit(f"error: dd failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    nbytes, seconds = parse_dd(proc.stderr)
    row = {"dir": str(Path(args.dir).resolve()), "filesystem": filesystem(args.dir), "bytes": nbytes,
           "seconds": seconds, "mb_per_s": round(nbytes / seconds / 1e6, 1), "block": f"{args.block_mb}M",
           "dd": " ".join(dd), **prov}
    upsert(args.csv, [row], key=KEY)
    print(f"{row['mb_per_s']} MB/s sequential direct write to {row['dir']} ({row['filesystem']}) -> {args.csv}")


if __name__ == "__main__":
    main()
