"""Tiny dataset files in their released on-disk formats, shared by the loader, CLI and reproduce tests."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io

from dcgan_features.data import downsampled_imagenet as dsi
from dcgan_features.data.registry import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC

rng = np.random.default_rng(0)



def write_cifar(root: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:  # the real files: bytes keys, a list of labels
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
        xs.append(data), ys.append(labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                      b"horse", b"ship", b"truck"], b"num_cases_per_batch": per_batch,
                     b"num_vis": 3072}, f, protocol=2)
    train_x = np.concatenate(xs[:5]).reshape(-1, 3, 32, 32)
    return train_x, np.concatenate(ys[:5]), xs[5].reshape(-1, 3, 32, 32), np.asarray(ys[5])



def write_svhn(root: Path, split: str, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # HWCN, as the real files
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # 1..10, 10 meaning digit 0
    y[0, 0] = 10
    scipy.io.savemat(root / f"{split}_32x32.mat", {"X": X, "y": y})
    return X, y



def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())



def write_fashion(root: Path, n_train: int = 6, n_test: int = 3) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, IDX_IMAGES_MAGIC)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, IDX_LABELS_MAGIC)
        out[prefix] = (images, labels)
    return out



BATCH_SIZES = [3, 2, 4, 1, 3, 2, 2, 3, 1, 2]  # ten train batches of unequal size, as the last real one is



PROTOCOL = 3  # Python 3's default when the files were made (2017); they load with a plain pickle.load



def write_batch(path: Path, data: np.ndarray, labels, form: str, mean=True, protocol=PROTOCOL) -> None:
    """One batch exactly as released: data (N, 3*S*S) uint8 planar, labels 1..1000, mean."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"data": data, "labels": labels}
    if mean:
        fields["mean"] = data.mean(0)
    if form == "npz":
        np.savez(path, **fields)
    else:
        with open(path, "wb") as f:  # the real files are plain pickled dicts: str keys, labels a list
            pickle.dump({k: (list(map(int, v)) if k == "labels" else v) for k, v in fields.items()}, f,
                        protocol=protocol)



def write_split(base: Path, size: int, split: str, form: str, seed: int = 0, flat: bool = False,
                sizes=None) -> tuple[np.ndarray, np.ndarray]:
    """Write a split; return the images (N, 3, S, S) and the 0-based labels it must load as."""
    rng = np.random.default_rng(seed)
    sizes = sizes or (BATCH_SIZES if split == "train" else [5])
    xs, ys = [], []
    for i, (name, n) in enumerate(zip(dsi.batch_names(split, form), sizes)):
        folder = base if flat else base / dsi.release_folders(size, split, form)[0]
        if size == 64 and split == "train" and not flat:  # imagenet64's train comes in two archives
            folder = base / dsi.release_folders(size, split, form)[1 + (i >= 5)]
        data = rng.integers(0, 256, (n, 3 * size * size), dtype=np.uint8)
        labels = rng.integers(1, 1001, n)
        labels[0] = 1000 if i % 2 else 1
        write_batch(folder / name, data, labels, form)
        xs.append(data), ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys) - 1




# ----------------------------------------------------------------------------------------------
# Layout oracles: a known picture written by each format's documented serialisation, element by
# element, never with the reshape a loader inverts. A loader that transposes, mirrors or swaps
# channels gives back another picture.


def letter_picture(height: int, width: int, variant: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: an "F" on three different gradients (R left to right, G top to bottom,
    B along a diagonal); ``variant`` moves the letter. No flip, transpose or channel swap
    leaves it unchanged."""
    yy, xx = np.mgrid[0:height, 0:width]
    r = xx * 200 // max(width - 1, 1) + 20
    g = yy * 180 // max(height - 1, 1) + 40
    b = (xx + 2 * yy) * 150 // max(width - 1 + 2 * (height - 1), 1) + 60
    top, left = height // 6 + variant, width // 4 + variant
    h, w = height * 2 // 3, width // 2
    stem = (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + max(w // 4, 1))
    bar = (yy >= top) & (yy < top + max(h // 6, 1)) & (xx >= left) & (xx < left + w)
    mid = (yy >= top + h // 2 - max(h // 12, 1)) & (yy < top + h // 2) & (xx >= left) & (xx < left + w * 2 // 3)
    letter = stem | bar | mid
    pic = np.stack([np.where(letter, 250, r), np.where(letter, 5, g), np.where(letter, 128, b)], axis=-1)
    return pic.astype(np.uint8)


def cifar_row(picture: np.ndarray) -> np.ndarray:
    """CIFAR-10's documented row: "the first 1024 entries contain the red channel values, the
    next 1024 the green, and the final 1024 the blue. The image is stored in row-major order"."""
    H, W, _ = picture.shape
    return np.array([picture[y, x, ch] for ch in range(3) for y in range(H) for x in range(W)], dtype=np.uint8)


def write_cifar_pictures(root: Path, pictures: list, labels: list) -> None:
    """Every CIFAR-10 batch file holding ``pictures`` (each a (32, 32, 3) HWC image)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = np.stack([cifar_row(p) for p in pictures])
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": list(labels), b"data": data,
                         b"filenames": [b"x.png"] * len(pictures)}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"c%d" % i for i in range(10)]}, f, protocol=2)


def write_svhn_pictures(root: Path, split: str, pictures: list, y: list) -> None:
    """SVHN's .mat: "X is a 4-D matrix containing the images ... X(:,:,:,i) gives the i-th
    32-by-32 RGB image", y 1..10; the array is filled image by image, pixel by pixel."""
    X = np.zeros((32, 32, 3, len(pictures)), dtype=np.uint8)
    for i, p in enumerate(pictures):
        for yy in range(32):
            for xx in range(32):
                for ch in range(3):
                    X[yy, xx, ch, i] = p[yy, xx, ch]
    scipy.io.savemat(root / f"{split}_32x32.mat", {"X": X, "y": np.asarray(y, np.uint8)[:, None]})


def write_idx_pictures(path: Path, pictures: list) -> None:
    """An idx3 file: magic, the dimensions big-endian, then the pixels as in a C array ("the index
    in the last dimension changes the fastest"), written one byte at a time."""
    n, (H, W) = len(pictures), pictures[0].shape
    body = bytes(int(p[y, x]) for p in pictures for y in range(H) for x in range(W))
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", IDX_IMAGES_MAGIC, n, H, W) + body)


def imagenet_row(picture: np.ndarray) -> np.ndarray:
    """Imagenet32_Scripts' row: ``r, g, b = img.split(); list(r.getdata()) + list(g.getdata())
    + list(b.getdata())`` of the PIL image."""
    import warnings

    from PIL import Image

    r, g, b = Image.fromarray(picture, "RGB").split()
    with warnings.catch_warnings():  # the scripts' getdata, deprecated in today's Pillow
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.array(list(r.getdata()) + list(g.getdata()) + list(b.getdata()), dtype=np.uint8)
def write_mnist(root: Path, n_train: int = 6, n_test: int = 3) -> dict:
    """MNIST's four idx files (the same names and layout as Fashion-MNIST's), in ``root``."""
    return write_fashion(root, n_train, n_test)


def write_cifar100(root: Path, n_train: int = 8, n_test: int = 5) -> dict:
    """``cifar-100-python/{train,test,meta}`` as released: dicts with bytes keys, labels as lists."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, n).tolist(), rng.integers(0, 20, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"filenames": [b"x.png"] * n, b"batch_label": f"{name} batch 1 of 1".encode(),
                         b"fine_labels": fine, b"coarse_labels": coarse, b"data": data}, f, protocol=2)
        out[name] = (data.reshape(-1, 3, 32, 32), np.array(fine), np.array(coarse))
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, f, protocol=2)
    return out


def write_stl10(root: Path, n_train: int = 30, n_test: int = 20, n_unlabeled: int = 4, fold: int = 10) -> dict:
    """``stl10_binary/`` as its README describes it: each image 3x96x96 uint8, the channels one after
    another, each channel column by column (column-major); labels one byte each, 1..10; fold_indices.txt
    10 lines of 0-based train rows, space-separated; class_names.txt one name a line.

    Returns the images as (N, 3, row, column) and the 0-based labels they must load as.
    """
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    local = np.random.default_rng(5)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        x = local.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        x[:, :, 0, :] = 255  # the top row white: rows and columns must not come out swapped
        x[:, :, :, 0] = 0  # the left column black
        (folder / f"{split}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())  # column-major per channel
        if split != "unlabeled":
            y = np.arange(n) % 10 + 1  # every class present, 1..10
            (folder / f"{split}_y.bin").write_bytes(y.astype(np.uint8).tobytes())
            out[split] = (x, y - 1)
        else:
            out[split] = (x, None)
    by_class = [np.flatnonzero(np.arange(n_train) % 10 == c) for c in range(10)]  # `fold // 10` of each class
    folds = np.stack([np.sort(np.concatenate([local.choice(r, fold // 10, replace=False) for r in by_class]))
                      for _ in range(10)])
    (folder / "fold_indices.txt").write_text("\n".join(" ".join(map(str, f)) for f in folds) + "\n")
    (folder / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                        "monkey", "ship", "truck"]) + "\n")
    out["folds"] = folds
    return out


def write_image_folder(root: Path, per_class: dict, size=(40, 30), fmt: str = "png") -> dict:
    """``root/<split>/<class>/<i>.<fmt>`` (or ``root/<class>/...`` with split ""), each image one flat colour
    of its class: ``per_class`` = {split: {class: count}}. Returns {split: {class: colour}}."""
    from PIL import Image

    colours = {}
    for split, classes in per_class.items():
        for k, (cls, n) in enumerate(sorted(classes.items())):
            colour = (40 * (k + 1) % 256, 255 - 30 * k % 256, 90)
            d = root / split / cls if split else root / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", size, colour).save(d / f"{i}.{fmt}")
            colours.setdefault(split, {})[cls] = colour
    return colours
