"""The one table renderer: every table vlmbench prints or writes (report, ablate, compare, suite, run) goes
through here, so a new column (an interval, a paper value) is one change.

A table is a pandas frame of raw values plus which columns are metrics; `cells()` formats it (each metric in
its own format, optionally `value [lo, hi]`), `terminal()` draws it with rich at the terminal's width,
`markdown()` writes compact GitHub pipe tables, `csv()` writes the raw numbers (never the formatted strings, so
both interval bounds survive).

The terminal never cuts a number: a metric cell is drawn whole on one line or not at all. Text columns (labels,
sources) wrap first; a table still too wide is transposed (one row per metric, one column per result) when that
fits, else split into column groups drawn one under the other, each repeating the text columns (as pandas wraps
a wide frame); below the width of one metric column beside the text, every row is stacked as `metric: value`
lines.
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rich.cells import cell_len
from rich.console import Console, Group
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


def format_bounds(metric: str, lo: Any, hi: Any, signed: bool = False) -> str:
    """'[lo, hi]' in the metric's format; '' when either bound is unknown."""
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return ""
    return f"[{format_value(metric, lo, signed=signed)}, {format_value(metric, hi, signed=signed)}]"


def format_interval(metric: str, value: Any, lo: Any, hi: Any, signed: bool = False) -> str:
    """'value [lo, hi]': both bounds, since a bootstrap interval is rarely symmetric (BLEU-4 6.51 [0.00, 9.04]
    is not '6.51 ± 6.51'); the value alone when no interval is known."""
    text = format_value(metric, value, signed=signed)
    bounds = format_bounds(metric, lo, hi, signed=signed)
    return f"{text} {bounds}" if text != "-" and bounds else text


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
    """Format a frame of raw values: metric columns in their own format (with `value [lo, hi]` from the
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
    """The tables as plain text at `width` (default: the terminal's), every number whole (see the module doc)."""
    width = width or terminal_width()
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    if heading:
        console.print(Text(heading))
    for t in tables:
        if t.note:  # its own line above the table (wrapped at word breaks only on a narrow terminal)
            console.print(Text(t.note))
        for part in fit(t, width):
            console.print(part)
    return buf.getvalue()


BORDER = 3  # per column: one space of padding on each side and one rule; plus one rule at the table's edge
MIN_TEXT = 8  # a text column may wrap down to this width (or its longest word, up to LONG_WORD)
LONG_WORD = 24  # words longer than this fold (paths, hashes)


def _len(v: Any) -> int:
    return cell_len(str(v))


def _widths(t: Table) -> tuple[dict[str, int], dict[str, int]]:
    """Per column (natural width, least width): a metric column's least is its natural width (never cut); a
    text column's is its longest word (at least MIN_TEXT, at most LONG_WORD) or its natural width if smaller."""
    natural, least = {}, {}
    for col in t.frame.columns:
        values = [str(col), *map(str, t.frame[col])]
        natural[col] = max(map(_len, values))
        if col in t.numeric:  # every cell whole; the header may wrap at its spaces
            head = max((_len(w) for w in str(col).split()), default=1)
            least[col] = max([min(head, LONG_WORD), *map(_len, values[1:])])
        else:
            longest = max((_len(w) for v in values for w in v.split()), default=1)
            least[col] = min(natural[col], max(MIN_TEXT, min(longest, LONG_WORD)))
    return natural, least


def _fits(widths: dict[str, int], width: int) -> bool:
    return sum(widths.values()) + BORDER * len(widths) + 1 <= width


def transpose(t: Table) -> Table:
    """One row per metric column, one column per row of `t` (headed by its text cells)."""
    text = [c for c in t.frame.columns if c not in t.numeric]
    heads: list[str] = []
    for _, row in t.frame.iterrows():
        head = " ".join(str(row[c]) for c in text if str(row[c]) not in ("", "-")) or str(len(heads) + 1)
        heads.append(head if head not in heads else f"{head} #{len(heads) + 1}")
    frame = pd.DataFrame(
        [[str(c), *map(str, t.frame[c])] for c in t.frame.columns if c in t.numeric], columns=["metric", *heads]
    )
    return Table(frame, title=t.title, note=t.note, numeric=heads)


def fit(t: Table, width: int) -> list[Any]:
    """Renderables drawing table `t` within `width` columns: one rich table when it fits (text wrapped if need
    be), else column groups of the metrics each beside the text columns, else stacked rows."""
    cols = list(t.frame.columns)
    natural, least = _widths(t)
    if _fits(natural, width):
        return [_rich(t, cols, natural, t.title)]
    text = [c for c in cols if c not in t.numeric]
    nums = [c for c in cols if c in t.numeric]
    room = width - 1 - sum(least[c] + BORDER for c in text)  # what the metric columns may take
    if not nums or any(natural[c] + BORDER > room for c in nums):
        if not nums and _fits(least, width):
            return [_rich(t, cols, _spread(text, least, natural, room), t.title)]
        return _stacked(t, width)
    groups: list[list[str]] = [[]]
    for c in nums:
        if groups[-1] and sum(natural[x] + BORDER for x in groups[-1]) + natural[c] + BORDER > room:
            groups.append([])
        groups[-1].append(c)
    if len(groups) > 1:  # a few results with many metrics read better as one table on its side
        tt = transpose(t)
        tnatural, tleast = _widths(tt)
        if _fits(tnatural, width):
            return [_rich(tt, list(tt.frame.columns), tnatural, tt.title)]
        if _fits(tleast, width):
            spare = width - 1 - sum(w + BORDER for w in tleast.values())
            return [
                _rich(tt, list(tt.frame.columns), _spread(list(tt.frame.columns), tleast, tnatural, spare), tt.title)
            ]
    parts = []
    for i, group in enumerate(groups):
        spare = room - sum(natural[c] + BORDER for c in group)
        widths = {**_spread(text, least, natural, spare), **{c: natural[c] for c in group}}
        title = t.title if i == 0 else f"{t.title} (continued: {', '.join(map(str, group))})".strip()
        parts.append(_rich(t, [c for c in cols if c in text or c in group], widths, title))
    return parts


def _spread(text: Sequence[str], least: dict[str, int], natural: dict[str, int], spare: int) -> dict[str, int]:
    """Text columns at their least width, then widened toward their natural width, first column first."""
    out = {c: least[c] for c in text}
    for c in text:
        grow = max(0, min(spare, natural[c] - out[c]))
        out[c] += grow
        spare -= grow
    return out


def _rich(t: Table, cols: Sequence[str], widths: dict[str, int], title: str) -> Group:
    """The title on its own line (wrapped at the terminal's width, not the table's), then the table."""
    table = RichTable()
    for col in cols:
        num = col in t.numeric
        table.add_column(
            Text(str(col)), justify="right" if num else "left", width=widths[col], no_wrap=num, overflow="fold"
        )
    for row in t.frame[list(cols)].itertuples(index=False):
        table.add_row(*(Text(str(v)) for v in row))  # data, never rich markup
    return Group(Text(title), table) if title else Group(table)


def _stacked(t: Table, width: int) -> list[Any]:
    """One block per row: its text cells on one (wrapped) line, then `metric: value` lines."""
    text = [c for c in t.frame.columns if c not in t.numeric]
    nums = [c for c in t.frame.columns if c in t.numeric]
    lines = [Text(t.title)] if t.title else []
    for _, row in t.frame.iterrows():
        lines.append(Text(" | ".join(str(row[c]) for c in text)))
        lines += [Text(f"  {c}: {row[c]}", no_wrap=True, overflow="ignore") for c in nums]
    return lines


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
