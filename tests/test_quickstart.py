"""The main job end to end on the embedded digits, at a tiny width: train, extract, probe, table."""

import csv

import pytest

from dcgan_features.cli import main
from dcgan_features.records import CSV_COLUMNS
from dcgan_features.quickstart import QuickstartConfig, format_summary, run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    cfg = QuickstartConfig(width=4, epochs=1, batch_size=128, device="cpu", probes=("svm",),
                           out=str(root / "run"), results=str(root / "results" / "quick.csv"))
    return cfg, run(cfg, log=lambda m: None)


def test_every_feature_set_through_the_same_protocol(quick):
    cfg, res = quick
    with open(res.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    got = {(r["features"], r["protocol"]) for r in rows}
    assert got == {(f, p) for f in ("pixels", "random D", "trained D") for p in ("digits/all", "digits/20-per-class")}
    dims = {r["features"]: int(r["dim"]) for r in rows}
    assert dims == {"pixels": 3 * 32 * 32, "random D": 16 * 7 * 4, "trained D": 16 * 7 * 4}
    for r in rows:
        # digits is easy: every feature set must be far above chance (10%), and C comes from the grid
        assert 50.0 < float(r["mean"]) <= 100.0, r
        assert float(r["C"]) in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
        assert r["paper_value"] == ""


def test_run_folder_and_sample_grid(quick):
    cfg, res = quick
    assert res.checkpoint.is_file()
    assert res.samples is not None and res.samples.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.samples.parent == res.csv.parent
    assert set(res.seconds) == {"train", "extract", "probe"}


def test_summary_table_has_one_line_per_feature_set(quick):
    _, res = quick
    lines = format_summary(res.records).splitlines()
    assert [ln.split("  ")[0].strip() for ln in lines[1:]] == ["pixels", "random D", "trained D"]
    assert "svm all" in lines[0] and "svm 20-per-class" in lines[0]


def test_rerun_reuses_the_finished_training(quick, capsys):
    cfg, res = quick
    before = res.checkpoint.stat().st_mtime_ns
    with pytest.raises(SystemExit) as e:
        main(["quickstart", "--width", "4", "--epochs", "1", "--batch-size", "128", "--device", "cpu",
              "--probe", "svm", "--out", cfg.out, "--results", cfg.results])
    out, err = capsys.readouterr()
    assert e.value.code == 0, err
    assert "resuming" in err
    assert res.checkpoint.stat().st_mtime_ns == before  # nothing left to train
    assert out.splitlines()[0].startswith("accuracy (%)")


def test_dataset_without_protocol_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["quickstart", "--dataset", "synthetic", "--out", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert e.value.code != 0
    assert err.count("\n") == 1 and "protocol" in err
