"""``report.html``: one self-contained page per run (images inline, no network, no script).

Sections: what was run (command, versions, devices, data, timings per stage), the model's
sample grid and loss curves, the results beside the paper's rows with the gap to them,
the per-block plot (when blocks were probed), and where C landed on its grid.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from pathlib import Path
from typing import Sequence

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:0.92em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.paper td{color:#555;background:#fafafa;font-style:italic}.gap{font-size:0.85em;color:#036}
.wide{overflow-x:auto;max-width:100%}table.stages td:last-child{word-break:break-all;min-width:16em}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.88em}
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;word-break:break-all}
.chosen{font-weight:bold;background:#e3f1e3}.edge{color:#b00}.muted{color:#777}
.figs{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}.figs figure{margin:0}
figcaption{font-size:0.85em;color:#555}.nowrap{white-space:nowrap}
"""


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _img(data: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{_e(alt)}"{w} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] | None = None,
           table_class: str = "") -> str:
    """Cells are HTML already (escape values with _e)."""
    out = [(f'<table class="{table_class}">' if table_class else "<table>") + "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in r) + "</tr>")
    return "\n".join(out + ["</table>"])


def _num(v, fmt: str = "{:.2f}") -> str:
    return f'<td class="num">{"-" if v in (None, "") else fmt.format(float(v))}</td>'


def _versions() -> str:
    import numpy
    import sklearn
    import torch

    from .. import __version__

    return (f"dcgan-features {__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
            f"scikit-learn {sklearn.__version__}, Python {platform.python_version()} on {platform.platform()}")


# ------------------------------------------------------------------------ sections


def _fact(v) -> str:
    if isinstance(v, dict):
        return " + ".join(f"{k} {x}" for k, x in v.items())
    return f"{v:.0f}" if isinstance(v, float) else str(v)


def _run_section(chain, stage_records: Sequence[dict]) -> str:
    cfg, m = chain.cfg, chain.model
    devices = sorted({str((r.get("info") or {}).get("device")) for r in stage_records
                      if (r.get("info") or {}).get("device")})
    rows = []
    for r in stage_records:
        info = r.get("info") or {}
        extra = ", ".join(f"{k} {_fact(v)}" for k, v in info.items()
                          if k in ("rows", "steps", "img_per_s", "images_per_s", "records", "epoch", "resumed", "threads")
                          and v is not None)
        rows.append([f"<code>{_e(r['stage'])}</code>", _e(r.get("this_run", "")), _num(r.get("seconds"), "{:.1f}"),
                     f"<td class='nowrap'>{_e(r.get('finished', ''))}</td>", _e(extra),
                     f"<code>{_e(r.get('command', ''))}</code>"])
    total = sum(float(r.get("seconds") or 0) for r in stage_records)
    rows_of = next(((r.get("info") or {}).get("rows") for r in stage_records if r["stage"] == "extract:trained"), None)
    data = ", ".join(f"{k} {v}" for k, v in rows_of.items()) if isinstance(rows_of, dict) else None
    src = chain.source
    model = (f"{_e(src.kind)}: {_e(m['arch'])} width {_e(m['width'])}, trained on <b>{_e(m['trained_on'])}</b>"
             + (f", {src.epochs} epochs, batch {src.batch_size}, seed {cfg.model_seed}" if src.kind == "train" else "")
             + (f" (<code>{_e(src.path)}</code>)" if src.path else ""))
    p = chain.protocol
    limit = ("" if getattr(cfg, "limit", None) is None else
             f"; <b>--limit {cfg.limit}</b>: the first {cfg.limit} images of each split, the training data's too")
    return f"""
<h2>What was run</h2>
<pre>{_e(cfg.command or f'dcgan-features reproduce {cfg.protocol} --out {cfg.out}')}</pre>
<table>
<tr><th>protocol</th><td>{_e(cfg.protocol)}: C chosen on {p.val_size} validation rows held out of
{_e(p.train_split)} (never test); grid {_e(', '.join(f'{c:g}' for c in chain.grid))};
{'all labels and ' if p.full else ''}{p.labels_per_class} labels per class over {p.draws} draws; probes
{_e(', '.join(cfg.probes))}; seed {p.seed if cfg.seed is None else cfg.seed}</td></tr>
<tr><th>probed data</th><td>{_e(cfg.protocol)} from {_e(cfg.data_dir or 'the default locations')}; rows
{_e(data if data is not None else '-')}, at 32x32{limit}</td></tr>
<tr><th>model</th><td>{model}</td></tr>
<tr><th>devices</th><td>{_e(', '.join(devices) or '-')} (<code>--device {_e(cfg.device)}</code>)</td></tr>
<tr><th>versions</th><td>{_e(_versions())}</td></tr>
</table>
<h3>Stages ({total:.0f} s in all)</h3>
<div class='wide'>{_table(["stage", "this run", "seconds", "finished", "facts", "equivalent command"], rows,
                          table_class="stages")}</div>
<p class="muted">A stage reused from an earlier run shows the time it took then, on the devices above.</p>
"""


def _model_section(chain) -> str:
    out = chain.out
    samples = sorted((out / "train" / "samples").glob("epoch_*.png"))
    grid = samples[-1] if samples else out / "model" / "samples.png"
    figs = []
    if grid.is_file():
        what = f"samples at {grid.stem.replace('_', ' ')} (fixed z)" if samples else "64 samples (seed 0)"
        figs.append(f"<figure>{_img(grid.read_bytes(), 'sample grid', 330)}<figcaption>{_e(what)}"
                    f"</figcaption></figure>")
    losses = out / "train" / "losses.png"
    if losses.is_file():
        figs.append(f"<figure>{_img(losses.read_bytes(), 'loss curves', 620)}<figcaption>losses and D's mean "
                    f"outputs per logged step</figcaption></figure>")
    else:
        figs.append("<p class='muted'>No loss curves: this run did not train its model.</p>")
    return f"<h2>The model</h2><div class='figs'>{''.join(figs)}</div>"


def _pivot_cell(r: dict | None, gap: float | None) -> str:
    if r is None:
        return '<td class="num">-</td>'
    c = "" if r.get("C") in (None, "") else f"<br><span class='muted'>C={float(r['C']):g}</span>"
    g = "" if gap is None else f"<br><span class='gap'>{gap:+.2f} vs paper</span>"
    return f'<td class="num">{float(r["mean"]):.2f} &plusmn; {float(r.get("ci95") or 0):.2f}{c}{g}</td>'


def _results_section(chain, rows: Sequence[dict]) -> str:
    """The terminal's pivot (feature set x probe x column), the paper's DCGAN row where it is the same
    column, its figures for other columns apart, and the paper's other rows in a table of their own."""
    from .paper import PAPER_LABELS, PM_DEFINITION
    from .pivot import OURS_PM, PAPER_ROW, pivot

    p = pivot(rows, chain.cfg.protocol)
    head = ["features", *[f"{_e(probe)}<br>{_e(col)}" for probe, col in p.columns], "dim"]
    body, classes = [], []
    for name in p.rows:
        body.append([_e(name), *[_pivot_cell(p.cells.get((name, probe, col)), p.gap(name, probe, col))
                                 for probe, col in p.columns], _e(p.dims[name])])
        classes.append("")
    if p.paper:
        body.append([_e(PAPER_ROW), *[(_num(p.paper[c][0]) if p.paper[c][1] is None else
                                       f'<td class="num">{p.paper[c][0]:.2f} &plusmn; {p.paper[c][1]:.2f}</td>')
                                      if c in p.paper else '<td class="num"></td>' for c in p.columns], ""])
        classes.append("paper")
    apart = "".join(f"<li>{_e(proto)}: {value:.2f}" + ("" if pm is None else f" &plusmn; {pm:.2f}")
                    + f" (DCGAN + L2-SVM, {_e(PAPER_LABELS.get(proto, '?'))} labels): not this run's column, "
                      "so no gap is computed</li>" for proto, value, pm in p.apart)
    others = [r for r in rows if str(r["features"]).startswith("paper:")
              and not (r["probe"] == "svm" and "DCGAN" in str(r["features"]))]
    other_table = ("" if not others else "<h3>The paper's other rows (quoted)</h3>" + _table(
        ["method (the paper's table)", "column", "labels", "paper"],
        [[_e(r["features"].split(": ", 1)[1]), _e(r["protocol"]), _e(r.get("n_labels")), _num(r["paper_value"])]
         for r in others], ["paper"] * len(others)))
    notes = [f"Cells: mean &plusmn; {OURS_PM}; the C chosen on validation rows."]
    if p.paper:
        notes.append("The italic row is the paper's DCGAN + L2-SVM figure (Radford, Metz &amp; Chintala 2015), "
                     "quoted, in a column only where ours is the same column with the same number of labels; "
                     "the gap (ours - paper) is under the trained D's cell there.")
    from .paper import departures

    trained_on = (getattr(chain, "model", None) or {}).get("trained_on")
    notes += [_e(s) for s in departures(chain.cfg.protocol, trained_on)]
    if p.paper or p.apart:
        notes.append(_e(PM_DEFINITION[0].upper() + PM_DEFINITION[1:]) + ".")
    else:
        notes.append("No paper figures: the paper reports none for this protocol.")
    return (f"<h2>Results: test {_e(p.metric)} (%)</h2><div class='wide'>"
            + _table(head, body, classes) + "</div>"
            + (f"<p>The paper's figures for columns this run did not measure:</p><ul>{apart}</ul>" if apart else "")
            + "".join(f"<p class='muted'>{n}</p>" for n in notes) + other_table
            + "<p class='muted'>Every record, with its settings, is a row of <code>results.csv</code> beside this "
              "file.</p>")


def _blocks_plot(rows: Sequence[dict]) -> bytes | None:
    blocks = [r for r in rows if r["features"] == "trained D" and "+" not in str(r.get("layers"))]
    if not blocks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(dict.fromkeys(r["protocol"] for r in blocks))
    fig, axes = plt.subplots(1, len(columns), figsize=(5.2 * len(columns), 3.6), squeeze=False)
    for ax, col in zip(axes[0], columns):
        for probe, style in (("svm", "-o"), ("logreg", "--s"), ("knn", ":^")):
            pr = [r for r in blocks if r["probe"] == probe and r["protocol"] == col]
            if not pr:
                continue
            line, = ax.plot([r["layers"] for r in pr], [float(r["mean"]) for r in pr], style, label=f"{probe}: one block")
            for feat, ls in (("trained D", "-"), ("random D", ":"), ("pixels", "-.")):
                ref = [r for r in rows if r["features"] == feat and r["probe"] == probe and r["protocol"] == col
                       and (feat != "trained D" or "+" in str(r.get("layers")))]
                if ref:
                    ax.axhline(float(ref[0]["mean"]), color=line.get_color(), ls=ls, lw=1,
                               label=f"{probe}: {'all blocks' if feat == 'trained D' else feat}")
        ax.set_title(col)
        ax.set_xlabel("D block (4x4 max-pooled)")
        ax.set_ylabel(f"test {blocks[0]['metric']} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _c_section(chain, rows: Sequence[dict]) -> str:
    fitted = [r for r in rows if not str(r["features"]).startswith("paper:") and r.get("val_scores")]
    if not fitted:
        return ""
    grid = sorted(dict.fromkeys(c for r in fitted for c in r["val_scores"]), key=float)  # numeric, not as widened
    body = []
    for r in fitted:
        chosen = f"{float(r['C']):g}" if r.get("C") not in (None, "") else None
        keys = sorted(r["val_scores"], key=float)
        edge = chosen is not None and len(keys) > 1 and chosen in (keys[0], keys[-1])
        cells = []
        for c in grid:
            v = r["val_scores"].get(c)
            cls = "num chosen" if c == chosen else "num"
            cells.append(f'<td class="{cls}">{"" if v is None else f"{float(v):.2f}"}</td>')
        flag = f"{chosen} " + ("<span class='edge'>(at the edge)</span>" if edge or r.get("c_at_edge") else "(inside)")
        body.append([_e(r["features"]), _e(r.get("layers")), _e(r["protocol"]), _e(r["probe"]), *cells, flag])
    return ("<h2>Where C landed</h2><p>Mean validation score per C of the grid (validation rows only); the chosen "
            "C is highlighted. A C at the first or last value of the grid means the optimum may lie outside it.</p>"
            + "<div class='wide'>" + _table(["features", "blocks", "column", "probe", *[f"C={c}" for c in grid],
                                            "chosen C"], body) + "</div>")


def _look_section(chain) -> str:
    """``reproduce --look``: each look stage's picture with a one-line reading of its numbers."""
    from .look_report import look_parts

    parts = look_parts(chain.out)
    if not parts:
        return ""
    body = "".join(f"<h3>{_e(title)}</h3><p>{_e(reading)}</p>{_img(png, title, 1000)}" for title, reading, png in parts)
    return "<h2>Inside the networks</h2>" + body


def render(chain, stage_records: Sequence[dict], rows: Sequence[dict]) -> str:
    plot = _blocks_plot(rows)
    blocks = (f"<h2>Per block</h2><p>Each block of the trained D probed alone, against all blocks and the "
              f"baselines.</p>{_img(plot, 'per-block plot', 900)}" if plot else "")
    title = f"dcgan-features reproduce {chain.cfg.protocol}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="muted">Linear probes on the frozen features of a DCGAN discriminator (Radford, Metz &amp; Chintala 2015),
against a random D of the same architecture and the raw pixels. Written by <code>dcgan-features reproduce</code>.</p>
{_results_section(chain, rows)}
{_model_section(chain)}
{blocks}
{_look_section(chain)}
{_c_section(chain, rows)}
{_run_section(chain, stage_records)}
{_gpu_section()}
</body></html>
"""


def _gpu_section() -> str:
    """Which GPU paths a row of results/ shows running (train.config.GPU_VERIFIED)."""
    from ..train.config import GPU_VERIFIED

    return ("<h2>GPU paths verified</h2><p>Which training paths on a GPU a row of the project's "
            "<code>results/</code> shows running; a path without a row has only run on the CPU.</p>"
            + _table(["GPU path", "results row"], [[_e(p), _e(r)] for p, r in GPU_VERIFIED]))


def write_report(chain, stage_records: Sequence[dict], rows: Sequence[dict]) -> Path:
    """``<out>/report.html`` from the stage records and the results rows (ours, then the paper's)."""
    from ..core.atomic import write_text_atomic

    path = chain.out / "report.html"
    write_text_atomic(path, render(chain, stage_records, rows))
    return path
