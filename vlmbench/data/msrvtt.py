"""MSR-VTT: 1k-A (JSFusion) retrieval test, the 9k training split, multiple-choice test.

Formats follow MMPT's MSRVTTMetaProcessor / MSRVTTTextProcessor / MSRVTTQAMetaProcessor.
Features are `videoNNNN.npy`, so every reader returns `videoNNNN` ids.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from vlmbench.errors import InputError
from vlmbench.io import read_json

from .files import MSRVTT_JSON_LIMIT, check_id, check_text, csv_rows

N_CHOICES = 5


@dataclass(frozen=True, slots=True)
class McQuestion:
    video_id: str  # videoNNNN
    candidates: tuple[str, ...]  # a1..a5
    answer: int  # 0-based index into candidates


def load_retrieval_test(path: str | Path) -> list[tuple[str, str]]:
    """(video_id, sentence) pairs of MSRVTT_JSFUSION_test.csv, in file order."""
    rows = _read_table(path, ",", ["video_id", "sentence"])
    return [(check_id(r["video_id"], f"line {n}", path), check_text(r["sentence"], f"line {n}", path)) for n, r in rows]


def load_train(
    train_csv: str | Path,
    data_json: str | Path,
    jsfusion_test_csv: str | Path | None = None,
    full_test_csv: str | Path | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """Training video ids and every caption of each.

    With both test files given, full-test videos outside the JSFusion 1k test are appended
    (MMPT does this; 7,010 + 1,990 gives the usual 9k split). Ids are kept unique in file order.
    """
    ids = list(dict.fromkeys(_column(train_csv, "video_id")))
    if (jsfusion_test_csv is None) != (full_test_csv is None):
        raise InputError("pass both jsfusion_test_csv and full_test_csv, or neither")
    if full_test_csv is not None:
        jsfusion = set(_column(jsfusion_test_csv, "video_id"))
        seen = set(ids)
        for vid in _column(full_test_csv, "video_id"):
            if vid not in jsfusion and vid not in seen:
                ids.append(vid)
                seen.add(vid)
    captions = _read_sentences(Path(data_json))
    lacking = [vid for vid in ids if vid not in captions]
    if lacking:
        raise InputError(
            f"{len(lacking)} training videos have no caption (first: {', '.join(lacking[:3])})",
            path=data_json,
        )
    return ids, {vid: captions[vid] for vid in ids}


def load_multiple_choice(path: str | Path) -> list[McQuestion]:
    """MSR_MC_test.csv (tab-separated; format inferred from MMPT, the file is not public)."""
    cols = ["vid_key"] + [f"a{i}" for i in range(1, N_CHOICES + 1)] + ["answer"]
    questions = []
    for line, row in _read_table(path, "\t", cols):
        where = f"line {line}"
        m = re.fullmatch(r"msr(\d+)", row["vid_key"])
        if m is None:
            raise InputError(f"{where}: vid_key {row['vid_key']!r} is not msrNNNN", path=path)
        answer = row["answer"].strip()
        if not (answer.isascii() and answer.isdigit() and len(answer) < 6 and int(answer) < N_CHOICES):
            raise InputError(f"{where}: answer {answer!r} is not an index 0..4", path=path)
        candidates = tuple(
            check_text(row[f"a{k}"], f"{where}: a{k}", path, "candidate") for k in range(1, N_CHOICES + 1)
        )
        questions.append(McQuestion(check_id(f"video{m.group(1)}", where, path), candidates, int(answer)))
    return questions


def _read_table(path: str | Path, sep: str, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row as dict of str) per data row; blank lines are skipped.

    csv rather than pandas: pandas silently pads short rows and turns a sentence such as
    "null" into NaN, and we want the line number of a bad row in the message."""
    path = Path(path)
    lines = csv_rows(path, sep)
    _, header = next(lines, (0, None))
    if header is None:
        raise InputError("empty file", path=path)
    absent = [c for c in required if c not in header]
    if absent:
        raise InputError(f"missing column(s) {', '.join(absent)}; header is {sep.join(header)!r}", path=path)
    rows = []
    for line, row in lines:
        if len(row) != len(header):
            raise InputError(f"line {line}: expected {len(header)} columns, got {len(row)}", path=path)
        rows.append((line, dict(zip(header, row))))
    if not rows:
        raise InputError("no rows", path=path)
    return rows


def _column(path: str | Path, name: str) -> list[str]:
    return [check_id(r[name], f"line {n}", path) for n, r in _read_table(path, ",", [name])]


def _read_sentences(path: Path) -> dict[str, list[str]]:
    """MSRVTT_data.json `sentences`: [{video_id, caption, ...}] -> video_id -> captions."""
    data = read_json(path, MSRVTT_JSON_LIMIT, "MSRVTT_data.json (the real file is ~30 MB)")
    if not isinstance(data, dict) or not isinstance(data.get("sentences"), list):
        raise InputError("expected a JSON object with a 'sentences' list", path=path)
    captions: dict[str, list[str]] = defaultdict(list)
    for i, s in enumerate(data["sentences"]):
        if not (isinstance(s, dict) and isinstance(s.get("video_id"), str) and isinstance(s.get("caption"), str)):
            raise InputError(f"sentences[{i}]: expected string 'video_id' and 'caption'", path=path)
        where = f"sentences[{i}]"
        captions[check_id(s["video_id"], where, path)].append(check_text(s["caption"], where, path, "caption"))
    return dict(captions)
