"""Per-video S3D features: one `<video_id>.npy` per video, shape (seconds, 512), fp16 or fp32.

Files are opened memory-mapped and only the requested rows are converted to float32, so a
long video costs memory for the slice a task asks for, not for the whole file.

One rule for every task and for pre-training: a feature file must be a 2-D float array of width 512
with at least one row and only finite values. `scan` reads a whole file once for its content digest
(provenance) and its first non-finite row (`data check`); both are cached by (size, mtime), in memory and
in a small JSON file per feature folder under the vlmbench cache, so a second run reads nothing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vlmbench.errors import InputError, one_line
from vlmbench.io import NPY_ERRORS, file_sha256

from .files import check_id

FEATURE_DIM = 512
DIGEST_CACHE_DIR = "feature-digests"


class Scan(NamedTuple):
    size: int
    sha256: str  # of the file's bytes
    bad_row: int | None  # first row holding NaN/inf, None when all are finite


_SCANS: dict[tuple[str, int, int], Scan] = {}  # (absolute path, size, mtime_ns) -> Scan, for this process


class FeatureStore:
    """A folder of `<vid>.npy` feature files; ids come from one directory listing."""

    def __init__(self, folder: str | Path, dim: int = FEATURE_DIM):
        self.folder = Path(folder)
        self.dim = dim
        if not self.folder.is_dir():
            raise InputError("feature folder not found", path=self.folder)
        from vlmbench.data import marker  # a folder extracted with --random-init says so to every reader

        marker.report(self.folder)
        self._ids: tuple[str, ...] | None = None
        self._id_set: frozenset[str] = frozenset()

    def ids(self) -> tuple[str, ...]:
        """Sorted ids of the available feature files (listed once, then cached)."""
        if self._ids is None:
            try:
                names = [p.name[: -len(".npy")] for p in self.folder.iterdir() if p.name.endswith(".npy")]
            except OSError as e:
                raise InputError(f"cannot list the feature folder ({e.strerror or e})", path=self.folder) from None
            self._ids = tuple(sorted(names))
            self._id_set = frozenset(self._ids)
        return self._ids

    def __contains__(self, vid: object) -> bool:
        self.ids()
        return vid in self._id_set

    def __len__(self) -> int:
        return len(self.ids())

    def path(self, vid: str) -> Path:
        return self.folder / f"{check_id(vid, 'feature', self.folder)}.npy"

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

    def stat(self, vid: str) -> os.stat_result:
        """The feature file's stat (symlinks followed); a missing file, a dangling or looping symlink, a folder
        are InputErrors naming the file."""
        path = self.path(vid)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise InputError(f"no feature file for video {vid!r}", path=path) from None
        except OSError as e:  # e.g. ELOOP: a symlink loop
            raise InputError(f"cannot read the feature file ({e.strerror or e})", path=path) from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"the feature file of video {vid!r} is not a regular file", path=path)
        return st

    def _open(self, vid: str) -> np.ndarray:
        path = self.path(vid)
        self.stat(vid)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except NPY_ERRORS as e:
            raise InputError(f"not a readable .npy file ({type(e).__name__}: {one_line(e)})", path=path) from None
        if arr.ndim != 2:
            raise InputError(f"expected shape (seconds, {self.dim}), got {arr.shape}", path=path)
        if arr.shape[1] != self.dim:
            raise InputError(f"expected width {self.dim}, got {arr.shape[1]}", path=path)
        if arr.dtype.kind != "f":
            raise InputError(f"expected float16 or float32 features, got {arr.dtype}", path=path)
        if arr.shape[0] == 0:
            raise InputError("0 rows: a feature file needs at least one second of video", path=path)
        return arr

    # -- whole-file scans: content digest and non-finite rows ------------------------------------------------
    def scan(self, vid: str) -> Scan:
        """Size, sha256 and first non-finite row of the file (read once per (size, mtime))."""
        return self.scans([vid])[vid]

    def scans(self, ids: Iterable[str], disk_cache: bool = True) -> dict[str, Scan]:
        """`scan` for many ids, reading the on-disk cache once and writing it back once (disk_cache=False: this
        process's memory only, for a corpus of a million files scanned in parallel shards)."""
        ids = list(ids)
        disk = _read_cache(self.folder) if disk_cache else {}
        out, changed = {}, False
        for vid in ids:
            path = self.path(vid)
            st = self.stat(vid)
            key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
            hit = _SCANS.get(key)
            if hit is None:
                entry = disk.get(path.name)
                if entry and entry[:2] == [st.st_size, st.st_mtime_ns]:
                    hit = Scan(st.st_size, entry[2], entry[3])
                else:
                    hit = self._scan_file(vid, st.st_size)
                    disk[path.name] = [st.st_size, st.st_mtime_ns, hit.sha256, hit.bad_row]
                    changed = True
                _SCANS[key] = hit
            out[vid] = hit
        if changed and disk_cache:
            _write_cache(self.folder, disk)
        return out

    def check_finite(self, ids: Iterable[str], disk_cache: bool = True) -> None:
        """InputError naming the file and row of the first NaN/inf in any of these files."""
        for vid, sc in self.scans(ids, disk_cache).items():
            if sc.bad_row is not None:
                raise InputError(f"row {sc.bad_row} contains NaN/inf", path=self.path(vid))

    def _scan_file(self, vid: str, size: int) -> Scan:
        path = self.path(vid)
        arr = self._open(vid)  # shape, width, dtype and row-count rules first
        digest = file_sha256(path)
        bad_row = None
        for first in range(0, arr.shape[0], 4096):  # bounded memory on long videos
            finite = np.isfinite(arr[first : first + 4096]).all(axis=1)
            if not finite.all():
                bad_row = first + int(np.flatnonzero(~finite)[0])
                break
        return Scan(size, digest, bad_row)


def _cache_file(folder: Path) -> Path:
    from .toy import default_cache  # the one vlmbench cache folder (VLMBENCH_CACHE)

    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return default_cache() / DIGEST_CACHE_DIR / f"{tag}.json"


def _read_cache(folder: Path) -> dict[str, list]:
    """{file name: [size, mtime_ns, sha256, bad_row]}; an unreadable cache is an empty one."""
    try:
        data = json.loads(_cache_file(folder).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(folder: Path, entries: dict[str, list]) -> None:
    from ..io import write_json

    try:
        write_json(_cache_file(folder), entries)
    except (InputError, OSError):
        pass  # the cache only saves time; a read-only cache folder must not fail a run


def resolve_missing(ids: Sequence[str], store: FeatureStore, allow_missing: bool, what: str) -> tuple[list[str], int]:
    """Drop ids without features if allowed; fail loudly otherwise, and always if none remain.
    Every kept file is then checked whole (shape, width, dtype, at least one row, NaN/inf by row), so a
    bad file fails at load, before any training, in every task. The scan is cached by (size, mtime) and
    is the one the fingerprint reads, so it costs one read per file, once.

    `what` names the items in messages, e.g. "test videos".
    """
    kept, n_missing = _drop_missing(ids, store, allow_missing, what)
    store.check_finite(dict.fromkeys(kept))
    return kept, n_missing


def _drop_missing(ids: Sequence[str], store: FeatureStore, allow_missing: bool, what: str) -> tuple[list[str], int]:
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


def _hash_file(h, path: Path) -> None:
    """The file's bytes then a NUL into h, read in 1 MiB blocks (HowTo100M's caption.json is GBs): the same digest
    as hashing the whole file at once."""
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})", path=path) from None
    h.update(b"\0")


def fingerprint(paths: Sequence[str | Path], ids: Iterable[str], store: FeatureStore | None = None) -> str:
    """16-hex provenance digest of the annotation files' bytes plus the sorted feature ids and, given
    their store, each feature file's size and content hash (so re-extracted features change it).

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
                _hash_file(h, f)
        elif p.is_file():
            _hash_file(h, p)
        else:
            raise InputError("annotation file not found", path=p)
        h.update(b"\1")  # separates files, so moving bytes between them changes the digest
    ids = sorted(ids)
    h.update("\n".join(ids).encode())
    if store is not None:
        ids = sorted(set(ids))
        present = [vid for vid in ids if vid in store]
        scans = store.scans(present)
        for vid in ids:
            sc = scans.get(vid)
            h.update(f"\n{vid}:{sc.size}:{sc.sha256}".encode() if sc else f"\n{vid}:absent".encode())
    return h.hexdigest()[:16]


# ---- annotated spans against the feature rows ---------------------------------------------------------------
SPAN_SLACK = 1.0  # seconds a span may end past a video's last feature row unremarked (a 120.6-s video has 120 rows)


@dataclass
class SpanFit:
    """What checking annotated spans against their videos' feature rows found (HowTo100M's rule for captions
    past the features, made explicit for the task annotations): a span ending past the features is used up to
    the last row and counted (`cut`); a span starting at or after the last row has no video and is an error
    unless --allow-missing, then left out and counted (`dropped`). `first_*` describe one of each."""

    what: str  # e.g. "test clips"
    path: str | Path = ""  # the annotation file the spans come from
    total: int = 0
    cut: int = 0
    dropped: int = 0
    first_cut: str = ""
    first_dropped: str = ""

    @property
    def counts(self) -> dict[str, int]:
        key = self.what.replace(" ", "_")
        return {f"{key}_cut_at_features_end": self.cut, f"{key}_past_features_end_dropped": self.dropped}

    def report(self) -> str | None:
        """One line saying what was cut and left out, or None when nothing was."""
        parts = []
        if self.cut:
            parts.append(
                f"{self.cut} of {self.total} {self.what} end past their video's features and are used up to its "
                f"last feature row (first: {self.first_cut})"
            )
        if self.dropped:
            parts.append(
                f"{self.dropped} of {self.total} {self.what} start after their video's features end and are left "
                f"out (first: {self.first_dropped})"
            )
        return f"{self.path}: " + "; ".join(parts) if parts else None

    def record(self, counts: dict[str, int], say: Callable[[str], None]) -> None:
        """Into a run's counts (so the result keeps them) and, when anything happened, one line to the user."""
        counts.update(self.counts)
        line = self.report()
        if line:
            say(line)


def fit_spans(
    spans: Sequence[tuple[str, float, float, str]],
    store: FeatureStore,
    what: str,
    path: str | Path,
    allow_missing: bool = False,
) -> tuple[list[bool], SpanFit]:
    """Which of the (video id, start s, end s, description) spans to keep, and the SpanFit of them all.
    Every video must have a feature file (checked before, by resolve_missing); its row count comes from the
    .npy header. A span starting at or after the last row is an InputError naming `path` unless allow_missing;
    none left at all is always one."""
    fit = SpanFit(what, path, total=len(spans))
    rows: dict[str, int] = {}
    keep = []
    for vid, start, end, desc in spans:
        n = rows[vid] if vid in rows else rows.setdefault(vid, store.n_seconds(vid))
        if start >= n:
            fit.dropped += 1
            fit.first_dropped = fit.first_dropped or f"{desc}, {n} s of features"
            keep.append(False)
            continue
        if end > n + SPAN_SLACK:
            fit.cut += 1
            fit.first_cut = fit.first_cut or f"{desc}, {n} s of features"
        keep.append(True)
    if fit.dropped == len(spans) and spans:
        raise InputError(
            f"none of the {len(spans)} {what} starts before its video's features end "
            f"(first: {fit.first_dropped}; wrong features or wrong times?)",
            path=path,
        )
    if fit.dropped and not allow_missing:
        raise InputError(
            f"{fit.dropped} of the {len(spans)} {what} start after their video's features end "
            f"(first: {fit.first_dropped}; wrong features or wrong times?): pass --allow-missing to leave them "
            "out (counted)",
            path=path,
        )
    return keep, fit
