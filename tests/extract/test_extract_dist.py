"""extract_dist / extract_parts in one process: the BN arithmetic the ranks share, leftover parts.

The torchrun runs themselves are in tests/test_torchrun.py.
"""

import numpy as np
import pytest
import torch

from dcgan_features.nets.architectures import build
from dcgan_features.cli import main
from dcgan_features.data.registry import load
from dcgan_features.core.distributed import share
from dcgan_features.extract.parts import part_path
from dcgan_features.extract.hooks import batch_bn_stats, bn_state, recompute_bn_stats, set_bn_stats, to_model_input
from dcgan_features.core.errors import FeatureFileError
from dcgan_features.extract.writer import FeatureWriter
from dcgan_features.extract.store import FeatureFile, FileMeta, partial_path

ARGS = ["extract", "--random-init", "--arch", "dcgan32", "--width", "2", "--dataset", "synthetic", "--limit", "100",
        "--batch-size", "16", "--device", "cpu"]


def test_shares_of_bn_statistics_gathered_in_order_give_one_process_bits():
    """What the ranks do with --bn recompute (each its batches, then all rows in rank order)
    sets the same BN buffers, bit for bit, as one process over all batches."""
    images = load("synthetic", "train", image_size=32).images[:100]

    def batches(x, bs, device):
        return [to_model_input(x[lo:lo + bs], device) for lo in range(0, x.shape[0], bs)]

    _, D = build("dcgan32", width=2, seed=0)
    recompute_bn_stats(D, batches(images, 16, torch.device("cpu")))
    want = bn_state(D)
    _, D = build("dcgan32", width=2, seed=0)
    rows = [batch_bn_stats(D, batches(images[lo:hi], 16, torch.device("cpu")))
            for lo, hi in (share(100, 3, r, 16) for r in range(3))]
    assert [len(r) for r in rows] == [3, 2, 2]
    set_bn_stats(D, torch.cat(rows))
    got = bn_state(D)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert int(got["blocks.d2.1.num_batches_tracked"]) == 7


def test_parts_left_by_another_world_size_are_refused_or_discarded(tmp_path, capsys):
    out = tmp_path / "f.h5"
    for r in range(4):
        partial_path(part_path(out, r, 4)).write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        main([*ARGS, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and err.count("\n") == 0
    assert "unfinished 4-rank torchrun extraction" in err and "--nproc-per-node 4" in err
    with pytest.raises(SystemExit) as e:
        main([*ARGS, "--bn", "batch", "--out", str(out), "--overwrite"])
    assert e.value.code == 0 and out.exists() and list(tmp_path.glob("f.h5.part*")) == []


def test_a_file_with_its_resume_group_is_never_read_even_with_complete_splits(tmp_path):
    meta = FileMeta("digits", "dcgan32", 4, ("d1",), (4,), 4, "batch", "0" * 64)
    w = FeatureWriter(tmp_path / "f.h5", meta, {"train": (np.zeros(2), np.arange(2)), "test": (np.zeros(1), [0])})
    w.open()
    w.write("train", 0, np.ones((2, 4), np.float16))
    w.complete("train")
    w.close()
    with FeatureFile(partial_path(tmp_path / "f.h5")) as ff:
        assert ff.is_complete("train")
        with pytest.raises(FeatureFileError, match="unfinished extraction.*run the same"):
            ff.read("train", 0, 1)
