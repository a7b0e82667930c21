"""Regression check of new results against reference results, for CI (`vlmbench compare`).

A metric *regresses* when it is worse than the reference by more than its tolerance, in the
metric's own direction (higher is better except the rank metrics in LOWER_IS_BETTER). A metric
present in the reference but absent (or NaN) in the new results is *missing*; both fail the check.
Metrics only in the new results are not compared.

Default tolerances (absolute, in the metric's own units), DEFAULT_TOLERANCES:
    0.5   percent metrics (R@k, accuracy, frame_acc, recall, BLEU, METEOR, ROUGE-L) -- percent points
    0.01  CIDEr (reported on the paper's 0-10 scale, e.g. 1.3869)
    0.5   MedR / MeanR (ranks; np.median of an even count moves in steps of 0.5)
They absorb run-to-run noise of CPU toy runs (thread-count dependent float sums) without hiding
a real change; pass `tol` to override per metric ("*" overrides the fallback).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from vlmbench.errors import InputError
from vlmbench.reporting.result import Result, load_results
from vlmbench.reporting.tables import format_value

LOWER_IS_BETTER = frozenset({"MedR", "MeanR", "v2t_MedR", "v2t_MeanR"})
DIRECTIONS: dict[str, int] = {m: -1 for m in LOWER_IS_BETTER}  # -1 lower is better; default +1


def direction(metric: str) -> int:
    return DIRECTIONS.get(metric, +1)


DEFAULT_TOLERANCE = 0.5
DEFAULT_TOLERANCES: dict[str, float] = {"CIDEr": 0.01, "MedR": 0.5, "MeanR": 0.5, "v2t_MedR": 0.5, "v2t_MeanR": 0.5}
FAILING = ("regressed", "missing")
COLUMNS = ["task", "metric", "ref", "new", "delta", "tolerance", "status"]
_EPS = 1e-9  # a difference of exactly the tolerance is still ok despite float rounding


def tolerance(metric: str, tol: dict[str, float] | None = None) -> float:
    tol = tol or {}
    if metric in tol:
        return float(tol[metric])
    return DEFAULT_TOLERANCES.get(metric, float(tol.get("*", DEFAULT_TOLERANCE)))


def _by_key(results: list[Result], side: str) -> dict[str, Result]:
    """Index by task, keeping floor baselines apart from model runs of the same task."""
    out: dict[str, Result] = {}
    for r in results:
        key = f"{r.task} [{r.baseline}]" if r.baseline else r.task
        if key in out:
            raise InputError(f"two {side} results for {key}: {out[key].path} and {r.path}", path=r.path)
        out[key] = r
    return out


def status(metric: str, ref: float, new: float | None, tol: float) -> str:
    if new is None or math.isnan(new):
        return "ok" if math.isnan(ref) else "missing"
    gain = (new - ref) * direction(metric)  # > 0 means better
    if gain < -tol - _EPS:
        return "regressed"
    if gain > tol + _EPS:
        return "improved"
    return "ok"


def compare(new: list[Result], ref: list[Result], tol: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per (task, metric) of the reference, with columns COLUMNS."""
    new_by, rows = _by_key(new, "new"), []
    for key, r in _by_key(ref, "reference").items():
        got = new_by.get(key)
        for metric, ref_value in r.metrics.items():
            new_value = got.metrics.get(metric) if got is not None else None
            t = tolerance(metric, tol)
            delta = new_value - ref_value if new_value is not None else float("nan")
            rows.append([key, metric, ref_value, new_value, delta, t, status(metric, ref_value, new_value, t)])
    return pd.DataFrame(rows, columns=COLUMNS)


def failed(df: pd.DataFrame) -> bool:
    return bool(df["status"].isin(FAILING).any())


def compare_paths(new_path: str | Path, ref_path: str | Path, tol: dict[str, float] | None = None) -> tuple[pd.DataFrame, bool]:
    ref = load_results(ref_path)
    if not ref:
        raise InputError("no reference results found", path=ref_path)
    df = compare(load_results(new_path), ref, tol)
    return df, failed(df)


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured table with a ✅/❌ column and a one-line verdict, for a CI job summary."""
    bad = df[df["status"].isin(FAILING)]
    verdict = f"**{len(bad)} of {len(df)} metrics failed**" if len(bad) else f"**all {len(df)} metrics ok**"
    lines = [verdict, "", "| | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in df.itertuples(index=False):
        mark = "❌" if row.status in FAILING else "✅"
        cells = [
            row.task, row.metric,
            format_value(row.metric, row.ref), format_value(row.metric, row.new),
            format_value(row.metric, row.delta, signed=True), format_value(row.metric, row.tolerance), row.status,
        ]
        lines.append(f"| {mark} | " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
