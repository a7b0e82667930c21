"""Ablation plots: a metric against one config key, one line per combination of the other keys.

Toy-world results are never drawn on the paper's axis: when the grid is toy (or smoke) and the paper has values
for its settings, they are drawn in a panel of their own beside ours, each panel with its own y-axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vlmbench.errors import InputError
from vlmbench.io import atomic_write
from vlmbench.reporting.render import RANK_METRICS


def unit(metric: str) -> str:
    """The axis unit of a metric as vlmbench reports it."""
    base = metric.split("/")[0]
    if base in RANK_METRICS:
        return "rank (lower is better)"
    if base == "CIDEr":
        return "CIDEr-D, raw (paper scale)"
    return "%"


def plot_metric_vs_key(
    df: pd.DataFrame,
    key: str,
    metric: str,
    out_png: str | Path,
    other_keys: Sequence[str] | None = None,
    preset: str | None = None,
    toy: bool = False,
) -> Path:
    """Plot `metric` against `key` from a grid_table() frame (see `ablation_figure`). Writes the PNG and an SVG
    beside it; returns the PNG's path."""
    fig = ablation_figure(df, key, metric, other_keys, preset, toy)
    # atomic_write: temp file in the same folder, then os.replace
    out_png = Path(out_png)
    atomic_write(out_png.with_suffix(".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
    return atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))


def ablation_figure(
    df: pd.DataFrame,
    key: str,
    metric: str,
    other_keys: Sequence[str] | None = None,
    preset: str | None = None,
    toy: bool = False,
) -> Figure:
    """`metric` against `key` (mean over seeds, with ±std error bars when the grid has `<metric>:std`, else each
    run's 95% interval); the paper's values (column `paper:<metric>`, Tables 8/9) as black crosses: on the same
    axis for real data, in a panel of their own (own y-axis) for a toy or smoke grid. other_keys defaults to the
    grid's other varied keys (plus task when the grid holds several tasks)."""
    for col in (key, metric):
        if col not in df.columns:
            raise InputError(f"no column {col!r} in the grid (columns: {', '.join(map(str, df.columns))})")
    if other_keys is None:
        other_keys = [k for k in df.attrs.get("varied_keys", []) if k != key]
        if "task" in df.columns and df["task"].nunique() > 1:
            other_keys = ["task", *other_keys]
    data = df[df[metric].notna()]
    if data.empty:
        raise InputError(f"no values of {metric!r} to plot")

    numeric = pd.to_numeric(data[key], errors="coerce").notna().all()
    categories = list(dict.fromkeys(data[key].astype(str)))  # categorical x keeps first-seen order

    def xs(values: pd.Series) -> list[float]:
        return list(values.astype(float)) if numeric else [categories.index(str(v)) for v in values]

    paper_col = f"paper:{metric}"
    has_paper = paper_col in data.columns and data[paper_col].notna().any()
    apart = toy and has_paper  # toy results never share the paper's axis
    # Figure + Agg canvas directly: no pyplot, so no global backend switch for the caller.
    fig = Figure(figsize=(10, 4) if apart else (6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1) if apart else fig.add_subplot()
    pax = fig.add_subplot(1, 2, 2) if apart else ax
    groups = data.groupby(list(other_keys), sort=False, dropna=False) if other_keys else [((), data)]
    paper_drawn = False
    for values, g in groups:
        g = g.sort_values(key, key=lambda s: s.astype(float) if numeric else s.astype(str).map(categories.index))
        values = values if isinstance(values, tuple) else (values,)
        label = ", ".join(f"{k}={v}" for k, v in zip(other_keys, values)) or metric
        std = g[f"{metric}:std"].fillna(0).tolist() if f"{metric}:std" in g.columns else None
        yerr, what = (std, " (mean ± std over seeds)") if std and any(std) else (None, "")
        if yerr is None and f"{metric}:lo" in g.columns and g[f"{metric}:lo"].notna().all():
            y = g[metric].to_numpy(float)  # one run per point: its 95% bootstrap interval
            yerr = [
                np.clip(y - g[f"{metric}:lo"].to_numpy(float), 0, None),
                np.clip(g[f"{metric}:hi"].to_numpy(float) - y, 0, None),
            ]
            what = " (95% bootstrap CI)"
        ax.errorbar(
            xs(g[key]), list(g[metric]), yerr=yerr, marker="o", capsize=3, label=("toy: " if toy else "") + label + what
        )
        if has_paper and g[paper_col].notna().any():
            p = g[g[paper_col].notna()]
            pax.scatter(
                xs(p[key]),
                list(p[paper_col]),
                marker="x",
                color="black",
                label=None if paper_drawn else "paper (Tables 8/9)",
            )
            paper_drawn = True
    for a in dict.fromkeys([ax, pax]):
        if numeric:  # ticks at the grid's values, not matplotlib's round numbers
            values = sorted(set(data[key].astype(float)))
            a.set_xticks(values, [f"{v:g}" for v in values])
        else:
            a.set_xticks(range(len(categories)), categories)
        a.set_xlabel(key)
        a.set_ylabel(f"{metric} ({unit(metric)})")
        a.grid(True, alpha=0.3)
        a.legend(fontsize="small")
    tasks = ", ".join(dict.fromkeys(data["task"])) if "task" in data.columns else ""
    title = f"{metric} vs {key}" + (f" — {tasks}" if tasks else "")
    if apart:
        ax.set_title(f"{title}\n{'smoke run' if preset == 'smoke' else 'toy world'} (own axis)", fontsize="medium")
        pax.set_title("paper, Tables 8/9 (real data, own axis)", fontsize="medium")
    else:
        ax.set_title(title, fontsize="medium")
    stamp = " · ".join(
        x
        for x in (
            f"preset {preset}" if preset else "",
            "toy world: not comparable with published numbers" if toy else "",
        )
        if x
    )
    if stamp:
        fig.text(0.99, 0.01, stamp, ha="right", va="bottom", fontsize="x-small", color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig
