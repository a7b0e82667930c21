"""The HTML report's pictures, drawn from what each run saved beside its result.json (never recomputed):

    task vs paper     per task, each headline metric: the paper's rows, and ours with its 95% interval; our
                      toy-world (or smoke) rows on an axis of their own below, never on the paper's
    recall@k          retrieval: R@k against k for both directions, from the ranks in predictions.npz (or the
                      R@1/5/10 in result.json when the predictions were not kept)
    class accuracy    COIN: accuracy per step class (class_accuracy.csv), sorted, background marked
    per-task recall   CrossTask: recall per primary task (result.json's recall/<task> and their intervals)
    captions          YouCook2: the best and the worst captions with their references (captions.csv); a table,
                      not a figure

Each figure is titled, its axes labelled with units, and it names the checkpoint it shows (a footer line).
Figures are matplotlib Figures on the Agg canvas (no pyplot, no global state); `png_uri` embeds one.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vlmbench import registry
from vlmbench.errors import InputError
from vlmbench.records.predictions import PREDICTIONS, load_predictions
from vlmbench.records.result import Result
from vlmbench.reporting.plots import unit
from vlmbench.reporting.render import RANK_METRICS
from vlmbench.reporting.tables import Section, world, world_title

CLASS_ACCURACY = "class_accuracy.csv"  # written by the segmentation and localization adapters
CAPTIONS = "captions.csv"  # written by the captioning adapter: worst first by per-clip CIDEr-D
MAX_PANELS = 5  # headline metrics drawn beside the paper per task
N_CAPTIONS = 5  # best and worst captions shown
OURS, PAPER, FLOOR = "#0b5cad", "#6e7781", "#bf8700"


@dataclass
class Picture:
    """One figure of the report: what it shows (title), a caption naming the run and checkpoint, the image."""

    title: str
    caption: str
    uri: str  # data:image/png;base64,...
    wide: bool = False  # spans the page's width


def checkpoint_of(r: Result) -> str:
    """The checkpoint a result was computed from, as a reader should see it named."""
    if r.baseline:
        return f"no model (floor baseline: {r.baseline})"
    if r.family == "pretrain":
        return f"pre-training from backbone {r.config.get('backbone', '?')} (writes the checkpoint)"
    ckpt = r.config.get("checkpoint") or r.model.get("weights")
    text = str(ckpt) if ckpt else f"no pre-trained checkpoint (backbone {r.config.get('backbone', '?')})"
    source = r.config.get("checkpoint_source") or r.model.get("source")
    return f"{text} ({source})" if source else text


def footer(results: Sequence[Result]) -> str:
    """'checkpoint: …; model …; preset …; toy world: …' for the runs a figure draws (floors left out)."""
    ours = [r for r in results if not r.baseline] or list(results)
    ckpts = list(dict.fromkeys(checkpoint_of(r) for r in ours))
    parts = [("checkpoint: " if len(ckpts) == 1 else "checkpoints: ") + ", ".join(ckpts)]
    models = list(dict.fromkeys(str(r.model["name"]) for r in ours if r.model.get("name")))
    parts += [f"model {', '.join(models)}"] if models else []
    presets = list(dict.fromkeys(str(r.preset) for r in ours if r.preset))
    parts += [f"preset {', '.join(presets)}"] if presets else []
    parts += list(dict.fromkeys(world_title(w, r.toy) for r in ours if (w := world(r))))
    return "; ".join(parts)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: no global backend switch for the caller
    return fig


def _finish(fig: Figure, title: str, foot: str) -> Figure:
    """The figure's title (top left) and its footer naming the checkpoint (bottom left, wrapped to the width);
    the constrained layout makes room for both."""
    fig.suptitle(title, fontsize="large", x=0.01, ha="left")
    lines = textwrap.wrap(foot, int(fig.get_figwidth() * 15)) or [""]
    fig.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize="small", color="#444")
    return fig


def png_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _wrap(label: str, width: int = 30) -> str:
    return "\n".join(textwrap.wrap(str(label), width)[:3]) or str(label)


def _fmt(metric: str, v: float) -> str:
    from vlmbench.reporting.render import format_value

    return format_value(metric, v)


# ---- per task: our values beside the paper's rows --------------------------------------------------------------


def paper_figure(task: str, secs: Sequence[Section], results: Sequence[Result]) -> Figure | None:
    """Per headline metric (the task's own, those the paper reports) a panel of the paper's rows with our
    comparable rows among them (value and 95% interval), and a row of panels below for each world (toy, smoke):
    our rows and their floors on an axis of their own. None when the paper has no row for the task."""
    paper = next((s for s in secs if not s.world), None)
    if paper is None or not (paper.rows["kind"] == "paper").any():
        return None
    try:
        headline = list(registry.get(task).metrics)
    except InputError:
        headline = []
    prows = paper.rows[paper.rows["kind"] == "paper"]
    metrics = [m for m in headline if m in prows.columns and prows[m].notna().any()][:MAX_PANELS]
    if not metrics:
        return None
    blocks = [(s, s.rows) for s in secs if s.world or not s.rows.empty]
    sizes = [max(1, len(rows)) for _, rows in blocks]
    fig = _figure(2.6 + 2.9 * len(metrics), 1.2 + sum(0.36 * n + 1.1 for n in sizes))
    grid = fig.add_gridspec(len(blocks), len(metrics), height_ratios=[n + 3 for n in sizes])
    for i, (sec, rows) in enumerate(blocks):
        for j, m in enumerate(metrics):
            ax = fig.add_subplot(grid[i, j])
            _dot_panel(ax, sec, rows, m, first=j == 0)
    tables = sorted({int(s.split()[2].rstrip(",")) for s in prows["source"] if str(s).startswith("paper Table")})
    where = f"paper Table {', '.join(map(str, tables))}" if tables else "the paper"
    return _finish(fig, f"{task}: our results beside {where}", footer(results))


def _dot_panel(ax: Any, sec: Section, rows: pd.DataFrame, m: str, first: bool) -> None:
    """One metric of one table: a dot per row (its value written beside it), a bar for its interval."""
    labels = [str(lab) for lab in rows["label"]]
    y = np.arange(len(rows))[::-1]  # every row of the table on every panel, so the labels of the first hold
    shown = rows[rows[m].notna()] if m in rows.columns else rows.iloc[0:0]
    for yi, (_, row) in zip(y, rows.iterrows()):
        if m not in rows.columns or pd.isna(row[m]):
            continue
        colour = {"paper": PAPER, "floor": FLOOR}.get(row["kind"], OURS)
        lo, hi = row.get(f"{m}:lo"), row.get(f"{m}:hi")
        v = float(row[m])
        if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
            ax.errorbar([v], [yi], xerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], fmt="none", ecolor=colour, capsize=3)
        marker = "D" if row["kind"] == "ours" else "o"
        ax.plot([v], [yi], marker=marker, color=colour, markersize=6 if marker == "D" else 5, linestyle="none")
        ax.annotate(_fmt(m, v), (v, yi), xytext=(4, 4), textcoords="offset points", fontsize="x-small", color=colour)
    ax.set_yticks(y, [_wrap(lab) for lab in labels] if first else [""] * len(labels), fontsize="small")
    ax.set_ylim(-0.8, max(len(rows), 1) - 0.2)
    ax.set_xlabel(f"{m} ({unit(m)})", fontsize="small")
    ax.grid(True, axis="x", alpha=0.3)
    if len(shown):
        values = [float(x) for c in (m, f"{m}:lo", f"{m}:hi") if c in shown.columns for x in shown[c].dropna()]
        lo, hi = min(values), max(values)
        pad = max(1e-3, 0.12 * (hi - lo) or 0.1 * abs(hi) or 1.0)
        ax.set_xlim(lo - pad * 0.3, hi + pad)
    if sec.world:
        ax.set_title(
            f"{m}: {sec.world} world (own axis)" if sec.world == "toy" else f"{m}: smoke run (own axis)",
            fontsize="medium",
            color="#9a6700",
        )
    else:
        ax.set_title(
            f"{m}: the paper's rows" + (" and ours" if (rows["kind"] == "ours").any() else ""), fontsize="medium"
        )
    if m in RANK_METRICS:
        ax.invert_xaxis()  # better to the right, as for the percentages


# ---- retrieval: recall@k ---------------------------------------------------------------------------------------


def retrieval_ranks(r: Result) -> dict[str, np.ndarray] | None:
    """The per-query 1-based ranks of both directions from the run's predictions.npz (ties pessimistic), or
    None when the run did not keep its predictions."""
    if r.path is None or not (r.path.parent / PREDICTIONS).is_file():
        return None
    _, _, preds = load_predictions(r.path.parent / PREDICTIONS)
    out = {}
    for name, keys in (("text→video", ("example:rank", "t2v_ge")), ("video→text", ("example:v2t_rank", "v2t_ge"))):
        key = next((k for k in keys if k in preds), None)
        if key is not None:
            out[name] = np.asarray(preds[key], dtype=np.int64)
    return out or None


def recall_figure(task: str, results: Sequence[Result], paper_vlm: dict[str, float] | None = None) -> Figure | None:
    """R@k against k (log scale) for each run of a retrieval task, text→video solid and video→text dashed, with
    R@1/5/10's 95% intervals; the paper's VLM R@1/5/10 on the same axis only when every run is comparable
    (real data), else a separate note that the toy curves stand on their own axis."""
    runs = [r for r in results if r.task == task and {"R@1", "R@5", "R@10"} & set(r.metrics)]
    if not runs:
        return None
    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    n_max = 10
    for i, r in enumerate(runs[:6]):
        colour = FLOOR if r.baseline else f"C{i}"
        name = r.baseline and f"floor: {r.baseline}" or (r.config.get("name") or r.config.get("run_name") or task)
        name = f"{name} ({world(r)})" if world(r) else name
        ranks = retrieval_ranks(r)
        for (direction, prefix), style in zip((("text→video", ""), ("video→text", "v2t_")), ("-", "--")):
            if ranks and direction in ranks:
                rk = ranks[direction]
                k = np.arange(1, len(rk) + 1)
                recall = 100 * np.searchsorted(np.sort(rk), k, side="right") / len(rk)
                ax.plot(k, recall, style, color=colour, label=f"{name}, {direction} (N={len(rk)})")
                n_max = max(n_max, len(rk))
            ks = [k for k in (1, 5, 10) if f"{prefix}R@{k}" in r.metrics]
            vals = [r.metrics[f"{prefix}R@{k}"] for k in ks]
            if not ks:
                continue
            lohi = [r.intervals.get(f"{prefix}R@{k}") for k in ks]
            err = None
            if all(b is not None and not any(math.isnan(x) for x in b) for b in lohi):
                err = [
                    [max(0.0, v - b[0]) for v, b in zip(vals, lohi)],
                    [max(0.0, b[1] - v) for v, b in zip(vals, lohi)],
                ]
            ax.errorbar(
                ks,
                vals,
                yerr=err,
                fmt="o" if ranks else "o" + style,
                color=colour,
                capsize=3,
                markersize=4,
                label=None if ranks else f"{name}, {direction} (R@1/5/10 of result.json)",
            )
    comparable = all(not world(r) for r in runs)
    if paper_vlm and comparable:
        ks = [k for k in (1, 5, 10) if f"R@{k}" in paper_vlm]
        ax.plot(ks, [paper_vlm[f"R@{k}"] for k in ks], "x", color="black", markersize=8, label="paper: VLM, text→video")
    ax.set_xscale("log")
    ticks = [k for k in (1, 5, 10, 50, 100, 500, 1000, 5000) if k <= n_max]
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.set_xlim(0.9, n_max * 1.05)
    ax.set_ylim(0, 102)
    ax.set_xlabel("k (rank cut-off, log scale)")
    ax.set_ylabel("recall@k (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", loc="lower right")
    title = f"{task}: recall@k, both directions"
    if not comparable:
        title += "\n(toy world: own axis, the paper's values are not drawn)"
    return _finish(fig, title, footer(runs))


# ---- COIN: accuracy per step class -----------------------------------------------------------------------------


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read: {e}", path=path) from None


def class_accuracy_figure(r: Result) -> Figure | None:
    """COIN: accuracy per step class from the run's class_accuracy.csv, sorted, the background class in grey,
    the run's frame accuracy (with and without background) as lines."""
    if r.path is None or not (r.path.parent / CLASS_ACCURACY).is_file():
        return None
    rows = [x for x in read_csv_rows(r.path.parent / CLASS_ACCURACY) if x.get("class") not in (None, "")]
    try:
        rows = sorted(rows, key=lambda x: -float(x["accuracy"]))
        acc = [float(x["accuracy"]) for x in rows]
    except (KeyError, ValueError):
        return None  # a CrossTask step table, or a file this report does not know
    if not rows:
        return None
    fig = _figure(min(14.0, 4.0 + 0.16 * len(rows)), 4.6)
    ax = fig.add_subplot()
    colours = [PAPER if x.get("note") == "background" else OURS for x in rows]
    ax.bar(np.arange(len(rows)), acc, color=colours, width=0.8)
    for name, style in (("frame_acc", "-"), ("frame_acc_nobg", "--")):
        if name in r.metrics:
            ax.axhline(
                r.metrics[name],
                color="black",
                linestyle=style,
                linewidth=1,
                label=f"{name} {_fmt(name, r.metrics[name])}",
            )
    if len(rows) <= 60:
        ax.set_xticks(np.arange(len(rows)), [x["class"] for x in rows], rotation=90, fontsize="x-small")
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"step class (COIN id), {len(rows)} classes sorted by accuracy; grey: background")
    ax.set_ylabel("frame accuracy of the class (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    return _finish(fig, f"{r.task}: accuracy per step class", footer([r]))


# ---- CrossTask: recall per task --------------------------------------------------------------------------------


def crosstask_figure(r: Result) -> Figure | None:
    """CrossTask: recall per primary task (result.json's recall/<task>) with its 95% interval; the average as a
    line."""
    per = {m.split("/", 1)[1]: v for m, v in r.metrics.items() if m.startswith("recall/")}
    if not per:
        return None
    names = list(per)
    vals = [per[n] for n in names]
    bounds = [r.intervals.get(f"recall/{n}") for n in names]
    fig = _figure(min(14.0, 3.5 + 0.45 * len(names)), 4.4)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    err = None
    if all(b is not None and not any(math.isnan(v) for v in b) for b in bounds):
        err = [[max(0.0, v - b[0]) for v, b in zip(vals, bounds)], [max(0.0, b[1] - v) for v, b in zip(vals, bounds)]]
    ax.bar(x, vals, color=OURS, yerr=err, capsize=3, width=0.7, label="recall per task (95% interval)")
    if "recall" in r.metrics:
        ax.axhline(
            r.metrics["recall"], color="black", linewidth=1, label=f"average {_fmt('recall', r.metrics['recall'])}"
        )
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0, fontsize="small")
    ax.set_xlabel("CrossTask task id")
    ax.set_ylabel("step recall (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    return _finish(fig, f"{r.task}: recall per task", footer([r]))


# ---- captions --------------------------------------------------------------------------------------------------


def best_and_worst_captions(r: Result, n: int = N_CAPTIONS) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(best, worst) rows of the run's captions.csv (clip_id, hypothesis, reference, cider), best first and
    worst first; empty when the run wrote none."""
    if r.path is None or not (r.path.parent / CAPTIONS).is_file():
        return [], []
    rows = read_csv_rows(r.path.parent / CAPTIONS)

    def score(row: dict[str, str]) -> float:
        try:
            return float(row.get("cider", "nan"))
        except ValueError:
            return float("nan")

    ranked = sorted((x for x in rows if not math.isnan(score(x))), key=score)
    best = min(n, (len(ranked) + 1) // 2)  # a short file: each caption in one list only
    return list(reversed(ranked[len(ranked) - best :])), ranked[: min(n, len(ranked) - best)]
