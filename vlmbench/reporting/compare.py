"""Regression check of new results against reference results, for CI (`vlmbench compare`).

A metric *regresses* when it is worse than the reference by more than its tolerance, in the
metric's own direction (higher is better except the rank metrics in LOWER_IS_BETTER). A metric
present in the reference but absent (or NaN) in the new results is *missing*; both fail the check.
Metrics only in the new results are not compared.

Default tolerances (absolute, in the metric's own units), DEFAULT_TOLERANCES:
    0.5   percent metrics (R@k, accuracy, frame_acc, recall, BLEU, METEOR, ROUGE-L) -- percent points
    0.01  CIDEr (reported on the paper's 0-10 scale, e.g. 1.3869)
    0.5   MedR / MeanR (ranks; np.median of an even count moves in steps of 0.5)
    0.02  loss_first / loss_last / loss_drop (the pre-training's own result, OUT/pretrain/result.json: nats;
          the losses are lower-is-better)
    0.005 search_gain (captioning: beam minus greedy outputs on the search's own objective)
They absorb run-to-run noise of CPU toy runs (thread-count dependent float sums) without hiding
a real change; pass `tol` to override per metric ("*" overrides the fallback).

Measured noise: when the reference folder holds noise.json (vlmbench.reporting.noise: the same suite under
K >= 2 seeds), the reference value of a metric it covers is its MEAN over those seeds (the `ref` column; the
reference run's own value stays in result.json). The new side may be several seeds' runs too (the CI gate runs
GATE_SEEDS: eight suites, one folder each): their results are told apart by seed (seed_runs), every seed's counts,
recipe and intervals are checked, and the row's `new` is their mean (seed_mean). The tolerance is the largest of
    t x sqrt(1/n + 1/K) x its std                 the new side a mean over n seeds (n = 1: one run), the reference
                                                  a mean over K: their difference has (1/n + 1/K) x one run's
                                                  variance; t is Student's quantile with K - 1 degrees of freedom
                                                  at the two-sided coverage of NOISE_SIGMAS normal sigmas (99.73%;
                                                  K = 25: 3.37), since the std is estimated from K runs: the
                                                  prediction interval of a new mean of n seeds. (A plain 3 sigmas
                                                  failed held-out seed 11 on YouCook2 R@10: seed spreads have tails);
    one test example (100 / test_examples)        for percentages over examples: a saturated R@10 has no spread;
    the seeds' range + 1 rank                     for median ranks (MEDIANS), which move in whole ranks;
    the minimum above,
so a seed-only change passes (held-out seeds against the mean, measured: docs/ci-gate.md). The test set's
sampling error is not a term: both runs score the same examples, so it is not part of their difference. A
metric noise.json lacks (or a noise.json with a single run per metric) falls back to one-run-against-one-run:
NOISE_SIGMAS x max(sqrt(2) x std, the reference's bootstrap SE). `tol` still wins.

Each row's statistics (the `test`, `p` and `MDE` columns), from the first source that applies:
    paired examples       (no seed noise for the metric) both runs kept their per-example values (predictions.npz)
                          on the same test examples and
                          they reproduce both results' numbers: the paired bootstrap of the difference (clusters =
                          source videos drawn whole where the examples share one), and for the hit metrics (R@k,
                          accuracy) McNemar's test on the same pairs (exact; Durkalski's clustered statistic where
                          examples share videos), which then decides. MDE = 2.80 x the paired SE (80% power,
                          two-sided 0.05; 0 when the runs agree on every example). Exact McNemar cannot flag
                          fewer than 6 discordant examples (2 / 2^6 < 0.05), whatever the MDE says.
    seed noise            the reference folder's noise.json has the metric's std over K seeds: the new side is a
                          mean of n seeds' draws, the reference their mean, on the same test set, so SE(new - mean)
                          = sqrt(1/n + 1/K) x std (Student's t test, K - 1 df; a z test against one run); MDE =
                          (t_0.975 + t_0.80) x that (2.80 x with z). It comes first: paired examples
                          compare with the reference run, not with the mean the row is judged against.
    interval only         only the reference's 95% bootstrap interval: it measures the test set's sampling,
                          which both runs share (compare requires the same split and data), so it cannot test
                          their difference: the tolerance decides, as before (the tight bit-change check without
                          noise.json), and the MDE column shows, for information, 2.80 x sqrt(2) x its SE
                          ((hi - lo) / 3.92): what two independent runs of this size could tell apart.
    none                  no statistics (a result file alone, the pre-training losses without noise.json): the
                          tolerance alone decides, as before.
Per-example values that do not reproduce a result's number (an edited result.json, R@k under ties=mmpt) are not
used for that row, nor are its intervals (computed from the same values).

Verdicts (one row per task/metric; exit 1 on regressed, changed beyond noise, below floor, missing):
    ok                    within the tolerance, and the comparison's test could have detected a change of the
                          tolerance's size (its MDE <= tolerance; no test: the tolerance alone)
    regressed             worse than the reference by more than the tolerance AND significant (no test: the
                          tolerance alone)
    changed beyond noise  better by more than the tolerance AND significant (no test: the tolerance alone): an
                          unexplained gain is how a wrong metric shows
    inconclusive          a test ran (paired examples or seed noise) and the row is beyond the tolerance but not
                          significant, or within it while the test's minimum detectable effect exceeds the
                          tolerance (it could not have seen a tolerance-sized regression). Not a failure (exit 0)
                          unless --strict; listed under the table.
    below floor           the task's `learned:` rule (tasks/*.yaml) is not met in the NEW results, with
                          floors taken from the new results (OUT/<task>/floor-<kind>/, or `over: <task>`)
    missing               in the reference, absent or NaN in the new results (or a floor the rule needs)

Protocol signatures (vlmbench.records.signature): results whose signatures differ in a protocol field (task,
split, size, ties, post-processing, tokenizer, features, ...) are refused like the identity fields, naming the
field, unless --force; a result without a signature (written before them) is not held against the other.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd

from vlmbench.errors import InputError
from vlmbench.records import signature
from vlmbench.records.result import Result, load_results
from vlmbench.reporting import render

LOWER_IS_BETTER = frozenset({"MedR", "MeanR", "v2t_MedR", "v2t_MeanR", "loss_first", "loss_last"})
DIRECTIONS: dict[str, int] = {m: -1 for m in LOWER_IS_BETTER}  # -1 lower is better; default +1


def direction(metric: str) -> int:
    return DIRECTIONS.get(metric, +1)


DEFAULT_TOLERANCE = 0.5
DEFAULT_TOLERANCES: dict[str, float] = {
    "CIDEr": 0.01,
    "MedR": 0.5,
    "MeanR": 0.5,
    "v2t_MedR": 0.5,
    "v2t_MeanR": 0.5,
    "loss_first": 0.02,
    "loss_last": 0.02,
    "loss_drop": 0.02,  # pre-training loss (nats)
    "search_gain": 0.005,
}  # captioning: beam over greedy, nats per token
BEYOND_NOISE = "changed beyond noise: if intended, run `make update-reference` and say why in the commit"
FAILING = ("regressed", "missing", "changed beyond noise", "below floor", "differs", "interval collapsed")
INCONCLUSIVE = "inconclusive"  # fails only under --strict
# What a run determines exactly, whatever its seed: compared for equality, never within a tolerance. Counts of
# examples, windows, updates, tokens and the resolved recipe; the seed and where things live are left out.
# The identity fields (backbone, preset, the limit's max_test) are check_comparable's: --force skips them.
NOT_EXACT_CONFIG = (
    "seed",
    "checkpoint",
    "checkpoint_source",
    "data",
    "allow_missing",
    "preset",
    "backbone",
    "max_test",
)
NOT_EXACT_COUNTS = ("selected_epoch",)  # best-of-epochs' choice varies with the seed
COLUMNS = ["task", "metric", "ref", "new", "delta", "tolerance", "floor", "status", "why"]
NOISE_SIGMAS = 3.0
_EPS = 1e-9  # a difference of exactly the tolerance is still ok despite float rounding


def seed_df(seeds: int | None) -> int | None:
    """Degrees of freedom of a std estimated from K >= 2 seeds (K - 1); None for one run against one run."""
    return seeds - 1 if seeds and seeds >= 2 else None


def noise_factor(seeds: int | None, new_seeds: int = 1) -> float:
    """SE(new - reference) / one run's std: the new side a mean over n seeds (n = 1: one run), the reference a mean
    over K seeds: sqrt(1/n + 1/K); against one reference run (no K): sqrt(1/n + 1), sqrt(2) for one against one."""
    return math.sqrt(1 / new_seeds + (1 / seeds if seed_df(seeds) else 1.0))


def tolerance(
    metric: str,
    tol: dict[str, float] | None = None,
    std: float | None = None,
    se: float | None = None,
    step: float | None = None,
    seeds: int | None = None,
    new_seeds: int = 1,
) -> float:
    """tol override > with a measured std: max(t x noise_factor(seeds) x std, step, the metric kind's minimum;
    against one run (seeds None: t = NOISE_SIGMAS) also NOISE_SIGMAS x se) > the minimum. se (the reference's bootstrap
    standard error) and step (one test example's worth) only count beside a measured std: without noise.json the
    gate is the tight bit-change check."""
    tol = tol or {}
    if metric in tol:
        return float(tol[metric])
    minimum = DEFAULT_TOLERANCES.get(metric, float(tol.get("*", DEFAULT_TOLERANCE)))
    if std is None or math.isnan(std):
        return minimum
    from vlmbench.stats.significance import sigmas

    parts = [minimum, sigmas(NOISE_SIGMAS, seed_df(seeds)) * noise_factor(seeds, new_seeds) * float(std)]
    if seeds is None and se is not None and not math.isnan(se):
        parts.append(NOISE_SIGMAS * float(se))
    parts += [float(step)] if step is not None else []
    return max(parts)


def _noise_entry(noise: dict | None, key: str, metric: str) -> dict:
    """noise.json's {mean, std, values, ...} of one task's metric ({} when it has none)."""
    return (noise or {}).get("tasks", {}).get(key, {}).get(metric) or {}


def median_step(noise: dict | None, key: str, metric: str) -> float | None:
    """A median rank jumps by whole ranks when the hit rate at a rank crosses 50% (MSR-VTT v2t: MedR 2 on nine seeds
    of ten, 3 on one, 4 on held-out seed 10): its seed std understates that. Its tolerance is at least the seeds'
    range plus one rank."""
    values = _noise_entry(noise, key, metric).get("values") or []
    return float(max(values) - min(values) + 1) if len(values) >= 2 else None


def seed_spread(noise: dict | None, key: str, metric: str) -> tuple[float | None, float | None, int | None]:
    """(std, mean, K) of a metric in noise.json; mean and K are None unless K >= 2 seeds back the mean."""
    entry = _noise_entry(noise, key, metric)
    std, mean, values = entry.get("std"), entry.get("mean"), entry.get("values") or []
    if std is None or mean is None or len(values) < 2 or math.isnan(float(mean)):
        return std, None, None
    return float(std), float(mean), len(values)


def bootstrap_se(r: Result, metric: str) -> float | None:
    """Standard error of a metric on its test set, from the result's percentile bootstrap interval (its level:
    stats.bootstrap.LEVEL) read as a normal one."""
    from statistics import NormalDist

    from vlmbench.stats.bootstrap import LEVEL

    lo, hi = (r.intervals.get(metric) or [math.nan, math.nan])[:2]
    z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
    return None if math.isnan(lo) or math.isnan(hi) else (hi - lo) / (2 * z)


def example_step(r: Result, metric: str) -> float | None:
    """How far one test example moves a percentage over examples (R@k, accuracy), else None."""
    n = r.counts.get("test_examples")
    return 100.0 / n if n and metric not in DEFAULT_TOLERANCES else None


def seed_runs(results: list[Result]) -> list[list[Result]]:
    """New results split into runs by their seed (`make ci-suite`: one suite per GATE_SEEDS seed), in seed order;
    [results] when they hold one seed. Every run must hold the same tasks and floors (InputError naming the seed)."""
    by_seed: dict[int | None, list[Result]] = {}
    for r in results:
        by_seed.setdefault(r.seed, []).append(r)
    if len(by_seed) < 2:
        return [results]
    runs = [by_seed[s] for s in sorted(by_seed, key=lambda s: -1 if s is None else s)]
    first = set(_by_key(runs[0], "new"))
    for run in runs[1:]:
        keys = set(_by_key(run, "new"))
        if keys != first:
            odd = sorted(keys ^ first)[0]
            raise InputError(
                f"seed {run[0].seed}: the new runs of seeds {', '.join(str(r[0].seed) for r in runs)} must hold the "
                f"same tasks; {odd} is in some and not in others",
                path=run[0].path or odd,
            )
    return runs


def seed_mean(runs: list[list[Result]]) -> list[Result]:
    """One result per task of several seeds' runs: its metrics the seeds' means (a metric some run lacks is left out,
    so it shows as missing), no intervals or path (those stay per run: exact_rows, interval_rows)."""
    if len(runs) == 1:
        return runs[0]
    by = [_by_key(run, "new") for run in runs]
    out = []
    for key, first in by[0].items():
        group = [b[key] for b in by]
        metrics = {
            m: sum(g.metrics[m] for g in group) / len(group)
            for m in first.metrics
            if all(m in g.metrics for g in group)
        }
        out.append(replace(first, metrics=metrics, intervals={}, seed=None, path=None))
    return out


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
IDENTITY_FIELDS = ("preset", "toy", "model", "backbone", "split", "data_fingerprint", "limit")
# Fields whose absence means something (no limit = every test example): compared even when one side is None.
ALWAYS_COMPARED = ("limit",)


def identity(r: Result) -> dict[str, object]:
    """The fields that say which experiment a result measures; None where the record does not say."""
    return {
        "preset": r.preset,
        "toy": r.toy,
        "model": r.model.get("name"),
        "backbone": r.config.get("backbone"),
        "split": r.split or None,
        "data_fingerprint": r.provenance.get("data_fingerprint"),
        "limit": r.limit,
    }


def matched(new: list[Result], ref: list[Result]):
    """(key, reference result, new result) for each task (or floor) both sides hold, in the reference's order."""
    new_by = _by_key(new, "new")
    for key, r in _by_key(ref, "reference").items():
        if key in new_by:
            yield key, r, new_by[key]


def check_comparable(new: list[Result], ref: list[Result]) -> None:
    """InputError naming the first field in which a task's new and reference results differ. A field one
    side does not record (None) is not held against it."""
    for key, r, got in matched(new, ref):
        a, b = identity(got), identity(r)
        for f in IDENTITY_FIELDS:
            if (f in ALWAYS_COMPARED or (a[f] is not None and b[f] is not None)) and a[f] != b[f]:
                raise InputError(
                    f"{key}: {f} differs (new {a[f]!r}, reference {b[f]!r}); these results measure "
                    "different things; pass --force to compare them anyway",
                    path=got.path or key,
                )
        sa, sb = signature.fields_of(got.signature), signature.fields_of(r.signature)
        diff = signature.mismatch(sa, sb) if sa and sb else None
        if diff is not None:
            f, va, vb = diff
            raise InputError(
                f"{key}: signature field {f} differs (new {va!r}, reference {vb!r}); the numbers were measured "
                "under different protocols; pass --force to compare them anyway",
                path=got.path or key,
            )


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
    return (
        f"Compared {len(_by_key(ref, 'reference'))} reference tasks: "
        + "; ".join(parts)
        + f"; new at {sha[0]}, reference at {sha[1]}"
    )


def status(metric: str, ref: float, new: float | None, tol: float, stats: dict | None = None) -> str:
    """The verdict (module docstring). stats: {significant, mde} of the row's test; None, or significant None (no
    test ran), leaves the verdict to the tolerance."""
    if new is None or math.isnan(new):
        return "ok" if math.isnan(ref) else "missing"
    gain = (new - ref) * direction(metric)  # > 0 means better
    beyond = gain < -tol - _EPS or gain > tol + _EPS
    if stats is None or stats.get("significant") is None:
        return ("regressed" if gain < 0 else "changed beyond noise") if beyond else "ok"
    if beyond:
        if not stats["significant"]:
            return INCONCLUSIVE
        return "regressed" if gain < 0 else "changed beyond noise"
    mde = stats.get("mde")
    return INCONCLUSIVE if mde is not None and not math.isnan(mde) and mde > tol + _EPS else "ok"


def row_stats(
    metric: str,
    ref: Result,
    new: Result | None,
    paired: dict | None,
    std: float | None,
    mean: float | None = None,
    seeds: int | None = None,
    new_seeds: int = 1,
) -> dict | None:
    """The row's test: {test, p, significant, mde} from seed noise (against the seed mean when `mean`) or paired
    examples; from the reference's interval only the MDE (significant None: no test); None when nothing applies
    (module docstring)."""
    from vlmbench.stats import significance as sig

    if new is None or metric not in new.metrics or metric not in ref.metrics:
        return None
    diff = new.metrics[metric] - (ref.metrics[metric] if mean is None else mean)
    if math.isnan(diff):
        return None
    if mean is None and paired is not None and paired.get("reproduces"):
        return {k: paired[k] for k in ("test", "p", "significant", "mde")}
    if std is not None and not math.isnan(std):
        se = noise_factor(seeds, new_seeds) * float(std)
        df = seed_df(seeds)  # the std estimated from K seeds: Student's t
        p = sig.z_test(diff, se, df)
        test = "seed noise (z)" if df is None else "seed noise (t)"
        return {"test": test, "p": p, "significant": bool(p < sig.ALPHA), "mde": sig.mde(se, df=df)}
    se_ref = bootstrap_se(ref, metric)
    if paired is None and se_ref is not None:  # (an interval from values that do not reproduce it: unused)
        return {
            "test": "none (tolerance)",
            "p": float("nan"),
            "significant": None,
            "mde": sig.mde(math.sqrt(2) * se_ref),
        }
    return None


def floor_checks(
    new: list[Result], enabled: bool = True, require: bool = False, notes: list[str] | None = None
) -> dict[tuple[str, str], tuple[float | None, str | None]]:
    """(task, metric) -> (threshold, failure or None) for each `learned:` rule of each new model result,
    floors from the new results themselves. A floor that is not among the new results fails its rule only with
    `require` (the CI gate); otherwise the rule is skipped and `notes` gets one line saying what the floor is and
    the command that makes it."""
    from vlmbench import registry

    specs = registry.all_tasks()
    new_by = _by_key(new, "new")
    out = {}
    if not enabled:
        return out
    for r in new:
        spec = specs.get(r.task)
        if r.baseline or spec is None:
            continue
        for rule in spec.learned:
            value = r.metrics.get(rule.metric)
            floor = None
            if rule.over is not None:
                src = new_by.get(rule.over if rule.over in specs else f"{r.task} [{rule.over}]")
                if src is None and not require:
                    if notes is not None:
                        notes.append(_floor_note(r, rule.over, specs))
                    continue
                floor = src.metrics.get(rule.metric) if src is not None else None
                if floor is None or math.isnan(floor):
                    out[(r.task, rule.metric)] = (
                        None,
                        f"{rule.describe()}: no {rule.over} result with {rule.metric} "
                        "among the new results (missing floor)",
                    )
                    continue
            thr = rule.threshold(floor)
            bad = (
                value is None
                or math.isnan(value)
                or value * direction(rule.metric) < thr * direction(rule.metric) - _EPS
            )
            seen = "missing" if value is None else f"{value:.4g}"
            why = (
                (
                    f"{rule.describe()} needs {thr:.4g}"
                    + (f" (floor {floor:.4g})" if floor is not None else "")
                    + f", got {seen}"
                )
                if bad
                else None
            )
            prev = out.get((r.task, rule.metric))  # several rules on one metric: a failure wins, else the highest bar
            if prev is None or (prev[1] is None and (why is not None or thr > (prev[0] or float("-inf")))):
                out[(r.task, rule.metric)] = (thr, why)
    return out


def _floor_note(r: Result, over: str, specs) -> str:
    """What a missing floor is and the command that makes it (vlmbench suite makes every floor)."""
    where = r.path.parent if r.path is not None else Path("OUT") / r.task
    if over in specs:
        make = f"vlmbench run --task {over} (its result beside this one)"
    else:
        preset = f" --preset {r.preset}" if r.preset else ""
        make = f"vlmbench baseline --task {r.task} --kind {over}{preset} --out {where / f'floor-{over}'}"
    return (
        f"{r.task}: its learned: rule is measured over the {over} floor (what a model-free guess scores on the same "
        f"test examples), which is not among the new results; not checked. Make it with `{make}`; `vlmbench suite` "
        "makes every floor"
    )


def compare(
    new: list[Result],
    ref: list[Result],
    tol: dict[str, float] | None = None,
    noise: dict | None = None,
    floors: bool = True,
    require_floors: bool = False,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """One row per (task, metric) of the reference, with columns COLUMNS; plus, where both runs kept their
    per-example values (predictions.npz beside result.json) on the same test examples, the paired bootstrap
    difference new - ref, its 95% interval and whether it excludes 0. New results of several seeds (seed_runs) are
    judged by their mean (seed_mean), the tolerance and test then for a mean over n seeds (noise_factor)."""
    runs = seed_runs(new)
    new, n_new = seed_mean(runs), len(runs)
    new_by, rows, paired_cols, with_stats = _by_key(new, "new"), [], False, False
    floors = floor_checks(new, floors, require_floors, notes)
    seen = set()
    for key, r in _by_key(ref, "reference").items():
        got = new_by.get(key)
        pairs = _paired(got, r) if got is not None else {}
        paired_cols |= bool(pairs)
        for metric, run_value in r.metrics.items():
            new_value = got.metrics.get(metric) if got is not None else None
            std, mean, seeds = seed_spread(noise, key, metric)
            ref_value = run_value if mean is None or math.isnan(run_value) else mean
            step = median_step(noise, key, metric) if metric in MEDIANS else example_step(r, metric)
            t = tolerance(metric, tol, std, bootstrap_se(r, metric), step, seeds, n_new)
            delta = new_value - ref_value if new_value is not None else float("nan")
            p = pairs.get(metric)
            stats = row_stats(metric, r, got, p, std, None if math.isnan(run_value) else mean, seeds, n_new)
            with_stats |= stats is not None
            st = status(metric, ref_value, new_value, t, stats)
            thr, fwhy = floors.get((key, metric), (None, None))
            seen.add((key, metric))
            why = _why(metric, st, delta, t, stats, p)
            if fwhy and st in ("ok", "changed beyond noise"):
                st, why = "below floor", fwhy
            elif fwhy:
                why = f"{why}; {fwhy}"
            rows.append(
                [
                    key,
                    metric,
                    ref_value,
                    new_value,
                    delta,
                    t,
                    thr,
                    st,
                    why,
                    render.format_value(metric, p["diff"], signed=True) if p else None,
                    f"[{render.format_value(metric, p['lo'])}, {render.format_value(metric, p['hi'])}]" if p else None,
                    ("yes" if p["significant"] else "no") if p else None,
                    render.format_value(metric, stats["mde"]) if stats and not math.isnan(stats["mde"]) else None,
                    stats["test"] if stats else None,
                    f"{stats['p']:.3g}" if stats and not math.isnan(stats["p"]) else None,
                ]
            )
    for (key, metric), (thr, fwhy) in floors.items():  # a rule on a metric the reference does not carry
        if (key, metric) not in seen:
            value = new_by[key].metrics.get(metric)
            rows.append(
                [
                    key,
                    metric,
                    None,
                    value,
                    float("nan"),
                    None,
                    thr,
                    "below floor" if fwhy else "ok",
                    fwhy,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ]
            )
    seen_rows = set()
    for run in runs:  # every seed's counts and intervals (the mean has neither); one row per check, its first seed
        for row in exact_rows(run, ref) + interval_rows(run, ref):
            if (row[0], row[1]) not in seen_rows:
                seen_rows.add((row[0], row[1]))
                row[-1] = f"seed {run[0].seed}: {row[-1]}" if n_new > 1 else row[-1]
                rows.append(row + [None] * (len(PAIRED_COLUMNS) + len(STAT_COLUMNS)))
    df = pd.DataFrame(rows, columns=COLUMNS + list(PAIRED_COLUMNS) + list(STAT_COLUMNS))
    keep = COLUMNS + (list(PAIRED_COLUMNS) if paired_cols else []) + (list(STAT_COLUMNS) if with_stats else [])
    df = df[keep]
    df.attrs["signatures"] = signature_lines([r for run in runs for r in run], ref)
    df.attrs["new_seeds"] = [run[0].seed for run in runs] if n_new > 1 else []
    return df


PAIRED_COLUMNS = ("paired diff", "paired 95% CI", "significant")
STAT_COLUMNS = ("MDE", "test", "p")


def _why(metric: str, st: str, delta: float, tol: float, stats: dict | None, paired: dict | None) -> str | None:
    """The reason shown for a row's verdict (None for ok)."""
    tested = stats is not None and stats.get("significant") is not None
    test = f"{stats['test']} p={stats['p']:.3g}" if tested else ""
    if st == "missing":
        return "not in the new results"
    if st == "regressed":
        why = f"worse than the reference by more than {tol:g}"
        if tested:
            return f"{why}, significant ({test})"
        if paired is not None:  # per-example values exist but describe other numbers
            return f"{why} (per-example values do not reproduce the results' numbers: tolerance only)"
        return why
    if st == "changed beyond noise":
        return BEYOND_NOISE + (f" (significant: {test})" if tested else "")
    if st == INCONCLUSIVE:
        if abs(delta) > tol + _EPS:
            side = "worse" if delta * direction(metric) < 0 else "better"
            return f"{side} by more than {tol:g} but not significant ({test})"
        return (
            f"within {tol:g}, but this comparison's minimum detectable effect is "
            f"{render.format_value(metric, stats['mde'])}: it could not have detected a change of the tolerance's size"
        )
    return None


def signature_lines(new: list[Result], ref: list[Result]) -> list[str]:
    """One line per distinct protocol signature among the compared results, saying whose it is."""
    whose: dict[str, list[str]] = {}
    for side, results in (("new", new), ("reference", ref)):
        for r in results:
            if r.signature_string:
                names = whose.setdefault(r.signature_string, [])
                if side not in names:
                    names.append(side)
    return [f"`{s}` ({' and '.join(sides)})" for s, sides in whose.items()]


def _paired(new: Result, ref: Result) -> dict[str, dict[str, float]]:
    """Paired bootstrap per metric, or {} when either run has no per-example values or they differ in examples."""
    from vlmbench.stats.intervals import load_examples, paired_difference

    if new.path is None or ref.path is None or not new.family:
        return {}
    a, b = load_examples(new.path), load_examples(ref.path)
    if a is None or b is None:
        return {}
    try:
        return paired_difference(new.family, a, b, new.metrics, ref.metrics)
    except (InputError, KeyError, ValueError):
        return {}


def exact_rows(new: list[Result], ref: list[Result]) -> list[list]:
    """One row per deterministic count or recipe value that differs between a task's new and reference result
    (status `differs`): a stride, a count of training examples or windows, a changed recipe value cannot hide in a
    noise tolerance. Keys only one side records are not compared (an older reference)."""
    rows = []
    for key, r, got in matched(new, ref):
        pairs = [(f"count:{k}", v, got.counts[k]) for k, v in r.counts.items() if k in got.counts]
        pairs = [p for p in pairs if p[0][len("count:") :] not in NOT_EXACT_COUNTS]
        pairs += [
            (f"config:{k}", v, got.config[k])
            for k, v in r.config.items()
            if k in got.config and k not in NOT_EXACT_CONFIG
        ]
        for name, a, b in pairs:
            if a != b:
                rows.append(
                    [key, name, a, b, None, 0, None, "differs", f"deterministic: {a!r} in the reference, {b!r} now"]
                )
    return rows


# A new run's 95% interval narrower than this share of the reference's is a broken bootstrap, not sampling: the same
# protocol on the same test set gives widths within tens of percent of each other (a clustered unit only widens it).
COLLAPSE_SHARE = 0.25


# A median of integer ranks: its bootstrap interval is legitimately a single value when most resamples share the
# median (seen on a held-out seed: YouCook2 v2t MedR [3, 3] against the reference's [2, 3]); not a collapse.
MEDIANS = frozenset({"MedR", "v2t_MedR"})


PROPORTIONS = ("R@", "v2t_R@", "accuracy", "frame_acc", "recall")  # percentages of hits over examples or frames


def proportion_scale(metric: str, ref: float | None, new: float | None) -> float:
    """How a proportion's interval width moves with its value: sqrt(p (1 - p)) at the new value over the
    reference's (a run at 99.99% has a naturally narrower interval than one at 99.8%; 0 at exactly 0 or 100,
    where no width is expected); 1 for any other metric or value."""
    if not metric.startswith(PROPORTIONS) or ref is None or new is None or math.isnan(new) or not 0 < ref < 100:
        return 1.0
    new = min(max(new, 0.0), 100.0)
    return math.sqrt(new * (100.0 - new) / (ref * (100.0 - ref)))


def interval_rows(new: list[Result], ref: list[Result]) -> list[list]:
    """One row per metric whose new 95% interval collapsed (status `interval collapsed`): narrower than
    COLLAPSE_SHARE of the reference's. The tolerances come from the reference's interval, so without this the new
    run's intervals would never be looked at (a bootstrap that returns the point estimate would pass)."""
    rows = []
    for key, r, got in matched(new, ref):
        for metric, (lo, hi) in r.intervals.items():
            if metric not in got.intervals or not hi - lo > 0 or metric in MEDIANS:
                continue
            nlo, nhi = got.intervals[metric]
            ref_w, new_w = hi - lo, nhi - nlo
            ref_w *= proportion_scale(metric, r.metrics.get(metric), got.metrics.get(metric))
            if not new_w >= COLLAPSE_SHARE * ref_w:  # NaN counts as collapsed
                why = (
                    f"the new 95% interval [{render.format_value(metric, nlo)}, {render.format_value(metric, nhi)}] "
                    f"is {new_w:.3g} wide, under {COLLAPSE_SHARE:g} x the reference's {ref_w:.3g}: a broken bootstrap?"
                )
                rows.append(
                    [key, f"{metric} interval", ref_w, new_w, new_w - ref_w, None, None, "interval collapsed", why]
                )
    return rows


def failing(strict: bool = False) -> tuple[str, ...]:
    return FAILING + ((INCONCLUSIVE,) if strict else ())


def failed(df: pd.DataFrame, strict: bool = False) -> bool:
    return bool(df["status"].isin(failing(strict)).any())


def compare_paths(
    new_path: str | Path,
    ref_path: str | Path,
    tol: dict[str, float] | None = None,
    force: bool = False,
    floors: bool = True,
    require_floors: bool = False,
    strict: bool = False,
) -> tuple[pd.DataFrame, bool]:
    """Load, refuse incomparable results (unless force), compare; the frame's attrs['compared'] says what and
    attrs['notes'] what was not checked (a floor absent from the new results, unless require_floors).
    strict: an inconclusive row fails too."""
    ref = load_results(ref_path)
    if not ref:
        raise InputError("no reference results found", path=ref_path)
    new = load_results(new_path)
    new_tasks, ref_tasks = {r.task for r in new}, {r.task for r in ref}
    if new and not new_tasks & ref_tasks:  # a result file of another task: a wrong argument, not a regression
        raise InputError(
            f"task: the new results ({', '.join(sorted(new_tasks))}) share no task with the reference "
            f"({', '.join(sorted(ref_tasks))})",
            path=new_path,
        )
    if not force:
        for run in seed_runs(new):
            check_comparable(run, ref)
    from vlmbench.reporting.noise import load_noise

    noise = load_noise(ref_path)
    notes: list[str] = []
    df = compare(new, ref, tol, noise, floors, require_floors, notes)
    df.attrs["notes"] = list(dict.fromkeys(notes))
    new_seeds = df.attrs.get("new_seeds") or []
    n = f"1/{len(new_seeds)}" if new_seeds else "1"
    df.attrs["compared"] = (
        compared_line(new, ref)
        + (" (--force: identity checks skipped)" if force else "")
        + (f"; new = the mean over seeds {', '.join(map(str, new_seeds))}" if new_seeds else "")
        + (
            "; ref = the mean over seeds "
            + ", ".join(map(str, noise.get("seeds", [])))
            + f" (noise.json); tolerances: max(t x sqrt({n} + 1/{len(noise.get('seeds', []))}) std, one test "
            "example, minimum), t: Student's, 99.73% two-sided"
            if noise
            else "; tolerances: defaults (no noise.json)"
        )
        + ("" if floors else "; floors not checked (--no-floors)")
        + ("; --strict: inconclusive fails" if strict else "")
    )
    df.attrs["strict"] = strict
    return df, failed(df, strict)


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured table with a ✅/❌ column, a one-line verdict and what was compared, for a CI job summary."""
    fail = failing(bool(df.attrs.get("strict")))
    bad = df[df["status"].isin(fail)]
    unsure = df[(df["status"] == INCONCLUSIVE) & ~df["status"].isin(fail)]
    if len(bad):
        verdict = f"**{len(bad)} of {len(df)} metrics failed**" + (
            f", {len(unsure)} inconclusive" if len(unsure) else ""
        )
    elif len(unsure):
        verdict = f"**no metric failed; {len(unsure)} of {len(df)} inconclusive**"
    else:
        verdict = f"**all {len(df)} metrics ok**"
    view = pd.DataFrame({"": ["❌" if s in fail else "❔" if s == INCONCLUSIVE else "✅" for s in df["status"]]})
    view["task"], view["metric"] = list(df["task"]), list(df["metric"])
    for col in ("ref", "new", "delta", "tolerance", "floor"):
        view[col] = [
            "-"
            if v is None or (isinstance(v, float) and math.isnan(v)) and col in ("ref", "tolerance", "floor")
            else render.format_value(m, v, signed=col == "delta")
            for m, v in zip(df["metric"], df[col])
        ]
    for col in (*PAIRED_COLUMNS, *STAT_COLUMNS):
        if col in df.columns:
            view[col] = list(df[col].fillna("-"))
    view["status"] = list(df["status"])
    lines = [verdict, ""]
    if df.attrs.get("compared"):
        lines += [df.attrs["compared"], ""]
    failures = [f"- {t} {m}: {s}: {w}" for t, m, s, w in zip(bad["task"], bad["metric"], bad["status"], bad["why"])]
    unsure_lines = [f"- {t} {m}: {w}" for t, m, w in zip(unsure["task"], unsure["metric"], unsure["why"])]
    sigs = df.attrs.get("signatures") or []
    return (
        "\n".join(
            lines
            + render.markdown_table(view)
            + (["", "Signatures:", *(f"- {s}" for s in sigs)] if sigs else [])
            + (["", "Failed checks:", *failures] if failures else [])
            + (["", "Inconclusive (not a failure without --strict):", *unsure_lines] if unsure_lines else [])
        )
        + "\n"
    )


def failure_lines(df: pd.DataFrame) -> list[str]:
    bad = df[df["status"].isin(failing(bool(df.attrs.get("strict"))))]
    return [f"{t} {m}: {w or s}" for t, m, s, w in zip(bad["task"], bad["metric"], bad["status"], bad["why"])]
