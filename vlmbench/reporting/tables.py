"""Report tables: our results beside the paper's rows and the floor baselines, per task; ablation grids."""
from __future__ import annotations

import io
import json
import math
from typing import Any, Iterable, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vlmbench.errors import InputError
from vlmbench.reporting.paper import ABLATION_TABLES, MAIN_TABLES, paper_rows, parse_setting
from vlmbench.reporting.result import Result

TOY_NOTE = "toy world: not comparable with published numbers"
FORMATS = ("terminal", "markdown", "csv", "json")
RANK_METRICS = frozenset({"MedR", "MeanR", "v2t_MedR", "v2t_MeanR"})
ROW_COLUMNS = ["task", "kind", "label", "source", "note"]  # then one column per metric


def format_value(metric: str, value: Any, signed: bool = False) -> str:
    """Paper-like precision: CIDEr 4 decimals (1.3869), ranks 1, everything else 2."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    digits = 4 if metric == "CIDEr" else 1 if metric in RANK_METRICS else 2
    return f"{value:{'+' if signed else ''}.{digits}f}"


def result_label(r: Result) -> str:
    """A short name for a run: config name (or its run folder), then preset and seed."""
    name = r.config.get("name") or r.config.get("run_name")
    if not name and r.path is not None and r.path.name == "result.json":
        name = r.path.parent.name  # one folder per run
    parts = [str(name)] if name else []
    parts += [f"preset={r.preset}"] if r.preset else []
    parts += [f"seed={r.seed}"] if r.seed is not None else []
    return " ".join(parts) or r.task


def report_frame(results: Sequence[Result], against: str | None = "paper") -> pd.DataFrame:
    """Long table: per task our rows, then the paper's (Tables 2-7), then floor baselines."""
    if against not in ("paper", None):
        raise InputError(f"--against must be 'paper' or nothing, got {against!r}")
    rows: list[dict[str, Any]] = []
    for task in dict.fromkeys(r.task for r in results):  # first-seen order
        ours = [r for r in results if r.task == task and not r.baseline]
        floors = [r for r in results if r.task == task and r.baseline]
        for r in ours:
            rows.append(_result_row(r, "ours", result_label(r), r.split or ""))
        if against == "paper":
            rows += _paper_task_rows(task)
        for r in floors:
            rows.append(_result_row(r, "floor", r.baseline, "floor baseline"))
    metric_cols = list(dict.fromkeys(k for row in rows for k in row if k not in ROW_COLUMNS))
    return pd.DataFrame(rows, columns=ROW_COLUMNS + metric_cols)


def _result_row(r: Result, kind: str, label: str, source: str) -> dict[str, Any]:
    return {"task": r.task, "kind": kind, "label": label, "source": source,
            "note": TOY_NOTE if r.toy else "", **r.metrics}


def _paper_task_rows(task: str) -> list[dict[str, Any]]:
    cells = paper_rows(task, tables=MAIN_TABLES)
    rows = []
    for (table, method, group), g in cells.groupby(["table", "method", "group"], sort=False):
        rows.append({"task": task, "kind": "paper", "label": method, "source": f"paper Table {table}, {group}",
                     "note": "", **dict(zip(g["metric"], g["value"]))})
    return rows


def report(results: Sequence[Result], against: str | None = "paper", fmt: str = "terminal") -> str:
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    df = report_frame(results, against)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        notes = [TOY_NOTE] if any(r.toy for r in results) else []
        records = [{k: _json_value(v) for k, v in rec.items()} for rec in df.to_dict(orient="records")]
        return json.dumps({"notes": notes, "rows": records}, indent=2) + "\n"
    return (_terminal if fmt == "terminal" else _markdown)(df)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _task_sections(df: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame, list[str], bool]]:
    """Per task: its rows, the metric columns it uses, and whether any row is a toy result."""
    for task, g in df.groupby("task", sort=False):
        metrics = [c for c in df.columns[len(ROW_COLUMNS):] if g[c].notna().any()]
        yield task, g, metrics, bool((g["note"] == TOY_NOTE).any())


def _terminal(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=160, color_system=None, force_terminal=False)
    for task, g, metrics, toy in _task_sections(df):
        if toy:  # its own unwrapped line, so the phrase is never split across table cells
            console.print(Text(f"{task}: {TOY_NOTE}"), soft_wrap=True)
        table = Table(title=task, title_justify="left")
        for col in ["kind", "label", "source", *metrics]:
            table.add_column(col, justify="right" if col in metrics else "left")
        for row in g.to_dict(orient="records"):
            label = row["label"] + (" (toy)" if row["note"] == TOY_NOTE else "")
            table.add_row(row["kind"], label, row["source"], *(format_value(m, row[m]) for m in metrics))
        console.print(table)
    return buf.getvalue()


def _markdown(df: pd.DataFrame) -> str:
    lines = ["## vlmbench report", ""]
    for task, g, metrics, toy in _task_sections(df):
        lines += [f"### {task}", ""]
        if toy:
            lines += [f"> {TOY_NOTE}", ""]
        cols = ["kind", "label", "source", *metrics, "note"]
        lines += ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
        for row in g.to_dict(orient="records"):
            cells = [row["kind"], row["label"], row["source"], *(format_value(m, row[m]) for m in metrics), row["note"]]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


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


def grid_table(results: Sequence[Result], varied_keys: Sequence[str]) -> pd.DataFrame:
    """One row per (task, varied-key values) cell: mean metrics over seeds (n = runs), plus the
    matching paper Table 8/9 row as `paper` (its label) and `paper:<metric>` columns."""
    runs = [r for r in results if not r.baseline]
    records = []
    for r in runs:
        cell = {k: _hashable(config_value(r.config, k)) for k in varied_keys}
        records.append({"task": r.task, **cell, **r.metrics, "_config": r.config})
    if not records:
        return pd.DataFrame(columns=["task", *varied_keys, "n"])
    df = pd.DataFrame(records)
    metrics = [c for c in df.columns if c not in ("task", "_config", *varied_keys)]
    keys = ["task", *varied_keys]
    out = []
    for cell_values, g in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, cell_values))
        row["n"] = len(g)
        row.update(g[metrics].mean(numeric_only=True).to_dict())
        match = _paper_match(row["task"], {k: row[k] for k in varied_keys}, g["_config"].iloc[0])
        if match is not None:
            row["paper"] = f"Table {match['table'].iloc[0]}: {match['method'].iloc[0]}"
            row.update({f"paper:{m}": v for m, v in zip(match["metric"], match["value"])})
        out.append(row)
    grid = pd.DataFrame(out)
    grid.attrs["varied_keys"] = list(varied_keys)
    grid.attrs["metrics"] = [m for m in metrics if m in grid.columns]
    return grid


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
