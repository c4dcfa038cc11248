"""The quickstart: a small `reproduce` that trains on the dataset itself and copies its outputs out."""

import csv
from pathlib import Path

import pytest

from dcgan_features.cli import main
from dcgan_features.reproduce.quickstart import QuickstartConfig, run
from dcgan_features.probes.records import CSV_COLUMNS
from dcgan_features.reproduce.runner import format_summary


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    cfg = QuickstartConfig(width=4, epochs=1, batch_size=128, device="cpu", probes=("svm",), draws=2, c_grid=(0.1,),
                           out=str(root / "run"), results=str(root / "results" / "quick.csv"))
    return cfg, run(cfg, log=lambda m: None)


def test_every_feature_set_through_the_same_protocol(quick):
    cfg, res = quick
    with open(res.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS + ("kind", "command", "commit", "load", "date", "note")
    got = {(r["features"], r["protocol"]) for r in rows}
    assert got == {(f, p) for f in ("pixels", "random D", "trained D") for p in ("digits/all", "digits/20-per-class")}
    dims = {r["features"]: int(r["dim"]) for r in rows}
    assert dims == {"pixels": 3 * 32 * 32, "random D": 16 * 7 * 4, "trained D": 16 * 7 * 4}
    for r in rows:
        # this tiny config measures 96.6-98.8 (all labels) and 90.4-94.1 (20 per class); a probe or
        # feature regression (a collapse to 55%, say) falls under these floors
        floor = 93.0 if r["protocol"] == "digits/all" else 85.0
        assert floor <= float(r["mean"]) <= 100.0, r
        assert r["paper_value"] == "" and r["trained_on"] == ("digits" if r["features"] == "trained D" else "none")


def test_outputs_are_copied_beside_the_table(quick):
    cfg, res = quick
    root = Path(cfg.results).parent
    assert res.checkpoint == Path(cfg.out) / "train" / "checkpoints" / "last.pt" and res.checkpoint.is_file()
    assert (res.csv, res.samples, res.report) == (root / "quick.csv", root / "quick_samples.png",
                                                  root / "quick_report.html")
    assert res.samples.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # copies, byte for byte, of the run's own table and last sample grid
    assert res.csv.read_bytes() == (Path(cfg.out) / "results.csv").read_bytes()
    grids = sorted((Path(cfg.out) / "train" / "samples").glob("epoch_*.png"))
    assert res.samples.read_bytes() == grids[-1].read_bytes()
    assert "data:image/png;base64," in res.report.read_text()
    assert list(res.seconds) == ["model", "extract:trained", "extract:random", "extract:pixels", "probe:pixels",
                                 "probe:random", "probe:trained"]


def test_summary_table_has_one_line_per_feature_set(quick):
    _, res = quick
    lines = format_summary(res.records).splitlines()
    assert [ln.split("  ")[0].strip() for ln in lines[1:]] == ["pixels", "random D", "trained D"]
    assert "svm all" in lines[0] and "svm 20-per-class" in lines[0]


def test_rerun_reuses_every_stage(quick):
    cfg, res = quick
    before = (res.checkpoint.stat().st_mtime_ns, res.csv.read_bytes())
    log = []
    again = run(cfg, log=log.append)
    assert [ln.split(": ")[1].split()[0] for ln in log if ln.startswith("[")] == ["reuse"] * 7
    assert (again.checkpoint.stat().st_mtime_ns, again.csv.read_bytes()) == before


def test_cli_flags_reach_the_config(monkeypatch, capsys, quick):
    _, res = quick
    seen = []
    monkeypatch.setattr("dcgan_features.reproduce.quickstart.run", lambda cfg, log: seen.append(cfg) or res)
    with pytest.raises(SystemExit) as e:
        main(["quickstart", "--dataset", "fashion-mnist", "--width", "8", "--device", "cpu", "--probe", "logreg",
              "--out", "o", "--results", "r.csv"])
    out, err = capsys.readouterr()
    assert e.value.code == 0, err
    assert seen == [QuickstartConfig(dataset="fashion-mnist", width=8, device="cpu", probes=("logreg",), out="o",
                                     results="r.csv")]
    assert out.splitlines()[0].startswith("accuracy (%)")


def test_dataset_without_protocol_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["quickstart", "--dataset", "synthetic", "--out", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert e.value.code != 0
    assert err.count("\n") == 1 and "synthetic" in err
