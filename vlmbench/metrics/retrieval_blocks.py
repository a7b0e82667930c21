"""Retrieval ranks without the N x N score matrix: scores in row blocks (O(N x block) memory), results identical
to `metrics.retrieval` on the full matrix, for both tie policies.

Per query only two counts are kept: `gt`, the items scoring strictly above the true one, and `ge`, those scoring
>= it (the true item included). The pessimistic rank is `ge`; the reference's (mmpt) tied positions of a row are
exactly gt, gt+1, ..., ge-1 in its descending order, so both policies' R@k, MedR and MeanR follow from the
counts (the pooled positions are never listed: their median comes from a histogram). That, with each row's
top-k, is all a predictions file needs for re-scoring: 4N counts + N x k ids instead of N^2 scores.

The matrix is text x video (row i's truth is column i), scores = text @ video.T. Each row block is computed
twice with the same shapes (rows, then columns against the diagonal found in the first pass), so the scores
compared are bit for bit the ones a full-matrix computation by row blocks gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vlmbench.metrics import MetricInputError
from vlmbench.metrics.retrieval import _KS, TIES, _summary

BLOCK = 1024


@dataclass
class RankCounts:
    t2v_gt: np.ndarray  # (N,) int64: videos scoring above the true one, per text query
    t2v_ge: np.ndarray  # (N,) int64: ... scoring >= it (= the pessimistic 1-based rank)
    v2t_gt: np.ndarray  # (N,) per video query (columns)
    v2t_ge: np.ndarray
    top: np.ndarray  # (N, k) int64: each text query's best videos, ties by lower index (stable order)
    top_scores: np.ndarray | None = None  # (N, k) float32: their scores
    true_score: np.ndarray | None = None  # (N,) float32: the diagonal

    KEYS = ("t2v_gt", "t2v_ge", "v2t_gt", "v2t_ge", "top", "top_scores", "true_score")

    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.KEYS if getattr(self, k) is not None}


def _blocks(n: int, block: int):
    for a in range(0, n, block):
        yield a, min(n, a + block)


def rank_counts(text: torch.Tensor, video: torch.Tensor, block: int | None = None, k: int = 5) -> RankCounts:
    """Counts (and top-k) of the square score matrix text @ video.T, block rows at a time."""
    text, video = torch.as_tensor(text), torch.as_tensor(video)
    n = len(text)
    if text.ndim != 2 or video.shape != text.shape or n == 0:
        raise MetricInputError(
            f"text and video must be non-empty (N, d) matrices of one shape, got "
            f"{tuple(text.shape)} and {tuple(video.shape)}"
        )
    return rank_counts_rows(lambda a, b: text[a:b] @ video.T, n, block, k)


def rank_counts_rows(rows, n: int, block: int | None = None, k: int = 5) -> RankCounts:
    """Counts of a square score matrix given by `rows(a, b)` -> its rows a..b-1 (a tensor or array), called
    for consecutive blocks in order, twice (the second pass must give the same values: recompute or replay)."""
    if n == 0:
        raise MetricInputError("retrieval needs at least one query")
    k, block = min(k, n), block or BLOCK
    diag = None
    t2v_gt, t2v_ge = np.empty(n, np.int64), np.empty(n, np.int64)
    top = np.empty((n, k), np.int64)
    top_scores = None
    for a, b in _blocks(n, block):  # pass 1: rows, the diagonal, top-k
        s = torch.as_tensor(rows(a, b))
        if s.shape != (b - a, n):
            raise MetricInputError(f"score rows {a}-{b - 1} have shape {tuple(s.shape)}, expected {(b - a, n)}")
        if torch.isnan(s).any():
            raise MetricInputError(f"scores contain {int(torch.isnan(s).sum())} NaN values (rows {a}-{b - 1})")
        if diag is None:
            diag = torch.empty(n, dtype=s.dtype)
            top_scores = np.empty((n, k), s.numpy().dtype)
        d = s[torch.arange(b - a), torch.arange(a, b)]
        diag[a:b] = d
        t2v_gt[a:b] = (s > d[:, None]).sum(1).numpy()
        t2v_ge[a:b] = (s >= d[:, None]).sum(1).numpy()
        sn = s.numpy()
        top[a:b] = _top(sn, k)
        top_scores[a:b] = np.take_along_axis(sn, top[a:b], axis=1)
    v2t_gt, v2t_ge = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for a, b in _blocks(n, block):  # pass 2: columns against the diagonal
        s = torch.as_tensor(rows(a, b))
        v2t_gt += (s > diag[None, :]).sum(0).numpy()
        v2t_ge += (s >= diag[None, :]).sum(0).numpy()
    return RankCounts(t2v_gt, t2v_ge, v2t_gt, v2t_ge, top, top_scores, diag.numpy())


def _top(s: np.ndarray, k: int) -> np.ndarray:
    """np.argsort(-s, kind='stable')[:, :k] without sorting whole rows."""
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]
    out = np.empty((len(s), k), np.int64)
    for i, row in enumerate(s):
        cand = np.flatnonzero(row >= kth[i])  # all above the k-th score, and every tie with it
        out[i] = cand[np.argsort(-row[cand], kind="stable")[:k]]
    return out


def metrics_from_counts(counts: RankCounts | dict, ties: str = "pessimistic") -> dict[str, float]:
    """`retrieval_metrics` of the full matrix, from the counts alone."""
    if ties not in TIES:
        raise MetricInputError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    c = counts.to_dict() if isinstance(counts, RankCounts) else counts
    out: dict[str, float] = {}
    for prefix, gt, ge in (("", c["t2v_gt"], c["t2v_ge"]), ("v2t_", c["v2t_gt"], c["v2t_ge"])):
        gt, ge = np.asarray(gt, np.int64), np.asarray(ge, np.int64)
        out.update(_summary(ge, prefix) if ties == "pessimistic" else _pooled(gt, ge, prefix))
    return out


def _pooled(gt: np.ndarray, ge: np.ndarray, prefix: str) -> dict[str, float]:
    """Row i contributes the 0-based positions gt_i .. ge_i - 1; R@k, MedR and MeanR of their pool (+1), with
    the same float operations as `_summary` on the listed pool (so the numbers are equal, not just close)."""
    m = int((ge - gt).sum())
    out = {f"{prefix}R@{k}": float(100.0 * (int(np.clip(np.minimum(ge, k) - gt, 0, None).sum()) / m)) for k in _KS}
    n = int(ge.max()) + 1
    hist = np.zeros(n + 1, np.int64)  # positions per value, from +1/-1 at interval ends
    np.add.at(hist, gt, 1)
    np.add.at(hist, ge, -1)
    cum = np.cumsum(np.cumsum(hist)[:n])  # positions <= value

    def kth(i: int) -> int:  # the i-th smallest pooled position (0-based)
        return int(np.searchsorted(cum, i + 1))

    med = kth(m // 2) if m % 2 else (kth(m // 2 - 1) + kth(m // 2)) / 2
    out[f"{prefix}MedR"] = float(med + 1)
    total = int(((ge - 1) * ge // 2 - (gt - 1) * gt // 2).sum())  # sum of gt..ge-1 per row
    out[f"{prefix}MeanR"] = float((total + m) / m)
    return out
