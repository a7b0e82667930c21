"""`vlmbench features extract`: a folder of videos -> `<video_id>.npy` S3D features, one 512-d row per second.

Resumable (a video whose .npy exists is skipped; every file is written atomically), decoding runs in
background threads so the model does not wait on it, an unreadable video is recorded in failed.csv and the
run goes on. Layout and dtype are those every reader expects (float16, L2-normalised rows by default).
"""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..data import marker
from ..errors import InputError
from ..io import FolderLock, atomic_write, ensure_writable, write_json, write_text
from ..io import file_sha256 as sha256
from . import decode
from . import s3d as s3dmod

SETTINGS_FILE = "extraction.json"
FAILED_FILE = "failed.csv"


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (video id, file, reason)
    video_seconds: float = 0.0  # seconds of video extracted (rows written)
    wall_s: float = 0.0
    decode_s: float = 0.0  # summed over decoding threads
    model_s: float = 0.0  # S3D forward + normalisation
    wait_s: float = 0.0  # the model waiting for the decoder

    @property
    def speed(self) -> float:
        """Seconds of video per second of wall time."""
        return self.video_seconds / self.wall_s if self.wall_s else 0.0

    @property
    def decode_share(self) -> float:
        busy = self.decode_s + self.model_s
        return self.decode_s / busy if busy else 0.0


def list_videos(folder: Path, exclude: Path | None = None) -> list[tuple[str, Path]]:
    """Every file in the folder and one level of subfolders (as MMPT's PathBuilder); id = name without extension.
    `exclude` (the output folder, when it sits inside the video folder) is not listed."""
    if not folder.is_dir():
        raise InputError("video folder not found", path=folder)
    skip = exclude.resolve() if exclude is not None else None
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.resolve() != skip):
        files += [p for p in sorted(sub.iterdir()) if p.is_file() and not p.name.startswith(".")]
    seen: dict[str, Path] = {}
    for p in files:
        vid = p.stem
        if vid in seen:
            raise InputError(
                f"two videos share the id {vid!r}: {seen[vid]} and {p} (ids are file names without extension)",
                path=folder,
            )
        seen[vid] = p
    if not seen:
        raise InputError("no video files", path=folder)
    return list(seen.items())


def _settings(weights: Path | None, size: int, l2: bool, half: bool) -> dict:
    return {
        "encoder": "S3D-G HowTo100M (MIL-NCE) video_embedding",
        "weights": None if weights is None else weights.name,
        "weights_sha256": None if weights is None else sha256(weights),
        "random_init": weights is None,
        "fps": decode.FPS,
        "size": size,
        "clip_frames": decode.CLIP_FRAMES,
        "l2_normalize": l2,
        "dtype": "float16" if half else "float32",
    }


def _check_folder(out: Path, settings: dict) -> None:
    """Never mix features of two extractions (other weights, size, dtype, ...) in one folder."""
    path = out / SETTINGS_FILE
    has_features = any(p.suffix == ".npy" for p in out.iterdir()) if out.is_dir() else False
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"unreadable ({e})", path=path) from None
        diff = [
            k
            for k in settings
            if old.get(k) != settings[k]
            and not (k == "weights" and old.get("weights_sha256") == settings["weights_sha256"])
        ]  # renamed file
        if diff:
            raise InputError(
                "this folder holds features of another extraction (differs in "
                + ", ".join(f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in diff)
                + "); use another --out",
                path=out,
            )
    elif has_features:
        raise InputError(
            f"folder already holds .npy files but no {SETTINGS_FILE}: not written by this extractor; use another --out",
            path=out,
        )


_END = object()  # a decoding thread's last item for one video


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put, giving up when the run stops (so no thread hangs on a queue nobody reads)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _failure(e: Exception) -> str:
    return str(e) if isinstance(e, decode.DecodeError) else f"{type(e).__name__}: {e}"


def _produce(path: Path, size: int, group: int, q: queue.Queue, stop: threading.Event) -> tuple[str | None, float]:
    """Decode one video into `q` (clip groups, then _END); returns (failure or None, seconds decoding)."""
    t0, blocked, reason = time.perf_counter(), 0.0, None
    try:
        for g in decode.iter_clip_groups(path, size, group):
            tb = time.perf_counter()
            if not _put(q, g, stop):
                break
            blocked += time.perf_counter() - tb
    except Exception as e:  # noqa: BLE001 - one bad video must not end the run; its reason is reported
        reason = _failure(e)
    busy = time.perf_counter() - t0 - blocked
    _put(q, _END, stop)
    return reason, busy


def _inline(path: Path, size: int, group: int):
    """workers=0: decode in the main thread; the model waits for every decoded group."""
    state: dict = {"reason": None, "decode": 0.0}

    def groups():
        it = decode.iter_clip_groups(path, size, group)
        while True:
            t0 = time.perf_counter()
            try:
                g = next(it)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - reported, the run goes on
                state["reason"] = _failure(e)
                return
            finally:
                state["decode"] += time.perf_counter() - t0
            yield g

    return groups(), lambda: (state["reason"], state["decode"], state["decode"])


def _streams(todo: list[tuple[str, Path]], size: int, group: int, workers: int):
    """Per video in order: (vid, path, clip groups, finish() -> (failure, decode s, model-wait s)).
    With workers > 0, up to workers+1 videos are decoded ahead into bounded queues (memory stays bounded
    however long a video is)."""
    if workers == 0:
        for vid, path in todo:
            yield (vid, path, *_inline(path, size, group))
        return
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        try:
            pending: deque = deque()
            it = iter(todo)

            def submit(item) -> None:
                q: queue.Queue = queue.Queue(maxsize=2)
                pending.append((*item, q, pool.submit(_produce, item[1], size, group, q, stop)))

            for item in it:
                submit(item)
                if len(pending) > workers:
                    break
            while pending:
                vid, path, q, fut = pending.popleft()
                waited = [0.0]

                def groups(q=q, waited=waited):
                    while True:
                        t0 = time.perf_counter()
                        g = q.get()
                        waited[0] += time.perf_counter() - t0
                        if g is _END:
                            return
                        yield g

                yield vid, path, groups(), lambda fut=fut, waited=waited: (*fut.result(), waited[0])
                nxt = next(it, None)
                if nxt is not None:
                    submit(nxt)
        finally:
            stop.set()


@torch.no_grad()
def embed_group(model: torch.nn.Module, group: np.ndarray, device: torch.device, l2: bool = True) -> np.ndarray:
    """uint8 clips (k, 30, H, W, 3) -> (k, 512) float32 video embeddings (L2-normalised rows by default)."""
    emb = model(decode.clips_to_input(group, device))["video_embedding"].float()
    return (F.normalize(emb, dim=1) if l2 else emb).cpu().numpy()


def _save_npy(path: Path, arr: np.ndarray) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, arr, allow_pickle=False)

    atomic_write(path, write)


def write_failed(out: Path, failed: list[tuple[str, str, str]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["video_id", "file", "reason"])
    w.writerows(failed)
    return write_text(out / FAILED_FILE, buf.getvalue())


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise InputError(f"not a torch device ({e})", path="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine", path="--device")
    return dev


def extract(
    videos: str | Path,
    out: str | Path,
    weights: str | Path | None = None,
    *,
    random_init: bool = False,
    batch: int = 32,
    device: str | None = None,
    workers: int = 2,
    size: int = decode.SIZE,
    l2: bool = True,
    half: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
    model: torch.nn.Module | None = None,
) -> Summary:
    """Extract every video not yet done; `model` (a loaded S3D) is for tests and the bench only."""
    videos, out = Path(videos), Path(out)
    if batch < 1:
        raise InputError("must be at least 1", path="--batch")
    if workers < 0:
        raise InputError("must be 0 (decode in the main thread) or more", path="--workers")
    if size < 32 or size % 2:
        raise InputError("must be an even number >= 32", path="size")
    if weights is None and not random_init and model is None:
        raise InputError(
            "give the S3D checkpoint (s3d_howto100m.pth); --random-init is for testing only", path="--weights"
        )
    if weights is not None and random_init:
        raise InputError("give either --weights or --random-init, not both", path="--random-init")
    weights = Path(weights) if weights is not None else None
    ensure_writable(out)  # a file in the way, a read-only or full disk: one line before any work
    items = list_videos(videos, exclude=out)
    dev = resolve_device(device)
    settings = _settings(weights, size, l2, half)
    _check_folder(out, settings)
    with FolderLock(out):  # one extractor per folder: a second one is refused, never interleaved
        return _extract(items, out, weights, settings, model, dev, batch, workers, size, l2, half, progress, say)


def _extract(items, out, weights, settings, model, dev, batch, workers, size, l2, half, progress, say) -> Summary:
    """The extraction proper, under the folder's lock: the model, then every video not yet done."""
    if model is None:
        if weights is not None:
            model = s3dmod.load_weights(weights, say=say)
        else:
            say("S3D: RANDOM initialisation (--random-init): features are for testing only")
            model = s3dmod.random_model()
    model = model.to(dev).eval()
    for orphan in out.glob(".*.tmp"):  # left by a killed run
        orphan.unlink(missing_ok=True)
    write_json(out / SETTINGS_FILE, settings)
    if weights is None:
        write_text(out / marker.MARKER, marker.NOTE.format(folder=out) + "\n")

    summary = Summary()
    summary.skipped = [vid for vid, _ in items if (out / f"{vid}.npy").is_file()]
    todo = [(vid, path) for vid, path in items if not (out / f"{vid}.npy").is_file()]
    say(
        f"{len(items)} videos: {len(summary.skipped)} already extracted, {len(todo)} to do "
        f"(batch {batch}, device {dev}, {workers} decoding threads)"
    )

    t_start = time.perf_counter()
    with _Progress(progress, len(todo)) as bar:
        for vid, path, groups, finish in _streams(todo, size, batch, workers):
            rows = []
            for g in groups:
                t0 = time.perf_counter()
                rows.append(embed_group(model, g, dev, l2=l2))
                summary.model_s += time.perf_counter() - t0
            reason, decode_s, waited = finish()
            summary.decode_s += decode_s
            summary.wait_s += waited
            if reason is not None:
                summary.failed.append((vid, str(path), reason))
                say(f"failed: {path.name}: {reason}")
            else:
                feats = np.concatenate(rows)
                _save_npy(out / f"{vid}.npy", feats.astype(np.float16 if half else np.float32))
                summary.done.append(vid)
                summary.video_seconds += len(feats)
            summary.wall_s = time.perf_counter() - t_start
            bar.advance(f"{summary.speed:.2f} s video/s, {len(summary.failed)} failed")
    summary.wall_s = time.perf_counter() - t_start
    write_failed(out, summary.failed)
    return summary


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(
                TextColumn("videos"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}", markup=False),
                TimeElapsedColumn(),
            )
            self.task = self.p.add_task("extract", total=self.total, info="")
            self.p.start()
        return self

    def advance(self, info: str) -> None:
        if self.enabled:
            self.p.update(self.task, advance=1, info=info)

    def __exit__(self, *exc):
        if self.enabled:
            self.p.stop()
        return False


def summary_lines(s: Summary, out: Path) -> list[str]:
    lines = [
        f"done {len(s.done)}, skipped {len(s.skipped)} (already extracted), failed {len(s.failed)}",
        f"{s.video_seconds:.0f} s of video in {s.wall_s:.1f} s: {s.speed:.2f} s of video per second; "
        f"decoder {100 * s.decode_share:.0f}% of busy time, model waited {s.wait_s:.1f} s",
    ]
    lines += [f"  failed {vid} ({Path(f).name}): {reason}" for vid, f, reason in s.failed]
    if s.failed:
        lines.append(f"failures listed in {out / FAILED_FILE}")
    return lines
