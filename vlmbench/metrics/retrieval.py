"""Text-video retrieval: R@k, median and mean rank, in both directions."""

import numpy as np

from vlmbench.metrics import MetricInputError

CONVENTIONS: dict[str, str] = {
    "input": "square text x video score matrix; row i's ground truth is column i",
    "directions": "R@k/MedR/MeanR are text->video (rows); v2t_* are video->text (columns)",
    "ties": "pessimistic: rank = 1 + number of OTHER items scoring >= the true item, so ties count "
    "against the model (a constant-score model gets rank N, never a perfect score); "
    "MMPT/C4C/MA are optimistic on ties",
    "rank_base": "ranks are 1-based (best = 1)",
    "median": "np.median of the 1-based ranks: the mean of the two middle ranks when N is even "
    "(torch.median would take the lower one)",
    "scale": "R@k in percent (0-100); MedR/MeanR as rank numbers",
}

_KS = (1, 5, 10)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of the diagonal item in each row of a square score matrix (ties pessimistic)."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise MetricInputError(f"scores must be a non-empty square 2-D matrix, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise MetricInputError(f"scores must be real numbers, got dtype {scores.dtype}")
    if np.isnan(scores).any():
        raise MetricInputError(f"scores contain {int(np.isnan(scores).sum())} NaN values")
    true = np.diagonal(scores)[:, None]
    # Counting '>=' includes the true item itself, which supplies the +1 of a 1-based rank.
    return (scores >= true).sum(axis=1)


def _summary(r: np.ndarray, prefix: str) -> dict[str, float]:
    out = {f"{prefix}R@{k}": float(100.0 * np.mean(r <= k)) for k in _KS}
    out[f"{prefix}MedR"] = float(np.median(r))
    out[f"{prefix}MeanR"] = float(np.mean(r))
    return out


def retrieval_metrics(scores: np.ndarray) -> dict[str, float]:
    """R@1/5/10, MedR, MeanR for text->video (rows) and, prefixed ``v2t_``, video->text (scores.T)."""
    scores = np.asarray(scores)
    return {**_summary(ranks(scores), ""), **_summary(ranks(scores.T), "v2t_")}
