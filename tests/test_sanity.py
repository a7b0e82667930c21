"""Metric sanity (python -m vlmbench.sanity): passes on the real metrics and catches a planted off-by-one rank
and a planted tie-rule change (both through the package's real metric functions)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from vlmbench import sanity
from vlmbench.metrics import retrieval


def failing(rows):
    return [r[0] for r in rows if r[4] != "ok"]


def test_sanity_passes_and_is_a_command():
    r = subprocess.run([sys.executable, "-m", "vlmbench.sanity"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| metric | expected | measured | allowed error | verdict |" in r.stdout


def test_off_by_one_rank_is_caught(monkeypatch):
    real = retrieval.ranks
    monkeypatch.setattr(retrieval, "ranks", lambda s: real(s) + 1)
    bad = failing(sanity.checks())
    assert any("R@1 (pessimistic, N=20)" in b for b in bad) and any("MeanR (pessimistic, N=20)" in b for b in bad)


def test_tie_rule_change_is_caught(monkeypatch):
    def optimistic(scores):      # '>' instead of '>=': ties counted in the truth's favour
        scores = np.asarray(scores)
        return (scores > np.diagonal(scores)[:, None]).sum(axis=1) + 1
    monkeypatch.setattr(retrieval, "ranks", optimistic)
    bad = failing(sanity.checks())
    assert bad and all("ties L=4" in b for b in bad)   # invisible without ties, caught with them



def test_blocked_ranks_from_0_are_caught(monkeypatch):
    """The retrieval tasks rank through metrics.retrieval_blocks (counts, no N x N): sanity covers that path too."""
    import dataclasses

    from vlmbench.metrics import retrieval_blocks

    real = retrieval_blocks.rank_counts_rows
    monkeypatch.setattr(retrieval_blocks, "rank_counts_rows",
                        lambda *a, **k: dataclasses.replace(c := real(*a, **k), t2v_ge=c.t2v_ge - 1))
    bad = failing(sanity.checks())
    assert any("R@1 (pessimistic, N=20, blocked)" in b for b in bad)
    assert not any("blocked" not in b for b in bad)           # the full-matrix path is untouched


def test_a_check_that_raises_is_a_failed_row(monkeypatch):
    monkeypatch.setattr(sanity, "_mcqa", lambda: 1 / 0)
    bad = failing(sanity.checks())
    assert bad == ["MC-QA: raised ZeroDivisionError: division by zero"]
