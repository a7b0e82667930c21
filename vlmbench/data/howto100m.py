"""HowTo100M ASR captions, in either official form.

- JSON (`raw_caption.json` / `caption.json`): `{vid: {"start": [..], "end": [..], "text": [..]}}`.
- A folder of per-video `<vid>.csv` files with header `start,end,text` (the caption release).
  A single `<vid>.csv` file is read as a one-video folder.

Rolling ASR windows overlap, so start/end are not required to be monotonic; only start <= end.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError

CSV_HEADER = ["start", "end", "text"]


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
        return {f.stem: _read_csv(f) for f in files}
    if not path.is_file():
        raise InputError("caption file or folder not found", path=path)
    if path.suffix == ".csv":
        return {path.stem: _read_csv(path)}
    return _read_json(path)


def _read_csv(path: Path) -> Captions:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputError("empty file, expected header start,end,text", path=path)
        if [h.strip() for h in header] != CSV_HEADER:
            raise InputError(f"expected header start,end,text, got {','.join(header)}", path=path)
        starts, ends, texts = [], [], []
        for row in reader:
            where = f"line {reader.line_num}"
            if len(row) != 3:
                raise InputError(f"{where}: expected 3 columns, got {len(row)}", path=path)
            starts.append(_seconds(row[0], f"{where}: start", path))
            ends.append(_seconds(row[1], f"{where}: end", path))
            texts.append(row[2])
            if starts[-1] > ends[-1]:
                raise InputError(f"{where}: start {row[0]} > end {row[1]}", path=path)
    return _captions(starts, ends, texts)


def _read_json(path: Path) -> dict[str, Captions]:
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object {video_id: {start, end, text}}", path=path)
    if not data:
        raise InputError("no videos in caption file", path=path)
    return {vid: _json_entry(vid, entry, path) for vid, entry in data.items()}


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
