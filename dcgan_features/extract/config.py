"""The settings of one extraction, importable without torch (the CLI reads its defaults here).

>>> ExtractConfig(dataset="digits").grid
4
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``extract`` needs besides the model and the output path."""

    dataset: str
    splits: tuple[str, ...] = ("train", "test")
    layers: str = "all"
    grid: int = 4
    bn: str = "recompute"
    dtype: str = "float16"
    batch_size: int = 256
    device: str = "auto"
    data_dir: str | None = None
    limit: int | None = None  # first N rows of each split (quick runs, benchmarks)
    overwrite: bool = False
    tf32: bool = True  # TF32 convs/matmuls on a GPU; off under the paper's protocols
    bn_holdout: int = 10000  # bn "authors": the validation rows their BN statistics leave out
    bn_seed: int = 42  # bn "authors": the seed of their shuffle (lib/rng.py)
    bn_batch_size: int = 128  # bn "authors": their batch size (infer_bnorm_stats)
    threads: int | None = None  # CPU threads; None: core.threads' policy or OMP_NUM_THREADS


# Extraction under the paper's protocols (``extract_config``): features kept in float32 and
# no TF32, so the probe sees the model's float32 features; SVHN's BatchNorm statistics as
# the authors' script estimates them. Elsewhere float16 and TF32 (faster, smaller) stay.
PAPER_EXTRACTION: dict[str, dict] = {
    "svhn": {"bn": "authors", "dtype": "float32", "tf32": False},
    "cifar10": {"dtype": "float32", "tf32": False},
}


def extract_config(dataset: str, **overrides) -> ExtractConfig:
    """The ExtractConfig for ``dataset``: the paper protocol's settings where it has one, then
    ``overrides`` (``None`` values ignored).

    >>> c = extract_config("svhn", device="cpu")
    >>> c.bn, c.dtype, c.tf32, extract_config("digits", dtype=None).dtype
    ('authors', 'float32', False, 'float16')
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    return ExtractConfig(dataset=dataset, **{**PAPER_EXTRACTION.get(dataset, {}), **given})


__all__ = ["ExtractConfig", "PAPER_EXTRACTION", "extract_config"]
