"""Ablation plots: a metric against one config key, one line per combination of the other keys."""

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
    """Plot `metric` against `key` from a grid_table() frame (mean over seeds, with ±std error bars when the
    grid has `<metric>:std`); paper values (column `paper:<metric>`, Tables 8/9) are drawn as black crosses.
    other_keys defaults to the grid's other varied keys (plus task when the grid holds several tasks).
    Writes the PNG and an SVG beside it; returns the PNG's path."""
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

    # Figure + Agg canvas directly: no pyplot, so no global backend switch for the caller.
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    groups = data.groupby(list(other_keys), sort=False, dropna=False) if other_keys else [((), data)]
    paper_col, paper_drawn = f"paper:{metric}", False
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
        ax.errorbar(xs(g[key]), list(g[metric]), yerr=yerr, marker="o", capsize=3, label=label + what)
        if paper_col in g.columns and g[paper_col].notna().any():
            p = g[g[paper_col].notna()]
            ax.scatter(
                xs(p[key]),
                list(p[paper_col]),
                marker="x",
                color="black",
                label=None if paper_drawn else "paper (Tables 8/9)",
            )
            paper_drawn = True
    if numeric:  # ticks at the grid's values, not matplotlib's round numbers
        values = sorted(set(data[key].astype(float)))
        ax.set_xticks(values, [f"{v:g}" for v in values])
    else:
        ax.set_xticks(range(len(categories)), categories)
    tasks = ", ".join(dict.fromkeys(data["task"])) if "task" in data.columns else ""
    ax.set_title(f"{metric} vs {key}" + (f" — {tasks}" if tasks else ""), fontsize="medium")
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
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} ({unit(metric)})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    # atomic_write: temp file in the same folder, then os.replace
    out_png = Path(out_png)
    atomic_write(out_png.with_suffix(".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
    return atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
