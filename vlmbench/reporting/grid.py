"""An ablation folder as tables and plots: grid.md and grid.csv (one row per task and cell, the paper's Tables
8 and 9 beside it) and one plot per headline metric and varied key. Reads the cells' result files only."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vlmbench import registry
from vlmbench.ablate import AblationRun, Cell, collect
from vlmbench.io import write_text
from vlmbench.reporting.plots import plot_metric_vs_key
from vlmbench.reporting.tables import SMOKE_NOTE, TOY_NOTE, grid_table, grid_tables, with_footers


@dataclass
class AblationSummary:
    cells: list[Cell]
    ran: list[str]  # cell hashes this call ran (the others were done already or ran elsewhere)
    grid: pd.DataFrame
    terminal: str  # the grid as plain-text tables (one per task)
    markdown: str
    files: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)


def _headline(grid: pd.DataFrame, task: str) -> list[str]:
    return [m for m in registry.get(task).metrics if m in grid.columns]


def render_grid(
    grid: pd.DataFrame, varied: Sequence[str], toy: bool, fmt: str, ci: bool = False, preset: str | None = None
) -> str:
    """The grid as terminal text or markdown, through the one table renderer. A toy-world (or smoke) grid is
    labelled in every row and the paper's matching rows are a table of their own; a smoke grid says once that
    it is a plumbing check."""
    world = "smoke" if preset == "smoke" else "toy" if toy else ""
    headline = {t: _headline(grid, t) for t in grid["task"].unique()} if len(grid) else {}
    tables = grid_tables(grid, varied, headline, ci=ci, compact=fmt == "terminal", world=world)
    notes = ([f"ablation grid: {TOY_NOTE}"] if toy else []) + ([SMOKE_NOTE] if world == "smoke" else [])
    sigs = grid.attrs.get("signatures", {})
    footers = [sigs.get(t.title, []) for t in tables]  # the protocol signatures under each task's table
    if fmt == "terminal":
        return with_footers(tables, footers, "terminal", heading="\n".join(notes))
    return with_footers(
        tables, footers, "markdown", heading="## vlmbench ablation" + "".join(f"\n\n> {n}" for n in notes)
    )


def plot_name(metric: str, key: str) -> str:
    """The metric's and key's own names (`R@1-vs-mmm.png`); only characters a file name cannot hold change."""
    safe = lambda s: re.sub(r"[^A-Za-z0-9@._=+-]+", "_", s)  # noqa: E731
    return f"{safe(metric)}-vs-{safe(key)}.png"


def summarise(run: AblationRun) -> AblationSummary:
    """Every cell's results as grid.md / grid.csv in the ablation folder, and the plots under plots/."""
    out, cells, varied, ran = run.out, run.cells, run.varied, run.ran
    results = collect(out, cells)
    grid = grid_table(results, varied)
    if len(grid) == len(results):  # one result per (task, cell): name each row's cell folder
        grid.insert(0, "cell", [r.config.get("ablation_cell", "") for r in results])
    toy = any(r.toy for r in results)
    preset = cells[0].config["preset"] if cells else None
    terminal = render_grid(grid, varied, toy, "terminal", preset=preset)
    markdown = render_grid(grid, varied, toy, "markdown", ci=True, preset=preset)
    files = {
        "grid.md": write_text(out / "grid.md", markdown),
        "grid.csv": write_text(out / "grid.csv", grid.to_csv(index=False)),
    }
    plots = []
    metrics = list(dict.fromkeys(m for t in grid["task"].unique() for m in _headline(grid, t))) if len(grid) else []
    for key in (k for k in varied if grid[k].nunique() > 1):  # a key held at one value is no axis
        for metric in metrics:
            if grid[metric].notna().any():
                plots.append(
                    plot_metric_vs_key(
                        grid,
                        key,
                        metric,
                        out / "plots" / plot_name(metric, key),
                        preset=preset,
                        toy=toy,
                    )
                )
    return AblationSummary(cells, ran, grid, terminal, markdown, files, plots)
