"""Retrieval ranks in row blocks: the same ranks, top-k and metrics (both tie policies) as the full N x N matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmbench.metrics.retrieval import ranks, retrieval_metrics
from vlmbench.metrics.retrieval_blocks import metrics_from_counts, rank_counts


def _cases():
    g = torch.Generator().manual_seed(0)
    for n in (1, 50, 97, 333):  # small integer embeddings: exact scores, many ties
        yield (
            f"ints-{n}",
            torch.randint(-2, 3, (n, 8), generator=g).float(),
            torch.randint(-2, 3, (n, 8), generator=g).float(),
        )
    yield "constant", torch.ones(64, 4), torch.ones(64, 4)  # every score tied
    t = torch.randn(300, 32, generator=g)
    yield "float", t, t + 0.5 * torch.randn(300, 32, generator=g)


@pytest.mark.parametrize("name,text,video", list(_cases()), ids=lambda x: x if isinstance(x, str) else "")
@pytest.mark.parametrize("block", [7, 64, 4096])
def test_blocked_equals_full_matrix(name, text, video, block):
    full = (text @ video.T).numpy()
    c = rank_counts(text, video, block=block)
    assert (c.t2v_ge == ranks(full)).all() and (c.v2t_ge == ranks(full.T)).all()
    assert (c.t2v_gt == (full > np.diagonal(full)[:, None]).sum(1)).all()
    assert (c.top == np.argsort(-full, axis=1, kind="stable")[:, :5]).all()
    for ties in ("pessimistic", "mmpt"):
        assert metrics_from_counts(c, ties) == retrieval_metrics(full, ties)  # equal, not close
    assert metrics_from_counts(c.to_dict(), "mmpt") == metrics_from_counts(c, "mmpt")


def test_pooled_ties_by_hand():
    """3 queries; scores of row 0 all tied (positions 0,1,2), row 1 truth first, row 2 truth second of a tie
    of two: pooled positions [0,1,2, 0, 1,2] -> R@1 = 2/6, MedR = median(1,2,3,1,2,3) = 2, MeanR = 12/6."""
    counts = {
        "t2v_gt": np.array([0, 0, 1]),
        "t2v_ge": np.array([3, 1, 3]),
        "v2t_gt": np.zeros(3, int),
        "v2t_ge": np.ones(3, int),
    }
    m = metrics_from_counts(counts, "mmpt")
    assert m["R@1"] == pytest.approx(100 * 2 / 6) and m["R@5"] == 100.0
    assert m["MedR"] == 2.0 and m["MeanR"] == 2.0 and m["v2t_R@1"] == 100.0
    p = metrics_from_counts(counts, "pessimistic")
    assert p["R@1"] == pytest.approx(100 / 3) and p["MedR"] == 3.0


def test_bad_inputs():
    from vlmbench.metrics import MetricInputError

    with pytest.raises(MetricInputError):
        rank_counts(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(MetricInputError):
        rank_counts(torch.full((3, 4), float("nan")), torch.ones(3, 4))
    with pytest.raises(MetricInputError):
        metrics_from_counts({"t2v_gt": [0], "t2v_ge": [1], "v2t_gt": [0], "v2t_ge": [1]}, "optimistic")
