"""The feature file keeps what a dataset's protocol needs: class names, STL-10's folds, a folder's drawn rows."""

import numpy as np

from dcgan_features.extract.store import FeatureFile
from formats import write_image_folder, write_stl10

FAST = ("--model", "pixels", "--image-size", "8", "--device", "cpu")


def test_a_folder_split_and_its_classes_are_in_the_file(run_cli, tmp_path):
    write_image_folder(tmp_path / "imgs", {"": {"ant": 5, "bee": 10}})
    out = tmp_path / "f.h5"
    code, stdout, err = run_cli("extract", *FAST, "--dataset", "folder", "--data-dir", tmp_path / "imgs",
                                "--test-fraction", "0.4", "--split-seed", "1", "--workers", "2", "--out", out)
    assert code == 0, err
    with FeatureFile(out) as ff:
        info = ff.dataset_info()
        assert info["classes"] == ["ant", "bee"] and "fraction 0.4" in info["folder_split"]
        assert np.bincount(ff.labels("test")).tolist() == [2, 4]
        assert sorted(np.r_[info["folder_rows_train"], info["folder_rows_test"]].tolist()) == list(range(15))
        key = ff.meta["dataset_key"]
    other = tmp_path / "g.h5"
    run_cli("extract", *FAST, "--dataset", "folder", "--data-dir", tmp_path / "imgs", "--test-fraction", "0.4",
            "--split-seed", "2", "--out", other)
    with FeatureFile(other) as ff:
        assert ff.meta["dataset_key"] != key  # another draw is another file
    line = run_cli.error("extract", *FAST, "--dataset", "folder", "--data-dir", tmp_path / "imgs",
                         "--test-fraction", "0.4", "--split-seed", "2", "--out", out, match="dataset_key")


def test_stl10_folds_are_in_the_file(run_cli, tmp_path):
    written = write_stl10(tmp_path)
    out = tmp_path / "s.h5"
    code, _, err = run_cli("extract", *FAST, "--dataset", "stl10", "--data-dir", tmp_path, "--out", out)
    assert code == 0, err
    with FeatureFile(out) as ff:
        assert np.array_equal(ff.dataset_info()["folds"], written["folds"])
        assert ff.dataset_info()["classes"][1] == "bird" and ff.n_rows("test") == 20
