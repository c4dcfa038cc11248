"""The single-layer K-means network of Coates, Lee & Ng (AISTATS 2011), in torch, in chunks.

The recipe, as in the authors' ``kmeans_demo.m`` (CIFAR-10, 77.9% at K = 1600):

1. ``n_patches`` (400,000) random ``patch x patch`` (6x6) patches of the training images,
   the i-th from image ``i mod N`` at a uniformly random position (seeded);
2. each patch normalised by its own mean and ``sqrt(var + 10)`` (pixels on the 0..255
   scale, variance with N - 1 as Matlab's ``var``);
3. ZCA whitening fitted on them: ``x -> (x - M) P`` with ``P = V diag(1/sqrt(d + 0.1)) V^T``
   from the eigendecomposition of their covariance (N - 1);
4. Lloyd's K-means for a fixed number of iterations (50) on the whitened patches. By
   default as ``run_kmeans.m``: initial centroids ``randn * 0.1`` (drawn in all d ZCA
   coordinates, see :func:`randn_init`) and a cluster left empty is zeroed (``init="randn"``).
   Ours, a named option (``init="patches"``): K distinct random patches, and an empty cluster
   re-seeded with a random patch;
5. encoding, at stride 1 over every position of an image: the "triangle" activation
   ``f_k = max(0, mean_j(z_j) - z_k)`` with ``z_k`` the distance to centroid k, then
   sum-pooling over the four quadrants (split at ``round(positions / 2)``, Matlab's round),
   concatenated quadrant by quadrant (top-left, bottom-left, top-right, bottom-right): 4K values.

Patches are flattened channel by channel (``F.unfold``'s order: C, rows, columns).
Encoding works on sub-batches of images whose patches are whitened together, and makes
their distances one cache-sized block of positions at a time (one GEMM each), taking the
triangle code and pooling it into the quadrants while the block is still in cache: the 51M x
1600 distances of Fashion-MNIST never exist at once, and none of them goes out to memory.

>>> g = torch.Generator().manual_seed(0)
>>> images = torch.randint(0, 256, (20, 3, 12, 12), dtype=torch.uint8, generator=g)
>>> d = fit_dictionary(images, KMeansConfig(k=8, n_patches=500, iterations=3))
>>> tuple(d.centroids.shape), tuple(encode(images[:2], d).shape)
((8, 107), (2, 32))
>>> gray = images[:, :1].expand(-1, 3, -1, -1)  # 3 equal channels of zero-mean patches: 35 directions
>>> tuple(fit_dictionary(gray, KMeansConfig(k=8, n_patches=500, iterations=3)).whitening.shape)
(108, 35)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.errors import UserError


@dataclass(frozen=True)
class KMeansConfig:
    """The recipe's numbers; the defaults are Coates, Lee & Ng's CIFAR-10 settings."""

    k: int = 1600
    patch: int = 6
    n_patches: int = 400_000
    iterations: int = 50
    norm_eps: float = 10.0  # per-patch: / sqrt(var + norm_eps), pixels on 0..255
    zca_eps: float = 0.1
    seed: int = 0
    init: str = "randn"  # KMEANS_INITS: run_kmeans.m's randn * 0.1 (empty zeroed) or random patches (re-seeded)


KMEANS_INITS = ("randn", "patches")
RANDN_SCALE = 0.1  # run_kmeans.m: centroids = randn(k, size(X, 2)) * 0.1


@dataclass
class Dictionary:
    """A fitted K-means network: mean (d,), whitening (d, r), centroids (K, r); d = C * patch^2.

    The centroids live in the whitened eigenbasis of :func:`fit_zca` (r <= d directions).
    """

    mean: torch.Tensor
    whitening: torch.Tensor
    centroids: torch.Tensor
    patch: int
    channels: int
    norm_eps: float = 10.0

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def to(self, device: torch.device | str) -> "Dictionary":
        return Dictionary(self.mean.to(device), self.whitening.to(device), self.centroids.to(device),
                          self.patch, self.channels, self.norm_eps)


# --------------------------------------------------------------------------- fitting


def sample_patches(images: torch.Tensor, n: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    """(n, C * patch^2) float32 patches on 0..255: patch i from image ``i mod N``, random position."""
    N, C, H, W = images.shape
    if H < patch or W < patch:
        raise UserError(f"images of {H}x{W} are smaller than the {patch}x{patch} receptive field")
    r = torch.randint(0, H - patch + 1, (n,), generator=generator)
    c = torch.randint(0, W - patch + 1, (n,), generator=generator)
    img = torch.arange(n) % N
    step = torch.arange(patch)
    out = torch.empty((n, C * patch * patch), dtype=torch.float32)
    for lo in range(0, n, 65536):  # index in slices: the index tensors are as large as the patches
        s = slice(lo, lo + 65536)
        rows = (r[s, None] + step)[:, None, :, None]
        cols = (c[s, None] + step)[:, None, None, :]
        ch = torch.arange(C)[None, :, None, None]
        out[s] = images[img[s, None, None, None], ch, rows, cols].reshape(-1, C * patch * patch).float()
    return out


def normalize_patches_(x: torch.Tensor, eps: float = 10.0) -> torch.Tensor:
    """In place: each row minus its mean, divided by sqrt(its variance (N - 1) + eps)."""
    mean = x.mean(1, keepdim=True)
    denom = x.var(1, keepdim=True).add_(eps).sqrt_()
    return x.sub_(mean).div_(denom)


def fit_zca(x: torch.Tensor, eps: float = 0.1, chunk: int = 65536, rank_tol: float = 1e-9
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA of the rows of x, fitted in float64: mean M (d,) and the whitening map, (d, r).

    ZCA is ``P = V diag(1/sqrt(d + eps)) V^T``. Distances, which are all K-means and the
    encoding use, do not change under the rotation ``V``, so the map returned is
    ``V_r diag(1/sqrt(d_r + eps))``: whitened patches in the eigenbasis, keeping the r
    directions whose variance exceeds ``rank_tol`` times the largest. The directions left
    out hold no variance at all (a grayscale image's three equal channels leave 36 of
    108), so every distance is ZCA's; the matmuls of Lloyd's iterations and of the
    encoding shrink from d to r columns (3x for grayscale data).
    """
    n, d = x.shape
    mean = x.sum(0, dtype=torch.float64) / n
    cov = torch.zeros((d, d), dtype=torch.float64, device=x.device)
    for lo in range(0, n, chunk):
        xc = x[lo:lo + chunk].double() - mean
        cov.addmm_(xc.T, xc)
    cov /= max(n - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    keep = evals > rank_tol * evals.max().clamp_min(0)
    if not keep.any():  # constant patches: keep one direction so shapes stay valid
        keep[-1] = True
    P = evecs[:, keep] * (evals[keep].clamp_min(0) + eps).rsqrt()
    return mean.float(), P.float()


def whiten_(x: torch.Tensor, mean: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """(x - M) P: (n, d) -> (n, r) (x is consumed as scratch)."""
    return x.sub_(mean) @ P


def lloyd(x: torch.Tensor, centroids: torch.Tensor, iterations: int, generator: torch.Generator,
          chunk: int = 1024, log=lambda m: None, empty_to: str = "patch",
          outside_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Lloyd's K-means from ``centroids`` for a fixed number of iterations.

    A patch goes to the centroid maximising ``x.c - |c|^2 / 2`` (nearest, as the demo computes
    it); sums are accumulated in float64. A cluster that ends an iteration empty takes a random
    patch (drawn from ``generator``; ``empty_to="patch"``) or is zeroed (``"zero"``, as
    ``run_kmeans.m``). ``outside_sq`` (K,): the squared norm of each initial centroid outside
    the patches' span, which counts in the first assignment's distances only.
    """
    from tqdm import tqdm

    n, d = x.shape
    k = centroids.shape[0]
    c = centroids.clone()
    # a bar with its ETA on a terminal (tqdm's disable=None: off when stderr is not one)
    for it in tqdm(range(iterations), desc=f"K-means fit, K = {k}", unit="iteration", disable=None, leave=False):
        half_sq = 0.5 * (c * c).sum(1)
        if it == 0 and outside_sq is not None:
            half_sq = half_sq + 0.5 * outside_sq.to(half_sq)
        sums = torch.zeros((k, d), dtype=torch.float64, device=x.device)
        counts = torch.zeros(k, dtype=torch.float64, device=x.device)
        for lo in range(0, n, chunk):
            xb = x[lo:lo + chunk]
            # max(1).indices, not argmax(1): the same first maximum, several times faster on the CPU
            labels = torch.addmm(half_sq, xb, c.T, beta=-1).max(1).indices  # (chunk,)
            sums.index_add_(0, labels, xb.double())
            counts += torch.bincount(labels, minlength=k).double()
        empty = counts == 0
        c = (sums / counts.clamp_min(1)[:, None]).float()
        if empty.any() and empty_to == "patch":
            pick = torch.randint(0, n, (int(empty.sum()),), generator=generator)
            c[empty] = x[pick.to(x.device)]
        elif empty.any():
            c[empty] = 0.0
        if (it + 1) % 10 == 0 or it + 1 == iterations:
            done = "re-seeded" if empty_to == "patch" else "zeroed"
            log(f"K-means: iteration {it + 1}/{iterations}, {int(empty.sum())} empty clusters {done}")
    return c


def randn_init(k: int, whitening: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``run_kmeans.m``'s start, ``randn(k, d) * 0.1`` in the d ZCA coordinates, in our r-column basis.

    A ZCA-whitened patch ``x`` has coordinates ``x V_r`` in our basis (``V_r``: the unit
    columns of ``whitening``) and none outside it, so a start ``G`` is ``G V_r`` (K, r) here
    plus its squared norm outside the span (K,), which counts in the first distances only.
    """
    G = torch.randn((k, whitening.shape[0]), generator=generator, dtype=torch.float64) * RANDN_SCALE
    V = whitening.double() / whitening.double().norm(dim=0)
    inside = G @ V.to(G.device)
    return inside.float(), ((G * G).sum(1) - (inside * inside).sum(1)).clamp_min(0).float()


def fit_dictionary(images: torch.Tensor, cfg: KMeansConfig, device: torch.device | str = "cpu",
                   log=lambda m: None) -> Dictionary:
    """Fit the recipe's whitening and centroids on uint8 images (N, C, H, W)."""
    if cfg.k < 1:
        raise UserError(f"K-means needs K >= 1 centroids, got {cfg.k}")
    if cfg.init not in KMEANS_INITS:
        raise UserError(f"--kmeans-init must be one of {', '.join(KMEANS_INITS)}, got {cfg.init!r}")
    if cfg.k > cfg.n_patches:
        raise UserError(f"K = {cfg.k} is larger than the {cfg.n_patches} patches it is fitted on; "
                        f"lower K or raise the number of patches")
    g = torch.Generator().manual_seed(cfg.seed)
    log(f"K-means: {cfg.n_patches} random {cfg.patch}x{cfg.patch} patches of {images.shape[0]} images")
    x = normalize_patches_(sample_patches(images, cfg.n_patches, cfg.patch, g), cfg.norm_eps).to(device)
    mean, P = fit_zca(x, cfg.zca_eps)
    x = whiten_(x, mean, P)
    outside = None
    if cfg.init == "randn":
        init, outside = randn_init(cfg.k, P.cpu(), g)
        init = init.to(x.device)
    else:
        init = x[torch.randperm(x.shape[0], generator=g)[:cfg.k].to(x.device)]
    log(f"K-means: Lloyd's algorithm, K = {cfg.k}, {cfg.iterations} iterations, init {cfg.init}")
    chunk = 1024 if x.device.type == "cpu" else 1 << 16  # CPU: a cache-sized block; GPU: fewer launches
    c = lloyd(x, init, cfg.iterations, g, chunk=chunk, log=log,
              empty_to="zero" if cfg.init == "randn" else "patch", outside_sq=outside)
    return Dictionary(mean, P, c, cfg.patch, images.shape[1], cfg.norm_eps)


# -------------------------------------------------------------------------- encoding


def quadrant_split(n: int) -> int:
    """Where the demo splits ``n`` positions into halves: Matlab's ``round(n / 2)`` (halves round up)."""
    return (n + 1) // 2


def quadrant_index(hp: int, wp: int) -> torch.Tensor:
    """(hp * wp,) the quadrant of each position, row by row: 0 top-left, 1 bottom-left, 2 top-right,
    3 bottom-right (the demo's order of the 4 pooled blocks)."""
    h, w = quadrant_split(hp), quadrant_split(wp)
    rows = (torch.arange(hp) >= h).long()[:, None]
    cols = (torch.arange(wp) >= w).long()[None, :]
    return (rows + 2 * cols).reshape(-1)


def block_rows(k: int, cache_bytes: int = 1 << 20) -> int:
    """Positions whose K distances fit ``cache_bytes`` (default 1 MiB, half a core's L2 here): the
    distance block is made, square-rooted, averaged and pooled while it is still in cache."""
    return max(16, cache_bytes // (4 * k))


def _encode_chunk(x: torch.Tensor, d: Dictionary, cross: torch.Tensor, quadrant: torch.Tensor,
                  rows: int) -> torch.Tensor:
    """uint8 (B, C, H, W) -> (B, 4K) triangle features, sum-pooled over the 4 quadrants."""
    B, C, H, W = x.shape
    hp, wp = H - d.patch + 1, W - d.patch + 1
    p = F.unfold(x.float(), d.patch)  # (B, C*patch^2, hp*wp), positions row by row
    p = p.transpose(1, 2).reshape(B * hp * wp, -1)
    p = whiten_(normalize_patches_(p, d.norm_eps), d.mean, d.whitening)
    # squared distances in one matmul: [x, |x|^2, 1] @ [-2 C^T; 1; |c|^2]
    aug = torch.cat([p, (p * p).sum(1, keepdim=True), torch.ones_like(p[:, :1])], 1)
    target = (torch.arange(B, device=x.device)[:, None] * 4 + quadrant.to(x.device)[None]).reshape(-1)
    out = torch.zeros((B * 4, d.k), dtype=torch.float32, device=x.device)
    z = torch.empty((rows, d.k), dtype=torch.float32, device=x.device)
    for lo in range(0, B * hp * wp, rows):  # one cache-sized block of positions at a time
        hi = min(lo + rows, B * hp * wp)
        zb = torch.mm(aug[lo:hi], cross, out=z[:hi - lo]).clamp_min_(0).sqrt_()  # distances
        mu = zb.mean(1, keepdim=True)
        out.index_add_(0, target[lo:hi], torch.sub(mu, zb, out=zb).relu_())  # triangle, pooled by quadrant
    return out.view(B, 4 * d.k)


@torch.no_grad()
def encode(images: torch.Tensor, d: Dictionary, max_elements: int = 1 << 23, rows: int | None = None
           ) -> torch.Tensor:
    """Features (N, 4K) float32 of uint8 images (N, C, H, W) on the dictionary's device.

    Sub-batches hold the patches of at most ``max_elements`` // K positions; their distances
    are made ``rows`` positions at a time (default: :func:`block_rows`, cache-sized, on the
    CPU; the whole sub-batch on a GPU), each block pooled before the next is made.
    """
    N, C, H, W = images.shape
    if C != d.channels:
        raise UserError(f"the K-means dictionary was fitted on {d.channels}-channel patches; "
                        f"these images have {C} channels")
    positions = (H - d.patch + 1) * (W - d.patch + 1)
    if positions < 1:
        raise UserError(f"images of {H}x{W} are smaller than the {d.patch}x{d.patch} receptive field")
    cross = torch.cat([-2 * d.centroids.T, torch.ones_like(d.centroids[:, 0])[None],
                       (d.centroids * d.centroids).sum(1)[None]], 0)
    step = max(1, max_elements // (positions * d.k))
    quadrant = quadrant_index(H - d.patch + 1, W - d.patch + 1)
    if rows is None:
        rows = block_rows(d.k) if d.centroids.device.type == "cpu" else step * positions  # GPU: one block
    out = torch.empty((N, 4 * d.k), dtype=torch.float32, device=d.centroids.device)
    for lo in range(0, N, step):
        out[lo:lo + step] = _encode_chunk(images[lo:lo + step].to(d.centroids.device), d, cross, quadrant, rows)
    return out
