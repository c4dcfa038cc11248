"""rows.py: in-memory and file-backed row sources give the same chunks, subsets, checks and fits."""

import numpy as np
import pytest
import torch

from dcgan_features.core.errors import FeatureFileError
from dcgan_features.probes import fit_torch, objective
from dcgan_features.probes import newton, rows as rows_mod
from dcgan_features.probes.rows import ArrayRows, FileRows, Standardized, open_split, resident, standardizer
from dcgan_features.extract.writer import FeatureWriter
from dcgan_features.extract.store import FeatureFile, FileMeta
from feature_files import write_features



@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    X = (rng.normal(size=(120, 40)) + 2.0 * np.eye(4, 40)[y] + 1.0).astype(np.float16).astype(np.float32)
    return X, y


def _collect(src, **kw):
    parts = list(src.chunks("cpu", **kw))
    assert [s for s, _ in parts] == list(np.cumsum([0] + [x.shape[0] for _, x in parts[:-1]]))
    return torch.cat([x for _, x in parts]).numpy()


def test_array_and_file_sources_agree(tmp_path, data):
    X, y = data
    path = write_features(tmp_path / "f.h5", {"train": (X, y)})
    rows = np.array([5, 3, 100, 7, 64, 65, 119])
    with FeatureFile(path) as ff:
        fr, ar = FileRows(ff, "train", chunk_rows=16), ArrayRows(X, y, chunk_rows=16)
        assert fr.n_rows == ar.n_rows == 120 and fr.dim == ar.dim == 40
        np.testing.assert_array_equal(_collect(fr), X)
        np.testing.assert_array_equal(_collect(ar), X)
        for src in (fr.subset(rows), ar.subset(rows), fr.subset(np.arange(120)).subset(rows)):
            np.testing.assert_array_equal(_collect(src, chunk_rows=3), X[rows])
            np.testing.assert_array_equal(src.labels, y[rows])
        cached = open_split(ff, "train", "cpu", cache=True)
        assert isinstance(cached, ArrayRows) and cached.X.dtype == torch.float32  # room: read in place
        assert isinstance(open_split(ff, "train", "cpu", cache=False), FileRows)
        np.testing.assert_array_equal(_collect(cached), X)


def test_open_split_falls_back_to_float16_then_to_disk(tmp_path, data, monkeypatch):
    X, y = data
    path = write_features(tmp_path / "f.h5", {"train": (X, y)})
    f32 = X.size * 4
    with FeatureFile(path) as ff:
        monkeypatch.setattr(rows_mod, "free_memory", lambda device: f32 + 1)  # float32 x 2 does not fit, float16 x 2 does
        half = open_split(ff, "train", "cpu")
        assert isinstance(half, ArrayRows) and half.X.dtype == torch.float16
        np.testing.assert_array_equal(_collect(half), X)
        monkeypatch.setattr(rows_mod, "free_memory", lambda device: f32 // 2)
        assert isinstance(open_split(ff, "train", "cpu"), FileRows)


def test_whole_float32_matrix_is_one_view_and_resident_copies_once(data, monkeypatch):
    X, y = data
    src = ArrayRows(torch.from_numpy(X), y)
    monkeypatch.setitem(rows_mod.CHUNK_BYTES, "cpu", 64 * X.shape[1] * 4)  # default chunks: 64 of the 120 rows
    (start, x), = list(src.chunks("cpu", whole=True))  # the matrix itself, no copy
    assert start == 0 and x.data_ptr() == src.X.data_ptr()
    assert len(list(src.chunks("cpu"))) == 2  # callers making per-chunk temporaries: bounded chunks
    mean, inv = standardizer(src)
    assert len(list(Standardized(src, mean, inv).chunks("cpu", whole=True))) == 2  # new tensors: bounded
    assert resident(src, "cpu", 1 << 30) is src
    rows = np.array([9, 2, 50, 119])
    for base in (src.subset(rows), ArrayRows(X.astype(np.float16), y).subset(rows)):
        r = resident(base, "cpu", 1 << 30)
        assert r.rows is None and r.X.dtype == torch.float32 and r.X.is_contiguous()
        np.testing.assert_array_equal(r.X.numpy(), X[rows])
        np.testing.assert_array_equal(r.labels, y[rows])
        assert resident(base, "cpu", r.X.numel() * 4 - 1) is base  # over budget: left as it was


def test_file_backed_fit_equals_in_memory_fit(tmp_path, data):
    X, y = data
    path = write_features(tmp_path / "f.h5", {"train": (X, y)})
    with FeatureFile(path) as ff:
        for probe in ("svm", "logreg"):
            with pytest.MonkeyPatch.context() as mp:  # no room for a resident copy: read from disk every pass
                mp.setattr(newton, "free_memory", lambda device: 0)
                mp.setattr(FileRows, "_gather", None)  # a whole split streams in file order
                disk = fit_torch(probe, FileRows(ff, "train", chunk_rows=25), [0.01, 0.1], device="cpu")
            mem = fit_torch(probe, ArrayRows(X, y), [0.01, 0.1], device="cpu")
            for i, C in enumerate([0.01, 0.1]):
                f_d = objective(probe, disk.coef[i].numpy(), disk.intercept[i].numpy(), X, y, C)
                f_m = objective(probe, mem.coef[i].numpy(), mem.intercept[i].numpy(), X, y, C)
                assert abs(f_d - f_m) <= 1e-5 * f_m


def test_nonfinite_values_are_named(tmp_path, data):
    X, y = data
    X = X.copy()
    X[70, 3] = np.inf
    path = write_features(tmp_path / "f.h5", {"train": (X, y)})
    with FeatureFile(path) as ff:
        for src in (FileRows(ff, "train", chunk_rows=16), FileRows(ff, "train").subset([1, 70])):
            with pytest.raises(FeatureFileError, match=r"split 'train', row 70 \(column 3\): inf"):
                _collect(src)
        with pytest.raises(FeatureFileError, match="row 70"):
            open_split(ff, "train", "cpu", cache=True)
    with pytest.raises(FeatureFileError, match="row 70"):
        _collect(ArrayRows(X, y, chunk_rows=50).subset([0, 70]))


def test_incomplete_split_is_refused(tmp_path, data):
    X, y = data
    path = tmp_path / "f.h5"
    write_features(path, {"train": (X, y), "test": (X, y)}, incomplete=["test"])
    with FeatureFile(path) as ff:
        open_split(ff, "train", "cpu")
        with pytest.raises(FeatureFileError, match="'test' .* is incomplete"):
            open_split(ff, "test", "cpu")


def test_standardized_source(data):
    X, y = data
    src = ArrayRows(X, y, chunk_rows=17)
    mean, inv = standardizer(src)
    np.testing.assert_allclose(mean.numpy(), X.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inv.numpy(), 1 / X.std(0), rtol=1e-4)
    Z = _collect(Standardized(src, mean, inv).subset(np.arange(0, 120, 2)))
    np.testing.assert_allclose(Z, ((X - X.mean(0)) / X.std(0))[::2], rtol=1e-4, atol=1e-4)
