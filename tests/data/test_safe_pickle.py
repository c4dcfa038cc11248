"""The restricted unpickler: every dataset pickle format loads, nothing else runs."""

import io
import os
import pickle

import numpy as np
import pytest

from dcgan_features.data import safe_pickle
from dcgan_features.data.registry import load as load_dataset
from dcgan_features.core.errors import UserError
from dcgan_features.data.safe_pickle import ForbiddenPickleError, UnreadablePickleError

from cli_checks import assert_one_line, run_cli
from formats import write_cifar


class Payload:
    """Creates ``marker`` when unpickled by a plain ``pickle.load``."""

    def __init__(self, marker, how="open"):
        self.marker, self.how = str(marker), how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (open, (self.marker, "w"))


def test_payload_is_refused_and_never_runs(tmp_path):
    for how, forbidden in (("open", "io.open"), ("system", "system")):
        marker = tmp_path / f"ran-{how}"
        path = tmp_path / f"batch-{how}"
        path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [Payload(marker, how)]}))
        with pytest.raises(ForbiddenPickleError, match=forbidden) as e:
            safe_pickle.load(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        assert not marker.exists()
    # the control: a plain unpickler does run it, so the test above could fail
    pickle.loads((tmp_path / "batch-open").read_bytes())
    assert (tmp_path / "ran-open").exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_round_trips_dataset_dicts(protocol):
    # CIFAR-10's bytes keys and Downsampled ImageNet's str keys, uint8 data, a float mean, numpy scalars
    cifar = {b"batch_label": b"training batch 1 of 5", b"labels": [3, 1], b"filenames": [b"a.png", b"b.png"],
             b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)}
    imagenet = {"data": np.arange(24, dtype=np.uint8).reshape(2, 12), "labels": np.array([1, 1000]),
                "mean": np.linspace(0, 1, 12), "n": np.int64(7), "t": (1, 2.5, None, True)}
    for obj in (cifar, imagenet, np.asfortranarray(np.ones((3, 4), np.uint8))):
        back = safe_pickle.loads(pickle.dumps(obj, protocol=protocol))
        if isinstance(obj, np.ndarray):
            np.testing.assert_array_equal(back, obj)
            continue
        assert back.keys() == obj.keys()
        for k, v in obj.items():
            if isinstance(v, np.ndarray):
                assert back[k].dtype == v.dtype
                np.testing.assert_array_equal(back[k], v)
            else:
                assert back[k] == v


def test_numpy1_names_load():
    """numpy 1.x wrote numpy.core.multiarray; numpy 2 writes numpy._core.multiarray."""
    blob = pickle.dumps({b"data": np.arange(5, dtype=np.uint8), "s": np.float32(2.5)}, protocol=2)
    old = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != blob and b"numpy._core" not in old
    back = safe_pickle.loads(old)
    assert back[b"data"].tolist() == [0, 1, 2, 3, 4] and back["s"] == np.float32(2.5)


def python2_cifar_batch(data: bytes, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote CIFAR-10 (protocol 2, str as SHORT_BINSTRING/BINSTRING)."""
    import struct

    def s(b: bytes) -> bytes:  # Python 2 str
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    dtype = (b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
             b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
             b"(K\x01K" + bytes([len(data) // 3072]) + b"M\x00\x0c\x86" + dtype + b"\x89" + s(data) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([y]) for y in labels) + b"e"
    return (b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list
            + s(b"batch_label") + s(b"training batch 1 of 5") + b"u.")


def test_python2_pickle_as_released():
    data = bytes(range(256)) * 12  # one 3072-byte image
    blob = python2_cifar_batch(data, [7])
    back = safe_pickle.loads(blob, encoding="bytes")
    assert back[b"labels"] == [7] and back[b"batch_label"] == b"training batch 1 of 5"
    assert back[b"data"].shape == (1, 3072) and back[b"data"].tobytes() == data
    assert safe_pickle.loads(blob, encoding="latin1")["batch_label"] == "training batch 1 of 5"


@pytest.mark.parametrize("blob, fragment", [
    (pickle.dumps(np.ma.masked_array([1, 2])), "numpy.ma"),  # an ndarray subclass
    (pickle.dumps(np.array([object()], dtype=object), protocol=2), "refusing"),
    (b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R.", "zlib"),
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nc__builtin__\ndict\nK\x00\x85U\x01b\x87R.", "dict"),
    (b"\x80\x02cnumpy\nndarray\n.", None),  # the class alone is harmless
])
def test_what_a_data_file_never_needs(blob, fragment):
    if fragment is None:
        assert safe_pickle.loads(blob) is np.ndarray
        return
    with pytest.raises(UserError, match=fragment):
        safe_pickle.loads(blob)


def test_corrupt_truncated_and_missing(tmp_path):
    blob = pickle.dumps({b"data": np.zeros(100, np.uint8)}, protocol=2)
    for bad in (blob[:40], b"", b"not a pickle at all", b"\x80\x05\x95garbage"):
        with pytest.raises(UnreadablePickleError, match="<bytes> is not a readable pickle"):
            safe_pickle.loads(bad)
    with pytest.raises(UserError, match="cannot read .*nowhere"):
        safe_pickle.load(tmp_path / "nowhere")
    assert safe_pickle.load(io.BytesIO(blob))[b"data"].shape == (100,)


def test_cifar10_reader_uses_it(tmp_path):
    write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    marker = tmp_path / "ran"
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": []}, protocol=2))
    with pytest.raises(ForbiddenPickleError, match="data_batch_3.*io.open"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    assert not marker.exists()
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": Payload(marker)}))
    with pytest.raises(ForbiddenPickleError, match="batches.meta"):
        load_dataset("cifar10", "test", data_dir=tmp_path)  # optional class names do not hide a payload
    assert not marker.exists()
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(UserError, match="not a CIFAR-10 batch .*list"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    (folder / "test_batch").write_bytes(python2_cifar_batch(bytes(3072), [4]))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}))
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert ds.labels.tolist() == [4] and ds.images.shape == (1, 3, 32, 32)


def test_cli_names_the_payload_in_one_line(tmp_path, capsys):
    write_cifar(tmp_path)
    marker = tmp_path / "ran"
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Payload(marker, "system")))
    code, err = run_cli(capsys, "datasets", "--verify", "cifar10", "--data-dir", tmp_path)
    assert_one_line(code, err, "test_batch", "refusing to unpickle", "system")
    assert not marker.exists()
