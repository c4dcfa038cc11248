"""What a dataset's files hold, cheaply: a fingerprint that changes when the data does.

``reproduce`` keys its stages on their settings; with the data folder's path alone a changed
dataset under the same ``--data-dir`` reused every stage and kept the old numbers. The
fingerprint covers every file a loader reads for the dataset's splits: its name, size and
mtime, and a hash of sampled bytes (the first and last 64 KiB and 16 blocks of 4 KiB spread
over the file), so a replaced, edited, truncated or regenerated file changes it in a few ms.
An image folder of many files is covered by every file's name, size and mtime, and the
sampled bytes of at most 64 of them.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.png").write_bytes(b"x" * 10)
>>> before = data_fingerprint("folder", d)
>>> _ = (d / "a.png").write_bytes(b"y" * 10)
>>> before != data_fingerprint("folder", d)
True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import downsampled_imagenet as dsi
from .registry import DEFAULT_DATA_DIR, IMAGE_EXTENSIONS, DownsampledImageNetSpec, get_dataset

__all__ = ["data_files", "data_fingerprint"]

HEAD = 1 << 16
BLOCK, BLOCKS = 4096, 16
FOLDER_SAMPLES = 64


def data_files(name: str, data_dir: str | os.PathLike | None) -> tuple[list[Path], bool]:
    """The files a loader reads for every split of ``name`` (sorted), and whether they form an image folder."""
    spec = get_dataset(name)
    base = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)
    if spec.open_folder is not None:
        files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()) \
            if base.is_dir() else []
        return files, True
    files: set[Path] = set()
    for split in spec.splits:
        if isinstance(spec, DownsampledImageNetSpec):
            batches = dsi.find(base, spec.size, split)
            files.update(batches.paths if batches is not None else ())
        elif spec.files[split]:
            root = spec.locate(data_dir, split)
            files.update(root / f for f in spec.files[split]) if root is not None else None
    return sorted(files), False


def data_fingerprint(name: str, data_dir: str | os.PathLike | None) -> str:
    """sha256 over every file's path, size, mtime and sampled bytes (see the module docstring)."""
    files, folder = data_files(name, data_dir)
    h = hashlib.sha256(name.encode())
    sampled = set(files[:: max(1, len(files) // FOLDER_SAMPLES)]) if folder else set(files)
    for p in files:
        try:
            st = p.stat()
        except OSError:
            h.update(f"{p}:missing".encode())
            continue
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
        if p in sampled:
            h.update(_sampled_bytes(p, st.st_size))
    return h.hexdigest()


def _sampled_bytes(path: Path, size: int) -> bytes:
    """The first and last 64 KiB and 16 blocks of 4 KiB spread evenly between them."""
    out = []
    try:
        with open(path, "rb") as f:
            out.append(f.read(HEAD))
            for i in range(BLOCKS):
                f.seek(HEAD + (max(size - 2 * HEAD, 0) * i) // BLOCKS)
                out.append(f.read(BLOCK))
            f.seek(max(size - HEAD, 0))
            out.append(f.read(HEAD))
    except OSError as e:
        out.append(f"unreadable:{e.errno}".encode())
    return hashlib.sha256(b"".join(out)).digest()
