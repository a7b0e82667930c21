"""YouCook2: official trainval annotations, split lists, and the 3,350-clip retrieval test.

Segment bounds are integer seconds; with 1 feature per second a clip is `features[start:end]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vlmbench.errors import InputError
from vlmbench.io import read_json, read_text

from .features import FeatureStore, SpanFit, fit_spans
from .files import YOUCOOK2_JSON_LIMIT, check_id, check_text, csv_rows

DURATION_SLACK = 1.0  # seconds a segment may end past the video's `duration` (none of the real ones does)

RETRIEVAL_COLUMNS = ("end", "start", "task", "text", "video_id")


class Segment(NamedTuple):
    start: int
    end: int
    sentence: str


@dataclass(frozen=True, slots=True)
class YC2Video:
    vid: str
    subset: str  # "training" | "validation"
    recipe_type: str  # e.g. "113"; a string in the official file
    duration: float
    segments: tuple[Segment, ...]  # in file order; position = clip index used in clip ids


@dataclass(frozen=True, slots=True)
class Clip:
    clip_id: str
    vid: str
    start: int
    end: int
    text: str


def load_annotations(path: str | Path) -> dict[str, YC2Video]:
    """youcookii_annotations_trainval.json -> {vid: YC2Video}."""
    path = Path(path)
    data = read_json(path, YOUCOOK2_JSON_LIMIT, "YouCook2 annotations (the real file is ~9 MB)")
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict) or not db:
        raise InputError("expected a non-empty 'database' object", path=path)
    return {check_id(vid, "database key", path): _video(vid, rec, path) for vid, rec in db.items()}


def _video(vid: str, rec: object, path: Path) -> YC2Video:
    keys = ("subset", "recipe_type", "duration", "annotations")
    if not isinstance(rec, dict) or any(k not in rec for k in keys):
        raise InputError(f"video {vid}: expected keys {', '.join(keys)}", path=path)
    if not isinstance(rec["annotations"], list):
        raise InputError(f"video {vid}: 'annotations' is not a list", path=path)
    duration = rec["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration < float("inf"):
        raise InputError(f"video {vid}: duration {duration!r} is not a number of seconds", path=path)
    segments = []
    for i, ann in enumerate(rec["annotations"]):
        where = f"video {vid} annotation {i}"
        seg = ann.get("segment") if isinstance(ann, dict) else None
        sentence = ann.get("sentence") if isinstance(ann, dict) else None
        if not (isinstance(seg, list) and len(seg) == 2 and isinstance(sentence, str)):
            raise InputError(f"{where}: expected segment [start, end] and sentence", path=path)
        start, end = (_int_seconds(x, where, path) for x in seg)
        if not 0 <= start <= end:
            raise InputError(f"{where}: bad segment [{start}, {end}]", path=path)
        if end > duration + DURATION_SLACK:
            raise InputError(
                f"{where}: segment [{start}, {end}] ends after the video's duration {duration} s", path=path
            )
        segments.append(Segment(start, end, check_text(sentence, where, path)))
    return YC2Video(vid, str(rec["subset"]), str(rec["recipe_type"]), float(duration), tuple(segments))


def _int_seconds(x: object, where: str, path: Path) -> int:
    # Bounds are ints in the official file and are used as slice indices: 12.0 is fine, 12.5 is not.
    integral = isinstance(x, int) or (isinstance(x, float) and x.is_integer())
    if isinstance(x, bool) or not integral:
        raise InputError(f"{where}: segment bound {x!r} is not an integer second", path=path)
    return int(x)


def load_split_list(path: str | Path) -> list[str]:
    """train_list.txt / val_list.txt: lines `recipe_type/vid` -> vids, in file order."""
    path = Path(path)
    vids = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        recipe, sep, vid = line.partition("/")
        if not (sep and recipe and vid) or "/" in vid:
            raise InputError(f"line {n}: expected recipe_type/video_id, got {line!r}", path=path)
        vid = check_id(vid, f"line {n}", path)
        if vid in first_line:  # its clips would be used twice
            raise InputError(f"line {n}: video {vid} is listed twice (first on line {first_line[vid]})", path=path)
        first_line[vid] = n
        vids.append(vid)
    if not vids:
        raise InputError("no videos listed", path=path)
    return vids


def caption_clips(annotations: dict[str, YC2Video], split_list_ids: list[str]) -> list[Clip]:
    """Every annotated segment of each listed video (MMPT's YoucookNLGMetaProcessor)."""
    absent = [vid for vid in split_list_ids if vid not in annotations]
    if absent:
        raise InputError(f"{len(absent)} listed videos are not in the annotations (first: {', '.join(absent[:3])})")
    return [
        Clip(f"{vid}_{i}", vid, seg.start, seg.end, seg.sentence)
        for vid in split_list_ids
        for i, seg in enumerate(annotations[vid].segments)
    ]


def load_retrieval_test(path: str | Path) -> list[Clip]:
    """validation_youcook.csv -> clips in file order.

    clip_id is `<vid>_<start>_<end>`. The real file has one span listed twice with two
    different sentences (oJZUxU9szWA 120-252, as in the JSON), so a repeated span gets
    `#2`, `#3`, ... appended ('#' never occurs in YouTube ids) to keep ids unique.
    """
    path = Path(path)
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    lines = csv_rows(path)
    _, header = next(lines, (0, []))
    absent = [c for c in RETRIEVAL_COLUMNS if c not in header]
    if absent:
        raise InputError(f"missing column(s) {', '.join(absent)}", path=path)
    for line, fields in lines:
        where = f"line {line}"
        if len(fields) != len(header):
            raise InputError(f"{where}: expected {len(header)} columns, got {len(fields)}", path=path)
        row = dict(zip(header, fields))
        start, end = (_int_field(row[k], f"{where}: {k}", path) for k in ("start", "end"))
        if not 0 <= start <= end:
            raise InputError(f"{where}: bad span [{start}, {end}]", path=path)
        vid = check_id(row["video_id"], where, path)
        base = f"{vid}_{start}_{end}"
        seen[base] = seen.get(base, 0) + 1
        clip_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
        clips.append(Clip(clip_id, vid, start, end, check_text(row["text"], f"{where}: text", path, "text")))
    if not clips:
        raise InputError("no rows", path=path)
    return clips


def _int_field(value: str, where: str, path: Path) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{where} {value!r} is not an integer", path=path) from None


def fit_to_features(
    clips: list[Clip], store: FeatureStore, path: str | Path, what: str, allow_missing: bool = False
) -> tuple[list[Clip], SpanFit]:
    """Clips checked against their videos' feature rows (features.fit_spans): one ending past the features is
    kept (its video is read up to the last row) and counted; one starting after them is an error naming
    `path` unless allow_missing, then left out and counted. Record the SpanFit in the run (SpanFit.record)."""
    keep, fit = fit_spans(
        [(c.vid, c.start, c.end, f"{c.clip_id} [{c.start}, {c.end}]") for c in clips], store, what, path, allow_missing
    )
    return [c for c, k in zip(clips, keep) if k], fit
