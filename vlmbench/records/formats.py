"""How each task family lays its predictions out as flat npz arrays, and how they are read back.

The adapters pack with these when they predict; floors pack their guesses the same way; scoring, error exports,
intervals and reports unpack with them. One place per layout, below every layer that uses it.

    retrieval      per-query rank counts (both tie policies), top-5 ids and scores, the true score; never N x N
    segmentation   per-video label arrays, concatenated, with offsets
    localization   per-video (T, K) 0/1 matrices, flattened, with their shapes
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

# ---- retrieval ----------------------------------------------------------------------------------------------

COUNT_KEYS = ("t2v_gt", "t2v_ge", "v2t_gt", "v2t_ge")


def pack_retrieval(counts: Any, ids, texts=None) -> dict[str, np.ndarray]:
    """Retrieval's saved predictions from a metrics.retrieval_blocks.RankCounts: per query the counts both tie policies re-score from (4 x N), the top-5 clips and
    their scores and the true score (examples, retrieval_errors.csv), the pessimistic ranks as per-example values
    (intervals, paired compare). Never the N x N matrix."""
    out = {
        **counts.to_dict(),
        "ids": np.array(list(ids), dtype=str),
        "example:rank": counts.t2v_ge.copy(),
        "example:v2t_rank": counts.v2t_ge.copy(),
    }
    if texts is not None:
        out["texts"] = np.array(list(texts), dtype=str)  # for retrieval_errors.csv
    return out


def ranked_view(preds) -> dict:
    """ids, pessimistic rank, true score, top-5 (indices) and their scores, from either predictions format."""
    ids = [str(x) for x in preds["ids"]]
    if "scores" in preds:  # the old format: the full matrix
        from ..metrics.retrieval import ranks

        scores = np.asarray(preds["scores"])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        return {
            "ids": ids,
            "rank": ranks(scores),
            "true_score": np.diagonal(scores).copy(),
            "top": top,
            "top_scores": np.take_along_axis(scores, top, axis=1),
        }
    return {
        "ids": ids,
        "rank": np.asarray(preds["t2v_ge"]),
        "true_score": np.asarray(preds["true_score"]),
        "top": np.asarray(preds["top"]),
        "top_scores": np.asarray(preds["top_scores"]),
    }


# ---- segmentation -------------------------------------------------------------------------------------------


def pack_videos(ids: list[str], preds: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-video label arrays as npz-friendly flat arrays: concatenation + offsets + ids."""
    lengths = [len(t) for t in targets]
    return {
        "ids": np.array(ids, dtype=str),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "pred": np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, np.int64),
        "target": np.concatenate(targets).astype(np.int64) if targets else np.zeros(0, np.int64),
    }


def unpack_videos(preds: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    try:
        ids, offsets, pred, target = (preds[k] for k in ("ids", "offsets", "pred", "target"))
    except KeyError as e:
        raise InputError(f"segmentation predictions lack {e}", path="predictions") from None
    if len(offsets) != len(ids) + 1 or offsets[-1] != len(pred) or len(pred) != len(target):
        raise InputError("segmentation predictions: offsets, pred and target disagree", path="predictions")
    cut = lambda a: [a[s:e] for s, e in zip(offsets[:-1], offsets[1:])]  # noqa: E731
    return [str(i) for i in ids], cut(pred), cut(target)


# ---- localization -------------------------------------------------------------------------------------------


def pack_matrices(
    tasks: list[str], ids: list[str], y_true: list[np.ndarray], y_pred: list[np.ndarray], primary: list[str]
) -> dict[str, np.ndarray]:
    """Per-video (T, K) matrices (K varies with the task) as flat npz-friendly arrays + shapes."""

    def flat(ms: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([m.ravel() for m in ms]).astype(np.uint8) if ms else np.zeros(0, np.uint8)

    return {
        "tasks": np.array(tasks, dtype=str),
        "ids": np.array(ids, dtype=str),
        "shapes": np.array([m.shape for m in y_true], dtype=np.int64).reshape(-1, 2),
        "y_true": flat(y_true),
        "y_pred": flat(y_pred),
        "primary": np.array(primary, dtype=str),
    }


def unpack_matrices(preds: dict[str, np.ndarray]):
    try:
        tasks, ids, shapes, yt, yp, primary = (
            preds[k] for k in ("tasks", "ids", "shapes", "y_true", "y_pred", "primary")
        )
    except KeyError as e:
        raise InputError(f"localization predictions lack {e}", path="predictions") from None
    sizes = shapes.prod(axis=1) if len(shapes) else np.zeros(0, np.int64)
    if len(shapes) != len(tasks) or sizes.sum() != len(yt) or len(yt) != len(yp):
        raise InputError("localization predictions: shapes, y_true and y_pred disagree", path="predictions")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    cut = lambda a: [a[s:e].reshape(shape) for s, e, shape in zip(bounds[:-1], bounds[1:], shapes)]  # noqa: E731
    return [str(t) for t in tasks], [str(i) for i in ids], cut(yt), cut(yp), [str(t) for t in primary]
