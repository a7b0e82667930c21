"""COIN action segmentation: per-second targets, window averaging, frame accuracy."""

import math

import numpy as np

from vlmbench.metrics import MetricInputError

CONVENTIONS: dict[str, str] = {
    "fps": "1 frame per second (one S3D feature per second, MMPT convention; the COIN paper used 10 fps)",
    "targets": "zeros (0 = background), then for each segment in file order "
    "t[floor(start):ceil(end)] = step_id, clipped to [0, n_frames]; later segments overwrite earlier ones",
    "frame_acc": "percent of correct frames, micro-averaged over all frames of all videos, "
    "background frames included (MMPT/COIN; an all-background predictor already scores well)",
    "frame_acc_nobg": "percent of correct frames among frames whose target is not background; "
    "NaN when there are no foreground frames",
    "windows": "sliding windows of 32 s, stride 16 at test; the last window starts at the first stride position "
    "with <= 32 s left and ends at the video end (the reference's rule); a video shorter than the window gets "
    "one window",
    "window_averaging": "per-second logits are averaged over all windows covering that second, then argmax",
}


def frame_targets(n_frames: int, segments: list[tuple[int, float, float]]) -> np.ndarray:
    """Per-second int64 labels: 0 = background, segment step ids painted in order (later wins)."""
    if n_frames < 0:
        raise MetricInputError(f"n_frames must be >= 0, got {n_frames}")
    t = np.zeros(n_frames, dtype=np.int64)
    for step_id, start, end in segments:
        if not (math.isfinite(start) and math.isfinite(end)):
            raise MetricInputError(f"segment ({step_id}, {start}, {end}) has a non-finite time")
        if int(step_id) != step_id or step_id < 0:
            raise MetricInputError(f"step id must be a non-negative integer, got {step_id!r}")
        # Clip both ends to [0, T]: a raw negative slice bound would wrap around in Python.
        lo = min(n_frames, max(0, math.floor(start)))
        hi = max(0, min(n_frames, math.ceil(end)))
        t[lo:hi] = int(step_id)
    return t


def frame_accuracy(preds: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    """Micro frame accuracy over all videos, with and without background frames (percent)."""
    if len(preds) != len(targets):
        raise MetricInputError(f"{len(preds)} predictions but {len(targets)} targets")
    for i, (p, t) in enumerate(zip(preds, targets)):
        if np.shape(p) != np.shape(t) or np.ndim(t) != 1:
            raise MetricInputError(
                f"video {i}: prediction shape {np.shape(p)} != target shape {np.shape(t)} (need 1-D)"
            )
    if not preds or sum(len(t) for t in targets) == 0:
        raise MetricInputError("no frames to score")
    p = np.concatenate([np.asarray(x) for x in preds])
    t = np.concatenate([np.asarray(x) for x in targets])
    correct = p == t
    fg = t != 0
    return {
        "frame_acc": float(100.0 * correct.mean()),
        "frame_acc_nobg": float(100.0 * correct[fg].mean()) if fg.any() else float("nan"),
        "n_frames": int(t.size),
    }


def sliding_windows(n_frames: int, window: int = 32, stride: int = 16) -> list[tuple[int, int]]:
    """[start, end) windows at 0, stride, 2*stride, ...; the last one is the first whose start has
    <= window seconds left, and it ends at n_frames (the reference's rule: n=50, stride 16 gives
    (0,32), (16,48), (32,50), not a final (18,50))."""
    if n_frames < 1 or window < 1 or stride < 1:
        raise MetricInputError(f"need n_frames, window, stride >= 1, got {n_frames}, {window}, {stride}")
    out, start = [], 0
    while n_frames - start > window:
        out.append((start, start + window))
        start += stride
    out.append((start, n_frames))
    return out


def average_window_logits(window_logits: list[np.ndarray], window_starts: list[int], n_frames: int) -> np.ndarray:
    """(n_frames, C) mean of the logits of every window covering each second.

    window_logits[i] has shape (w_len_i, C) and covers seconds window_starts[i] .. + w_len_i - 1.
    Every second must be covered by at least one window.
    """
    if len(window_logits) != len(window_starts) or not window_logits:
        raise MetricInputError(
            f"need one start per window and >= 1 window, got {len(window_logits)} and {len(window_starts)}"
        )
    n_classes = np.shape(window_logits[0])[-1]
    for i, (w, s) in enumerate(zip(window_logits, window_starts)):
        if np.ndim(w) != 2 or np.shape(w)[1] != n_classes:
            raise MetricInputError(f"window {i}: logits shape {np.shape(w)}, expected (w_len, {n_classes})")
        if s < 0 or s + len(w) > n_frames:
            raise MetricInputError(f"window {i} covers [{s}, {s + len(w)}), outside [0, {n_frames})")
    frames = np.concatenate([s + np.arange(len(w)) for w, s in zip(window_logits, window_starts)])
    values = np.concatenate([np.asarray(w, dtype=np.float64) for w in window_logits])
    sums = np.zeros((n_frames, n_classes), dtype=np.float64)
    np.add.at(sums, frames, values)
    counts = np.bincount(frames, minlength=n_frames)
    if (counts == 0).any():
        raise MetricInputError(f"second {int(np.argmin(counts))} is not covered by any window")
    return sums / counts[:, None]
