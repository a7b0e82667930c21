"""Text-video retrieval: R@k, median and mean rank, in both directions."""

import numpy as np

from vlmbench.metrics import MetricInputError

CONVENTIONS: dict[str, str] = {
    "input": "square text x video score matrix; row i's ground truth is column i",
    "directions": "R@k/MedR/MeanR are text->video (rows); v2t_* are video->text (columns)",
    "ties": "pessimistic (default): rank = 1 + number of OTHER items scoring >= the true item, so ties count "
    "against the model (a constant-score model gets rank N, never a perfect score)",
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


TIES = {
    "pessimistic": CONVENTIONS["ties"],
    "mmpt": "mmpt (the reference's RetrievalMetric): every position whose score equals the true item's counts, "
    "all rows' positions are pooled; R@k = pooled positions < k / number of pooled positions (which can exceed "
    "the number of queries), MedR = median(pooled 0-based positions) + 1; neither optimistic nor pessimistic: "
    "a tie of m items spreads over m positions",
}


def mmpt_positions(scores: np.ndarray) -> np.ndarray:
    """0-based positions, pooled over rows, at which each row's sorted scores equal its diagonal score (the
    reference's np.where(sorted_row == diagonal) per row, concatenated)."""
    ranks(scores)  # the same input checks
    scores = np.asarray(scores)
    out = []
    for i, row in enumerate(scores):
        ordered = -np.sort(-row)  # descending, as the reference
        out.append(np.flatnonzero(ordered == row[i]))
    return np.concatenate(out)


def _summary(r: np.ndarray, prefix: str) -> dict[str, float]:
    out = {f"{prefix}R@{k}": float(100.0 * np.mean(r <= k)) for k in _KS}
    out[f"{prefix}MedR"] = float(np.median(r))
    out[f"{prefix}MeanR"] = float(np.mean(r))
    return out


def retrieval_metrics(scores: np.ndarray, ties: str = "pessimistic") -> dict[str, float]:
    """R@1/5/10, MedR, MeanR for text->video (rows) and, prefixed ``v2t_``, video->text (scores.T).
    ties: "pessimistic" (1-based rank counting every tied item as above the truth) or "mmpt" (the pooled
    tied positions of the reference, see TIES)."""
    if ties not in TIES:
        raise MetricInputError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    scores = np.asarray(scores)
    if ties == "mmpt":
        # pooled 1-based positions: R@k = share of positions <= k, MedR = median + 1 as the reference
        return {**_summary(mmpt_positions(scores) + 1, ""), **_summary(mmpt_positions(scores.T) + 1, "v2t_")}
    return {**_summary(ranks(scores), ""), **_summary(ranks(scores.T), "v2t_")}


def conventions(ties: str = "pessimistic") -> dict[str, str]:
    return {**CONVENTIONS, "ties": TIES[ties]}
