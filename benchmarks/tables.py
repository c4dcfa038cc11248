"""Every table of README.md and results/README.md, rendered from the CSVs in results/.

A table sits in its document between two markers, and nothing between them is typed by hand::

    <!-- table:NAME -->
    | ... rendered here ... |
    <!-- /table:NAME -->

    python benchmarks/tables.py            # rewrite every table from the CSVs
    python benchmarks/tables.py --check    # exit 1 (and name the tables) if a committed one is stale

Each table is one entry of :data:`TABLES`: which CSV, which rows, and which columns. A table
renders from whatever rows and columns its CSV has now: a new row of a pivot's CSV becomes a
new row or column of it, and a cell without a row is ``-``. ``tests/test_tables.py`` fails
when a committed table differs from what this script renders.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dcgan_features.core.atomic import write_text_atomic  # noqa: E402  (imports no torch)
RESULTS = REPO / "results"
DOCS = ("README.md", "results/README.md")
MARK = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


def rows_of(name: str) -> list[dict]:
    with open(RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


def markdown(head: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def num(v: str, digits: int = 2) -> str:
    return "-" if v in ("", None) else f"{float(v):.{digits}f}"


# ------------------------------------------------------------------ pivot tables of probe records

DATASETS = {"fashion-mnist": "Fashion-MNIST", "digits": "digits", "cifar10": "CIFAR-10", "svhn": "SVHN"}
PROBES = {"svm": "SVM", "logreg": "logistic", "knn": "k-NN"}


def feature_label(r: dict) -> str:
    """``raw pixels``, ``trained D (dcgan32), d2 alone``, ``K-means (Coates et al.), K = 1600``."""
    f, layers, arch = r["features"], r.get("layers", ""), r.get("architecture", "")
    if f == "pixels":
        return "raw pixels"
    if layers.startswith("kmeans:"):
        k, note = layers.split(":", 1)[1], r.get("note", "")
        if "init randn" in note:  # issue 21: as Coates et al.'s code runs it
            return f"K-means (Coates et al.), K = {k}, `run_kmeans.m` start, recorded standardisation"
        if "init random patches" in note:
            return f"K-means, K = {k}, `--kmeans-init patches` (ours), recorded standardisation"
        return f"K-means, K = {k}, before issue 21 (patches start, unit-variance standardisation)"
    which = "all blocks" if "+" in layers or not layers else f"{layers} alone"
    return f"{f} (`{arch}`), {which}" if arch else f"{f}, {which}"


def column_label(r: dict) -> str:
    """``Fashion-MNIST, 100 labels/class, SVM`` from the record's dataset, protocol column and probe."""
    col = r["protocol"].split("/", 1)[1]
    col = f"all {r['n_labels']} labels" if col == "all" else col.replace("-per-class", " labels/class")
    return f"{DATASETS.get(r['dataset'], r['dataset'])}, {col}, {PROBES.get(r['probe'], r['probe'])}"


def mean_ci(r: dict) -> str:
    return f"{float(r['mean']):.2f} +- {float(r['ci95']):.2f}" if int(r.get("n_runs") or 1) > 1 else f"{float(r['mean']):.2f}"


@dataclass
class Pivot:
    """Rows: feature sets; columns: (dataset, protocol column, probe); cells: mean +- 95% interval."""

    csv: str
    where: Callable[[dict], bool]
    row: Callable[[dict], str] = feature_label
    col: Callable[[dict], str] = column_label
    cell: Callable[[dict], str] = mean_ci
    lead: dict = field(default_factory=lambda: {"dim": lambda r: r["dim"]})  # columns before the cells

    def render(self) -> str:
        rows = [r for r in rows_of(self.csv) if self.where(r)]
        order = {"pixels": 0, "random D": 1, "trained D": 2}
        rows.sort(key=lambda r: (list(DATASETS).index(r["dataset"]) if r["dataset"] in DATASETS else 9,
                                 r["protocol"].endswith("/all") is False, r["protocol"],
                                 list(PROBES).index(r["probe"]) if r["probe"] in PROBES else 9))
        cols = list(dict.fromkeys(self.col(r) for r in rows))
        labels = sorted(dict.fromkeys(self.row(r) for r in rows),
                        key=lambda lab: next((order.get(r["features"], 3), "+" not in r.get("layers", ""),
                                              r.get("layers", "")) for r in rows if self.row(r) == lab))
        cells = {(self.row(r), self.col(r)): r for r in rows}
        body = []
        for lab in labels:
            first = next(r for r in rows if self.row(r) == lab)
            body.append([lab, *(f(first) for f in self.lead.values()),
                         *(self.cell(cells[lab, c]) if (lab, c) in cells else "-" for c in cols)])
        return markdown(["features", *self.lead, *cols], body)


# ------------------------------------------------------------------ one table row per CSV row


@dataclass
class Rows:
    """One table row per selected CSV row; ``columns`` maps a header to a CSV column or a function."""

    csv: str
    where: Callable[[dict], bool]
    columns: dict

    def render(self) -> str:
        get = lambda r, c: c(r) if callable(c) else (r.get(c) or "-")  # noqa: E731
        return markdown(list(self.columns), ([get(r, c) for c in self.columns.values()]
                                             for r in rows_of(self.csv) if self.where(r)))


# ------------------------------------------------------------------ targets, judged from rows


def _cpu(r: dict) -> bool:
    return r["kind"] == "measured" and not r["device"].startswith(("NVIDIA", "8x"))


def _gpu(r: dict) -> bool:
    return r["kind"] == "measured" and r["device"].startswith("NVIDIA")


def _ratios(rows: list[dict]) -> tuple[float, float]:
    v = [float(r["ratio_extract_to_bare"]) for r in rows]
    return min(v), max(v)


def targets() -> str:
    """DESIGN section 7's targets, each judged from the rows that measure it (or 'no row yet')."""
    ext, ps, km = rows_of("extract_speed.csv"), rows_of("probe_speed.csv"), rows_of("kmeans_speed.csv")
    train = rows_of("train_ablation.csv")
    out = []
    gpu_train = [r for r in train if _gpu(r) and r["arch"] == "imagenet32"]
    out.append(["training, `imagenet32` width 128, batch 128, H100/H200", ">= 40000 img/s, >= 4x a plain loop",
                "no row yet (`gpu_suite.sh` step 1 writes it)" if not gpu_train else
                f"{max(float(r['img_per_s']) for r in gpu_train):.0f} img/s (`train_ablation.csv`)"])
    gpu_ext = [r for r in ext if _gpu(r)]
    out.append(["extraction to HDF5, `imagenet32` width 128, GPU", ">= 20000 img/s, >= 90% of the disk's write speed",
                "no row yet (`gpu_suite.sh` step 2 writes it)" if not gpu_ext else
                f"{max(float(r['extract_img_per_s']) for r in gpu_ext):.0f} img/s (`extract_speed.csv`)"])
    for arch, what in (("imagenet32", "extraction overhead, `imagenet32` D, CPU"),
                       ("torchvision:resnet18", "extraction overhead, torchvision `resnet18` at 32x32, CPU")):
        sel = [r for r in ext if _cpu(r) and r["arch"] == arch]
        if sel:
            lo, hi = _ratios(sel)
            verdict = "met" if hi <= 1.3 else "not met in every row" if lo <= 1.3 else "missed"
            out.append([what, "<= 1.3x a bare forward",
                        f"{verdict}: {lo:.2f}-{hi:.2f}x over {len(sel)} rows, cores shared (`extract_speed.csv`)"])
    h100 = [r for r in ps if _gpu(r) and r["case"] == "cifar10-sized" and r["backend"] == "torch"]
    if h100:
        total = sum(float(r["fit_seconds"]) for r in h100)
        parts = ", ".join(f"{PROBES[r['probe']]} {float(r['fit_seconds']):.2f} s" for r in h100)
        out.append(["both probes' C grid, 50000 x 28672, H100", "< 60 s",
                    f"{'met' if total < 60 else 'missed'}: {total:.1f} s ({parts}; `probe_speed.csv`)"])
    big = [r for r in ps if _cpu(r) and r["case"] == "cifar10-sized" and r["backend"] == "torch"
           and r["status"] == "ok" and r["C_grid"] == "1e-4,1e-3,1e-2,1e-1"]
    sk = [r for r in ps if _cpu(r) and r["case"] == "cifar10-sized" and r["backend"] == "sklearn"]
    if big:
        r = big[-1]
        ok = float(r["rss_over_matrix"]) <= 1.5
        out.append(["L2-SVM C grid, 50000 x 28672, 2-core CPU", "completes, peak RSS <= 1.5x the matrix",
                    f"{'met' if ok else 'missed'}: {float(r['fit_seconds']) / 60:.0f} min, {r['rss_over_matrix']}x"
                    + (f"; scikit-learn `LinearSVC`: {sk[-1]['status']}" if sk else "")])
    small = {}
    for r in ps:
        if _cpu(r) and r["case"] == "small" and r["C_grid"] == "1e-4,1e-3,1e-2,1e-1" and r["status"] == "ok":
            small[r["probe"], r["backend"]] = r  # the latest row of each
    for probe in ("svm", "logreg"):
        ours, ref = small.get((probe, "torch")), small.get((probe, "sklearn"))
        if ours and ref:
            x = float(ref["fit_seconds"]) / float(ours["fit_seconds"])
            gap = float(ref["best_test_acc"]) - float(ours["best_test_acc"])
            verdict = "met" if x >= 5 and gap <= 0.3 else "missed"
            out.append([f"{PROBES[probe]} C grid vs scikit-learn, 5000 x 3584, CPU", ">= 5x faster, accuracy within 0.3",
                        f"{verdict}: {x:.1f}x ({float(ours['fit_seconds']):.1f} vs {float(ref['fit_seconds']):.1f} s), "
                        f"{ours['best_test_acc']} vs {ref['best_test_acc']}%"])
    for case, what in (("svhn-authors", "SVHN authors' protocol (170 fits, 1000 x 7168), L2-SVM vs scikit-learn, CPU"),
                       ("cifar10-400-per-class", "CIFAR-10 400-per-class column (4000 x 28672), L2-SVM vs "
                                                 "scikit-learn, CPU")):
        sel = [r for r in ps if r["case"] == case and r["backend"] == "torch" and r["status"] == "ok"
               and r.get("speedup_vs_sklearn")]
        if sel:
            r = sel[-1]
            x, diff = float(r["speedup_vs_sklearn"]), r.get("max_abs_diff_per_draw") or ""
            fast, close = x >= 10, bool(diff) and float(diff) <= 0.1
            verdict = "met" if fast and close else f"speed {'met' if fast else 'missed'}, accuracy " \
                                                   f"{'met' if close else 'missed'}"
            share = f"; {100 * float(r['fraction']):.1f}% of the yardstick" if r.get("fraction") else ""
            val = (f"; validation scores at equal C within {r['max_abs_diff_val_per_C']} points"
                   if r.get("max_abs_diff_val_per_C") else "")
            out.append([what, ">= 10x faster in the same run, accuracy per draw within 0.1 point",
                        f"{verdict}: {x:g}x on {r['fits']} fits ({r['speedup_basis']}); largest test accuracy "
                        f"difference per draw {diff or '-'} points{val}{share}, load {r['load']} "
                        f"(`probe_speed.csv`)"])
    for r in km:
        if r.get("encode_fraction"):  # a bounded run with the yardstick: fractions, and the full recipe predicted
            enc = float(r["encode_fraction"])
            out.append([f"K-means encoding, `kmeans:{r['k']}`, CPU", ">= 50% of the machine's matmul rate",
                        f"{'met' if enc >= 0.5 else 'missed'}: {100 * enc:.1f}% (fit {100 * float(r['fit_fraction']):.1f}%)"
                        f", {r['n_images']} images, shared cores (`kmeans_speed.csv`)"])
            if r.get("predicted_full_s_at_quiet_gflops"):
                s = float(r["predicted_full_s_at_quiet_gflops"])
                out.append([f"K-means `kmeans:{r['k']}`, {r['dataset']}, 70000 images, quiet 2-core CPU",
                            "< 10 min, peak RSS < 4 GiB",
                            f"time predicted, not measured: {s:.0f} s ({'under' if s < 600 else 'over'} 10 min) from "
                            f"this bounded run's fractions of the yardstick; RSS {r['peak_rss_gib']} GiB "
                            f"(`kmeans_speed.csv`)"])
            continue
        out.append([f"K-means `kmeans:{r['k']}`, {r['dataset']}, {r['n_images']} images, CPU",
                    "< 10 min, peak RSS < 4 GiB",
                    f"RSS {'met' if float(r['peak_rss_gib']) < 4 else 'missed'}: {r['peak_rss_gib']} GiB; "
                    f"time not judged: {float(r['total_s']) / 60:.0f} min on shared cores (the row's note)"])
    return markdown(["what", "target", "measured (from the rows)"], out)


def probe_small() -> str:
    """Ours vs scikit-learn on the 5000 x 3584 features: the latest row of each backend and probe."""
    small = {}
    for r in rows_of("probe_speed.csv"):
        if _cpu(r) and r["case"] == "small" and r["C_grid"] == "1e-4,1e-3,1e-2,1e-1" and r["status"] == "ok":
            small[r["probe"], r["backend"]] = r
    body = []
    for probe in ("svm", "logreg"):
        ours, ref = small.get((probe, "torch")), small.get((probe, "sklearn"))
        if ours and ref:
            body.append([PROBES[probe], f"{float(ours['fit_seconds']):.1f} s, {ours['passes']} passes ({ours['date']})",
                         f"{float(ref['fit_seconds']):.1f} s ({ref['date']})",
                         f"{float(ref['fit_seconds']) / float(ours['fit_seconds']):.1f}x",
                         f"{ours['best_test_acc']}% vs {ref['best_test_acc']}%"])
    return markdown(["probe", "ours (torch)", "scikit-learn", "speed-up", "best test accuracy"], body)


def paper_column(r: dict) -> str:
    """``CIFAR-10, cifar10/all, accuracy (%)``: the paper's rows carry no label count."""
    return f"{DATASETS.get(r['dataset'], r['dataset'])}, `{r['protocol']}`, {r['metric']} (%)"


TABLES: dict[str, object] = {
    "paper": Pivot("accuracy.csv", lambda r: r["kind"] == "paper", row=lambda r: r["features"].removeprefix("paper: "),
                   col=paper_column, cell=lambda r: r["paper_value"] or "-", lead={}),
    "accuracy-cpu": Pivot("accuracy.csv", lambda r: _cpu(r) and r["architecture"] in ("", "dcgan32")),
    "accuracy-gpu": Pivot("accuracy.csv", _gpu),
    "targets": targets,
    "reproduce-fashion-mnist": Pivot("reproduce_fashion_mnist/results.csv", lambda r: r["kind"] == "measured"),
    "reproduce-digits-example": Pivot("reproduce_digits_example/results.csv", lambda r: r["kind"] == "measured"),
    "quickstart": Pivot("quickstart.csv", lambda r: r["kind"] == "measured"),
    "probe-speed-small": probe_small,
    "probe-speed-h100": Rows("probe_speed.csv", lambda r: _gpu(r) and r["case"] == "cifar10-sized", {
        "probe": lambda r: PROBES[r["probe"]], "C grid": "C_grid", "passes": "passes",
        "fit (s)": "fit_seconds", "best test accuracy (%)": "best_test_acc", "device": "device", "date": "date"}),
    "probe-speed-cpu-big": Rows("probe_speed.csv", lambda r: _cpu(r) and r["case"] == "cifar10-sized", {
        "backend": "backend", "C grid": "C_grid", "status": "status", "fit (s)": "fit_seconds", "passes": "passes",
        "peak RSS (GiB)": "peak_rss_gib", "x the float32 matrix": "rss_over_matrix", "best test accuracy (%)":
        "best_test_acc", "date": "date"}),
    "extract-speed": Rows("extract_speed.csv", lambda r: r["kind"] == "measured", {
        "source": lambda r: f"`{r['arch']}`" + (f" w{r['width']}" if r["width"] else ""), "layers, grid":
        lambda r: f"{r['layers']}, {r['grid']}x{r['grid']}", "images": "n_images", "dtype": "dtype",
        "threads": "threads", "bare forward before / after (s)": lambda r:
        f"{r['bare_forward_s_before']} / {r['bare_forward_s_after']}", "extract (s)": "extract_s",
        "extract / bare": "ratio_extract_to_bare", "device": "device", "date": "date"}),
    "op-count": Rows("op_count.csv", lambda r: True, {
        "architecture": lambda r: f"`{r['arch']}`", "D pass": "d_pass", "aten ops per step": "aten_ops",
        "convolutions": "convolutions", "torch": "torch", "commit": "commit"}),
    "kmeans-speed": Rows("kmeans_speed.csv", lambda r: True, {
        "dataset": "dataset", "images": "n_images", "K": "k", "fit (s)": "fit_s", "encode (s)": "encode_s",
        "total (s)": "total_s", "peak RSS (GiB)": "peak_rss_gib", "load": "load", "device": "device", "date": "date"}),
}


def render(name: str) -> str:
    t = TABLES[name]
    return t.render() if hasattr(t, "render") else t()


def rewrite(text: str, rendered: Callable[[str], str]) -> str:
    """``text`` with every marked table replaced by its rendering (unknown names: an error)."""
    def one(m: re.Match) -> str:
        if m[2] not in TABLES:
            raise SystemExit(f"error: no table {m[2]!r} in benchmarks/tables.py (known: {', '.join(TABLES)})")
        return m[1] + rendered(m[2]) + m[4]

    return MARK.sub(one, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a committed table is stale")
    args = ap.parse_args(argv)
    cache: dict[str, str] = {}
    stale = []
    for doc in DOCS:
        path = REPO / doc
        old = path.read_text()
        new = rewrite(old, lambda n: cache.setdefault(n, render(n)))
        if new != old:
            stale += [f"{doc}: {m[2]}" for m, k in zip(MARK.finditer(old), MARK.finditer(new)) if m[3] != k[3]]
            if not args.check:
                write_text_atomic(path, new)
    verb = "stale" if args.check else "rewrote"
    print("\n".join(f"{verb}: {s}" for s in stale) or "every table is up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
