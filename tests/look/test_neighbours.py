"""neighbours: a G that copies training images is reported as copying, a G of noise is not;
the neighbours are scikit-learn's brute-force ones."""

import csv

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn

from dcgan_features.data.registry import load
from dcgan_features.look.config import NeighboursConfig
from dcgan_features.look.neighbours import d_features, measure
from dcgan_features.nets.architectures import build


class Copier(nn.Module):
    """A 'generator' whose sample i is training image rows[i], exactly."""

    def __init__(self, train_u8, rows):
        super().__init__()
        self.register_buffer("table", train_u8[rows].float() / 127.5 - 1)

    def forward(self, z):
        return self.table[z[:, 0].long()]


@pytest.fixture(scope="module")
def setup():
    train = load("digits", "train", image_size=32).images[:400]
    _, D = build("dcgan32", width=4, seed=0)
    ref = torch.randperm(400, generator=torch.Generator().manual_seed(0))[:100]
    with d_features(D, train, NeighboursConfig(bn_images=400), torch.device("cpu")) as feats:
        yield train, feats, ref


def test_copying_g_is_caught_and_neighbours_are_sklearns(setup):
    train, feats, ref = setup
    rows = torch.tensor([5, 77, 123, 300, 399, 0])
    samples = Copier(train, rows)(torch.arange(6.0)[:, None])
    with torch.no_grad():
        res = measure(samples, train, feats, k=3, reference=ref, chunk=64)
    assert res.fraction("pixel") == 1.0 and res.fraction("feature") == 1.0
    assert res.indices["pixel"][:, 0].tolist() == rows.tolist()
    assert res.distances["pixel"][:, 0].abs().max() < 1e-6

    X = (train.float() / 127.5 - 1).flatten(1).numpy()
    nn_pix = NearestNeighbors(n_neighbors=3, algorithm="brute").fit(X)
    d, i = nn_pix.kneighbors(samples.flatten(1).numpy())
    np.testing.assert_array_equal(res.indices["pixel"].numpy(), i)
    np.testing.assert_allclose(res.distances["pixel"].numpy(), d, atol=1e-4)
    F = feats(torch.from_numpy(X).reshape(-1, 3, 32, 32)).numpy()
    nn_cos = NearestNeighbors(n_neighbors=3, algorithm="brute", metric="cosine").fit(F)
    d, i = nn_cos.kneighbors(feats(samples).numpy())
    np.testing.assert_array_equal(res.indices["feature"][:, 0].numpy(), i[:, 0])
    np.testing.assert_allclose(res.distances["feature"].numpy(), d, atol=1e-4)
    # the baseline: each reference image's nearest *other* training image
    d2, i2 = nn_pix.kneighbors(X[ref.numpy()], n_neighbors=2)
    other = np.where(i2[:, 0] == ref.numpy(), d2[:, 1], d2[:, 0])
    np.testing.assert_allclose(res.reference["pixel"].numpy(), other, atol=1e-4)


def test_noise_g_is_not_copying(setup):
    train, feats, ref = setup
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        res = measure(noise, train, feats, k=2, reference=ref, chunk=100)
    assert res.fraction("pixel") == 0.0 and res.fraction("feature") == 0.0
    assert float(res.distances["pixel"][:, 0].min()) > res.median_pair("pixel")


def test_cli_writes_grid_histogram_and_tables(tmp_path, run_cli):
    from dcgan_features.nets import checkpoint

    G, D = build("dcgan32", width=4, seed=0)
    ck = tmp_path / "c.pt"
    checkpoint.save(ck, checkpoint.make_payload("dcgan32", 4, G, D))
    out = tmp_path / "nn.png"
    code, stdout, err = run_cli("neighbours", ck, "--dataset", "synthetic", "--limit", 80, "--n", 4, "--k", 2,
                                "--reference", 20, "--chunk", 32, "--device", "cpu", "--out", out)
    assert code == 0, err
    for p in (out, tmp_path / "nn_distances.png"):
        assert p.read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "nn.csv").open()))
    assert len(rows) == 2 * 4 * 2
    summary = list(csv.DictReader((tmp_path / "nn_summary.csv").open()))
    assert [s["space"] for s in summary] == ["pixel", "feature"] and "% of samples nearer" in stdout
    run_cli.error("neighbours", ck, "--dataset", "synthetic", "--limit", 3, "--k", 5, "--out", tmp_path / "x.png",
                  match="--k 5 exceeds the 3 training images")
    assert not (tmp_path / "x.png").exists()


def test_imported_weights_have_no_running_statistics(tmp_path, run_cli):
    from dcgan_features.nets import checkpoint

    G, D = build("svhn32", width=2, seed=0)
    ck = tmp_path / "i.pt"
    checkpoint.save(ck, checkpoint.make_payload("svhn32", 2, G, D, imported=True))
    run_cli.error("neighbours", ck, "--dataset", "synthetic", "--bn", "running", "--out", tmp_path / "n.png",
                  match="without running BN statistics; use --bn batch")
    assert not (tmp_path / "n.png").exists()
