"""Significance tests against hand tables and scipy.stats: McNemar exact (scipy.stats.binomtest), the clustered
McNemar (scipy.stats.chi2), Holm, the minimum detectable effect (scipy.stats.norm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from vlmbench.stats import significance as sig


def test_mcnemar_exact_hand_table():
    """2 x 2 table of paired hits: both right 50, new only 10 (b), reference only 3 (c), both wrong 37. Exact:
    p = 2 P(X <= 3), X ~ Bin(13, 1/2) = 2 (1 + 13 + 78 + 286) / 2^13 = 756 / 8192."""
    new = np.array([1] * 50 + [1] * 10 + [0] * 3 + [0] * 37)
    ref = np.array([1] * 50 + [0] * 10 + [1] * 3 + [0] * 37)
    assert sig.discordant(new, ref) == (10, 3)
    got = sig.mcnemar(new, ref)
    assert (got["b"], got["c"], got["test"]) == (10, 3, "McNemar exact")
    assert got["p"] == 756 / 8192
    assert got["p"] == pytest.approx(sps.binomtest(10, 13, 0.5).pvalue, rel=1e-12)


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 0), (6, 0), (7, 7), (0, 9), (30, 50), (120, 161), (1000, 1100)])
def test_mcnemar_exact_is_scipy_binomtest(b, c):
    want = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert sig.mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9)


def test_fewest_discordant_pairs_the_tests_can_flag():
    assert sig.min_discordant() == 6  # 2 / 2^6 = 0.031 < 0.05 <= 2 / 2^5
    assert sig.mcnemar_exact(5, 0) == 0.0625 and sig.mcnemar_exact(6, 0) == 0.03125
    assert sig.min_discordant(clustered=True) == 4  # chi-square(1) of 4 > 3.84 > 3


def test_clustered_mcnemar_hand_table():
    """Three videos: (b_k, c_k) = (2, 0), (0, 1), (1, 0): d = 2, -1, 1; X2 = (2 - 1 + 1)^2 / (4 + 1 + 1) = 2/3."""
    p = sig.mcnemar_clustered([2, 0, 1], [0, 1, 0])
    assert p == pytest.approx(sps.chi2.sf(2 / 3, 1), rel=1e-12)
    assert sig.mcnemar_clustered([0, 0], [0, 0]) == 1.0


def test_clustered_mcnemar_with_one_pair_per_cluster_is_mcnemars_chi_square():
    rng = np.random.default_rng(0)
    new, ref = rng.random(300) < 0.6, rng.random(300) < 0.5
    b, c = sig.discordant(new, ref)
    got = sig.mcnemar_clustered((new & ~ref).astype(int), (~new & ref).astype(int))
    assert got == pytest.approx(sps.chi2.sf((b - c) ** 2 / (b + c), 1), rel=1e-12)
    # through mcnemar(): one example per cluster is the unclustered (exact) test
    assert sig.mcnemar(new, ref, clusters=[f"v{i}" for i in range(300)])["test"] == "McNemar exact"


def test_clustered_mcnemar_discounts_discordance_concentrated_in_few_videos():
    """12 discordant pairs, all in one direction: exact McNemar says p = 0.0005; if they sit in 2 videos of 6 the
    evidence is two videos' worth (X2 = 12^2 / 72 = 2, p = 0.157)."""
    new = np.array([1] * 12 + [0] * 8)
    ref = np.zeros(20, int)
    assert sig.mcnemar(new, ref)["p"] == pytest.approx(2 / 2**12)
    videos = ["a"] * 6 + ["b"] * 6 + [f"u{i}" for i in range(8)]
    got = sig.mcnemar(new, ref, clusters=videos)
    assert got["test"] == "clustered McNemar" and got["p"] == pytest.approx(sps.chi2.sf(2.0, 1))


def test_mde_and_z_test():
    assert sig.MDE_FACTOR == pytest.approx(sps.norm.ppf(0.975) + sps.norm.ppf(0.8), rel=1e-12)
    assert sig.mde(1.5) == pytest.approx(1.5 * 2.8015852, rel=1e-6)
    assert math.isnan(sig.mde(float("nan")))
    assert sig.z_test(1.96, 1.0) == pytest.approx(2 * sps.norm.sf(1.96), rel=1e-12)
    assert sig.z_test(0.0, 0.0) == 1.0 and sig.z_test(0.1, 0.0) == 0.0


def test_holm_hand_case():
    """m = 4 finite p's: sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    0.02, 0.03, 0.06, 0.06; NaN stays NaN and is not counted."""
    got = sig.holm([0.01, 0.04, 0.03, float("nan"), 0.005])
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(got[3]) and got[4] == pytest.approx(0.02)
    assert sig.holm([0.5, 0.9]) == [1.0, 1.0]


def test_student_t_when_the_std_is_estimated_from_seeds():
    """Against a std estimated from K runs: Student's t with K - 1 df (table values), and the multiplier with the
    coverage of 3 normal sigmas (99.73% two-sided): t_9 = 4.0943, t_4 = 6.6202; normal without df."""
    from vlmbench.stats.significance import mde, sigmas, z_test

    assert sigmas(3, None) == 3.0
    assert sigmas(3, 9) == pytest.approx(4.0943, abs=1e-4) and sigmas(3, 4) == pytest.approx(6.6202, abs=1e-4)
    assert z_test(2.2622, 1.0, df=9) == pytest.approx(0.05, abs=1e-4)  # t_0.975 with 9 df
    assert z_test(1.96, 1.0) == pytest.approx(0.05, abs=1e-3)
    assert mde(1.0, df=9) == pytest.approx(2.2622 + 0.8834, abs=1e-3) and mde(1.0) == pytest.approx(2.8016, abs=1e-4)
