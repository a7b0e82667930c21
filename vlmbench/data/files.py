"""Reading annotation files the same careful way in every reader: text, JSON, CSV rows, video ids.

Real files arrive in other encodings, with a byte-order mark, with a quote that never closes; each of
these is one InputError naming the file and the line, never a traceback and never a silently short read.

Every file is size-checked before it is read, against a limit for its kind that is generous for the real
files (JSON parsing holds several times the file's size in memory: a 2 GB junk file must be refused by its
size, not after filling the memory). A JSON object listing videos may be read one entry at a time
(`iter_json_object`: HowTo100M's caption.json is several GB). A key given twice in one JSON object is an
error: `json.loads` would keep the last and silently drop the others.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmbench.errors import InputError
from vlmbench.io import (
    MB,
    TEXT_LIMIT,
    DuplicateKey,
    duplicate_key,
    human,
    not_utf8,
    open_checked,
    read_text,
    unique_keys,
)

# Size limits by kind of file: several times the largest real file of that kind.
YOUCOOK2_JSON_LIMIT = 256 * MB  # youcookii_annotations_trainval.json: ~9 MB
COIN_JSON_LIMIT = 512 * MB  # COIN.json: ~40 MB
MSRVTT_JSON_LIMIT = 512 * MB  # MSRVTT_data.json: ~30 MB
JSON_ENTRY_LIMIT = 64 * MB  # one entry of a streamed JSON object (a HowTo100M video's ASR is < 1 MB)
CHUNK = 1 * MB  # bytes read at a time by iter_json_object
MAX_ID_BYTES = 200  # a video id names files (<id>.npy, <task>_<id>.csv: at most 255 bytes); real ones are ~11


class _Stream:
    """Characters of a UTF-8 file read a chunk at a time, with the line and column of the buffer's start."""

    def __init__(self, f, path: Path):
        self.f, self.path = f, path
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.col, self.char = 1, 1, 0  # of buf[0]
        self.byte_lines = 0  # newlines in the bytes decoded so far (for an encoding error's line)

    def more(self, at_least: int = 0) -> bool:
        """Append the next chunk (at least `at_least` bytes); False at the end of the file."""
        if self.eof:
            return False
        try:
            data = self.f.read(max(CHUNK, at_least))
        except OSError as e:
            raise InputError(f"cannot read ({e.strerror or e})", path=self.path) from None
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            line = self.byte_lines + data.count(b"\n", 0, max(e.start, 0)) + 1
            raise not_utf8(self.path, line, e.object[e.start] if e.start < len(e.object) else 0) from None
        self.byte_lines += data.count(b"\n")
        if not data:
            self.eof = True
        self.buf += text
        return bool(data) or bool(text)

    def compact(self) -> None:
        """Forget the consumed characters, keeping the position of what is left."""
        done = self.buf[: self.pos]
        nl = done.count("\n")
        if nl:
            self.line += nl
            self.col = len(done) - done.rfind("\n")
        else:
            self.col += len(done)
        self.char += len(done)
        self.buf, self.pos = self.buf[self.pos :], 0

    def where(self, pos: int) -> str:
        before = self.buf[:pos]
        nl = before.count("\n")
        line = self.line + nl
        col = (pos - before.rfind("\n")) if nl else self.col + pos
        return f"line {line} column {col} (char {self.char + pos})"

    def error(self, msg: str, pos: int | None = None) -> InputError:
        return InputError(f"not valid JSON ({msg}: {self.where(self.pos if pos is None else pos)})", path=self.path)

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\n\r":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            self.compact()
            if not self.more():
                return ""

    def value(self, decoder: json.JSONDecoder, limit: int) -> Any:
        """The JSON value starting at pos, reading more of the file until it is complete."""
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except DuplicateKey as e:
                raise duplicate_key(self.path, e.key) from None
            except json.JSONDecodeError as e:
                if self._grow(limit):
                    continue
                raise self.error(e.msg, e.pos) from None
            except ValueError as e:
                raise self.error(str(e)) from None
            except RecursionError:
                raise self.error("nested too deeply") from None
            if end == len(self.buf) and not self.eof and self._grow(limit):
                continue  # a number may go on in the next chunk
            self.pos = end
            return obj

    def _grow(self, limit: int) -> bool:
        pending = len(self.buf) - self.pos
        if self.eof:
            return False
        if pending > limit:
            raise InputError(
                f"one entry at {self.where(self.pos)} is over {human(limit)}: not the file meant?", path=self.path
            )
        self.compact()
        self.more(at_least=pending)  # doubling: a long entry is re-parsed O(log n) times
        return True  # parse again: the buffer moved (at the end of the file, the error then has true positions)


def iter_json_object(path: str | Path, what: str, entry_limit: int = JSON_ENTRY_LIMIT) -> Iterator[tuple[str, Any]]:
    """(key, value) of a file holding one JSON object, parsed one entry at a time: memory holds one entry and
    a chunk of the file, not the whole text. The whole file is checked as `read_json` checks it (keys unique
    at every level, nothing after the object); an entry over `entry_limit` characters is refused.
    `what` describes the expected object, for the message when the file holds something else."""
    path = Path(path)
    decoder = json.JSONDecoder(object_pairs_hook=unique_keys)
    with open_checked(path, None, what) as f:
        s = _Stream(f, path)
        first = s.peek()
        if first == "":
            raise s.error("empty file")
        if first != "{":
            if first in '["-0123456789tfnNI':
                raise InputError(f"expected a JSON object {what}", path=path)
            raise s.error("Expecting value")
        s.pos += 1
        seen: set[str] = set()
        expect_key = True
        while True:
            c = s.peek()
            if c == "}" and (not seen or not expect_key):
                s.pos += 1
                break
            if not expect_key:
                if c != ",":
                    raise s.error("Expecting ',' delimiter" if c else "Expecting ',' delimiter (the file ends early)")
                s.pos += 1
                expect_key = True
                continue
            if c != '"':
                raise s.error(
                    "Expecting property name enclosed in double quotes"
                    if c
                    else "Unterminated object (the file ends early)"
                )
            key = s.value(decoder, entry_limit)
            if key in seen:
                raise duplicate_key(path, key)
            seen.add(key)
            if s.peek() != ":":
                raise s.error("Expecting ':' delimiter")
            s.pos += 1
            if s.peek() == "":
                raise s.error("Expecting value (the file ends early)")
            yield key, s.value(decoder, entry_limit)
            expect_key = False
        if s.peek() != "":
            raise s.error("Extra data")


def csv_rows(
    path: str | Path, delimiter: str = ",", limit: int | None = TEXT_LIMIT, what: str = "an annotation CSV file"
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) per non-blank row, the header included.

    Strict parsing, and a quoted field may not run over a line break: no caption or sentence in these
    datasets holds one, so a row spanning lines is an unterminated quote that would otherwise swallow the
    rest of the file into one field."""
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path, limit, what), newline=""), delimiter=delimiter, strict=True)
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
    if not vid.isprintable():
        raise InputError(f"{where}: video id {vid!r} holds a control character (it names a file)", path=path)
    if len(vid.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InputError(
            f"{where}: video id {vid[:20]!r}... is {len(vid)} characters, too long to name a file", path=path
        )
    return vid


def check_text(text: object, where: str, path: str | Path, what: str = "sentence") -> str:
    """A caption, sentence or step text with some non-blank character (an empty one is a broken row: a query
    or reference with no words)."""
    if not isinstance(text, str):
        raise InputError(f"{where}: {what} is not a string: {text!r}", path=path)
    if not text.strip():
        raise InputError(f"{where}: empty {what}", path=path)
    return text
