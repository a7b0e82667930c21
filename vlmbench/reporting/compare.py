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
from vlmbench.reporting import render
from vlmbench.reporting.result import Result, load_results

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


# What must agree for two results to be compared (the field's name as the refusal names it).
IDENTITY_FIELDS = ("preset", "toy", "backbone", "split", "data_fingerprint")


def identity(r: Result) -> dict[str, object]:
    """The fields that say which experiment a result measures; None where the record does not say."""
    return {"preset": r.preset, "toy": r.toy, "backbone": r.config.get("backbone"), "split": r.split or None,
            "data_fingerprint": r.provenance.get("data_fingerprint")}


def check_comparable(new: list[Result], ref: list[Result]) -> None:
    """InputError naming the first field in which a task's new and reference results differ. A field one
    side does not record (None) is not held against it."""
    new_by = _by_key(new, "new")
    for key, r in _by_key(ref, "reference").items():
        got = new_by.get(key)
        if got is None:
            continue
        a, b = identity(got), identity(r)
        for f in IDENTITY_FIELDS:
            if a[f] is not None and b[f] is not None and a[f] != b[f]:
                raise InputError(f"{key}: {f} differs (new {a[f]!r}, reference {b[f]!r}); these results measure "
                                 "different things; pass --force to compare them anyway", path=got.path or key)


def compared_line(new: list[Result], ref: list[Result]) -> str:
    """One line saying what was compared: the shared identity fields (or 'mixed') and the two commits."""
    parts = []
    for f in IDENTITY_FIELDS:
        values = {str(identity(r)[f]) for r in [*new, *ref] if identity(r)[f] is not None}
        if f == "toy":
            values = {"toy world" if v == "True" else "real data" for v in values}
        if values:
            parts.append(f"{f} {values.pop()}" if len(values) == 1 else f"{f} mixed ({', '.join(sorted(values))})")
    shas = [{(r.provenance.get("git_sha") or "?")[:10] for r in side} for side in (new, ref)]
    sha = [", ".join(sorted(s)) or "?" for s in shas]
    return (f"Compared {len(_by_key(ref, 'reference'))} reference tasks: " + "; ".join(parts)
            + f"; new at {sha[0]}, reference at {sha[1]}")


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
    """One row per (task, metric) of the reference, with columns COLUMNS; plus, where both runs kept their
    per-example values (predictions.npz beside result.json) on the same test examples, the paired bootstrap
    difference new - ref, its 95% interval and whether it excludes 0."""
    new_by, rows, paired_cols = _by_key(new, "new"), [], False
    for key, r in _by_key(ref, "reference").items():
        got = new_by.get(key)
        pairs = _paired(got, r) if got is not None else {}
        paired_cols |= bool(pairs)
        for metric, ref_value in r.metrics.items():
            new_value = got.metrics.get(metric) if got is not None else None
            t = tolerance(metric, tol)
            delta = new_value - ref_value if new_value is not None else float("nan")
            p = pairs.get(metric)
            rows.append([key, metric, ref_value, new_value, delta, t, status(metric, ref_value, new_value, t),
                         render.format_value(metric, p["diff"], signed=True) if p else None,
                         f"[{render.format_value(metric, p['lo'])}, {render.format_value(metric, p['hi'])}]" if p else None,
                         ("yes" if p["significant"] else "no") if p else None])
    df = pd.DataFrame(rows, columns=COLUMNS + list(PAIRED_COLUMNS))
    return df if paired_cols else df[COLUMNS]


PAIRED_COLUMNS = ("paired diff", "paired 95% CI", "significant")


def _paired(new: Result, ref: Result) -> dict[str, dict[str, float]]:
    """Paired bootstrap per metric, or {} when either run has no per-example values or they differ in examples."""
    from vlmbench.reporting.intervals import load_examples, paired_difference

    if new.path is None or ref.path is None or not new.family:
        return {}
    a, b = load_examples(new.path), load_examples(ref.path)
    if a is None or b is None:
        return {}
    try:
        return paired_difference(new.family, a, b, new.metrics, ref.metrics)
    except (InputError, KeyError, ValueError):
        return {}


def failed(df: pd.DataFrame) -> bool:
    return bool(df["status"].isin(FAILING).any())


def compare_paths(new_path: str | Path, ref_path: str | Path, tol: dict[str, float] | None = None,
                  force: bool = False) -> tuple[pd.DataFrame, bool]:
    """Load, refuse incomparable results (unless force), compare; the frame's attrs['compared'] says what."""
    ref = load_results(ref_path)
    if not ref:
        raise InputError("no reference results found", path=ref_path)
    new = load_results(new_path)
    new_tasks, ref_tasks = {r.task for r in new}, {r.task for r in ref}
    if new and not new_tasks & ref_tasks:   # a result file of another task: a wrong argument, not a regression
        raise InputError(f"task: the new results ({', '.join(sorted(new_tasks))}) share no task with the reference "
                         f"({', '.join(sorted(ref_tasks))})", path=new_path)
    if not force:
        check_comparable(new, ref)
    df = compare(new, ref, tol)
    df.attrs["compared"] = compared_line(new, ref) + (" (--force: identity checks skipped)" if force else "")
    return df, failed(df)


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured table with a ✅/❌ column, a one-line verdict and what was compared, for a CI job summary."""
    bad = df[df["status"].isin(FAILING)]
    verdict = f"**{len(bad)} of {len(df)} metrics failed**" if len(bad) else f"**all {len(df)} metrics ok**"
    view = pd.DataFrame({"": ["❌" if s in FAILING else "✅" for s in df["status"]]})
    view["task"], view["metric"] = list(df["task"]), list(df["metric"])
    for col in ("ref", "new", "delta", "tolerance"):
        view[col] = [render.format_value(m, v, signed=col == "delta") for m, v in zip(df["metric"], df[col])]
    for col in ("paired diff", "paired 95% CI", "significant"):
        if col in df.columns:
            view[col] = list(df[col].fillna("-"))
    view["status"] = list(df["status"])
    lines = [verdict, ""]
    if df.attrs.get("compared"):
        lines += [df.attrs["compared"], ""]
    return "\n".join(lines + render.markdown_table(view)) + "\n"
