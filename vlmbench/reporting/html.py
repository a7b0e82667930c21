"""`vlmbench report RUNS... --format html --out report.html`: one self-contained page.

Inline CSS, every picture embedded as a data: URI, no script, no external reference of any kind, so the file
opens offline, mails as one attachment, and makes no network request. It holds every task's table beside the
paper's rows (values with their 95% intervals), the pictures found under the given folders (ablation plots,
attention maps, embedding projections: *.png), and the error examples (captions.csv and other *errors*.csv,
first rows). Tables scroll sideways inside their box, so the page reads from phone width to desktop.
"""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from vlmbench.records.result import Result
from vlmbench.reporting import render
from vlmbench.reporting.tables import TOY_NOTE, report_frame, report_tables

CSS = """
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --head: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 12px; font: 15px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.5em; margin: .4em 0; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 1.2em 0 .4em; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 6px; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--head); position: sticky; top: 0; }
td.num, th.num { text-align: right; }
tr.ours td { font-weight: 600; }
figure { margin: 12px 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .9em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 420px), 1fr)); gap: 12px; }
footer { color: var(--muted); font-size: .85em; margin-top: 2em; }
"""

PICTURE_GLOBS = ("*-vs-*.png", "attention*.png", "embeddings*.png")  # ablation plots, viz pictures
ERROR_GLOBS = ("captions.csv", "*errors*.csv", "class_accuracy.csv")
ERROR_ROWS = 10


def _table(t: render.Table, kinds: Sequence[str] | None = None) -> str:
    head = "".join(f'<th class="{"num" if c in t.numeric else ""}">{html.escape(str(c))}</th>' for c in t.frame.columns)
    rows = []
    for i, row in enumerate(t.frame.itertuples(index=False)):
        cls = f' class="{kinds[i]}"' if kinds else ""
        cells = "".join(
            f'<td class="{"num" if c in t.numeric else ""}">{html.escape(str(v))}</td>'
            for c, v in zip(t.frame.columns, row)
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _find(roots: Iterable[Path], patterns: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        base = root if root.is_dir() else root.parent
        for pattern in patterns:
            for p in sorted(base.rglob(pattern)):
                if p.is_file() and p not in found:
                    found.append(p)
    return found


def _csv_head(path: Path, n: int = ERROR_ROWS) -> render.Table:
    import pandas as pd

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = (rows[0], rows[1 : n + 1]) if rows else ([], [])
    return render.Table(pd.DataFrame(body, columns=header), title=str(path))


def html_report(
    results: Sequence[Result], roots: Sequence[Path], against: str | None = "paper", title: str = "vlmbench report"
) -> str:
    df = report_frame(results, against)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if any(r.toy for r in results):
        parts.append(f'<p class="note">{html.escape(TOY_NOTE)}</p>')
    presets = sorted({r.preset for r in results if r.preset})
    parts.append(
        f"<p>{len(results)} result(s)"
        + (f", preset {', '.join(presets)}" if presets else "")
        + ". Values are <b>value ± half-width</b> of the 95% bootstrap interval over the test examples "
        "where the run kept them; paper rows as published.</p>"
    )
    parts.append("<h2>Results beside the paper</h2>")
    for t, (_, g) in zip(report_tables(df, ci=True), df.groupby("task", sort=False)):
        parts.append(f"<h3>{html.escape(t.title)}</h3>")
        parts.append(_table(t, kinds=list(g["kind"])))
    pictures = _find(roots, PICTURE_GLOBS)
    if pictures:
        parts.append('<h2>Pictures</h2><div class="grid">')
        for p in pictures:
            parts.append(
                f'<figure><img src="{_png(p)}" alt="{html.escape(p.stem)}">'
                f"<figcaption>{html.escape(p.parent.name + '/' + p.name)}</figcaption></figure>"
            )
        parts.append("</div>")
    errors = _find(roots, ERROR_GLOBS)
    if errors:
        parts.append(f"<h2>Error examples (first {ERROR_ROWS} rows)</h2>")
        for p in errors:
            t = _csv_head(p)
            parts.append(f"<h3>{html.escape(p.parent.name + '/' + p.name)}</h3>{_table(t)}")
    parts.append("<footer>written by vlmbench; self-contained: no scripts, fonts or images are fetched.</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
