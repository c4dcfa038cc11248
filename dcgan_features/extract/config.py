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
    # image folders (data/folder.py): the test share of a folder without split subfolders, its seed,
    # decoding processes (0: every core) and whether unreadable images are skipped
    test_fraction: float = 0.2
    split_seed: int = 0
    workers: int = 0
    skip_bad: bool = False

    def folder_options(self, log=None, progress: bool = False):
        """How an image folder is read under these settings."""
        from ..data.folder import FolderOptions

        return FolderOptions(self.test_fraction, self.split_seed, self.workers, self.skip_bad, progress, log)


def paper_extraction(dataset: str) -> dict[str, object]:
    """The paper protocol's extraction settings for ``dataset``: its registry entry's
    ``paper_extraction`` (:class:`~dcgan_features.data.registry.DatasetSpec`); empty for a
    dataset without one, or a name the registry does not know (the ExtractConfig defaults:
    float16 features and TF32, faster and smaller).

    >>> paper_extraction("cifar10"), paper_extraction("digits")
    ({'dtype': 'float32', 'tf32': False}, {})
    """
    from ..data.registry import DATASETS  # imports torch: only when asked, the CLI starts without it

    spec = DATASETS.get(dataset)
    return dict(spec.paper_extraction) if spec is not None else {}


def extract_config(dataset: str, **overrides) -> ExtractConfig:
    """The ExtractConfig for ``dataset``: the paper protocol's settings where it has one
    (:func:`paper_extraction`), then ``overrides`` (``None`` values ignored).

    >>> c = extract_config("svhn", device="cpu")
    >>> c.bn, c.dtype, c.tf32, extract_config("digits", dtype=None).dtype
    ('authors', 'float32', False, 'float16')
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    return ExtractConfig(dataset=dataset, **{**paper_extraction(dataset), **given})


__all__ = ["ExtractConfig", "extract_config", "paper_extraction"]
