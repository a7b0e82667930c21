"""Report tables: our results beside the paper's rows and the floor baselines, per task; ablation grids."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from vlmbench.errors import InputError
from vlmbench.records.result import Result
from vlmbench.reporting import render
from vlmbench.reporting.paper import ABLATION_TABLES, MAIN_TABLES, paper_rows, parse_setting
from vlmbench.reporting.render import RANK_METRICS, format_value  # noqa: F401  (re-exported)

TOY_NOTE = "toy world: not comparable with published numbers"
SMOKE_ROW_NOTE = "smoke preset: a plumbing check"
# Said once per output (report, run, suite, ablation) when any result is a smoke run.
SMOKE_NOTE = (
    "smoke preset: a plumbing check of the harness (a tiny random model, seconds of training, a few test "
    "examples), expected to learn nothing: scores at chance or below (COIN 0.00, MC-QA under 20%, captions of "
    "repeated words) are expected, not a failure; the ci or toy preset shows learning"
)
# The heading of a table of results that are not comparable with the paper's, by world (see `world`).
WORLD_TITLE = {
    "toy": TOY_NOTE,
    "smoke": "smoke preset (a plumbing check): not comparable with published numbers",
}
SMOKE_TOY_TITLE = "smoke preset on the toy world (a plumbing check): not comparable with published numbers"
FORMATS = ("terminal", "markdown", "csv", "json")
ROW_COLUMNS = ["task", "kind", "label", "source", "note"]  # then one column per metric (and its interval)


def result_label(r: Result) -> str:
    """A short name for a run: config name (or its run folder), the model, then preset and seed, and what makes
    it special (zero-shot, a --limit, converted weights)."""
    name = r.config.get("name") or r.config.get("run_name")
    if not name and r.path is not None and r.path.name == "result.json":
        name = r.path.parent.name  # one folder per run
    parts = [str(name)] if name else []
    parts += [f"model={r.model['name']}"] if r.model.get("name") else []
    parts += ["zero-shot"] if r.config.get("zeroshot") else []
    parts += [f"limit={r.limit}"] if r.limit else []
    parts += [f"preset={r.preset}"] if r.preset else []
    parts += [f"seed={r.seed}"] if r.seed is not None else []
    if r.config.get("checkpoint_source"):  # e.g. the authors' released weights, converted
        parts.append(f"(checkpoint: {r.config['checkpoint_source']})")
    return " ".join(parts) or r.task


def world(r: Result) -> str:
    """'' for a result comparable with the paper's (real data, a real preset); 'smoke' for a smoke run (a plumbing
    check, whatever its data); 'toy' for any other run on the toy world."""
    return "smoke" if r.preset == "smoke" else "toy" if r.toy else ""


def world_title(w: str, toy: bool) -> str:
    """The heading of results of world `w` ('toy' or 'smoke'); a smoke run on the toy world says both."""
    return SMOKE_TOY_TITLE if w == "smoke" and toy else WORLD_TITLE[w]


def row_world(note: str) -> str:
    """The world of a report_frame row, read back from its note (CSV and JSON rows carry the same note)."""
    return "smoke" if SMOKE_ROW_NOTE in note else "toy" if TOY_NOTE in note else ""


def report_frame(results: Sequence[Result], against: str | None = "paper") -> pd.DataFrame:
    """Long table: per task our comparable rows (real data), then the paper's (Tables 2-7), then floor baselines;
    then the toy-world and smoke rows (ours, then their floors), each labelled in its note."""
    if against not in ("paper", None):
        raise InputError(f"--against must be 'paper' or nothing, got {against!r}")
    rows: list[dict[str, Any]] = []
    for task in dict.fromkeys(r.task for r in results):  # first-seen order
        ours = [r for r in results if r.task == task and not r.baseline]
        floors = [r for r in results if r.task == task and r.baseline]
        for r in (r for r in ours if not world(r)):
            rows.append(_result_row(r, "ours", result_label(r), r.split or ""))
        if against == "paper":
            rows += _paper_task_rows(task)
        for r in (r for r in floors if not world(r)):
            rows.append(_result_row(r, "floor", r.baseline, "floor baseline"))
        for r in (r for r in ours if world(r)):
            rows.append(_result_row(r, "ours", result_label(r), r.split or ""))
        for r in (r for r in floors if world(r)):
            rows.append(_result_row(r, "floor", r.baseline, "floor baseline"))
    metric_cols = list(dict.fromkeys(k for row in rows for k in row if k not in ROW_COLUMNS))
    return pd.DataFrame(rows, columns=ROW_COLUMNS + metric_cols)


def metric_columns(df: pd.DataFrame, start: int = len(ROW_COLUMNS)) -> list[str]:
    """The metric columns of a frame, without their `:lo` / `:hi` interval columns."""
    return [c for c in df.columns[start:] if not str(c).endswith((":lo", ":hi"))]


def _result_row(r: Result, kind: str, label: str, source: str) -> dict[str, Any]:
    row = {"task": r.task, "kind": kind, "label": label, "source": source, "note": "; ".join(row_notes(r))}
    for m, v in r.metrics.items():
        row[m] = v
        if m in r.intervals:  # both bounds, always, in CSV/JSON
            row[f"{m}:lo"], row[f"{m}:hi"] = r.intervals[m]
    return row


def row_notes(r: Result) -> list[str]:
    """What a reader must know beside a result's numbers: toy world, a smoke run, a stand-in backbone, test-split
    selection."""
    notes = ([TOY_NOTE] if r.toy else []) + ([SMOKE_ROW_NOTE] if r.preset == "smoke" else [])
    if r.counts.get("test_videos_in_pretraining"):  # the model saw some of its test videos in pre-training
        notes.append(r.conventions.get("pretraining_overlap", "test videos in the pre-training corpus"))
    if r.conventions.get("backbone"):
        notes.append(f"backbone: {r.conventions['backbone']}")
    if r.config.get("select") == "best-of-epochs":
        notes.append("selected on the test split, as the reference does")
    return notes


def _paper_task_rows(task: str) -> list[dict[str, Any]]:
    cells = paper_rows(task, tables=MAIN_TABLES)
    rows = []
    for (table, method, group), g in cells.groupby(["table", "method", "group"], sort=False):
        rows.append(
            {
                "task": task,
                "kind": "paper",
                "label": method,
                "source": f"paper Table {table}, {group}",
                "note": "",
                **dict(zip(g["metric"], g["value"])),
            }
        )
    return rows


def report(results: Sequence[Result], against: str | None = "paper", fmt: str = "terminal", ci: bool = False) -> str:
    """The report in one format; ci: metric cells as `value [lo, hi]` (terminal and markdown; CSV and JSON always
    carry both bounds as `<metric>:lo` / `<metric>:hi`). Toy-world and smoke results sit in tables of their own
    below the paper's rows; a smoke run's note (a plumbing check) is said once, at the top."""
    if fmt not in FORMATS:
        raise InputError(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", path="--format")
    df = report_frame(results, against)
    heading = report_heading(results)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        notes = heading + list(dict.fromkeys(n for r in results for n in row_notes(r)))
        records = [{k: _json_value(v) for k, v in rec.items()} for rec in df.to_dict(orient="records")]
        sigs = {r.signature_string: r.signature.get("fields") for r in results if r.signature_string}
        return json.dumps({"notes": notes, "rows": records, **({"signatures": sigs} if sigs else {})}, indent=2) + "\n"
    tables = list(report_tables(df, ci=ci, markdown=fmt == "markdown"))
    sigs = signatures_by_task(results)
    footers = [sigs.get(t.title, []) for t in tables]
    if fmt == "terminal":
        return with_footers(tables, footers, fmt, heading="\n".join(heading))
    return with_footers(tables, footers, fmt, heading="## vlmbench report" + "".join(f"\n\n> {n}" for n in heading))


def report_heading(results: Sequence[Result]) -> list[str]:
    """What is said once above a report: the smoke preset's meaning when any result is a smoke run."""
    return [SMOKE_NOTE] if any(r.preset == "smoke" for r in results) else []


def signatures_by_task(results: Sequence[Result]) -> dict[str, list[str]]:
    """task -> the distinct protocol signature strings of its results (model runs first, then floors)."""
    out: dict[str, list[str]] = {}
    for r in sorted(results, key=lambda r: r.baseline is not None):
        if r.signature_string and r.signature_string not in out.setdefault(r.task, []):
            out[r.task].append(r.signature_string)
    return out


def with_footers(tables: Sequence[render.Table], footers: Sequence[Sequence[str]], fmt: str, heading: str = "") -> str:
    """The tables rendered one by one (terminal or markdown), each followed by its footer lines (the protocol
    signatures: printed under every table); with no footers, exactly render.terminal / render.markdown."""
    parts = []
    for i, (t, foot) in enumerate(zip(tables, footers)):
        h = heading if i == 0 else ""
        if fmt == "terminal":
            parts.append(render.terminal([t], heading=h) + "".join(f"signature: {s}\n" for s in foot))
        else:
            text = render.markdown([t], heading=h)
            parts.append(text + "".join(f"\nsignature: `{s}`\n" for s in foot))
    if not parts:
        return render.terminal([], heading=heading) if fmt == "terminal" else render.markdown([], heading=heading)
    return "".join(parts) if fmt == "terminal" else "\n".join(parts)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


@dataclass
class Section:
    """One table of a task's report: `world` '' (our comparable rows, the paper's, the floors) or 'toy' /
    'smoke' (results not comparable with the paper's, never in the same table as its rows)."""

    task: str
    world: str
    rows: pd.DataFrame  # report_frame rows
    metrics: list[str]  # the metric columns these rows use
    notes: list[str]  # notes of its rows other than the world's own

    @property
    def title(self) -> str:
        toy = bool(self.rows["note"].str.contains(TOY_NOTE, regex=False).any())
        return f"{self.task}: {world_title(self.world, toy)}" if self.world else self.task

    def kinds(self) -> list[str]:
        """Each row's kind as shown: 'ours', 'paper', 'floor'; 'ours (toy)', 'floor (smoke)' in a world's table."""
        return [f"{k} ({self.world})" if self.world else k for k in self.rows["kind"]]


def sections(df: pd.DataFrame) -> list[Section]:
    """Per task (first-seen order) the comparable table, then the toy-world / smoke ones."""
    out = []
    for task, g in df.groupby("task", sort=False):
        worlds = pd.Series([row_world(str(n)) for n in g["note"]], index=g.index)
        for w in dict.fromkeys(["", *worlds]):
            rows = g[worlds == w]
            if rows.empty:
                continue
            metrics = [c for c in metric_columns(df) if rows[c].notna().any()]
            own = {TOY_NOTE, SMOKE_ROW_NOTE}
            notes = list(dict.fromkeys(n for cell in rows["note"] for n in str(cell).split("; ") if n and n not in own))
            out.append(Section(str(task), w, rows, metrics, notes))
    return out


def report_tables(df: pd.DataFrame, ci: bool = False, markdown: bool = False) -> Iterable[render.Table]:
    """One table per task and world (see `sections`), with the metric columns its rows use; a toy or smoke row
    says so in its kind ('ours (toy)') and, in markdown, in its note column too, so a copied row keeps its label."""
    for sec in sections(df):
        view = sec.rows.copy()
        view["kind"] = sec.kinds()
        noted = markdown and sec.rows["note"].astype(bool).any()  # a copied toy row keeps its label
        cols = ["kind", "label", "source", *sec.metrics] + (["note"] if noted else [])
        bounds = [c for m in sec.metrics for c in (f"{m}:lo", f"{m}:hi") if c in view.columns]
        shown = render.cells(view[cols + bounds], sec.metrics, ci=ci)[cols]
        yield render.Table(shown, title=sec.title, note="; ".join(sec.notes), numeric=sec.metrics)


def run_table(result: Result) -> tuple[render.Table, str]:
    """`vlmbench run`'s printed result: one row per metric (value, 95% interval), so any number of metrics fits
    a narrow terminal; the title names the task, split and world; the note is the smoke preset's, if one."""
    rows = []
    for m, v in result.metrics.items():
        lo, hi = result.intervals.get(m, (None, None))
        rows.append({"metric": m, "value": render.format_value(m, v), "95% interval": render.format_bounds(m, lo, hi)})
    frame = pd.DataFrame(rows, columns=["metric", "value", "95% interval"])
    if not frame["95% interval"].astype(bool).any():
        frame = frame.drop(columns="95% interval")
    w = world(result)
    title = f"{result.task} ({result.split})" + (f": {world_title(w, result.toy)}" if w else "")
    numeric = [c for c in frame.columns if c != "metric"]
    return render.Table(frame, title=title, numeric=numeric), "\n".join(report_heading([result]))


# ---- ablation grid -------------------------------------------------------------------------

ABLATION_TABLE_OF_TASK = {"youcook2-retrieval": ABLATION_TABLES[0], "youcook2-caption": ABLATION_TABLES[1]}


def config_value(config: dict[str, Any], key: str) -> Any:
    """Dotted lookup ('pretrain.mmm'); a flat key holding the dots is accepted too."""
    if key in config:
        return config[key]
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _find_by_name(config: dict[str, Any], name: str) -> Any:
    """First value whose (nested) key's last segment is `name`, depth-first."""
    for k, v in config.items():
        if k.split(".")[-1] == name and not isinstance(v, dict):
            return v
        if isinstance(v, dict) and (found := _find_by_name(v, name)) is not None:
            return found
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return str(a).strip().lower().replace("_", "-") == str(b).strip().lower().replace("_", "-")


def _paper_match(task: str, cell: dict[str, Any], config: dict[str, Any]) -> pd.DataFrame | None:
    """The paper Table 8/9 row whose setting agrees with this cell, or None.

    Each setting key is taken from the varied keys (matched on the last dotted segment), else from
    the run's config, else the paper's default; a cell matches only if at least one varied key is
    one of the paper's setting keys, so a grid over, say, lr never claims a paper row."""
    table = ABLATION_TABLE_OF_TASK.get(task)
    if table is None:
        return None
    rows = paper_rows(task, tables=[table])
    settings = {s: parse_setting(s) for s in rows["setting"].unique()}
    defaults = parse_setting(rows["setting"].iloc[0])  # the first row (w/ MMM 50%) is the default VLM
    varied = {k.split(".")[-1]: v for k, v in cell.items()}
    if not set(varied) & set(defaults):
        return None
    ours = {}
    for name, default in defaults.items():
        found = varied.get(name, _find_by_name(config, name))
        ours[name] = default if found is None else found
    for setting, parsed in settings.items():
        if all(_same(ours[k], v) for k, v in parsed.items()):
            return rows[rows["setting"] == setting]
    return None


def grid_table(results: Sequence[Result], varied_keys: Sequence[str], paired: bool = True) -> pd.DataFrame:
    """One row per (task, varied-key values) cell: mean metrics over seeds (n = runs) with their std
    (`<metric>:std`, n > 1) and the runs' mean interval bounds (`<metric>:lo/hi`), the matching paper Table 8/9
    row as `paper` (its label) and `paper:<metric>` columns, and, for one run per cell with per-example values
    saved, the paired bootstrap difference against the task's first cell (`<metric>:diff`, `:diff:lo/hi`,
    `:p` the p-value of the comparison's test: McNemar for R@k / accuracy, else the paired bootstrap; `:sig`
    yes/no: significant at 0.05 after Holm's correction over the task's cells compared with its first cell, per
    metric, `:p_holm` the adjusted p). attrs['signatures']: task -> the cells' protocol signature strings."""
    runs = [r for r in results if not r.baseline]
    records = []
    for r in runs:
        cell = {k: _hashable(config_value(r.config, k)) for k in varied_keys}
        bounds = {f"{m}:{side}": b for m, (lo, hi) in r.intervals.items() for side, b in (("lo", lo), ("hi", hi))}
        records.append({"task": r.task, **cell, **r.metrics, **bounds, "_config": r.config, "_result": r})
    if not records:
        return pd.DataFrame(columns=["task", *varied_keys, "n"])
    df = pd.DataFrame(records)
    keys = ["task", *varied_keys]
    metrics = list(dict.fromkeys(m for r in runs for m in r.metrics))
    bound_cols = [c for c in df.columns if str(c).endswith((":lo", ":hi"))]
    out, firsts = [], {}
    for cell_values, g in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, cell_values))
        row["n"] = len(g)
        row.update(g[metrics].mean(numeric_only=True).to_dict())
        if len(g) > 1:
            row.update({f"{m}:std": v for m, v in g[metrics].std(ddof=1, numeric_only=True).to_dict().items()})
        row.update(g[bound_cols].mean(numeric_only=True).to_dict())
        match = _paper_match(row["task"], {k: row[k] for k in varied_keys}, g["_config"].iloc[0])
        if match is not None:
            row["paper"] = f"Table {match['table'].iloc[0]}: {match['method'].iloc[0]}"
            row.update({f"paper:{m}": v for m, v in zip(match["metric"], match["value"])})
        if paired and len(g) == 1:
            first = firsts.setdefault(row["task"], g["_result"].iloc[0])
            if first is not g["_result"].iloc[0]:
                row.update(_paired_columns(g["_result"].iloc[0], first))
        out.append(row)
    grid = pd.DataFrame(out)
    _holm_columns(grid, metrics)
    grid.attrs["signatures"] = signatures_by_task(runs)
    grid.attrs["varied_keys"] = list(varied_keys)
    grid.attrs["metrics"] = [m for m in metrics if m in grid.columns]
    return grid


def _paired_columns(new: Result, first: Result) -> dict[str, Any]:
    from vlmbench.reporting.compare import _paired

    cols: dict[str, Any] = {}
    for m, p in _paired(new, first).items():
        if not p.get("reproduces", True):  # the per-example values describe other numbers (e.g. ties=mmpt)
            continue
        cols.update({f"{m}:diff": p["diff"], f"{m}:diff:lo": p["lo"], f"{m}:diff:hi": p["hi"], f"{m}:p": p["p"]})
    return cols


def _holm_columns(grid: pd.DataFrame, metrics: Sequence[str]) -> None:
    """`<metric>:p_holm` and `<metric>:sig` (yes/no at 0.05) per task and metric, Holm over the cells compared."""
    from vlmbench.stats.significance import ALPHA, holm

    for m in metrics:
        col = f"{m}:p"
        if col not in grid.columns:
            continue
        adjusted = pd.Series(float("nan"), index=grid.index)
        for _, g in grid.groupby("task", sort=False):
            adjusted[g.index] = holm(g[col].tolist())
        grid[f"{m}:p_holm"] = adjusted
        grid[f"{m}:sig"] = [None if pd.isna(q) else "yes" if q < ALPHA else "no" for q in adjusted]


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


PAIRED_NOTE = (
    "Δ: paired difference against the task's first cell (same test examples); * = significant at 0.05 after Holm's "
    "correction over the cells, per metric (McNemar for R@k / accuracy, else the paired bootstrap)"
)


def grid_tables(
    grid: pd.DataFrame,
    varied: Sequence[str],
    headline: dict[str, list[str]],
    ci: bool = False,
    compact: bool = False,
    world: str = "",
) -> list[render.Table]:
    """Per task: one row per cell, the keys that take more than one value, each headline metric followed by
    the seeds' std, the paper's value where a row matched and the paired difference against the first cell.
    compact (the terminal): no cell-hash column, and the matched paper rows named in the note instead of a
    column. world 'toy' or 'smoke': the cells are not comparable with the paper, so every row says so in a
    first `world` column and the matched Table 8/9 rows go in a table of their own below, never beside them."""
    tables = []
    for task, g in grid.groupby("task", sort=False):
        metrics = [m for m in headline.get(task, []) if m in g.columns]
        with_paper = "paper" in g.columns and g["paper"].notna().any()
        axes = [k for k in varied if g[k].astype(str).nunique() > 1] or list(varied)
        cols = [c for c in ("cell",) if c in g.columns and not compact] + axes
        shown_metrics, metric_of, names = [], {}, {"paper": "paper row"}
        if "n" in g.columns and (g["n"] > 1).any():
            cols.append("n")
        extras = (
            (("std", "std {}"), ("diff", "Δ {}"))
            if world
            else (("std", "std {}"), ("paper", "paper {}"), ("diff", "Δ {}"))
        )
        for m in metrics:
            cols.append(m)
            shown_metrics.append(m)
            for kind, label in extras:
                extra = f"paper:{m}" if kind == "paper" else f"{m}:{kind}"
                if extra in g.columns and g[extra].notna().any():
                    cols.append(extra)
                    shown_metrics.append(extra)
                    metric_of[extra], names[extra] = m, label.format(m)
        if with_paper and not compact and not world:
            cols.append("paper")
        bounds = [c for m in shown_metrics for c in (f"{m}:lo", f"{m}:hi") if c in g.columns]
        view = render.cells(
            g[cols + bounds],
            shown_metrics,
            ci=ci,
            metric_of=metric_of,
            signed=[c for c in shown_metrics if c.endswith(":diff")],
        )[cols]
        for m in metrics:  # significance as a star on the difference
            if f"{m}:diff" in view.columns and f"{m}:sig" in g.columns:
                view[f"{m}:diff"] = [
                    v + ("*" if sig == "yes" else "") for v, sig in zip(view[f"{m}:diff"], g[f"{m}:sig"])
                ]
        if world:
            view.insert(0, "world", world)
        notes = [PAIRED_NOTE] if any(c.endswith(":diff") for c in cols) else []
        if with_paper and compact and not world:
            notes.append(
                "paper rows: "
                + "; ".join(
                    f"{' '.join(f'{k}={row[k]}' for k in axes)}: {row['paper']}"
                    for _, row in g.iterrows()
                    if isinstance(row.get("paper"), str)
                )
            )
        tables.append(
            render.Table(
                view.rename(columns=names),
                title=f"{task}: {WORLD_TITLE[world]}" if world else task,
                note="\n".join(notes),
                numeric=[names.get(c, c) for c in shown_metrics],
            )
        )
        if world and with_paper:
            tables.append(_grid_paper_table(task, g, axes, metrics))
    return tables


def _grid_paper_table(task: str, g: pd.DataFrame, axes: Sequence[str], metrics: Sequence[str]) -> render.Table:
    """The paper's Table 8/9 rows whose settings the grid's cells match, on their own (real data)."""
    matched = g[g["paper"].notna()]
    paper = [m for m in metrics if f"paper:{m}" in g.columns and matched[f"paper:{m}"].notna().any()]
    view = render.cells(matched[[*axes, "paper", *(f"paper:{m}" for m in paper)]], [f"paper:{m}" for m in paper])
    view = view.rename(columns={"paper": "paper row", **{f"paper:{m}": f"paper {m}" for m in paper}})
    return render.Table(
        view,
        title=f"{task}: the paper's rows for these settings (real data, Tables 8/9)",
        numeric=[f"paper {m}" for m in paper],
    )


def seed_table(results: Sequence[Result]) -> render.Table:
    """One run per seed of the same task: per metric the mean ± std across seeds (ddof 1) beside each run's
    value and 95% interval."""
    metrics = list(dict.fromkeys(m for r in results for m in r.metrics))
    rows = []
    for m in metrics:
        values = pd.Series([r.metrics.get(m, float("nan")) for r in results], dtype=float)
        row = {
            "metric": m,
            "mean ± std": f"{render.format_value(m, values.mean())} ± {render.format_value(m, values.std(ddof=1))}",
        }
        for r in results:
            lo, hi = r.intervals.get(m, (None, None))
            row[f"seed {r.seed}"] = render.format_value(m, r.metrics.get(m)) + (
                f" [{render.format_value(m, lo)}, {render.format_value(m, hi)}]" if lo is not None else ""
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    return render.Table(
        frame,
        title=f"{results[0].task}: {len(results)} seeds (mean ± std; per seed value [95% CI])",
        numeric=[c for c in frame.columns if c != "metric"],
    )
