"""`vlmbench report RUNS... --format html --out report.html`: one self-contained page.

Rendered from a Jinja2 template shipped with the package (templates/report.html.j2, its CSS in
templates/report.css) with autoescape on, so every
value read from a result file (task, preset, label, metric name, caption, path) is escaped: no string assembly
of HTML here. Inline CSS, every picture embedded as a data: URI, no script, no external reference of any kind
(a Content-Security-Policy forbids them), so the file opens offline, mails as one attachment, and makes no network
request.

Per task: the paper's rows with our comparable rows among them (bold), then our toy-world or smoke rows in a
table of their own (labelled in every row, never bold, never above a paper row); the pictures of
vlmbench.reporting.figures (ours beside the paper, toy on its own axis; recall@k; COIN per class; CrossTask per
task), and the best and worst captions. Then the pictures found under the given folders (ablation plots,
attention maps: *.png) and the first rows of the error CSVs. Text columns wrap and numbers carry their interval
on a second line, so the tables fit a 1400-pixel window without scrolling sideways; below that they scroll
inside their box.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from vlmbench.records.result import Result
from vlmbench.reporting import figures, render
from vlmbench.reporting.tables import TOY_NOTE, report_frame, report_heading, sections

PICTURE_GLOBS = ("*-vs-*.png", "attention*.png", "embeddings*.png")  # ablation plots, viz pictures
ERROR_GLOBS = ("*errors*.csv",)  # class_accuracy.csv and captions.csv are drawn with their task
ERROR_ROWS = 10
MAX_RUN_FIGURES = 4  # per task, the runs whose own figures (per class, per task, captions) are drawn

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("vlmbench.reporting", "templates"),
    autoescape=True,  # every {{ }} escaped, whatever the template's name
    undefined=jinja2.StrictUndefined,
    trim_blocks=False,
)


@dataclass
class Cell:
    text: str
    sub: str = ""  # a second line (the interval)
    num: bool = False


@dataclass
class Row:
    cells: list[Cell]
    css: str = ""


@dataclass
class HtmlTable:
    head: list[Cell]
    rows: list[Row]
    css: str = ""
    title: str = ""
    world: str = ""
    notes: str = ""


@dataclass
class TaskView:
    name: str
    anchor: str
    tables: list[HtmlTable] = field(default_factory=list)
    figures: list[figures.Picture] = field(default_factory=list)
    captions: list[dict[str, Any]] = field(default_factory=list)


def _anchor(name: str, taken: set[str]) -> str:
    base = "task-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")
    anchor, i = base, 2
    while anchor in taken:
        anchor, i = f"{base}-{i}", i + 1
    taken.add(anchor)
    return anchor


def _section_table(sec: Any) -> HtmlTable:
    head = [Cell("kind"), Cell("label"), Cell("source"), *(Cell(m, num=True) for m in sec.metrics)]
    rows = []
    for kind, (_, r) in zip(sec.kinds(), sec.rows.iterrows()):
        cells = [Cell(kind), Cell(str(r["label"])), Cell(str(r["source"]) or "-")]
        for m in sec.metrics:
            lo, hi = r.get(f"{m}:lo"), r.get(f"{m}:hi")
            cells.append(Cell(render.format_value(m, r[m]), render.format_bounds(m, lo, hi), num=True))
        css = "world" if sec.world else ("ours" if r["kind"] == "ours" else str(r["kind"]))
        rows.append(Row(cells, css))
    title = sec.title if sec.world else "the paper's rows" + (" and ours" if (sec.rows["kind"] == "ours").any() else "")
    return HtmlTable(
        head, rows, css="world" if sec.world else "", title=title, world=sec.world, notes="; ".join(sec.notes)
    )


def _captions_view(r: Result) -> dict[str, Any] | None:
    best, worst = figures.best_and_worst_captions(r)
    if not best and not worst:
        return None

    def table(rows: list[dict[str, str]], title: str) -> HtmlTable:
        head = [Cell("clip"), Cell("generated caption"), Cell("reference"), Cell("CIDEr-D", num=True)]
        body = [
            Row(
                [
                    Cell(x.get("clip_id", "")),
                    Cell(x.get("hypothesis", "")),
                    Cell(x.get("reference", "")),
                    Cell(render.format_value("CIDEr", float(x["cider"])), num=True),
                ]
            )
            for x in rows
        ]
        return HtmlTable(head, body, css="captions", title=title)

    return {
        "title": f"{r.task}: the best and the worst captions",
        "caption": f"by per-clip CIDEr-D, from captions.csv of {_run_name(r)}; {figures.footer([r])}",
        "best": table(best, f"best {len(best)}"),
        "worst": table(worst, f"worst {len(worst)}"),
    }


def _run_name(r: Result) -> str:
    return str(r.path.parent) if r.path is not None else r.task


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


def _csv_head(path: Path, n: int = ERROR_ROWS) -> HtmlTable:
    rows = figures.read_csv_rows(path)[:n]
    header = list(rows[0]) if rows else []
    return HtmlTable([Cell(h) for h in header], [Row([Cell(str(x.get(h, ""))) for h in header]) for x in rows])


def _picture(fig: Any, title: str, caption: str) -> figures.Picture:
    return figures.Picture(title, caption, figures.png_uri(fig), wide=fig.get_figwidth() > 8)


def _task_figures(task: str, secs: list, results: list[Result]) -> list[figures.Picture]:
    pics = []
    fig = figures.paper_figure(task, secs, results)
    if fig is not None:
        pics.append(
            _picture(
                fig,
                f"{task}: our results beside the paper",
                "ours (diamonds, 95% interval) among the paper's rows; toy-world and smoke rows on an "
                f"axis of their own; {figures.footer(results)}",
            )
        )
    runs = [r for r in results if not r.baseline]
    paper = next((s for s in secs if not s.world), None)
    vlm = None
    if paper is not None:
        rows = paper.rows[(paper.rows["kind"] == "paper") & (paper.rows["label"] == "VLM")]
        if len(rows):
            vlm = {m: float(rows.iloc[0][m]) for m in ("R@1", "R@5", "R@10") if m in rows and pd.notna(rows.iloc[0][m])}
    fig = figures.recall_figure(task, results, vlm)
    if fig is not None:
        pics.append(
            _picture(fig, f"{task}: recall@k", f"recall@k of each run, both directions; {figures.footer(results)}")
        )
    for r in runs[:MAX_RUN_FIGURES]:
        for make, what in (
            (figures.class_accuracy_figure, "accuracy per step class"),
            (figures.crosstask_figure, "recall per task"),
        ):
            fig = make(r)
            if fig is not None:
                pics.append(_picture(fig, f"{task}: {what}", f"{what} of {_run_name(r)}; {figures.footer([r])}"))
    return pics


def html_report(
    results: Sequence[Result], roots: Sequence[Path], against: str | None = "paper", title: str = "vlmbench report"
) -> str:
    df = report_frame(results, against)
    secs = sections(df)
    taken: set[str] = set()
    tasks = []
    for task in dict.fromkeys(r.task for r in results):
        mine = [s for s in secs if s.task == task]
        own = [r for r in results if r.task == task]
        view = TaskView(task, _anchor(task, taken), [_section_table(s) for s in mine])
        view.figures = _task_figures(task, mine, own)
        view.captions = [c for r in own[:MAX_RUN_FIGURES] if not r.baseline and (c := _captions_view(r))]
        tasks.append(view)
    presets = sorted({str(r.preset) for r in results if r.preset})
    checkpoints = list(
        dict.fromkeys(figures.checkpoint_of(r) for r in results if not r.baseline and r.family != "pretrain")
    )
    summary = f"{len(results)} result(s)" + (f", preset {', '.join(presets)}" if presets else "")
    summary += f"; checkpoint{'s' if len(checkpoints) > 1 else ''}: {', '.join(checkpoints)}" if checkpoints else ""
    pictures = [figures.Picture(p.stem, f"{p.parent.name}/{p.name}", _png(p)) for p in _find(roots, PICTURE_GLOBS)]
    errors = [{"title": f"{p.parent.name}/{p.name}", "table": _csv_head(p)} for p in _find(roots, ERROR_GLOBS)]
    worlds = any(s.world for s in secs)
    return ENV.get_template("report.html.j2").render(
        title=title,
        notes=([TOY_NOTE] if any(r.toy for r in results) else []) + report_heading(results),
        summary=summary + ".",
        worlds=worlds,
        toc=tasks if len(tasks) > 1 else [],
        tasks=tasks,
        pictures=pictures,
        errors=errors,
        error_rows=ERROR_ROWS,
    )
