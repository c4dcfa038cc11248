"""Benchmarks rerun replace their own rows and only those (provenance.upsert with a full key)."""

import csv
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import disk_speed  # noqa: E402
import probe_scaling  # noqa: E402


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_probe_scaling_rerun_replaces_its_predictions_and_keeps_the_measurements(tmp_path, capsys):
    table = tmp_path / "probe_dist.csv"
    shutil.copy(REPO / "results" / "probe_dist.csv", table)
    before = rows(table)
    probe_scaling.main(["--out", str(table)])
    probe_scaling.main(["--out", str(table)])
    after = rows(table)
    assert len(after) == len(before)  # no duplicates: the old script appended a copy per run
    measured = [r for r in before if r["kind"] == "measured"]
    assert [r for r in after if r["kind"] == "measured"] == measured
    key = lambda r: tuple(r[k] for k in probe_scaling.KEY)  # noqa: E731
    assert sorted(map(key, after)) == sorted(map(key, before))


def test_disk_speed_rerun_replaces_its_row(tmp_path, capsys):
    table = tmp_path / "disk.csv"
    for note in ("first", "second"):
        disk_speed.main(["--dir", str(tmp_path), "--mb", "2", "--block-mb", "1", "--device", "cpu",
                         "--note", note, "--csv", str(table)])
    got = rows(table)
    assert len(got) == 1 and got[0]["note"] == "second" and got[0]["kind"] == "measured"
    assert got[0]["command"].startswith("python benchmarks/disk_speed.py --dir ")
    disk_speed.main(["--dir", str(tmp_path), "--mb", "1", "--block-mb", "1", "--device", "cpu", "--csv", str(table)])
    assert len(rows(table)) == 2  # another size is another measurement


def test_probe_scaling_help_writes_nothing(tmp_path, capsys):
    import pytest

    table = tmp_path / "probe_dist.csv"
    shutil.copy(REPO / "results" / "probe_dist.csv", table)
    before = table.read_bytes()
    with pytest.raises(SystemExit) as e:
        probe_scaling.main(["--help", "--out", str(table)])
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out and table.read_bytes() == before
