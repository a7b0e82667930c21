"""The one table renderer: every table vlmbench prints or writes (report, ablate, compare, suite, run) goes
through here, so a new column (an interval, a paper value) is one change.

A table is a pandas frame of raw values plus which columns are metrics; `cells()` formats it (each metric in
its own format, optionally `value ± half-width`), `terminal()` draws it with rich at the terminal's width
(no fixed width: rich wraps or folds cells to fit), `markdown()` writes compact GitHub pipe tables, `csv()`
writes the raw numbers (never the formatted strings, so both interval bounds survive).
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

RANK_METRICS = frozenset({"MedR", "MeanR", "v2t_MedR", "v2t_MeanR"})
RAW_SCALE = frozenset({"CIDEr"})  # reported on the paper's 0-10 scale, 4 decimals (1.3869)
# Output piped to a file or another program has no terminal to fit: tables keep their natural width there
# (never wrapped mid-label); set $COLUMNS to wrap them anyway.
FALLBACK_WIDTH = 1000


def digits(metric: str) -> int:
    """Decimals of a metric, as the paper prints it: CIDEr 4, ranks 1, percent metrics 2.

    Losses and other non-percent quantities fall back to 2 as well: never scientific notation."""
    base = metric.split("/")[0].split(":")[-1].strip()  # 'recall/<task>', 'paper:R@1', 'delta CIDEr'
    base = base.split()[-1] if base else base
    return 4 if base in RAW_SCALE else 1 if base in RANK_METRICS else 2


def format_value(metric: str, value: Any, signed: bool = False) -> str:
    """A metric value in the metric's own fixed-point format; '-' for a missing value."""
    if value is None or isinstance(value, str):
        return "-" if value in (None, "") else value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "-"
    return f"{v:{'+' if signed else ''}.{digits(metric)}f}"


def format_interval(metric: str, value: Any, lo: Any, hi: Any, signed: bool = False) -> str:
    """'value ± half-width' (the larger half when the interval is not symmetric); the value alone when no
    interval is known."""
    text = format_value(metric, value, signed=signed)
    if text == "-" or lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return text
    half = max(float(hi) - float(value), float(value) - float(lo), 0.0)
    return f"{text} ± {half:.{digits(metric)}f}"


def terminal_width() -> int:
    """The user's terminal (or $COLUMNS); FALLBACK_WIDTH (no wrapping) when stdout is not a terminal."""
    return shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns


@dataclass
class Table:
    """Formatted cells (strings) with the columns to right-justify, a title and an optional note line."""

    frame: pd.DataFrame
    title: str = ""
    note: str = ""
    numeric: Sequence[str] = field(default_factory=tuple)


def cells(
    df: pd.DataFrame,
    metrics: Iterable[str],
    *,
    ci: bool = False,
    signed: Iterable[str] = (),
    metric_of: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Format a frame of raw values: metric columns in their own format (with `value ± half-width` from the
    `<metric>:lo` / `<metric>:hi` columns when ci), other columns as text, missing as '-'.

    metric_of maps a column to the metric whose format it takes (e.g. 'paper R@1' -> 'R@1')."""
    metrics, signed, metric_of = list(metrics), set(signed), metric_of or {}
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        if col in metrics:
            fmt_as = metric_of.get(col, col)
            if ci and f"{col}:lo" in df.columns:
                out[col] = [
                    format_interval(fmt_as, v, lo, hi, signed=col in signed)
                    for v, lo, hi in zip(df[col], df[f"{col}:lo"], df[f"{col}:hi"])
                ]
            else:
                out[col] = [format_value(fmt_as, v, signed=col in signed) for v in df[col]]
        else:
            out[col] = [_text(v) for v in df[col]]
    return out


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return str(v)


def terminal(tables: Sequence[Table], heading: str = "", width: int | None = None) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width or terminal_width(), color_system=None, force_terminal=False)
    if heading:
        console.print(Text(heading))
    for t in tables:
        if t.note:  # its own line above the table (wrapped at word breaks only on a narrow terminal)
            console.print(Text(t.note))
        # titles and cells are data (task names, paths, notes): Text, never read as rich markup
        table = RichTable(title=Text(t.title) if t.title else None, title_justify="left")
        for col in t.frame.columns:
            table.add_column(Text(str(col)), justify="right" if col in t.numeric else "left")
        for row in t.frame.itertuples(index=False):
            table.add_row(*(Text(str(v)) for v in row))
        console.print(table)
    return buf.getvalue()


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_row(values: Iterable[Any]) -> str:
    return "|" + "|".join(f" {_md_cell(v)} " if str(v) else " " for v in values) + "|"


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A compact GitHub pipe table (no padding: diffs of committed tables stay one line per change)."""
    return [_md_row(frame.columns), "|---" * len(frame.columns) + "|"] + [
        _md_row(r) for r in frame.itertuples(index=False)
    ]


def markdown(tables: Sequence[Table], heading: str = "", level: int = 3) -> str:
    lines = [heading, ""] if heading else []
    for t in tables:
        if t.title:
            lines += ["#" * level + " " + t.title, ""]
        if t.note:
            lines += [f"> {t.note}", ""]
        lines += markdown_table(t.frame) + [""]
    return "\n".join(lines)


def csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False)
