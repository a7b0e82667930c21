"""Metric sanity (python -m vlmbench.sanity): passes on the real metrics and catches a planted off-by-one rank
and a planted tie-rule change (both through the package's real metric functions)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vlmbench import sanity
from vlmbench.metrics import retrieval


def failing(rows):
    return [r[0] for r in rows if r[4] != "ok"]


@pytest.mark.slow
def test_sanity_passes_and_is_a_command():
    r = subprocess.run([sys.executable, "-m", "vlmbench.sanity"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| metric | expected | measured | allowed error | verdict |" in r.stdout


@pytest.mark.slow
def test_off_by_one_rank_is_caught(monkeypatch):
    real = retrieval.ranks
    monkeypatch.setattr(retrieval, "ranks", lambda s: real(s) + 1)
    bad = failing(sanity.checks(only=("retrieval",)))
    assert any("R@1 (pessimistic, N=20)" in b for b in bad) and any("MeanR (pessimistic, N=20)" in b for b in bad)


@pytest.mark.slow
def test_tie_rule_change_is_caught(monkeypatch):
    def optimistic(scores):  # '>' instead of '>=': ties counted in the truth's favour
        scores = np.asarray(scores)
        return (scores > np.diagonal(scores)[:, None]).sum(axis=1) + 1

    monkeypatch.setattr(retrieval, "ranks", optimistic)
    bad = failing(sanity.checks(only=("retrieval",)))
    assert bad and all("ties L=4" in b for b in bad)  # invisible without ties, caught with them


@pytest.mark.slow
def test_blocked_ranks_from_0_are_caught(monkeypatch):
    """The retrieval tasks rank through metrics.retrieval_blocks (counts, no N x N): sanity covers that path too."""
    import dataclasses

    from vlmbench.metrics import retrieval_blocks

    real = retrieval_blocks.rank_counts_rows
    monkeypatch.setattr(
        retrieval_blocks,
        "rank_counts_rows",
        lambda *a, **k: dataclasses.replace(c := real(*a, **k), t2v_ge=c.t2v_ge - 1),
    )
    bad = failing(sanity.checks(only=("retrieval",)))
    assert any("R@1 (pessimistic, N=20, blocked)" in b for b in bad)
    assert not any("blocked" not in b for b in bad)  # the full-matrix path is untouched


def test_a_check_that_raises_is_a_failed_row(monkeypatch):
    monkeypatch.setattr(sanity, "_mcqa", lambda: 1 / 0)
    bad = failing(sanity.checks(only=("MC-QA", "COIN")))
    assert bad == ["MC-QA: raised ZeroDivisionError: division by zero"]


def test_windows_not_averaged_are_caught(monkeypatch):
    """The later window overwriting the overlap (mutant 09) moves E[logit^2] from ~0.58 to 1."""
    from vlmbench.adapters import windows

    def last_wins(values, win):
        values = values.detach().float().numpy()
        out = np.zeros((win.n_frames, values.shape[-1]))
        for i, (s, e) in enumerate(win.spans):
            out[s:e] = values[i, : e - s]
        return out

    name, expected, got, allowed = sanity._windows()
    assert abs(got - expected) <= allowed and 0.5 < expected < 0.7
    monkeypatch.setattr(windows, "average", last_wins)
    name, expected, got, allowed = sanity._windows()
    assert abs(got - 1.0) < 0.05 and abs(got - expected) > 10 * allowed


def test_dp_step_column_off_by_one_is_caught(monkeypatch):
    """Mutant 10's shifted step column: the planted optimum is never recovered."""
    from vlmbench.metrics import localization

    real = localization.dp_one_frame_per_step
    assert sanity._dp()[2] == 100.0
    monkeypatch.setattr(localization, "dp_one_frame_per_step", lambda lp: real(np.roll(np.asarray(lp), 1, axis=1)))
    assert sanity._dp()[2] < 50


def test_model_rows_pass_and_catch_a_padding_leak(monkeypatch):
    """Pooling over padding slots (mutant 06) shows as pooled text that moves with the padding's content."""
    rows = {name: (e, g, a) for name, e, g, a in sanity._model()}
    assert len(rows) == 6 and all(abs(g - e) <= a for e, g, a in rows.values())
    from vlmbench.model.vlm import VLM

    real = VLM.pool_text
    monkeypatch.setattr(VLM, "pool_text", staticmethod(lambda h, m: real(h, torch.ones_like(m))))
    bad = {name for name, e, g, a in sanity._model() if abs(g - e) > a}
    assert bad == {"pooled text ignores padded slots"}


def test_text_budget_row():
    name, expected, got, allowed = sanity._text_budget()
    assert expected == got == 61.0


def test_schedule_row_passes_and_catches_a_schedule_counted_in_epochs(monkeypatch):
    """Mutant 12's bug (lr_at fed the epoch, not the update) planted through the loop's own lr_at: the row fails."""
    from vlmbench.train import finetune as ft

    name, expected, got, allowed = sanity._schedule()
    assert abs(got - expected) <= allowed
    real = ft.lr_at
    monkeypatch.setattr(ft, "lr_at", lambda step, *a, **k: real(step // 7, *a, **k))  # 7 updates per epoch
    name, expected, got, allowed = sanity._schedule()
    assert got - expected > 100 * allowed
    monkeypatch.setattr(ft, "lr_at", lambda step, *a, **k: real(step % 7, *a, **k))  # warm-up restarts per epoch
    assert sanity._schedule()[2] > 100 * allowed


@pytest.mark.slow
def test_interval_calibration_rows_pass_and_catch_a_dropped_cluster_and_a_wrong_level(monkeypatch):
    """Planted: the bootstrap resampling examples although clusters are given (clustered width ~22% short), and
    the interval's level at 90% instead of 95% (both widths ~16% short)."""
    from vlmbench.stats import bootstrap as bs

    rows = [sanity._calibration(False), sanity._calibration(True)]
    assert all(abs(g - e) <= a for _, e, g, a in rows) and rows[1][1] > 1.25 * rows[0][1]
    real = bs.resample_weights
    monkeypatch.setattr(bs, "resample_weights", lambda n, r=bs.RESAMPLES, s=bs.SEED, clusters=None: real(n, r, s))
    name, e, g, a = sanity._calibration(True)
    assert e - g > 3 * a
    monkeypatch.setattr(bs, "resample_weights", real)
    real_pi = bs.percentile_interval
    monkeypatch.setattr(bs, "percentile_interval", lambda v, level=bs.LEVEL: real_pi(v, 0.90))
    name, e, g, a = sanity._calibration(False)
    assert e - g > 2 * a
