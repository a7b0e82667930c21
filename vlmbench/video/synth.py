"""Synthetic test videos written with PyAV: shapes moving over a gradient (for tests and the bench)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def moving_shapes(n_frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, height, width, 3): a square and a disc crossing a colour gradient, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), np.full_like(xx, int(rng.integers(0, 256)))],
        axis=-1,
    ).astype(np.uint8)
    side = max(4, min(width, height) // 4)
    colour_a, colour_b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    vx, vy = rng.uniform(1, 4, 2)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for i in range(n_frames):
        f = base.copy()
        x0 = int(i * vx) % max(width - side, 1)
        y0 = int(i * vy) % max(height - side, 1)
        f[y0 : y0 + side, x0 : x0 + side] = colour_a
        cx, cy = (width - 1 - x0), (y0 + side) % height
        f[(xx - cx) ** 2 + (yy - cy) ** 2 < (side // 2) ** 2] = colour_b
        frames[i] = f
    return frames


def write_video(
    path: str | Path, n_frames: int, fps: int, width: int, height: int, seed: int = 0, codec: str = "mpeg4"
) -> Path:
    """An .mp4 (MPEG-4 part 2, yuv420p) of moving shapes; duration n_frames / fps seconds."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "3"} if codec == "mpeg4" else {}
        for frame in moving_shapes(n_frames, width, height, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
