"""Reading annotation files the same careful way in every reader: text, JSON, CSV rows, video ids.

Real files arrive in other encodings, with a byte-order mark, with a quote that never closes; each of
these is one InputError naming the file and the line, never a traceback and never a silently short read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmbench.errors import InputError


def read_text(path: str | Path) -> str:
    """The file as UTF-8 text; a leading byte-order mark (Excel writes one) is dropped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("expected a file, found a folder", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}; Latin-1 or another encoding?): save it as UTF-8",
            path=path,
        ) from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e})", path=path) from None


def csv_rows(path: str | Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) per non-blank row, the header included.

    Strict parsing, and a quoted field may not run over a line break: no caption or sentence in these
    datasets holds one, so a row spanning lines is an unterminated quote that would otherwise swallow the
    rest of the file into one field."""
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter, strict=True)
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"line {line}: malformed CSV ({e}; an unterminated quote?)", path=path) from None
        if reader.line_num != line:
            raise InputError(
                f"line {line}: a quoted field runs over {reader.line_num - line + 1} lines (an unterminated quote?)",
                path=path,
            )
        if row:
            yield line, row
        line = reader.line_num + 1


def check_id(vid: object, where: str, path: str | Path) -> str:
    """A video (or task) id that is safe to turn into a file name: non-empty, no '/', '\\' or '..'."""
    if not isinstance(vid, str) or not vid.strip():
        raise InputError(f"{where}: empty or non-string video id {vid!r}", path=path)
    if "/" in vid or "\\" in vid or ".." in vid or "\0" in vid:
        raise InputError(f"{where}: video id {vid!r} contains '/', '\\' or '..' (it names a file)", path=path)
    return vid
