"""STL-10 (Coates, Lee & Ng 2011) in its binary release, ``stl10_binary/``.

Files (https://cs.stanford.edu/~acoates/stl10/): ``train_X.bin`` (5000 images), ``train_y.bin``,
``test_X.bin`` (8000), ``test_y.bin``, ``unlabeled_X.bin`` (100000), ``fold_indices.txt``,
``class_names.txt``. An ``_X.bin`` file is raw uint8, image after image, each 3 x 96 x 96:
the red, green and blue channels one after another, each stored column by column (column-major,
as MATLAB writes it); a ``_y.bin`` file is one uint8 label per image, 1..10.
``fold_indices.txt`` has 10 lines, each the 1000 0-based ``train`` rows of one fold,
space-separated: the benchmark fits on each fold and scores on all 8000 test images.

>>> IMAGE_BYTES
27648
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DatasetError

SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE
SPLIT_SIZES = {"train": 5000, "test": 8000, "unlabeled": 100000}
N_FOLDS, FOLD_SIZE = 10, 1000
FOLDER = "stl10_binary"


def files(split: str) -> tuple[str, ...]:
    """The release files a split is read from."""
    x = (f"{split}_X.bin",)
    return x if split == "unlabeled" else x + (f"{split}_y.bin",)


def image_count(path: Path) -> int:
    """Images in an ``_X.bin`` file, from its size; refuses a size that is not whole images."""
    n, rest = divmod(path.stat().st_size, IMAGE_BYTES)
    if rest:
        raise DatasetError(f"{path} holds {path.stat().st_size} bytes, not a whole number of {IMAGE_BYTES}-byte "
                           f"3x96x96 images: truncated or corrupt; download it again")
    return n


def read_images(path: Path) -> np.ndarray:
    """uint8 (N, 3, 96, 96), rows and columns the right way round (the file is column-major)."""
    n = image_count(path)
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 3, SIZE, SIZE))
    return np.ascontiguousarray(raw.transpose(0, 1, 3, 2))  # [c, column, row] -> [c, row, column]


def read_labels(path: Path, n: int) -> np.ndarray:
    """0-based int64 labels of the n images (the file's 1..10)."""
    y = np.fromfile(path, dtype=np.uint8)
    if len(y) != n:
        raise DatasetError(f"{path} holds {len(y)} labels but its images file holds {n} images; download both again")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DatasetError(f"{path}: labels must be 1..10, found {int(y.min())}..{int(y.max())}; download it again")
    return y.astype(np.int64) - 1


def read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split: images (N, 3, 96, 96) and labels (-1 for ``unlabeled``)."""
    x = read_images(root / f"{split}_X.bin")
    if split == "unlabeled":
        return x, np.full(len(x), -1, np.int64)
    return x, read_labels(root / f"{split}_y.bin", len(x))


def read_folds(root: Path, n_train: int = SPLIT_SIZES["train"]) -> np.ndarray:
    """The 10 predefined folds, int64 (10, 1000) of 0-based train rows, checked."""
    path = root / "fold_indices.txt"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    try:
        folds = [np.array([int(v) for v in ln.split()], np.int64) for ln in lines]
    except ValueError:
        raise DatasetError(f"{path}: every line must be space-separated row numbers") from None
    if len(folds) != N_FOLDS or len({len(f) for f in folds}) != 1:  # the release: 10 x 1000
        raise DatasetError(f"{path}: expected {N_FOLDS} lines of equally many row numbers ({FOLD_SIZE} in the "
                           f"release), found {[len(f) for f in folds]}; download it again")
    out = np.stack(folds)
    if out.min() < 0 or out.max() >= n_train:
        raise DatasetError(f"{path}: row numbers must be 0..{n_train - 1} (0-based train rows), found "
                           f"{int(out.min())}..{int(out.max())}")
    return out


def split_info(root: Path, split: str) -> dict:
    """What the feature file keeps of a split for its protocol: the train split's folds."""
    return {"folds": read_folds(root, image_count(root / "train_X.bin"))} if split == "train" else {}


def class_names(root: Path) -> list[str] | None:
    path = root / "class_names.txt"
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    return names if len(names) == 10 else None


def count(root: Path, split: str) -> int:
    return image_count(root / f"{split}_X.bin")
