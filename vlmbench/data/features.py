"""Per-video S3D features: one `<video_id>.npy` per video, shape (seconds, 512), fp16 or fp32.

Files are opened memory-mapped and only the requested rows are converted to float32, so a
long video costs memory for the slice a task asks for, not for the whole file.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError

FEATURE_DIM = 512


class FeatureStore:
    """A folder of `<vid>.npy` feature files; ids come from one directory listing."""

    def __init__(self, folder: str | Path, dim: int = FEATURE_DIM):
        self.folder = Path(folder)
        self.dim = dim
        if not self.folder.is_dir():
            raise InputError("feature folder not found", path=self.folder)
        self._ids: tuple[str, ...] | None = None
        self._id_set: frozenset[str] = frozenset()

    def ids(self) -> tuple[str, ...]:
        """Sorted ids of the available feature files (listed once, then cached)."""
        if self._ids is None:
            names = (p.name[: -len(".npy")] for p in self.folder.iterdir() if p.name.endswith(".npy"))
            self._ids = tuple(sorted(names))
            self._id_set = frozenset(self._ids)
        return self._ids

    def __contains__(self, vid: object) -> bool:
        self.ids()
        return vid in self._id_set

    def __len__(self) -> int:
        return len(self.ids())

    def path(self, vid: str) -> Path:
        return self.folder / f"{vid}.npy"

    def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids (in the given order) that have no feature file."""
        return [vid for vid in ids if vid not in self]

    def n_seconds(self, vid: str) -> int:
        """Number of 1-second rows, read from the .npy header (no data is read)."""
        return int(self._open(vid).shape[0])

    def load(self, vid: str, start: int | None = None, end: int | None = None) -> np.ndarray:
        """Rows [start:end] as a float32 copy; the rest of the file stays on disk."""
        path = self.path(vid)
        rows = np.array(self._open(vid)[start:end], dtype=np.float32)
        if not np.isfinite(rows).all():
            bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0]) + (start or 0)
            raise InputError(f"contains NaN/inf (first at row {bad})", path=path)
        return rows

    def _open(self, vid: str) -> np.ndarray:
        path = self.path(vid)
        if not path.is_file():
            raise InputError(f"no feature file for video {vid!r}", path=path)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputError(f"not a readable .npy file ({e})", path=path) from None
        if arr.ndim != 2:
            raise InputError(f"expected shape (seconds, {self.dim}), got {arr.shape}", path=path)
        if arr.shape[1] != self.dim:
            raise InputError(f"expected width {self.dim}, got {arr.shape[1]}", path=path)
        if arr.dtype.kind != "f":
            raise InputError(f"expected float16 or float32 features, got {arr.dtype}", path=path)
        return arr


def resolve_missing(
    ids: Sequence[str], store: FeatureStore, allow_missing: bool, what: str
) -> tuple[list[str], int]:
    """Drop ids without features if allowed; fail loudly otherwise, and always if none remain.

    `what` names the items in messages, e.g. "test videos".
    """
    missing = store.missing(ids)
    if not missing:
        return list(ids), 0
    first = ", ".join(missing[:3])
    if len(missing) == len(ids):
        raise InputError(
            f"none of the {len(ids)} {what} has a feature file in {store.folder} (first: {first})",
            path=store.folder,
        )
    if not allow_missing:
        raise InputError(
            f"{len(missing)} of {len(ids)} {what} have no feature file in {store.folder} "
            f"(first: {first}); pass --allow-missing to skip them",
            path=store.folder,
        )
    gone = set(missing)
    return [vid for vid in ids if vid not in gone], len(missing)


def fingerprint(paths: Sequence[str | Path], ids: Iterable[str]) -> str:
    """16-hex provenance digest of the annotation files' bytes plus the sorted feature ids.

    Folders are hashed file by file (sorted relative names), so a caption folder or the
    CrossTask annotations folder can be passed as one path. Absolute paths are not hashed:
    the same data gives the same fingerprint on any machine.
    """
    h = hashlib.sha256()
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            for f in files:
                h.update(f.relative_to(p).as_posix().encode() + b"\0")
                h.update(f.read_bytes() + b"\0")
        elif p.is_file():
            h.update(p.read_bytes() + b"\0")
        else:
            raise InputError("annotation file not found", path=p)
        h.update(b"\1")  # separates files, so moving bytes between them changes the digest
    h.update("\n".join(sorted(ids)).encode())
    return h.hexdigest()[:16]
