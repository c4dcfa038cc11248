"""Every labelled dataset has a protocol: the generic one built from the feature file, STL-10's folds,
ImageNet's 1%/10% columns; each record says which protocol and which validation rows."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from dcgan_features.core.errors import UserError
from dcgan_features.extract.store import FeatureFile
from dcgan_features.probes.generic import protocol_for
from dcgan_features.probes.protocols import PROTOCOLS, from_arrays, get_protocol, run_protocol
from dcgan_features.probes.splits import draw_fraction, rows_fingerprint, stratified_validation
from feature_files import write_features
from formats import write_stl10


def _record(folder, features: str, protocol: str, probe: str) -> dict:
    """The one JSON record of ``features`` (its name carries a hash of the file's path) for a protocol and probe."""
    (path,) = folder.glob(f"{features}-*__{protocol}__{probe}.json")
    return json.loads(path.read_text())


def test_stratified_validation_is_a_tenth_of_each_class_capped_and_seeded():
    y = np.repeat(np.arange(4), [50, 200, 7, 2])
    val, pool = stratified_validation(y, 0.1, 10000, 4, seed=1)
    assert np.bincount(y[val]).tolist() == [5, 20, 1, 1]  # round(10%), at least one per class
    assert not np.intersect1d(val, pool).size and len(val) + len(pool) == len(y)
    assert np.array_equal(val, stratified_validation(y, 0.1, 10000, 4, seed=1)[0])
    assert not np.array_equal(val, stratified_validation(y, 0.1, 10000, 4, seed=2)[0])
    capped, _ = stratified_validation(y, 0.1, 13, 4, seed=1)  # at most 13 rows: the share drops to 13/259
    assert np.bincount(y[capped]).tolist() == [3, 10, 1, 1]
    with pytest.raises(UserError, match=r"1 row\(s\) of class 3 \('d'\).*needs 2"):
        stratified_validation(np.r_[y, 3][:-2], 0.1, 100, 4, seed=0, classes=("a", "b", "c", "d"))


def test_fraction_draws_take_a_share_of_each_class_from_the_pool():
    y = np.repeat(np.arange(3), [100, 300, 40])
    val, pool = stratified_validation(y, 0.1, 10000, 3, seed=0)
    d = draw_fraction(y, pool, 0.1, 3, seed=0, draw=0)
    assert np.bincount(y[d]).tolist() == [10, 30, 4] and np.isin(d, pool).all()
    with pytest.raises(UserError, match=r"90 labelled rows of class 0 .* fewer than the 95 \(95% of the class\)"):
        draw_fraction(y, pool, 0.95, 3, seed=0, draw=0)


def test_registered_protocols_are_registry_entries_with_their_own_numbers():
    assert {"mnist", "cifar100", "cifar100-coarse", "stl10", "imagenet32", "imagenet64"} <= set(PROTOCOLS)
    i = PROTOCOLS["imagenet32"]
    assert (i.n_classes, i.test_split, i.label_fractions, i.full) == (1000, "val", (0.01, 0.1), True)
    assert "SimCLR" in i.description and "BYOL" in i.description
    assert PROTOCOLS["stl10"].folds and not PROTOCOLS["stl10"].full and PROTOCOLS["cifar100-coarse"].n_classes == 20
    assert PROTOCOLS["svhn"] == get_protocol("svhn")  # the authors' protocol, untouched


def test_generic_protocol_on_digits_features(digits):
    Xtr, ytr, Xte, yte = digits
    labels = {"train": ytr, "test": yte}
    cfg = protocol_for("folder", labels.get, [f"c{i}" for i in range(10)], labels_per_class=5, draws=2)
    recs = run_protocol("folder", from_arrays(Xtr, ytr, Xte, yte), ["logreg"], cfg, Cs=[0.1, 1.0], device="cpu")
    assert [r["protocol"] for r in recs] == ["folder/all", "folder/5-per-class"]
    val, _ = stratified_validation(ytr, 0.1, 10000, 10, seed=0)
    assert recs[0]["val_rows"] == len(val) == 130 and recs[0]["val_rows_sha256"] == rows_fingerprint(val)
    assert recs[0]["protocol_kind"] == "generic" and "stratified 10%" in recs[0]["protocol_description"]
    assert recs[0]["mean"] > 90 and recs[1]["n_labels"] == 50


def test_probe_without_a_dataset_takes_it_from_the_file(run_cli, tmp_path, digits):
    Xtr, ytr, Xte, yte = digits
    f = write_features(tmp_path / "s.h5", {"train": (Xtr, ytr), "test": (Xte, yte)}, dataset="synthetic")
    code, out, err = run_cli("probe", "--features", f, "--probe", "logreg", "--C", "0.1,1", "--device", "cpu",
                             "--out", tmp_path / "o")
    assert code == 0, err
    rec = _record(tmp_path / "o", "s.h5", "synthetic-all", "logreg")
    assert rec["protocol_kind"] == "generic" and rec["val_rows"] == 130 and rec["dataset"] == "synthetic"


def test_bad_labels_and_classes_are_one_line_before_any_fit(run_cli, tmp_path, digits):
    Xtr, ytr, Xte, yte = digits
    probe = ("probe", "--device", "cpu", "--out", tmp_path / "o", "--features")
    y = yte.copy()
    y[y == 9] = 0
    f = write_features(tmp_path / "a.h5", {"train": (Xtr, np.where(ytr == 9, 0, ytr)), "test": (Xte, yte)},
                       dataset="folder")
    run_cli.error(*probe, f, match="class 9 has test rows but no train rows")
    import h5py

    with h5py.File(f, "r+") as h:  # the file names 9 classes: label 9 is outside them
        h.create_group("_dataset").attrs["classes"] = json.dumps([f"k{i}" for i in range(9)])
    run_cli.error(*probe, f, match="split 'test' has label 9 but the folder protocol has 9 classes (k0, k1, k2, ...)")
    g = write_features(tmp_path / "b.h5", {"train": (Xtr, ytr), "test": (Xte, yte)}, dataset="folder")
    run_cli.error(*probe, g, "--labels-per-class", "150", match="fewer than the 150 per class")
    run_cli.error(*probe, write_features(tmp_path / "u.h5", {"train": (Xtr, -np.ones_like(ytr)),
                                                           "test": (Xte, yte)}, dataset="folder"),
                  match="train split has no labels")
    assert not (tmp_path / "o" / "probes.csv").exists()


def test_stl10_folds_on_its_format_fixture(run_cli, tmp_path):
    written = write_stl10(tmp_path, n_train=60, n_test=30, fold=30)
    f = tmp_path / "s.h5"
    code, _, err = run_cli("extract", "--model", "pixels", "--image-size", "8", "--device", "cpu", "--dataset",
                           "stl10", "--data-dir", tmp_path, "--dtype", "float32", "--out", f)
    assert code == 0, err
    code, out, err = run_cli("probe", "--features", f, "--probe", "logreg", "--backend", "sklearn", "--C", "1e-3,1e-2",
                             "--device", "cpu", "--out", tmp_path / "o")
    assert code == 0, err
    rec = _record(tmp_path / "o", "s.h5", "stl10-10-folds", "logreg")
    assert rec["n_runs"] == 10 and rec["n_labels"] == 30 and rec["val_rows"] == 10 * 10  # 1 per class per fold
    with FeatureFile(f) as ff:  # the oracle: scikit-learn fitted on each fold's rows at the chosen C
        Xtr, ytr, Xte, yte = ff.read("train"), ff.labels("train"), ff.read("test"), ff.labels("test")
    want = [100 * LogisticRegression(C=rec["C"], tol=1e-4, max_iter=100).fit(Xtr[rows], ytr[rows]).score(Xte, yte)
            for rows in written["folds"]]
    np.testing.assert_allclose(rec["per_draw"], want, atol=1e-9)
    assert rec["mean"] == pytest.approx(np.mean(want)) and rec["std"] == pytest.approx(np.std(want, ddof=1))


def test_imagenet_protocol_has_its_fraction_columns(digits):
    Xtr, ytr, Xte, yte = digits
    cfg = get_protocol("imagenet32", n_classes=10, val_size=100, draws=2)
    recs = run_protocol("imagenet32", from_arrays(Xtr, ytr, Xte, yte), ["logreg"], cfg, Cs=[1.0], device="cpu")
    assert [r["protocol"] for r in recs] == ["imagenet32/all", "imagenet32/1%-labels", "imagenet32/10%-labels"]
    counts = np.bincount(ytr, minlength=10)
    assert recs[1]["n_labels"] == int(np.maximum(1, np.round(counts * 0.01)).sum()) == 10
    assert recs[2]["n_labels"] == int(np.round(counts * 0.1).sum())


def write_fashion_as_folder(root, n_train: int, n_test: int) -> None:
    """The first Fashion-MNIST images as PNGs under root/train/<class>/ and root/test/<class>/."""
    from PIL import Image

    from dcgan_features.data.registry import load

    for split, n in (("train", n_train), ("test", n_test)):
        ds = load("fashion-mnist", split)
        for i in range(n):
            d = root / split / ds.classes[int(ds.labels[i])].replace("/", "-")
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i, 0].numpy()).save(d / f"{i:05d}.png")


@pytest.mark.slow  # reads all of Fashion-MNIST twice: ~20 s on 2 shared cores
@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_fashion_mnist_as_a_folder_gives_the_fashion_mnist_protocols_accuracy(run_cli, tmp_path):
    n = 400
    write_fashion_as_folder(tmp_path / "fm", n, n)
    common = ("--model", "pixels", "--image-size", "28", "--device", "cpu", "--dtype", "float32")
    for name, extra in (("folder", ("--data-dir", tmp_path / "fm")), ("fashion-mnist", ("--limit", str(n)))):
        code, _, err = run_cli("extract", *common, "--dataset", name, *extra, "--out", tmp_path / f"{name}.h5")
        assert code == 0, err
    with FeatureFile(tmp_path / "folder.h5") as a, FeatureFile(tmp_path / "fashion-mnist.h5") as b:
        assert a.dataset_info()["classes"][0] == "Ankle boot"  # sorted folder names, not the idx order
        for split in ("train", "test"):  # the same pixels, rows in another order
            assert sorted(map(bytes, a.read(split))) == sorted(map(bytes, b.read(split)))
    probe = ("--probe", "logreg", "--C", "0.01", "--device", "cpu", "--out", tmp_path / "o")
    code, _, err = run_cli("probe", "--features", tmp_path / "folder.h5", *probe)
    assert code == 0, err
    code, _, err = run_cli("probe", "--features", tmp_path / "fashion-mnist.h5", "--validation", "stratified",
                           "--labels-per-class", "5", *probe)  # its few-labels column needs 100 of each class
    assert code == 0, err
    mine = _record(tmp_path / "o", "folder.h5", "folder-all", "logreg")
    theirs = _record(tmp_path / "o", "fashion-mnist.h5", "fashion-mnist-all", "logreg")
    assert mine["val_rows"] == theirs["val_rows"] and mine["validation"] == theirs["validation"] == "stratified"
    assert mine["mean"] == pytest.approx(theirs["mean"], abs=1e-6) and mine["mean"] > 60
