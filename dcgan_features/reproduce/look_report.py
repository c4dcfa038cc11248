"""What ``report.html`` says about the look stages: for each finished one, a title, a one-line
reading of its numbers (read from the stage's own CSV) and its picture."""

from __future__ import annotations

import csv
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def visualize_reading(rows: list[dict]) -> str:
    """Per model: how many maps, and the mean top-1 and top-k responses."""
    parts = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        top1 = [float(r["activation"]) for r in mine if r["rank"] == "0"]
        allk = [float(r["activation"]) for r in mine]
        parts.append(f"{model}: mean top-1 response {sum(top1) / len(top1):.3g}, mean over the top "
                     f"{len(allk) // len(top1)} {sum(allk) / len(allk):.3g}")
    block = rows[0]["block"] if rows else "?"
    return (f"Block {block}, {len(set(r['map'] for r in rows))} maps, each image once per map. " + "; ".join(parts)
            + ". Guided-backprop maps under each crop: grey is zero, colour is what drives the response.")


def neighbours_reading(rows: list[dict]) -> str:
    """The fraction of samples nearer a training image than the median training pair, per space."""
    parts = [f"{r['space']}: {100 * float(r['fraction_closer']):.0f}% of {r['samples']} samples "
             f"(median sample-to-nearest {float(r['median_sample_nearest']):.3g} vs median train pair "
             f"{float(r['median_train_pair']):.3g})" for r in rows]
    return ("Samples nearer a training image than two different training images usually are: " + "; ".join(parts)
            + ". A copying G gives 100%.")


def look_parts(out: Path) -> list[tuple[str, str, bytes]]:
    """(title, reading, PNG bytes) of each look stage whose outputs exist in run folder ``out``."""
    look = Path(out) / "look"
    parts = []
    if (look / "visualize.png").is_file() and (look / "visualize.csv").is_file():
        parts.append(("What the features respond to (paper Fig. 5)", visualize_reading(_rows(look / "visualize.csv")),
                      (look / "visualize.png").read_bytes()))
    if (look / "neighbours.png").is_file() and (look / "neighbours_summary.csv").is_file():
        reading = neighbours_reading(_rows(look / "neighbours_summary.csv"))
        parts.append(("Memorisation: nearest training images", reading, (look / "neighbours.png").read_bytes()))
        if (look / "neighbours_distances.png").is_file():
            parts.append(("Memorisation: distances", "Sample-to-nearest-training-image distances against "
                          "training-image-to-nearest-other distances; dashed: the median training pair.",
                          (look / "neighbours_distances.png").read_bytes()))
    return parts
