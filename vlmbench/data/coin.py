"""COIN action segmentation annotations (COIN.json `database`).

Step ids are the global COIN "Action Id" 1..778; 0 is background, hence 779 classes.
MMPT trains on subset "training" and uses "testing" for both validation and test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vlmbench.errors import InputError
from vlmbench.io import read_json

from .features import FeatureStore, SpanFit, fit_spans
from .files import COIN_JSON_LIMIT, check_id

DURATION_SLACK = 1.0  # seconds a segment may end past the video's `duration` (none in the real excerpt does)

NUM_STEPS = 778
NUM_CLASSES = NUM_STEPS + 1  # + background
BACKGROUND = 0
SUBSETS = {"train": "training", "valid": "testing", "test": "testing"}


class CoinSegment(NamedTuple):
    step_id: int  # 1..778
    start: float  # seconds
    end: float
    label: str


@dataclass(frozen=True, slots=True)
class CoinVideo:
    vid: str
    subset: str  # "training" | "testing"
    duration: float
    segments: tuple[CoinSegment, ...]  # file order; later ones overwrite earlier in frame targets


def load_coin(path: str | Path) -> dict[str, CoinVideo]:
    path = Path(path)
    data = read_json(path, COIN_JSON_LIMIT, "COIN annotations (the real COIN.json is ~40 MB)")
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict) or not db:
        raise InputError("expected a non-empty 'database' object", path=path)
    return {check_id(vid, "database key", path): _video(vid, rec, path) for vid, rec in db.items()}


def split(videos: dict[str, CoinVideo], name: str) -> list[CoinVideo]:
    """Videos of split "train" (subset training) or "valid"/"test" (subset testing)."""
    if name not in SUBSETS:
        raise InputError(f"unknown COIN split {name!r}; expected one of {', '.join(SUBSETS)}")
    return [v for v in videos.values() if v.subset == SUBSETS[name]]


def _video(vid: str, rec: object, path: Path) -> CoinVideo:
    if not isinstance(rec, dict) or not isinstance(rec.get("annotation"), list):
        raise InputError(f"video {vid}: expected an 'annotation' list", path=path)
    if not isinstance(rec.get("subset"), str):
        raise InputError(f"video {vid}: missing 'subset'", path=path)
    if rec["subset"] not in set(SUBSETS.values()):  # any other value would silently fall out of every split
        raise InputError(f"video {vid}: subset {rec['subset']!r} is neither 'training' nor 'testing'", path=path)
    duration = _number(rec.get("duration"), f"video {vid}: duration", path)
    if duration < 0:
        raise InputError(f"video {vid}: duration {duration} is negative", path=path)
    return CoinVideo(
        vid,
        rec["subset"],
        duration,
        tuple(_segment(vid, i, a, path, duration) for i, a in enumerate(rec["annotation"])),
    )


def _segment(vid: str, i: int, ann: object, path: Path, duration: float) -> CoinSegment:
    where = f"video {vid} annotation {i}"
    if not isinstance(ann, dict) or not all(k in ann for k in ("id", "segment", "label")):
        raise InputError(f"{where}: expected keys id, segment, label", path=path)
    try:
        step = int(ann["id"])  # a string such as "91" in the official file
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        raise InputError(f"{where}: step id {ann['id']!r} is not an integer", path=path) from None
    if not 1 <= step <= NUM_STEPS:
        raise InputError(f"{where}: step id {step} outside 1..{NUM_STEPS}", path=path)
    seg = ann["segment"]
    if not (isinstance(seg, list) and len(seg) == 2):
        raise InputError(f"{where}: segment is not [start, end]", path=path)
    start, end = (_number(x, f"{where}: segment", path) for x in seg)
    if not 0 <= start <= end:
        raise InputError(f"{where}: bad segment [{start}, {end}] (needs 0 <= start <= end)", path=path)
    if end > duration + DURATION_SLACK:
        raise InputError(f"{where}: segment [{start}, {end}] ends after the video's duration {duration} s", path=path)
    return CoinSegment(step, start, end, str(ann["label"]))


def _number(x: object, where: str, path: Path) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise InputError(f"{where} {x!r} is not a finite number", path=path)
    return float(x)


def fit_to_features(
    videos: list[CoinVideo], store: FeatureStore, path: str | Path, what: str, allow_missing: bool = False
) -> tuple[list[CoinVideo], SpanFit]:
    """The videos' segments checked against their feature rows (features.fit_spans): a segment ending past
    the features is kept (its frame labels stop at the last row) and counted; one starting after them is an
    error naming `path` unless allow_missing, then left out of its video and counted. Record the SpanFit in
    the run (SpanFit.record)."""
    spans = [
        (v.vid, s.start, s.end, f"video {v.vid} annotation {i} [{s.start}, {s.end}]")
        for v in videos
        for i, s in enumerate(v.segments)
    ]
    keep, fit = fit_spans(spans, store, what, path, allow_missing)
    out, at = [], 0
    for v in videos:
        kept = tuple(s for s, k in zip(v.segments, keep[at : at + len(v.segments)]) if k)
        at += len(v.segments)
        out.append(v if len(kept) == len(v.segments) else CoinVideo(v.vid, v.subset, v.duration, kept))
    return out, fit
