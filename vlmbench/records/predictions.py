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

from ..errors import InputError, one_line
from ..io import NPY_ERRORS, atomic_write

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
    """(task, run config, arrays) of a predictions.npz; anything else (a truncated or damaged archive, a plain
    .npy, a pickle, members that are not arrays, a config that is not a JSON object, more than 8 GB once
    decompressed) is one InputError naming the file. Nothing is unpickled."""
    import zipfile
    import zlib

    limit = 8 << 30  # bytes once decompressed: retrieval predictions hold no N x N matrix (MBs); old ones ~100 MB
    # RuntimeError: zipfile's "is encrypted, password required" when a damaged flag says so
    damaged = (*NPY_ERRORS, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)

    def bad(why: object) -> InputError:
        return InputError(f"not a vlmbench predictions file ({one_line(why)})", path=path)

    try:
        f = open(path, "rb")  # ours to close: np.load leaves its own file open when the zip is damaged
    except OSError as e:
        raise bad(e) from None
    with f:
        try:
            loaded = np.load(f, allow_pickle=False)
        except damaged as e:
            raise bad(e) from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise bad("a single .npy array, not an .npz archive")
        with loaded as z:
            try:
                size = sum(info.file_size for info in z.zip.infolist())
                if size > limit:
                    raise bad(f"{size / (1 << 30):.1f} GB once decompressed, over the {limit >> 30} GB limit")
                data = {k: z[k] for k in z.files}
            except damaged as e:
                raise bad(f"damaged or truncated archive: {e}") from None
            except MemoryError:
                raise bad("an array larger than the memory") from None
    odd = [k for k, v in data.items() if not isinstance(v, np.ndarray)]
    if odd:
        raise bad(f"member {odd[0]!r} is not a .npy array")
    for key in ("__task__", "__config__"):
        if key not in data:
            raise bad(f"no {key}")
        if data[key].shape != () or data[key].dtype.kind != "U":
            raise bad(f"{key} is not a string")
    task = str(data.pop("__task__"))
    try:
        cfg = json.loads(str(data.pop("__config__")))
    except (ValueError, RecursionError) as e:
        raise bad(f"__config__ is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise bad("__config__ is not a JSON object")
    return task, cfg, data


def example_arrays(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-example arrays saved with the predictions (`example:*` keys; first axis = resampling unit)."""
    return {k: v for k, v in preds.items() if k.startswith(EXAMPLE_PREFIX)}


EXAMPLE_PREFIX = "example:"
# Predictions whose examples share source videos (YouCook2 clips) carry each example's video under this key; the
# family's per_example turns it into `example:cluster`, the unit the bootstrap draws (vlmbench.stats.intervals).
SOURCE_VIDEO = "source_video"
CLUSTER_KEY = EXAMPLE_PREFIX + "cluster"
