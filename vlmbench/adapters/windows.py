"""Sliding windows over one video's per-second features (COIN and CrossTask).

The reference cuts a video into 32-s windows (stride 8 for COIN training, 16 at test; the last window is the
one that ends at the video end), runs all windows of the video as one batch through the isolated video half,
and at test averages each second's logits over the windows covering it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..metrics.segmentation import average_window_logits, sliding_windows
from ..model.layout import MAX_VIDEO_LEN
from ..models.interface import VideoTextModel


@dataclass
class Windows:
    video: torch.Tensor  # (W, 32, 512) float32, seconds past a window's end are zero
    vmask: torch.Tensor  # (W, 32) bool, valid seconds
    spans: list[tuple[int, int]]  # [start, end) seconds of each window
    n_frames: int

    def to(self, device: torch.device) -> Windows:
        return Windows(self.video.to(device), self.vmask.to(device), self.spans, self.n_frames)


def make_windows(feats: np.ndarray, window: int = 32, stride: int = 16) -> Windows:
    """All windows of one video, padded to the 32 video slots of the sequence."""
    if not 1 <= window <= MAX_VIDEO_LEN:
        raise InputError(
            f"window must be in 1..{MAX_VIDEO_LEN} (the video slots of the sequence), got {window}", path="window"
        )
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}", path="stride")
    n = len(feats)
    if n < 1:
        raise InputError("a video with no feature rows cannot be windowed")
    spans = sliding_windows(n, window, stride)
    video = torch.zeros(len(spans), MAX_VIDEO_LEN, feats.shape[1], dtype=torch.float32)
    vmask = torch.zeros(len(spans), MAX_VIDEO_LEN, dtype=torch.bool)
    for i, (s, e) in enumerate(spans):
        video[i, : e - s] = torch.from_numpy(np.asarray(feats[s:e], dtype=np.float32))
        vmask[i, : e - s] = True
    return Windows(video, vmask, spans, n)


def total(lengths, window: int, stride: int) -> int:
    """How many windows videos of these lengths (seconds) are cut into: a recipe's count, compared exactly."""
    return sum(len(sliding_windows(n, window, stride)) for n in lengths)


def count(counts: dict[str, int], key: str, win: Windows) -> None:
    """Add the windows a prediction actually made to a run's counts: the gate compares them exactly, so a stride
    or window that silently changes (in the recipe or in the adapter's call) fails it whatever the metric does."""
    counts[key] = counts.get(key, 0) + len(win.spans)


def frame_states(model: VideoTextModel, win: Windows, chunk: int = 0) -> torch.Tensor:
    """(W, 32, H) last-layer states of the video slots (the video-[SEP] dropped); padded slots are garbage
    and must be masked by the caller. `chunk` > 0 bounds how many windows go through at once (inference on
    long videos); 0 = all windows of the video in one batch, as the reference does."""
    if chunk <= 0 or len(win.spans) <= chunk:
        return model.encode_video(win.video, win.vmask).tokens[:, :MAX_VIDEO_LEN]
    parts = [
        model.encode_video(win.video[i : i + chunk], win.vmask[i : i + chunk]).tokens[:, :MAX_VIDEO_LEN]
        for i in range(0, len(win.spans), chunk)
    ]
    return torch.cat(parts)


def window_targets(targets: np.ndarray, win: Windows, fill) -> np.ndarray:
    """Per-window copies of per-second targets (T, ...) -> (W, 32, ...), `fill` in the padded slots.
    Overlapping windows simply repeat seconds, as the reference's training does."""
    targets = np.asarray(targets)
    out = np.full((len(win.spans), MAX_VIDEO_LEN, *targets.shape[1:]), fill, dtype=targets.dtype)
    for i, (s, e) in enumerate(win.spans):
        out[i, : e - s] = targets[s:e]
    return out


def average(values: torch.Tensor, win: Windows) -> np.ndarray:
    """(W, 32, C) per-window scores -> (T, C) float64 mean over the windows covering each second."""
    values = values.detach().float().cpu().numpy()
    return average_window_logits(
        [values[i, : e - s] for i, (s, e) in enumerate(win.spans)], [s for s, _ in win.spans], win.n_frames
    )
