"""distributed.py and devices.init_distributed: shares, and launches a group cannot form from."""

import os

import pytest
import torch

from dcgan_features.core.devices import init_distributed
from dcgan_features.core.distributed import agree, share
from dcgan_features.core.devices import DistContext
from dcgan_features.core.errors import UserError


@pytest.mark.parametrize("n, world, align", [(100, 2, 16), (10, 3, 4), (7, 7, 1), (1000, 8, 256), (5, 4, 16)])
def test_shares_tile_the_rows_in_rank_order_on_batch_boundaries(n, world, align):
    shares = [share(n, world, r, align) for r in range(world)]
    assert shares[0][0] == 0 and shares[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))  # contiguous, rank order = row order
    assert all(lo % align == 0 for lo, hi in shares if hi > lo)  # every share starts a batch
    sizes = [-(-(hi - lo) // align) for lo, hi in shares]  # batches per rank differ by at most one
    assert max(sizes) - min(sizes) <= 1


def test_single_process_agree_raises_the_error_itself():
    assert agree(DistContext(), lambda: 3) == [3]
    with pytest.raises(UserError, match="boom"):
        agree(DistContext(), lambda: (_ for _ in ()).throw(UserError("boom")))


@pytest.fixture
def torchrun_env(monkeypatch):
    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    return monkeypatch


def test_missing_master_addr_gives_torchs_first_line_and_the_fix(torchrun_env):
    torchrun_env.setenv("RANK", "0")
    with pytest.raises(UserError) as e:
        init_distributed("cpu")
    msg = str(e.value)
    assert "\n" not in msg and "MASTER_ADDR expected, but not set" in msg and "torchrun --standalone" in msg


def test_missing_rank_and_cuda_without_cuda(torchrun_env):
    with pytest.raises(UserError, match="RANK is not"):
        init_distributed("cpu")
    torchrun_env.setenv("RANK", "1")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="NCCL.*CUDA is not available.*--device cpu"):
            init_distributed("cuda")
    assert "MASTER_ADDR" not in os.environ
