"""Bootstrap confidence intervals over test examples: pure numpy, seeded, vectorised.

Every metric vlmbench reports is a function of per-example statistics (a rank per query, a correct flag per
question, frame hits per video, n-gram counts per caption). A resample is a vector of weights c (how many
times each example was drawn, summing to n); each estimator maps a (B, n) weight matrix to B metric values,
and the point estimate is the same estimator at weights 1. Corpus metrics are therefore resampled as corpora:
corpus BLEU is recomputed from the resampled sums of its n-gram statistics, not averaged per sentence.

Clustered resampling: where examples share a source video (YouCook2: several clips, and so several queries or
captions, per video), the unit drawn is the video, not the example: clusters are drawn with replacement
(default_rng(seed).integers(0, C, (resamples, C)), clusters numbered in order of first appearance) and every
example of a drawn cluster gets the cluster's count as its weight. The estimators are unchanged (they take any
weights), so each metric is still recomputed from the resampled examples' statistics. With one example per
cluster the draw is, index for index, the unclustered one (same intervals, bit for bit).

Paired comparison: two results on the same test examples are resampled with the SAME weight matrix (same
seed, same n, same clusters), and the interval is over the per-resample differences; their standard deviation
is the standard error of the paired difference (the minimum detectable effect's input) and their share on
either side of 0 gives a two-sided bootstrap p-value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0

CONVENTION = (
    f"{LEVEL:.0%} percentile bootstrap over the test examples (unit per task below), {RESAMPLES} resamples "
    f"drawn with numpy default_rng({SEED}).integers(0, n, (resamples, n)) over the n units (examples, or source "
    "videos numbered by first appearance when examples share one: a drawn video brings all its examples); "
    "bounds by np.percentile (linear interpolation); corpus metrics recomputed from resampled per-example "
    "statistics"
)

Estimator = Callable[[np.ndarray], np.ndarray]  # (B, n) weights -> (B,) values


def cluster_codes(clusters) -> np.ndarray:
    """(n,) int: each example's cluster numbered 0, 1, ... in order of first appearance (so one example per
    cluster gives 0..n-1, the unclustered draw's indices)."""
    _, first, inverse = np.unique(np.asarray(clusters), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique values sorted -> by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()]


def resample_weights(n: int, resamples: int = RESAMPLES, seed: int = SEED, clusters=None) -> np.ndarray:
    """(resamples, n) float counts: row b counts how often each example is in resample b. clusters: (n,) labels
    (e.g. source video ids); clusters are drawn instead of examples and each example weighs its cluster's count."""
    if n < 1:
        raise ValueError("need at least one example to resample")
    codes = None
    if clusters is not None:
        codes = cluster_codes(clusters)
        if len(codes) != n:
            raise ValueError(f"{len(codes)} cluster labels for {n} examples")
    units = n if codes is None else int(codes.max()) + 1
    idx = np.random.default_rng(seed).integers(0, units, size=(resamples, units))
    flat = (idx + units * np.arange(resamples)[:, None]).ravel()
    w = np.bincount(flat, minlength=resamples * units).reshape(resamples, units).astype(np.float64)
    return w if codes is None else w[:, codes]


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, np.round([50 * (1 - level), 50 * (1 + level)], 10))  # 2.5, 97.5 exactly
    return float(lo), float(hi)


def point(estimator: Estimator, n: int) -> float:
    return float(estimator(np.ones((1, n)))[0])


def intervals(
    estimators: Mapping[str, Estimator],
    n: int,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
    clusters=None,
) -> dict[str, tuple[float, float]]:
    w = resample_weights(n, resamples, seed, clusters)
    return {m: percentile_interval(f(w), level) for m, f in estimators.items()}


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of H0: difference 0, from the resampled differences: twice the smaller share
    on either side of 0 (0 itself counted on both), with the +1 of a Monte Carlo p-value, capped at 1."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2 * (tail + 1) / (d.size + 1)))


def paired(
    a: Mapping[str, Estimator],
    b: Mapping[str, Estimator],
    n: int,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
    clusters=None,
) -> dict[str, dict[str, float]]:
    """Per metric both have: diff = a - b at the point, its interval from the same resamples (clusters drawn
    whole when given), se = their standard deviation (ddof 1), p = bootstrap_p, significant when the interval
    excludes 0."""
    w = resample_weights(n, resamples, seed, clusters)
    out = {}
    for m in a:
        if m not in b:
            continue
        d = a[m](w) - b[m](w)
        lo, hi = percentile_interval(d, level)
        finite = d[np.isfinite(d)]
        se = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
        diff = point(a[m], n) - point(b[m], n)
        out[m] = {
            "diff": diff,
            "lo": lo,
            "hi": hi,
            "se": se,
            "p": bootstrap_p(d),
            "significant": bool(lo > 0 or hi < 0),
        }
    return out


# ---- estimators (weights w: (B, n)) ---------------------------------------------------------------------------


def mean(x: np.ndarray, scale: float = 1.0) -> Estimator:
    """Weighted mean of a per-example value (R@k indicator, MeanR, accuracy, ROUGE-L)."""
    x = np.asarray(x, dtype=np.float64)
    return lambda w: scale * (w @ x) / w.sum(axis=1)


def ratio(num: np.ndarray, den: np.ndarray, scale: float = 100.0) -> Estimator:
    """Ratio of resampled sums (micro frame accuracy: hits / frames over the drawn videos)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)

    def f(w: np.ndarray) -> np.ndarray:
        d = w @ den
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, scale * (w @ num) / np.where(d > 0, d, 1), np.nan)

    return f


def median(x: np.ndarray) -> Estimator:
    """np.median of the resampled multiset (the mean of the two middle values when the count is even)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    xs = x[order]

    def f(w: np.ndarray) -> np.ndarray:
        cum = np.cumsum(w[:, order], axis=1)
        total = cum[:, -1]
        lo_k = np.floor((total + 1) / 2)  # 1-based positions of the two middle elements
        hi_k = np.floor(total / 2) + 1
        lo = xs[(cum < lo_k[:, None]).sum(axis=1)]
        hi = xs[(cum < hi_k[:, None]).sum(axis=1)]
        return (lo + hi) / 2

    return f


def grouped_ratio_mean(
    num: np.ndarray, den: np.ndarray, group: np.ndarray, groups: list[int], scale: float = 100.0
) -> Estimator:
    """Unweighted mean over `groups` of per-group pooled ratios (CrossTask recall: per task, hits / annotated
    steps over its drawn videos, then the mean over the tasks present in the resample)."""
    num, den, group = np.asarray(num, np.float64), np.asarray(den, np.float64), np.asarray(group)
    onehot = (group[:, None] == np.asarray(groups)[None, :]).astype(np.float64)  # (n, G)

    def f(w: np.ndarray) -> np.ndarray:
        d = w @ (den[:, None] * onehot)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(d > 0, scale * (w @ (num[:, None] * onehot)) / np.where(d > 0, d, 1), np.nan)
        with warnings.catch_warnings():  # a resample in which no group is present: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(r, axis=1)

    return f


def corpus_bleu(stats: np.ndarray, n: int) -> Estimator:
    """coco-caption corpus BLEU-n (percent) from per-caption statistics
    [testlen, reflen, guess_1..4, correct_1..4] (BleuScorer's sums and smoothing epsilons)."""
    stats = np.asarray(stats, dtype=np.float64)
    tiny, small = 1e-15, 1e-9

    def f(w: np.ndarray) -> np.ndarray:
        s = w @ stats
        testlen, reflen, guess, correct = s[:, 0], s[:, 1], s[:, 2:6], s[:, 6:10]
        logp = np.log((correct[:, :n] + tiny) / (guess[:, :n] + small)).sum(axis=1) / n
        ratio_ = (testlen + tiny) / (reflen + small)
        brevity = np.where(ratio_ < 1, 1 - 1 / ratio_, 0.0)
        return 100.0 * np.exp(logp + brevity)

    return f


def shifted_mean(x: np.ndarray, corpus_value: float, scale: float = 1.0) -> Estimator:
    """A corpus score that does not decompose (METEOR's fragmentation penalty pools over the corpus): the
    resampled mean of the per-sentence scores, shifted so that the full set gives the corpus score."""
    x = np.asarray(x, dtype=np.float64)
    full = scale * float(x.mean())
    return lambda w: corpus_value + scale * (w @ x) / w.sum(axis=1) - full
