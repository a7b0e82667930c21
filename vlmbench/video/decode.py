"""Video -> S3D clips with PyAV, reproducing the official MMPT extraction pipeline.

FFmpeg's own filters do the work (PyAV bundles FFmpeg; no system ffmpeg, no torchvision), in the order of
MMPT's ffmpeg-python chain: `fps=30` -> `scale` to short side 224 (long side int(long*224/short), FFmpeg's
default scaler) -> centre `crop` 224x224 at (int((W'-224)/2), int((H'-224)/2)) -> rgb24. Then /255, black frames
appended up to a multiple of 30 and non-overlapping 30-frame clips: clip i is second i.
"""
from __future__ import annotations

import math
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


def decode_frames(path: str | Path, size: int = SIZE, fps: int = FPS) -> np.ndarray:
    """uint8 (N, size, size, 3) RGB frames at `fps`; DecodeError if unreadable or empty."""
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
            chain = [graph.add_buffer(template=stream),
                     graph.add("fps", str(fps)),
                     graph.add("scale", f"{sw}:{sh}"),
                     graph.add("crop", f"{size}:{size}:{(sw - size) // 2}:{(sh - size) // 2}"),
                     graph.add("format", "rgb24"),
                     graph.add("buffersink")]
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            graph.configure()
            frames: list[np.ndarray] = []
            for frame in container.decode(stream):
                graph.push(frame)
                _drain(graph, frames)
            graph.push(None)        # end of stream: the fps filter emits its last frames
            _drain(graph, frames)
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}") from None
    if not frames:
        raise DecodeError("no decodable frames")
    return np.stack(frames)


def _drain(graph, frames: list[np.ndarray]) -> None:
    import av

    while True:
        try:
            frames.append(graph.pull().to_ndarray())
        except (BlockingIOError, av.error.EOFError):
            return
        except av.FFmpegError as e:   # some builds report EAGAIN as an FFmpegError with that errno
            if getattr(e, "errno", None) == 11:
                return
            raise


def to_clips(frames: np.ndarray, clip_frames: int = CLIP_FRAMES) -> np.ndarray:
    """float32 (n_clips, 3, clip_frames, H, W) in [0, 1]; the last clip padded with black frames."""
    n = len(frames)
    n_clips = math.ceil(n / clip_frames)
    clips = np.zeros((n_clips * clip_frames, *frames.shape[1:]), dtype=np.float32)
    np.divide(frames, 255.0, out=clips[:n], dtype=np.float32)
    clips = clips.reshape(n_clips, clip_frames, *frames.shape[1:])     # (n, T, H, W, 3)
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))


def decode_clips(path: str | Path, size: int = SIZE) -> np.ndarray:
    return to_clips(decode_frames(path, size=size))
