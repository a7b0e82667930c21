"""Significance tests and power for comparing two runs: pure functions, numbers in, numbers out.

mcnemar_exact(b, c)             McNemar's exact test of paired 0/1 outcomes (R@k hits, MC-QA correct): b = new
                                right where the reference was wrong, c = the reverse; two-sided p =
                                min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2) (scipy.stats.binomtest's
                                two-sided p at p = 0.5, which is symmetric)
mcnemar_clustered(b_k, c_k)     the same question when the pairs come in clusters (queries of one source
                                video): Durkalski, Palesch, Lipsitz & Rust (2003, Statistics in Medicine 22:
                                2417-2428), X2 = (sum_k (b_k - c_k))^2 / sum_k (b_k - c_k)^2, chi-square with 1
                                df. One pair per cluster gives (b - c)^2 / (b + c), McNemar's uncorrected
                                chi-square
z_test(diff, se, df=None)       two-sided test of a difference with a known standard error (normal), or with one
                                estimated from df + 1 seeds (Student's t with df degrees of freedom)
mde(se, df=None)                minimum detectable effect of a two-sided test at ALPHA with POWER:
                                (z_{1-alpha/2} + z_{power}) x se = 2.80 se at 0.05 and 80% (t quantiles with df)
sigmas(n, df)                   the t multiplier with the two-sided coverage of n normal sigmas (n = 3: 99.73%)
holm(p)                         Holm's step-down adjusted p-values (family-wise error control)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.80
MDE_FACTOR = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)  # 2.8016


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (exact integer arithmetic)."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    term, tail = 1, 0  # C(n, i), summed for i = 0..k
    for i in range(k + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def chi2_1_sf(x: float) -> float:
    """P(chi-square with 1 df > x) = erfc(sqrt(x / 2))."""
    return float(math.erfc(math.sqrt(max(float(x), 0.0) / 2)))


def mcnemar_clustered(b_k: Sequence[int], c_k: Sequence[int]) -> float:
    """Two-sided p of Durkalski et al.'s clustered McNemar statistic from per-cluster discordant counts."""
    d = np.asarray(b_k, dtype=np.float64) - np.asarray(c_k, dtype=np.float64)
    den = float((d**2).sum())
    if den == 0:
        return 1.0
    return chi2_1_sf(float(d.sum()) ** 2 / den)


def discordant(new_hits: np.ndarray, ref_hits: np.ndarray) -> tuple[int, int]:
    """(b, c): examples the new run gets right and the reference wrong, and the reverse."""
    a, r = np.asarray(new_hits).astype(bool), np.asarray(ref_hits).astype(bool)
    return int((a & ~r).sum()), int((~a & r).sum())


def mcnemar(new_hits: np.ndarray, ref_hits: np.ndarray, clusters=None) -> dict[str, float | int | str]:
    """McNemar on paired hits: exact without clusters (or one example per cluster), Durkalski's clustered
    statistic with them. {b, c, p, test}."""
    b, c = discordant(new_hits, ref_hits)
    if clusters is not None:
        from .bootstrap import cluster_codes

        codes = cluster_codes(clusters)
        if codes.max() + 1 < len(codes):  # some cluster holds several examples
            a, r = np.asarray(new_hits).astype(bool), np.asarray(ref_hits).astype(bool)
            size = int(codes.max()) + 1
            b_k = np.bincount(codes, weights=(a & ~r), minlength=size)
            c_k = np.bincount(codes, weights=(~a & r), minlength=size)
            return {"b": b, "c": c, "p": mcnemar_clustered(b_k, c_k), "test": "clustered McNemar"}
    return {"b": b, "c": c, "p": mcnemar_exact(b, c), "test": "McNemar exact"}


def min_discordant(clustered: bool = False, alpha: float = ALPHA) -> int:
    """The fewest discordant pairs, all in one direction (one per cluster), that the test can call significant:
    6 for the exact test at 0.05 (2 / 2^6 = 0.031; 5 gives 0.0625), 4 for the clustered chi-square."""
    d = 1
    while (chi2_1_sf(d) if clustered else mcnemar_exact(d, 0)) >= alpha:
        d += 1
    return d


def z_test(diff: float, se: float, df: int | None = None) -> float:
    """Two-sided p of diff / se under a normal null, or Student's t with df degrees of freedom when se was
    estimated from df + 1 runs; se 0 gives 0 for any non-zero diff and 1 for diff 0."""
    if se is None or math.isnan(se) or math.isnan(diff):
        return float("nan")
    if se == 0:
        return 1.0 if diff == 0 else 0.0
    if df is not None:
        from scipy.stats import t

        return float(2 * t.sf(abs(diff) / se, df))
    return float(2 * NormalDist().cdf(-abs(diff) / se))


def mde(se: float, alpha: float = ALPHA, power: float = POWER, df: int | None = None) -> float:
    """Minimum detectable effect of a two-sided level-alpha test with the given power at standard error se (t
    quantiles with df degrees of freedom when se was estimated)."""
    if df is not None:
        from scipy.stats import t

        factor = t.ppf(1 - alpha / 2, df) + t.ppf(power, df)
    else:
        factor = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return float("nan") if se is None or math.isnan(se) else float(factor * float(se))


def sigmas(n: float, df: int | None) -> float:
    """How many estimated standard errors give the two-sided coverage of n normal sigmas (n = 3: 99.73%) when the
    standard error comes from df + 1 runs: Student's t quantile (df = 9: 4.09 for n = 3); n itself for df None."""
    if df is None:
        return float(n)
    from scipy.stats import t

    return float(t.ppf(NormalDist().cdf(n), df))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest (1-based) times (m - i + 1),
    made monotone, capped at 1. NaN entries stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
