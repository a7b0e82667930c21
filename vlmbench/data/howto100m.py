"""HowTo100M ASR captions, in either official form.

- JSON (`raw_caption.json` / `caption.json`): `{vid: {"start": [..], "end": [..], "text": [..]}}`.
- A folder of per-video `<vid>.csv` files with header `start,end,text` (the caption release).
  A single `<vid>.csv` file is read as a one-video folder.

Rolling ASR windows overlap, so start/end are not required to be monotonic; only 0 <= start <= end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError

from .features import FeatureStore
from .files import check_id, csv_rows, iter_json_object

CSV_HEADER = ["start", "end", "text"]
CAPTION_NAMES = ("captions.json", "raw_caption.json", "captions")  # what `find` looks for, in this order


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: numpy fields make == ambiguous
class Captions:
    start: np.ndarray  # float64 seconds, read-only
    end: np.ndarray
    text: tuple[str, ...]  # "" where the source had no text

    def __len__(self) -> int:
        return len(self.text)


def load_captions(path: str | Path) -> dict[str, Captions]:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise InputError("no caption files (<video_id>.csv) in folder", path=path)
        return {check_id(f.stem, "file name", f): _read_csv(f) for f in files}
    if not path.is_file():
        raise InputError("caption file or folder not found", path=path)
    if path.suffix == ".csv":
        return {check_id(path.stem, "file name", path): _read_csv(path)}
    return _read_json(path)


def _read_csv(path: Path) -> Captions:
    rows = csv_rows(path)
    _, header = next(rows, (0, None))
    if header is None:
        raise InputError("empty file, expected header start,end,text", path=path)
    if [h.strip() for h in header] != CSV_HEADER:
        raise InputError(f"expected header start,end,text, got {','.join(header)}", path=path)
    starts, ends, texts = [], [], []
    for line, row in rows:
        where = f"line {line}"
        if len(row) != 3:
            raise InputError(f"{where}: expected 3 columns, got {len(row)}", path=path)
        starts.append(_seconds(row[0], f"{where}: start", path))
        ends.append(_seconds(row[1], f"{where}: end", path))
        texts.append(row[2])
        if starts[-1] > ends[-1]:
            raise InputError(f"{where}: start {row[0]} > end {row[1]}", path=path)
        if starts[-1] < 0:
            raise InputError(f"{where}: start {row[0]} is negative", path=path)
    return _captions(starts, ends, texts)


def _read_json(path: Path) -> dict[str, Captions]:
    """caption.json read one video at a time (the real file is several GB: never its whole text in memory),
    each video's lists turned into arrays as they come."""
    out = {
        check_id(vid, "key", path): _json_entry(vid, entry, path)
        for vid, entry in iter_json_object(path, "{video_id: {start, end, text}}")
    }
    if not out:
        raise InputError("no videos in caption file", path=path)
    return out


def _json_entry(vid: str, entry: object, path: Path) -> Captions:
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), list) for k in CSV_HEADER):
        raise InputError(f"video {vid}: expected lists 'start', 'end', 'text'", path=path)
    start, end, text = entry["start"], entry["end"], entry["text"]
    if not len(start) == len(end) == len(text):
        raise InputError(
            f"video {vid}: start/end/text lengths differ ({len(start)}/{len(end)}/{len(text)})",
            path=path,
        )
    starts = [_seconds(s, f"video {vid} item {i}: start", path) for i, s in enumerate(start)]
    ends = [_seconds(e, f"video {vid} item {i}: end", path) for i, e in enumerate(end)]
    for i, (s, e) in enumerate(zip(starts, ends)):
        if s > e:
            raise InputError(f"video {vid} item {i}: start {s} > end {e}", path=path)
        if s < 0:
            raise InputError(f"video {vid} item {i}: start {s} is negative", path=path)
    texts = []
    for i, t in enumerate(text):
        if t is None or (isinstance(t, float) and math.isnan(t)):
            t = ""  # ASR gaps: keep the clip, with empty text
        if not isinstance(t, str):
            raise InputError(f"video {vid} item {i}: text is not a string: {t!r}", path=path)
        texts.append(t)
    return _captions(starts, ends, texts)


def _seconds(value: object, where: str, path: Path) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{where} is not a number: {value!r}", path=path) from None
    if not math.isfinite(x):
        raise InputError(f"{where} is not finite: {value!r}", path=path)
    return x


def _captions(starts: list[float], ends: list[float], texts: list[str]) -> Captions:
    start = np.asarray(starts, dtype=np.float64)
    end = np.asarray(ends, dtype=np.float64)
    start.flags.writeable = False
    end.flags.writeable = False
    return Captions(start=start, end=end, text=tuple(texts))


@dataclass
class Usable:
    """The captions pre-training can use, and what was left out (counted, so a run can report it)."""

    captions: dict[str, Captions]
    skipped: dict[str, int] = field(default_factory=dict)

    def report(self) -> str | None:
        """One line saying what was skipped, or None when nothing was."""
        s = self.skipped
        parts = [
            f"{s[k]} {what}"
            for k, what in (
                ("videos_no_features", "with no feature file"),
                ("videos_empty_captions", "whose captions are all empty"),
                ("videos_past_features", "whose captions all start after its features end"),
            )
            if s.get(k)
        ]
        line = ""
        if parts:
            n = sum(s.get(k, 0) for k in ("videos_no_features", "videos_empty_captions", "videos_past_features"))
            line = f"skipped {n} of {n + len(self.captions)} captioned videos: " + ", ".join(parts)
        if s.get("captions_past_features"):
            line += ("; " if line else "") + (
                f"dropped {s['captions_past_features']} captions that start after their video's features end"
            )
        return line or None


def usable(captions: dict[str, Captions], store: FeatureStore, allow_empty: bool = False) -> Usable:
    """Videos with a feature file and some non-empty caption, keeping only captions that start inside
    the features (a clip from a caption past the end would have no video). Every kept feature file is then
    read whole (NaN/inf by file and row): the feature store's one rule, applied once, when the corpus is prepared.
    allow_empty: return an empty result instead of failing (one shard of a prepared corpus may have none)."""
    skipped = dict.fromkeys(
        ("videos_no_features", "videos_empty_captions", "videos_past_features", "captions_past_features"), 0
    )
    kept: dict[str, Captions] = {}
    for vid in sorted(captions):
        cap = captions[vid]
        if vid not in store:
            skipped["videos_no_features"] += 1
            continue
        if not any(t.strip() for t in cap.text):
            skipped["videos_empty_captions"] += 1
            continue
        inside = np.floor(cap.start) < store.n_seconds(vid)
        if not inside.all():
            skipped["captions_past_features"] += int((~inside).sum())
            cap = _captions(
                list(cap.start[inside]), list(cap.end[inside]), [t for t, ok in zip(cap.text, inside) if ok]
            )
            if not any(t.strip() for t in cap.text):
                skipped["videos_past_features"] += 1
                continue
        kept[vid] = cap
    store.check_finite(sorted(kept), disk_cache=False)
    result = Usable(kept, skipped)
    if not kept and not allow_empty:
        raise InputError(
            f"none of the {len(captions)} captioned videos is usable ({result.report()})", path=store.folder
        )
    return result


def find(data: str | Path) -> tuple[Path, Path]:
    """(captions, features) of a HowTo100M folder, given that folder or a data root holding howto100m/."""
    data = Path(data)
    for root in (data, data / "howto100m"):
        feats = root / "features"
        for cap in (root / name for name in CAPTION_NAMES):
            if cap.exists() and feats.is_dir():
                return cap, feats
    if not data.exists():
        raise InputError("data folder not found", path=data)
    raise InputError(
        "no HowTo100M data: expected captions.json (or a captions/ folder of CSVs) and features/", path=data
    )
