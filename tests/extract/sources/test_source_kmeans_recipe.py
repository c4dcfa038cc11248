"""The K-means recipe against a slow, plain numpy implementation of Coates, Lee & Ng's demo."""

import numpy as np
import pytest
import torch

from dcgan_features.core.errors import UserError
from dcgan_features.extract.sources.kmeans_recipe import KMeansConfig, encode, fit_dictionary, sample_patches


def numpy_kmeans_network(images: torch.Tensor, cfg: KMeansConfig) -> np.ndarray:
    """kmeans_demo.m in float64 numpy, one patch and one image at a time: the oracle.

    It takes the same random draws (patch positions, initial and re-seeded centroids) from
    the same torch generator, and whitens with the full d x d ZCA matrix. ``init="randn"`` is
    run_kmeans.m: ``randn(k, d) * 0.1`` in ZCA coordinates, empty clusters zeroed;
    ``"patches"`` is ours: k distinct random patches, an empty cluster re-seeded.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    P = sample_patches(images, cfg.n_patches, cfg.patch, g).numpy().astype(np.float64)

    def normalise(p):
        return (p - p.mean(1, keepdims=True)) / np.sqrt(p.var(1, ddof=1, keepdims=True) + cfg.norm_eps)

    P = normalise(P)
    M = P.mean(0)
    D, V = np.linalg.eigh(np.cov(P, rowvar=False))
    W = V @ np.diag(1.0 / np.sqrt(np.clip(D, 0, None) + cfg.zca_eps)) @ V.T
    X = (P - M) @ W
    n = X.shape[0]
    if cfg.init == "randn":
        C = torch.randn((cfg.k, X.shape[1]), generator=g, dtype=torch.float64).numpy() * 0.1
    else:
        C = X[torch.randperm(n, generator=g)[:cfg.k].numpy()]
    for _ in range(cfg.iterations):
        labels = np.argmax(X @ C.T - 0.5 * (C ** 2).sum(1), axis=1)
        counts = np.bincount(labels, minlength=cfg.k)
        C = np.stack([X[labels == j].mean(0) if counts[j] else np.zeros(X.shape[1]) for j in range(cfg.k)])
        empty = np.flatnonzero(counts == 0)
        if len(empty) and cfg.init == "patches":
            C[empty] = X[torch.randint(0, n, (len(empty),), generator=g).numpy()]

    imgs = images.numpy().astype(np.float64)
    N, ch, H, Wd = imgs.shape
    hp, wp, p = H - cfg.patch + 1, Wd - cfg.patch + 1, cfg.patch
    out = []
    for im in imgs:
        f = np.zeros((hp, wp, cfg.k))
        for r in range(hp):
            for c in range(wp):
                x = normalise(im[:, r:r + p, c:c + p].reshape(1, -1))
                x = (x - M) @ W
                z = np.sqrt(((x - C) ** 2).sum(1))
                f[r, c] = np.maximum(0, z.mean() - z)
        h, w = int(np.floor(hp / 2 + 0.5)), int(np.floor(wp / 2 + 0.5))  # Matlab's round
        out.append(np.concatenate([f[:h, :w].sum((0, 1)), f[h:, :w].sum((0, 1)),
                                   f[:h, w:].sum((0, 1)), f[h:, w:].sum((0, 1))]))
    return np.stack(out)


@pytest.mark.parametrize("init", ["randn", "patches"])
@pytest.mark.parametrize("gray", [False, True], ids=["colour", "gray-as-3-channels"])
def test_kmeans_network_matches_the_numpy_oracle(gray, init):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3 if not gray else 1, 11, 11), dtype=torch.uint8, generator=g)
    if gray:  # the D's way with grayscale data: three identical channels
        images = images.expand(-1, 3, -1, -1).contiguous()
    cfg = KMeansConfig(k=5, n_patches=300, iterations=4, seed=3, init=init)
    d = fit_dictionary(images, cfg)
    assert d.whitening.shape == (108, 35 if gray else 107)  # each patch has zero mean: one direction less
    ours = encode(images, d, max_elements=3 * 36 * 5).numpy()  # 3 images per sub-batch: chunking is exercised
    oracle = numpy_kmeans_network(images, cfg)
    assert ours.shape == (6, 20)
    np.testing.assert_allclose(ours, oracle, rtol=1e-3, atol=1e-3)  # float32 vs float64; stored as float16
    # distance blocks of 7 positions: blocks end inside quadrants and across images
    np.testing.assert_allclose(encode(images, d, max_elements=3 * 36 * 5, rows=7).numpy(), oracle, rtol=1e-3,
                               atol=1e-3)
    assert (ours > 0).mean() > 0.3  # the triangle code is not all zeros


@pytest.mark.parametrize("init", ["randn", "patches"])
def test_empty_clusters_as_the_recipe_says(init):
    """K = 60 on 300 patches leaves clusters empty: run_kmeans.m zeroes them, ours re-seeds them."""
    images = torch.randint(0, 256, (6, 3, 11, 11), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    cfg = KMeansConfig(k=60, n_patches=300, iterations=4, seed=3, init=init)
    d = fit_dictionary(images, cfg)
    assert ((d.centroids.abs().sum(1) == 0).sum() > 0) == (init == "randn")
    np.testing.assert_allclose(encode(images, d).numpy(), numpy_kmeans_network(images, cfg),
                               rtol=1e-3, atol=1e-3)


def test_same_seed_same_features_other_seed_other_dictionary():
    images = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = KMeansConfig(k=4, n_patches=200, iterations=3, seed=5)
    a, b = encode(images, fit_dictionary(images, cfg)), encode(images, fit_dictionary(images, cfg))
    assert torch.equal(a, b)
    other = fit_dictionary(images, KMeansConfig(k=4, n_patches=200, iterations=3, seed=6))
    assert not torch.equal(a, encode(images, other))


@pytest.mark.parametrize("k, match", [(0, "K >= 1"), (201, "larger than the 200 patches")])
def test_bad_k_is_one_line(k, match):
    images = torch.zeros((2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(UserError, match=match):
        fit_dictionary(images, KMeansConfig(k=k, n_patches=200, iterations=1))
