"""Dual-softmax post-processing (run key post=dual-softmax): the blocked computation equals the full-matrix
definition in both directions for any block size, and it does what it is used for (suppresses a hub video)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmbench.adapters.retrieval import dual_softmax_counts
from vlmbench.metrics.retrieval import retrieval_metrics
from vlmbench.metrics.retrieval_blocks import metrics_from_counts


def softmax_down_columns(s: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((s - s.max(axis=0, keepdims=True)) / t)
    return e / e.sum(axis=0, keepdims=True)


def reference(text: np.ndarray, video: np.ndarray, t: float) -> dict[str, float]:
    """CAMoE's definition on the full matrix: t2v ranks S * softmax(S / T, dim=0); v2t ranks S.T * softmax(S.T / T,
    dim=0), each ranked as text->video (rows)."""
    s = text.astype(np.float64) @ video.astype(np.float64).T
    t2v = retrieval_metrics(s * softmax_down_columns(s, t))
    v2t = retrieval_metrics(s.T * softmax_down_columns(s.T, t))
    return {
        **{k: v for k, v in t2v.items() if not k.startswith("v2t_")},
        **{f"v2t_{k}": v2t[k] for k in t2v if "v2t" not in k},
    }


@pytest.mark.parametrize("block", [1, 7, 64])
@pytest.mark.parametrize("t", [1.0, 0.1])
def test_blocked_dual_softmax_equals_the_full_matrix_definition(block, t):
    rng = np.random.default_rng(int(10 * t) + block)
    n = 40
    text = rng.normal(size=(n, 8)).astype(np.float32)
    video = (text + rng.normal(scale=1.5, size=(n, 8))).astype(np.float32)
    counts = dual_softmax_counts(torch.from_numpy(text), torch.from_numpy(video), t, block=block)
    assert metrics_from_counts(counts) == pytest.approx(reference(text, video, t), abs=1e-9)
    plain = retrieval_metrics(text.astype(np.float64) @ video.astype(np.float64).T)
    assert metrics_from_counts(counts) != plain  # it changes the ranking here


def test_dual_softmax_suppresses_a_hub_video():
    """Video 0 scores high with every text (a hub): plain ranking puts it first for most queries; dual-softmax
    divides by its column's mass over the texts and recovers the true clips."""
    rng = np.random.default_rng(0)
    n, d = 30, 16
    u = np.zeros(d)
    u[0] = 3.0  # a direction every text shares
    g = rng.normal(size=(n, d))
    text = g + u
    video = g + rng.normal(scale=0.5, size=(n, d))
    video[0] = 5 * u  # the hub: ~45 with every text, against ~16 for a true pair
    tt, vv = torch.from_numpy(text), torch.from_numpy(video)
    plain = retrieval_metrics((tt @ vv.T).numpy())
    dsl = metrics_from_counts(dual_softmax_counts(tt, vv, 1.0))
    assert plain["R@1"] < 10 and dsl["R@1"] > 80
