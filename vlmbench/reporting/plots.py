"""Ablation plots: a metric against one config key, one line per combination of the other keys."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vlmbench.errors import InputError
from vlmbench.io import atomic_write


def plot_metric_vs_key(
    df: pd.DataFrame, key: str, metric: str, out_png: str | Path, other_keys: Sequence[str] | None = None
) -> Path:
    """Plot `metric` against `key` from a grid_table() frame; paper values (column `paper:<metric>`)
    are drawn as crosses. other_keys defaults to the grid's other varied keys (plus task when
    the grid holds several tasks)."""
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
        ax.plot(xs(g[key]), list(g[metric]), marker="o", label=label)
        if paper_col in g.columns and g[paper_col].notna().any():
            p = g[g[paper_col].notna()]
            ax.scatter(xs(p[key]), list(p[paper_col]), marker="x", color="black",
                       label=None if paper_drawn else "paper")
            paper_drawn = True
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    # atomic_write: temp file in the same folder, then os.replace
    return atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
