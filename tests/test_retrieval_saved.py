"""Retrieval predictions without the N x N matrix: the saved ranks/top-5 re-score, list examples, write the error
CSV and give per-example values exactly as the full matrix did; old files holding `scores` still re-score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmbench.adapters.retrieval import RetrievalAdapter, retrieval_errors
from vlmbench.errors import InputError
from vlmbench.metrics.retrieval import ranks, retrieval_metrics
from vlmbench.metrics.retrieval_blocks import rank_counts
from vlmbench.records.formats import pack_retrieval
from vlmbench.records.predictions import save_predictions
from vlmbench.runner import score_file
from vlmbench.stats.intervals import result_intervals


def _embeddings(n=70, d=8, seed=0):
    """Coarse integer vectors: many exact ties, and duplicated rows (a clip or text listed twice)."""
    rng = np.random.default_rng(seed)
    t = torch.from_numpy(rng.integers(-2, 3, (n, d)).astype(np.float32))
    v = torch.from_numpy(rng.integers(-2, 3, (n, d)).astype(np.float32))
    t[5], v[9] = t[4], v[8]
    return t, v


def _both(block=16):
    t, v = _embeddings()
    ids, texts = [f"c{i}" for i in range(len(t))], [f"text {i}" for i in range(len(t))]
    full = {"scores": (t @ v.T).numpy(), "ids": np.array(ids), "texts": np.array(texts)}
    return pack_retrieval(rank_counts(t, v, block=block), ids, texts), full


@pytest.mark.parametrize("ties", ["pessimistic", "mmpt"])
def test_score_equals_the_full_matrix(ties):
    small, full = _both()
    assert "scores" not in small
    got, conv = RetrievalAdapter.score(small, {"ties": ties})
    want, conv_full = RetrievalAdapter.score(full, {"ties": ties})
    assert got == want == retrieval_metrics(full["scores"], ties) and conv == conv_full


def test_examples_errors_and_per_example_values_equal_the_full_matrix():
    small, full = _both()
    assert list(RetrievalAdapter.examples(small, {})) == list(RetrievalAdapter.examples(full, {}))
    assert retrieval_errors(small) == retrieval_errors(full)
    assert retrieval_errors(small)[1]  # there are wrong top-1 rows
    ex = RetrievalAdapter.per_example(small, {})
    np.testing.assert_array_equal(ex["example:rank"], ranks(full["scores"]))
    np.testing.assert_array_equal(ex["example:v2t_rank"], ranks(full["scores"].T))
    metrics = retrieval_metrics(full["scores"])
    assert result_intervals("retrieval", small, metrics) == result_intervals(
        "retrieval", {**full, **RetrievalAdapter.per_example(full, {})}, metrics
    )


def test_saved_file_is_small_and_both_formats_rescore(tmp_path):
    small, full = _both()
    cfg = {"ties": "mmpt"}
    save_predictions(tmp_path / "new.npz", "msrvtt-retrieval", cfg, small)
    save_predictions(tmp_path / "old.npz", "msrvtt-retrieval", cfg, full)  # a file from before
    with np.load(tmp_path / "new.npz") as z:
        assert all(z[k].size <= 5 * 70 for k in z.files)  # nothing N x N
    _, new, *_ = score_file(tmp_path / "new.npz")
    _, old, *_ = score_file(tmp_path / "old.npz")
    assert new == old == retrieval_metrics(full["scores"], "mmpt")


def test_predictions_with_neither_format_are_one_line():
    small, _ = _both()
    del small["v2t_gt"]
    with pytest.raises(InputError, match="v2t_gt missing"):
        RetrievalAdapter.score(small, {})


def test_random_floor_is_the_old_matrix_draw_ranked_in_blocks(monkeypatch):
    from types import SimpleNamespace

    from vlmbench.floors import _retrieval_random
    from vlmbench.metrics import retrieval_blocks

    monkeypatch.setattr(retrieval_blocks, "BLOCK", 7)  # many blocks, a ragged last one
    a = SimpleNamespace(test_ids=[f"c{i}" for i in range(50)])
    new, old = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(2):  # the stream continues as before (draws)
        preds = _retrieval_random(a, new)
        scores = old.standard_normal((50, 50)).astype(np.float32)
        for ties in ("pessimistic", "mmpt"):
            assert RetrievalAdapter.score(preds, {"ties": ties})[0] == retrieval_metrics(scores, ties)
