"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for every test: the models and matrices here are tiny, and on a busy
    2-core machine two OpenMP threads spin-waiting on each other run them many times slower.
    scikit-learn's BLAS is limited too. Subprocesses set OMP_NUM_THREADS themselves."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
