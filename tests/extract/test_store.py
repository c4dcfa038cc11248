"""store.py: the DESIGN section 5 schema, the reader API, refusals, resume bookkeeping."""

import json

import h5py
import numpy as np
import pytest
import torch

from dcgan_features.extract import store
from dcgan_features.core.errors import FeatureFileError
from dcgan_features.extract.writer import FeatureWriter
from dcgan_features.extract.store import FeatureFile, FileMeta, chunk_rows, partial_path

META = FileMeta("digits", "dcgan32", 4, ("d1", "d2"), (64, 128), 4, "recompute", "ab" * 32)
DIM = 192


def _splits(n_train=50, n_test=20):
    rng = np.random.default_rng(0)
    return {"train": (rng.integers(0, 10, n_train), np.arange(n_train)),
            "test": (np.full(n_test, -1), np.arange(n_test) + 100)}


def _rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float16)


def _write(path, meta=META, splits=None, upto=None, **kw):
    """Write every split; with `upto`, stop (like a crash) after that many train rows."""
    splits = splits or _splits()
    w = FeatureWriter(path, meta, splits, resume_key={"batch_size": 8}, **kw).open()
    data = {s: _rows(len(l), i)[:, :meta.dim].astype(meta.dtype) for i, (s, (l, _)) in enumerate(splits.items())}
    for s, x in data.items():
        for lo in range((w.committed(s) // 8) * 8, len(x), 8):  # resume at a batch boundary
            if upto is not None and s == "train" and lo >= upto:
                w.close()
                return w, data
            w.write(s, lo, x[lo:lo + 8])
            w.commit(s)
        w.complete(s)
    w.finish()
    return w, data


def test_plain_h5py_reads_the_documented_schema(tmp_path):
    path = tmp_path / "f.h5"
    _, data = _write(path)
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"train", "test"}
        assert set(f.attrs) == {"format_version", "dataset", "architecture", "width", "layers", "layer_dims",
                                "grid", "bn_mode", "checkpoint_sha256", "source", "trained_on", "postprocess",
                                "package_version", "created"}
        assert json.loads(f.attrs["layers"]) == ["d1", "d2"] and json.loads(f.attrs["layer_dims"]) == [64, 128]
        assert f.attrs["bn_mode"] == "recompute" and f.attrs["checkpoint_sha256"] == "ab" * 32
        for s, n in (("train", 50), ("test", 20)):
            g = f[s]
            assert set(g.keys()) == {"features", "labels", "indices"} and set(g.attrs) == {"n_rows", "complete"}
            assert g.attrs["n_rows"] == n and bool(g.attrs["complete"]) is True
            ds = g["features"]
            assert ds.shape == (n, DIM) and ds.dtype == np.float16
            assert ds.chunks[1] == DIM  # whole rows
            np.testing.assert_array_equal(ds[...], data[s])
            assert g["labels"].dtype == np.int64 and g["indices"].dtype == np.int64
        assert f["test"]["labels"][0] == -1 and f["test"]["indices"][0] == 100


def test_chunks_are_about_one_mib_of_whole_rows():
    assert chunk_rows(28672, 2, 50000) == 18  # 18 x 57344 B = 1.03 MB
    assert chunk_rows(28672, 4, 50000) == 9
    assert chunk_rows(64, 2, 100) == 100  # never more rows than the split


def test_reader_api(tmp_path):
    path = tmp_path / "f.h5"
    _, data = _write(path, meta=FileMeta(**{**META.__dict__, "dtype": "float32"}))
    with FeatureFile(path) as ff:
        assert ff.path == path and ff.splits == ["train", "test"] and ff.dim == DIM and ff.dtype == "float32"
        assert ff.meta["layers"] == ["d1", "d2"] and ff.meta["layer_dims"] == [64, 128]
        assert ff.meta["grid"] == 4 and ff.meta["dataset"] == "digits"
        assert ff.n_rows("train") == 50 and ff.labels("train").dtype == np.int64
        np.testing.assert_array_equal(ff.indices("test"), np.arange(20) + 100)
        x = ff.read("train", 5, 12)
        assert x.dtype == np.float32 and x.shape == (7, DIM)
        np.testing.assert_array_equal(x, data["train"][5:12])
        assert ff.read("train", 40, 999).shape == (10, DIM)
        assert ff.read("train", 3, 4, dtype=np.float16).dtype == np.float16
        chunks = list(ff.iter_chunks("train", device="cpu", chunk_rows=16))
        assert [s for s, _ in chunks] == [0, 16, 32, 48]
        assert all(c.dtype == torch.float32 for _, c in chunks)
        np.testing.assert_array_equal(torch.cat([c for _, c in chunks]).numpy(), data["train"])
        assert ff.file_meta() == FileMeta(**{**META.__dict__, "dtype": "float32"})
        with pytest.raises(FeatureFileError, match="no split 'val'"):
            ff.require("val")


def test_killed_writer_leaves_no_final_file_and_reader_refuses_partial(tmp_path):
    path = tmp_path / "f.h5"
    _write(path, upto=24)
    assert not path.exists() and partial_path(path).exists()
    with FeatureFile(partial_path(path)) as ff:
        assert ff.splits == ["train", "test"]
        for call in (lambda: ff.require("train"), lambda: ff.read("train", 0, 1), lambda: ff.labels("train"),
                     lambda: next(ff.iter_chunks("train"))):
            with pytest.raises(FeatureFileError, match="incomplete.*run the same"):
                call()
    w = FeatureWriter(path, META, _splits(), resume_key={"batch_size": 8}).open()
    # train is one 50-row chunk: none of it reached the disk, so nothing counts as written
    assert w.state == "resume" and w.committed("train") == 0 and w.committed("test") == 0
    w.close()
    w = FeatureWriter(path, META, _splits(), resume_key={"batch_size": 16})
    with pytest.raises(FeatureFileError, match=r"unfinished extraction.*batch_size"):
        w.open()


@pytest.mark.parametrize("chunk", [None, 5])
def test_resume_finishes_identical_to_an_uninterrupted_write(tmp_path, monkeypatch, chunk):
    if chunk:  # 5-row chunks, 8-row batches: batches straddle chunks, the resume starts inside one
        monkeypatch.setattr(store, "CHUNK_BYTES", chunk * DIM * 2)
    _write(tmp_path / "a.h5")
    w, _ = _write(tmp_path / "b.h5", upto=24)
    w = FeatureWriter(tmp_path / "b.h5", META, _splits(), resume_key={"batch_size": 8}).open()
    assert w.committed("train") == (20 if chunk else 0)  # whole chunks only
    w.close()
    w, _ = _write(tmp_path / "b.h5")
    assert w.state == "resume"
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for s in ("train", "test"):
            for k in ("features", "labels", "indices"):
                np.testing.assert_array_equal(a[s][k][...], b[s][k][...])
            assert dict(a[s].attrs) == dict(b[s].attrs)
            assert a[s]["features"].chunks == b[s]["features"].chunks
        assert "_resume" not in b


def test_unreadable_partial_is_started_over(tmp_path):
    path = tmp_path / "f.h5"
    partial_path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # killed while HDF5 wrote metadata
    logs = []
    w = FeatureWriter(path, META, _splits(), log=logs.append).open()
    assert w.state == "new" and "starting over" in logs[0]
    w.close()


def test_mismatch_is_refused_and_overwrite_replaces_only_when_whole(tmp_path):
    path = tmp_path / "f.h5"
    _write(path)
    assert FeatureWriter(path, META, _splits()).open().state == "done"
    other = FileMeta(**{**META.__dict__, "checkpoint_sha256": "cd" * 32, "layers": ("d2",), "layer_dims": (128,)})
    with pytest.raises(FeatureFileError, match=r"exists and was made with layers d1,d2 \(asked d2\).*"
                                               r"checkpoint_sha256 abababababab \(asked cdcdcdcdcdcd\).*--overwrite"):
        FeatureWriter(path, other, _splits()).open()
    with pytest.raises(FeatureFileError, match=r"splits train:50,test:20 \(asked train:50\)"):
        FeatureWriter(path, META, {"train": _splits()["train"]}).open()
    with pytest.raises(FeatureFileError, match=r"dtype float16 \(asked float32\)"):
        FeatureWriter(path, FileMeta(**{**META.__dict__, "dtype": "float32"}), _splits()).open()
    w = FeatureWriter(path, other, _splits(), overwrite=True).open()
    with FeatureFile(path) as ff:  # the old file stays readable until the new one is whole
        assert ff.meta["layers"] == ["d1", "d2"]
    w.close()
    _write(path, meta=other, overwrite=True)
    with FeatureFile(path) as ff:
        assert ff.meta["layers"] == ["d2"] and ff.dim == 128


def test_foreign_truncated_and_missing_files_are_one_line_errors(tmp_path):
    good = tmp_path / "good.h5"
    _write(good)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5\n")
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[:2000])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(good.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 99
    cases = [(tmp_path / "none.h5", "not found"), (text, "not a readable HDF5"), (trunc, "not a readable HDF5"),
             (foreign, "not a dcgan-features feature file"), (newer, "upgrade dcgan-features")]
    for path, msg in cases:
        with pytest.raises(FeatureFileError, match=msg) as e:
            FeatureFile(path)
        assert "\n" not in str(e.value)
    with pytest.raises(FeatureFileError, match="exists and .*not a readable HDF5|not a readable"):
        FeatureWriter(text, META, _splits()).open()


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(f, name, data):
    del f[name]
    f[name] = data


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.attrs.__setitem__("format_version", "one"), "format_version is 'one', not an integer"),
    (lambda f: f.attrs.__setitem__("grid", 2.5), "grid is 2.5, not an integer"),
    (lambda f: f.attrs.__setitem__("layer_dims", json.dumps([64, 64])), r"features have shape \(50, 192\)"),
    (lambda f: f.attrs.__setitem__("layer_dims", json.dumps([192])), "name 2 layers but give 1 dims"),
    (lambda f: f.attrs.__setitem__("layer_dims", json.dumps(["a", 1])), "not JSON lists"),
    (lambda f: _replace(f, "train/features", np.zeros(50, np.float16)), r"features have shape \(50,\)"),
    (lambda f: _replace(f, "train/labels", np.zeros(50, np.float64)), "labels are float64"),
    (lambda f: _replace(f, "train/labels", np.zeros(7, np.int64)), r"labels are int64 of shape \(7,\)"),
    (lambda f: f["train"].attrs.__setitem__("n_rows", "many"), "n_rows 'many', not a row count"),
    (lambda f: _replace(f, "train/features", np.zeros((50, 192), np.int8)), "features are int8"),
])
def test_malformed_attributes_are_refused_on_open(tmp_path, damage, message):
    path = tmp_path / "f.h5"
    _write(path)
    _edit(path, damage)
    with pytest.raises(FeatureFileError, match=message):
        FeatureFile(path)


def test_labels_below_minus_one_are_refused(tmp_path):
    path = tmp_path / "f.h5"
    _write(path)
    _edit(path, lambda f: f["train/labels"].__setitem__(3, -5))
    with FeatureFile(path) as ff:
        with pytest.raises(FeatureFileError, match="has label -5"):
            ff.labels("train")


def test_overwrite_resumes_its_own_partial_after_a_kill(tmp_path, monkeypatch):
    """--overwrite replaces what other settings made; a killed --overwrite run's own partial file
    (these settings) is resumed by the same command, and ends identical to an uninterrupted write."""
    monkeypatch.setattr(store, "CHUNK_BYTES", 5 * DIM * 2)
    _write(tmp_path / "a.h5")
    other = FileMeta("digits", "dcgan32", 4, ("d1", "d2"), (64, 128), 4, "recompute", "cd" * 32)
    _write(tmp_path / "b.h5", meta=other)  # a finished file of other settings: what --overwrite replaces
    _write(tmp_path / "b.h5", upto=24, overwrite=True)  # killed
    w = FeatureWriter(tmp_path / "b.h5", META, _splits(), resume_key={"batch_size": 8}, overwrite=True).open()
    assert w.state == "resume" and w.committed("train") == 20
    w.close()
    w, _ = _write(tmp_path / "b.h5", overwrite=True)
    assert w.state == "resume"
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for s in ("train", "test"):
            np.testing.assert_array_equal(a[s]["features"][...], b[s]["features"][...])
    # a partial of other settings is still discarded by --overwrite
    _write(tmp_path / "c.h5", meta=other, upto=24)
    w, _ = _write(tmp_path / "c.h5", overwrite=True)
    assert w.state == "new"


def test_partial_whose_resume_group_was_deleted_by_hand(tmp_path):
    """Its unwritten rows are never read (the split is not complete), and a resume refuses it."""
    w, _ = _write(tmp_path / "f.h5", upto=24)
    with h5py.File(w.partial, "r+") as f:
        del f["_resume"]
    with FeatureFile(w.partial) as ff:
        with pytest.raises(FeatureFileError, match="split 'train' of .* is incomplete"):
            ff.read("train")
    with pytest.raises(FeatureFileError, match="other run settings"):
        FeatureWriter(tmp_path / "f.h5", META, _splits(), resume_key={"batch_size": 8}).open()
