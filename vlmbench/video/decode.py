"""Video -> S3D clips with PyAV, reproducing the official MMPT extraction pipeline.

FFmpeg's own filters do the work (PyAV bundles FFmpeg; no system ffmpeg, no torchvision), in the order of
MMPT's ffmpeg-python chain: `fps=30` -> `scale` to short side 224 (long side int(long*224/short), FFmpeg's
default scaler) -> centre `crop` 224x224 at (int((W'-224)/2), int((H'-224)/2)) -> rgb24. Then /255, black frames
appended up to a multiple of 30 and non-overlapping 30-frame clips: clip i is second i.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FPS = 30
SIZE = 224
CLIP_FRAMES = 30


class DecodeError(Exception):
    """The file cannot be opened or decoded as a video (the message says why)."""


def scaled_size(width: int, height: int, size: int = SIZE) -> tuple[int, int]:
    """Short side -> size, long side -> int(long * size / short) (truncated, as in MMPT)."""
    if width <= height:
        return size, int(height * size / width)
    return int(width * size / height), size


def iter_frames(path: str | Path, size: int = SIZE, fps: int = FPS) -> Iterator[np.ndarray]:
    """uint8 (size, size, 3) RGB frames at `fps`, one at a time (a long video never sits in memory whole)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height:
                raise DecodeError("video stream has no frame size")
            sw, sh = scaled_size(width, height, size)
            graph = av.filter.Graph()
            chain = [
                graph.add_buffer(template=stream),
                graph.add("fps", str(fps)),
                graph.add("scale", f"{sw}:{sh}"),
                graph.add("crop", f"{size}:{size}:{(sw - size) // 2}:{(sh - size) // 2}"),
                graph.add("format", "rgb24"),
                graph.add("buffersink"),
            ]
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            for frame in container.decode(stream):
                graph.push(frame)
                yield from _drain(graph)
            graph.push(None)  # end of stream: the fps filter emits its last frames
            yield from _drain(graph)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}") from None


def decode_frames(path: str | Path, size: int = SIZE, fps: int = FPS) -> np.ndarray:
    """uint8 (N, size, size, 3) RGB frames at `fps`; DecodeError if unreadable or empty."""
    frames = list(iter_frames(path, size, fps))
    if not frames:
        raise DecodeError("no decodable frames")
    return np.stack(frames)


def iter_clip_groups(
    path: str | Path, size: int = SIZE, group: int = 32, clip_frames: int = CLIP_FRAMES
) -> Iterator[np.ndarray]:
    """uint8 (k <= group, clip_frames, size, size, 3) groups of consecutive clips; the last clip is padded
    with black frames (as MMPT pads after /255, zeros either way)."""
    per = group * clip_frames
    buf: list[np.ndarray] = []
    seen = 0
    for frame in iter_frames(path, size):
        buf.append(frame)
        seen += 1
        if len(buf) == per:
            yield np.stack(buf).reshape(group, clip_frames, size, size, 3)
            buf = []
    if not seen:
        raise DecodeError("no decodable frames")
    if buf:
        n_clips = math.ceil(len(buf) / clip_frames)
        out = np.zeros((n_clips * clip_frames, size, size, 3), dtype=np.uint8)
        out[: len(buf)] = np.stack(buf)
        yield out.reshape(n_clips, clip_frames, size, size, 3)


def _drain(graph) -> Iterator[np.ndarray]:
    import av

    while True:
        try:
            frame = graph.pull()
        except (BlockingIOError, av.error.EOFError):
            return
        except av.FFmpegError as e:  # some builds report EAGAIN as an FFmpegError with that errno
            if getattr(e, "errno", None) == 11:
                return
            raise
        yield frame.to_ndarray()


def to_clips(frames: np.ndarray, clip_frames: int = CLIP_FRAMES) -> np.ndarray:
    """float32 (n_clips, 3, clip_frames, H, W) in [0, 1]; the last clip padded with black frames."""
    n = len(frames)
    n_clips = math.ceil(n / clip_frames)
    clips = np.zeros((n_clips * clip_frames, *frames.shape[1:]), dtype=np.float32)
    np.divide(frames, 255.0, out=clips[:n], dtype=np.float32)
    clips = clips.reshape(n_clips, clip_frames, *frames.shape[1:])  # (n, T, H, W, 3)
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))


def decode_clips(path: str | Path, size: int = SIZE) -> np.ndarray:
    return to_clips(decode_frames(path, size=size))


def clips_to_input(group: np.ndarray, device=None):
    """uint8 (k, T, H, W, 3) -> float32 torch (k, 3, T, H, W) in [0, 1] on `device`, the S3D input (== to_clips).
    The uint8 frames travel to the device (a quarter of the bytes) and are converted there."""
    import torch

    return torch.from_numpy(group).to(device).permute(0, 4, 1, 2, 3).float().div_(255.0)
