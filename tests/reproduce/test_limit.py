"""``reproduce --limit N``: the first N images of every split, training data included, said everywhere."""

import csv
import json

import h5py


def test_limit_reaches_every_stage_and_every_record(run_cli, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = run_cli("reproduce", "digits", "--limit", "120", "--val-size", "30", "--labels-per-class", "3",
                                "--draws", "2", "--width", "4", "--epochs", "1", "--C", "0.1", "--probe", "svm",
                                "--device", "cpu", "--out", out)
    assert code in (0, None), err
    assert json.loads((out / "train" / "config.json").read_text())["n_images"] == 120  # training data too
    for which in ("trained", "random", "pixels"):
        with h5py.File(out / "features" / f"{which}.h5", "r") as f:
            assert f["train/labels"].shape == (120,) and f["test/labels"].shape == (120,)
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all("--limit 120" in r["note"] and "--limit 120" in r["command"] for r in rows)
    assert "--limit 120</b>: the first 120 images of each split" in (out / "report.html").read_text()
