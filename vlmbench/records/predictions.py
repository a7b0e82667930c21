"""The predictions files of a run folder: predictions.npz (every array `score` and `compare` need, re-scorable
offline) and predictions.jsonl (the same predictions, one readable JSON object per example).

The arrays' layout per task family lives in records/formats.py; the per-example records of the JSONL file come
from the task family (its adapter's `examples()`), handed in by the caller, so this module needs no adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_write

PREDICTIONS = "predictions.npz"
PREDICTIONS_JSONL = "predictions.jsonl"
RESULT = "result.json"


def save_predictions(
    path: Path, task: str, cfg: dict, preds: dict[str, np.ndarray], examples: Iterable[dict[str, Any]] | None = None
) -> Path:
    """predictions.npz and, when `examples` is given, predictions.jsonl beside it (one JSON object per example:
    id, target, prediction, score or rank), readable without numpy. Both atomic."""
    meta = {"__task__": np.array(task), "__config__": np.array(json.dumps(cfg))}
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), **meta, **preds))
    if examples is not None:
        lines = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in examples)
        atomic_write(Path(path).with_suffix(".jsonl"), lambda p: p.write_text(lines, encoding="utf-8"))
    return path


def load_predictions(path: Path) -> tuple[str, dict, dict[str, np.ndarray]]:
    """(task, config, arrays) of a predictions.npz; anything else is one InputError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        task, cfg = str(data.pop("__task__")), json.loads(str(data.pop("__config__")))
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"not a vlmbench predictions file ({e})", path=path) from None
    return task, cfg, data


def example_arrays(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-example arrays saved with the predictions (`example:*` keys; first axis = resampling unit)."""
    return {k: v for k, v in preds.items() if k.startswith(EXAMPLE_PREFIX)}


EXAMPLE_PREFIX = "example:"
# Predictions whose examples share source videos (YouCook2 clips) carry each example's video under this key; the
# family's per_example turns it into `example:cluster`, the unit the bootstrap draws (vlmbench.stats.intervals).
SOURCE_VIDEO = "source_video"
CLUSTER_KEY = EXAMPLE_PREFIX + "cluster"
