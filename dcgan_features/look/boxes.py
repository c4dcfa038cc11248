"""The BOXES file of ``forget``: bounding boxes of an object on numbered samples.

JSON, boxes in image pixels as ``[x0, y0, x1, y1]`` (left, top inclusive; right, bottom
exclusive, so ``[0, 0, W, H]`` is the whole image), keyed by the tile id of
``dcgan-features sample CKPT --numbered --n N --seed S``. ``n`` and ``seed`` are optional;
when present they must match ``forget --n/--seed``, so boxes cannot be used on other samples;
other keys (a description, say) are ignored::

    {"n": 64, "seed": 3,
     "boxes": {"5": [[10, 4, 22, 20]], "17": [[8, 6, 20, 26], [0, 0, 6, 6]]}}

The file is parsed as JSON only (never executed); every check runs before any work.

>>> parse_boxes({"boxes": {"2": [[0, 0, 8, 8]]}}, n=4, seed=0, size=32)
{2: [(0, 0, 8, 8)]}
>>> parse_boxes({"boxes": {"9": [[0, 0, 8, 8]]}}, n=4, seed=0, size=32)
Traceback (most recent call last):
...
dcgan_features.core.errors.UserError: BOXES: sample id 9 is out of range: a grid of --n 4 has ids 0..3
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UserError

EXAMPLE = '{"n": 64, "seed": 3, "boxes": {"5": [[10, 4, 22, 20]], "17": [[8, 6, 20, 26]]}}'


def read_boxes(path: str | Path, n: int, seed: int, size: int) -> dict[int, list[tuple[int, int, int, int]]]:
    """Parse and check a BOXES file for a ``size`` x ``size`` grid of ``n`` samples of ``seed``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read BOXES {str(path)!r} ({e.strerror or type(e).__name__})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"BOXES {str(path)!r} is not JSON ({str(e).splitlines()[0][:120]}); "
                        f"expected e.g. {EXAMPLE}") from None
    return parse_boxes(data, n, seed, size)


def parse_boxes(data, n: int, seed: int, size: int) -> dict[int, list[tuple[int, int, int, int]]]:
    """Check the parsed JSON: ids in range, boxes inside the image, the grid's n and seed."""
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), dict) or not data["boxes"]:
        raise UserError(f"BOXES must be an object with a non-empty \"boxes\" object, e.g. {EXAMPLE}")
    for key, want in (("n", n), ("seed", seed)):
        if key in data and data[key] != want:
            raise UserError(f"BOXES was drawn on the grid of {key} {data[key]!r} but --{key} is {want}; "
                            f"pass --{key} {data[key]}")
    out: dict[int, list[tuple[int, int, int, int]]] = {}
    for key, boxes in data["boxes"].items():
        try:
            i = int(key)
        except ValueError:
            raise UserError(f"BOXES: sample id {key!r} is not a number") from None
        if not 0 <= i < n:
            raise UserError(f"BOXES: sample id {i} is out of range: a grid of --n {n} has ids 0..{n - 1}")
        if not isinstance(boxes, list) or not boxes:
            raise UserError(f"BOXES: sample {i} needs a list of [x0, y0, x1, y1] boxes")
        out[i] = [_box(b, i, size) for b in boxes]
    return dict(sorted(out.items()))


def _box(b, i: int, size: int) -> tuple[int, int, int, int]:
    if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in b)):
        raise UserError(f"BOXES: sample {i}: box {b!r} must be four integers [x0, y0, x1, y1]")
    x0, y0, x1, y1 = b
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise UserError(f"BOXES: sample {i}: box {b} is outside the {size}x{size} image or empty "
                        f"(need 0 <= x0 < x1 <= {size}, 0 <= y0 < y1 <= {size})")
    return x0, y0, x1, y1
