"""Property-based fuzzing of every reader (issue 23): structured mutations of the toy world's files.

Seeds are the toy world's files, written in the real formats (`toy.write_dataset`), trimmed to a few videos so
that every mutation lands somewhere that matters. A mutation drops, duplicates, retypes, reorders, truncates or
re-encodes fields and rows (JSON values and keys, CSV rows and fields, text lines, .npy headers and data, zip
members), and may then damage the bytes (truncation, another encoding, a byte-order mark, CRLF, a flipped byte).

Every reader must then end in a result or in one InputError (one line naming the file: the CLI prints it and
exits 2), never another exception or a hang (each call runs under an alarm), and never a silent drop of rows: a
reader's result is compared with an independent count of the rows in the mutated file, and the functions that
drop rows on purpose (spans past the features, HowTo100M's usable captions, the ASR rules, the prepared corpus)
must account for every row they drop in their counts.

Budgets: the `ci` profile (the default, in `make test`) tries a fixed, small set of examples per reader
(derandomized, seconds); `HYPOTHESIS_PROFILE=long` (`make fuzz`) tries FUZZ_EXAMPLES (default 20000) random ones
per reader. No example database is kept (database=None).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmbench.data import asr, coin, crosstask, howto100m, msrvtt, prepared, youcook2
from vlmbench.data.features import SPAN_SLACK, FeatureStore
from vlmbench.errors import InputError

_COMMON = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 12)), derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 20000)), **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CALL_LIMIT_S = 30  # a reader on a file of a few KB taking longer than this hangs


# ---- the harness: one call, an alarm, and the one allowed kind of failure ---------------------------------------
class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int = CALL_LIMIT_S):
    def on_alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def attempt(call: Callable[[], object], *paths: Path | str):
    """call() -> (result, None) or (None, the InputError). Its message must be one line starting with one of
    `paths` (the file, or the folder, it is about). Any other exception fails the example."""
    try:
        with alarm():
            return call(), None
    except InputError as e:
        msg = str(e)
        assert len(msg.splitlines()) == 1, f"not one line: {msg!r}"
        if paths:
            assert any(msg.startswith(f"{p}") for p in paths), f"the message names none of {paths}: {msg!r}"
        return None, e


_EXAMPLE = count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Callable[[], Path]:
    """A fresh empty folder per example (function-scoped fixtures do not reset between Hypothesis examples);
    the previous example's folder is removed, so a long run keeps one on disk."""
    base = tmp_path_factory.mktemp("fuzz")
    last: list[Path] = []

    def fresh() -> Path:
        while last:
            shutil.rmtree(last.pop(), ignore_errors=True)
        folder = base / f"ex{next(_EXAMPLE)}"
        folder.mkdir()
        last.append(folder)
        return folder

    yield fresh
    shutil.rmtree(base, ignore_errors=True)


# ---- seeds: the toy world, trimmed -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    from vlmbench.data import toy

    root = tmp_path_factory.mktemp("fuzz-world")
    for name in ("howto100m", "msrvtt", "youcook2", "coin", "crosstask"):
        toy.write_dataset(name, root / name, seed=0)
    w: dict = Quiet(root=root)
    yc = json.loads((root / "youcook2" / "youcookii_annotations_trainval.json").read_text())["database"]
    keep = ["yc0000", "yc0001", "yc0080", "yc0081"]
    w["yc2_json"] = {"database": {v: yc[v] for v in keep}}
    w["yc2_list"] = "".join(f"{yc[v]['recipe_type']}/{v}\n" for v in keep[:2])
    rows = list(csv.reader(io.StringIO((root / "youcook2" / "validation_youcook.csv").read_text())))
    w["yc2_csv"] = [rows[0]] + [r for r in rows[1:] if r[4] in keep][:8]
    cn = json.loads((root / "coin" / "COIN.json").read_text())["database"]
    vids = sorted(cn)[:2] + [v for v in sorted(cn) if cn[v]["subset"] == "testing"][:2]
    w["coin_json"] = {"database": {v: cn[v] for v in vids}}
    md = json.loads((root / "msrvtt" / "MSRVTT_data.json").read_text())
    mvids = ["video0", "video1", "video2", "video400", "video401"]
    w["msr_json"] = {
        "videos": [v for v in md["videos"] if v["video_id"] in mvids],
        "sentences": [s for s in md["sentences"] if s["video_id"] in mvids],
    }
    w["msr_train"] = [["video_id"], ["video0"], ["video1"], ["video2"]]
    w["msr_test"] = list(csv.reader(io.StringIO((root / "msrvtt" / "MSRVTT_JSFUSION_test.csv").read_text())))[:4]
    w["msr_mc"] = list(csv.reader(io.StringIO((root / "msrvtt" / "MSR_MC_test.csv").read_text()), delimiter="\t"))[:3]
    rel = root / "crosstask" / "crosstask_release"
    w["ct_tasks"] = "".join((rel / "tasks_primary.txt").read_text().splitlines(keepends=True)[:12])
    w["ct_videos"] = [r for r in csv.reader(io.StringIO((rel / "videos.csv").read_text()))][:6]
    first_ann = sorted((rel / "annotations").glob("*.csv"))[0]
    w["ct_ann"] = list(csv.reader(io.StringIO(first_ann.read_text())))
    caps = json.loads((root / "howto100m" / "captions.json").read_text())
    hvids = sorted(caps)[:3]
    w["h100m_json"] = {v: caps[v] for v in hvids}
    w["h100m_vids"] = hvids
    w["features"] = {d: root / d / "features" for d in ("howto100m", "msrvtt", "youcook2", "coin", "crosstask")}
    return w


_LISTINGS: dict[Path, frozenset[str]] = {}


def toy_features(source: Path) -> frozenset[str]:
    if source not in _LISTINGS:
        _LISTINGS[source] = frozenset(p.name for p in source.iterdir())
    return _LISTINGS[source]


def features(folder: Path, source: Path, vids) -> FeatureStore:
    """A feature folder holding (symlinks to) the toy features of `vids` that exist."""
    folder.mkdir(exist_ok=True)
    for v in vids:
        if isinstance(v, str) and f"{v}.npy" in toy_features(source):
            os.symlink(source / f"{v}.npy", folder / f"{v}.npy")
    return FeatureStore(folder)


# ---- mutations: JSON values ------------------------------------------------------------------------------------
class Quiet(dict):
    """The seeds, printed by name only when Hypothesis reports an example."""

    def __repr__(self) -> str:
        return "<toy-world seeds>"


class Pairs(list):
    """A JSON object as a list of (key, value) pairs: it can hold a key twice, as a file can."""


NASTY_STRINGS = [
    "",
    " ",
    "\t",
    "x",
    "0",
    "-1",
    "12",
    "1.5",
    "99999",
    "1e999",
    "nan",
    "NaN",
    "inf",
    "null",
    "true",
    "²",
    "٣",
    "1" * 5000,
    "a,b",
    'say "hi"',
    '"',
    "a\nb",
    "a\r\nb",
    "../x",
    "a/b",
    "\\",
    "..",
    "\x00",
    "\ufeff",
    "é",
    "\ud7ff\U0001f600",
    "\u202e",
    "x" * 3000,
]
NASTY_NUMBERS = [
    0,
    -1,
    1,
    2,
    -0.5,
    0.5,
    1.5,
    12.0,
    99999,
    99999.0,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    2**63,
]


def nasty_value() -> st.SearchStrategy:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(NASTY_NUMBERS),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=20),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=4),
        st.dictionaries(st.sampled_from(["a", "segment", "start", "text", "id", ""]), scalars, max_size=3),
    )


def _nodes(value, path=()):
    """Every (path, value) of a JSON tree, the root included; an object already given a repeated key is left as
    it is (it is a list of pairs now)."""
    if isinstance(value, Pairs):
        return
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, (*path, i))


def _get(value, path):
    for k in path:
        value = value[k]
    return value


def _set(root, path, new):
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


JSON_OPS = ("drop", "duplicate", "retype", "reorder", "truncate", "reencode", "number", "rename", "dupkey", "nest")


def mutate_json(data: st.DataObject, value, n: int | None = None):
    """1-3 structured mutations of a JSON value (it is copied first)."""
    value = json.loads(json.dumps(value))
    for _ in range(n or data.draw(st.integers(1, 3), label="n mutations")):
        nodes = list(_nodes(value))
        if not nodes:
            break
        path, node = data.draw(st.sampled_from(nodes), label="node")
        op = data.draw(st.sampled_from(JSON_OPS), label="json op")
        if op == "drop" and path:
            parent = _get(value, path[:-1])
            if isinstance(parent, Pairs):
                continue
            del parent[path[-1]]
        elif op == "duplicate" and isinstance(node, list) and node:
            i = data.draw(st.integers(0, len(node) - 1))
            node.insert(i, json.loads(json.dumps(node[i])))
        elif op == "duplicate" and isinstance(node, dict) and node:
            k = data.draw(st.sampled_from(sorted(node)))
            node[k + data.draw(st.sampled_from(["", "x", " ", "_2"]))] = json.loads(json.dumps(node[k]))
        elif op == "retype":
            value = _set(value, path, data.draw(nasty_value(), label="new value"))
        elif op == "reorder" and isinstance(node, list | dict) and len(node) > 1:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            order = data.draw(st.permutations(keys))
            value = _set(
                value, path, {k: node[k] for k in order} if isinstance(node, dict) else [node[i] for i in order]
            )
        elif op == "truncate" and isinstance(node, list | str | dict):
            keep = data.draw(st.integers(0, max(len(node) - 1, 0)))
            cut = dict(list(node.items())[:keep]) if isinstance(node, dict) else node[:keep]
            value = _set(value, path, cut)
        elif op == "reencode" and isinstance(node, str):
            enc = data.draw(st.sampled_from(["latin-1", "cp1252", "utf-16-le", "upper", "pad", "nfd", "digits"]))
            if enc == "upper":
                new = node.upper()
            elif enc == "pad":
                new = f"  {node}\n"
            elif enc == "nfd":
                import unicodedata

                new = unicodedata.normalize("NFD", node + "é")
            elif enc == "digits":
                new = node.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
            else:  # mojibake: the UTF-8 bytes read in another encoding
                new = (node + "é").encode("utf-8").decode(enc, errors="replace")
            value = _set(value, path, new)
        elif op == "number" and isinstance(node, int | float) and not isinstance(node, bool):
            f = data.draw(
                st.sampled_from(
                    [
                        lambda x: x + 1,
                        lambda x: -x,
                        lambda x: x * 1000,
                        lambda x: 99999,
                        lambda x: float(x),
                        lambda x: str(x),
                        lambda x: x - 1,
                        lambda x: 0,
                    ]
                )
            )
            try:
                value = _set(value, path, f(node))
            except (OverflowError, ValueError):
                pass
        elif op == "rename" and path and isinstance(_get(value, path[:-1]), dict):
            parent = _get(value, path[:-1])
            new_key = data.draw(
                st.sampled_from(["", " ", "../x", "a/b", str(path[-1]).upper(), f"{path[-1]} ", "x" * 300])
            )
            if new_key not in parent:
                items = [(new_key if k == path[-1] else k, v) for k, v in parent.items()]
                parent.clear()
                parent.update(items)
        elif op == "dupkey" and isinstance(node, dict) and node:
            k = data.draw(st.sampled_from(sorted(node)))
            value = _set(value, path, Pairs([*node.items(), (k, json.loads(json.dumps(node[k])))]))
        elif op == "nest":
            value = _set(value, path, data.draw(st.sampled_from([[node], {"x": node}])))
    return value


def dump_json(value) -> str:
    """json.dumps, except that a Pairs object may repeat a key."""
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dump_json(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dump_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump_json(v) for v in value) + "]"
    return json.dumps(value)


# ---- mutations: rows of text -------------------------------------------------------------------------------------
ROW_OPS = ("drop", "duplicate", "swap", "truncate", "drop_field", "add_field", "set_field", "swap_fields", "blank")


def mutate_rows(data: st.DataObject, rows: list[list[str]]) -> list[list[str]]:
    rows = [list(r) for r in rows]
    for _ in range(data.draw(st.integers(1, 3), label="n row mutations")):
        if not rows:
            rows.append([])
        i = data.draw(st.integers(0, len(rows) - 1), label="row")
        op = data.draw(st.sampled_from(ROW_OPS), label="row op")
        row = rows[i]
        if op == "drop":
            del rows[i]
        elif op == "duplicate":
            rows.insert(i, list(row))
        elif op == "swap" and len(rows) > 1:
            j = data.draw(st.integers(0, len(rows) - 1))
            rows[i], rows[j] = rows[j], rows[i]
        elif op == "truncate":
            del rows[data.draw(st.integers(0, len(rows))) :]
        elif op == "drop_field" and row:
            del row[data.draw(st.integers(0, len(row) - 1))]
        elif op == "add_field":
            row.insert(data.draw(st.integers(0, len(row))), data.draw(st.sampled_from(NASTY_STRINGS)))
        elif op == "set_field" and row:
            j = data.draw(st.integers(0, len(row) - 1))
            row[j] = data.draw(st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=12)), label="field")
        elif op == "swap_fields" and len(row) > 1:
            j, k = data.draw(st.integers(0, len(row) - 1)), data.draw(st.integers(0, len(row) - 1))
            row[j], row[k] = row[k], row[j]
        elif op == "blank":
            rows.insert(i, [])
    return rows


def dump_rows(data: st.DataObject, rows: list[list[str]], delimiter: str = ",") -> str:
    if data.draw(st.booleans(), label="csv quoting"):
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
        return buf.getvalue()
    return "".join(delimiter.join(r) + "\n" for r in rows)  # as a hand-made file: no quoting at all


def damage(data: st.DataObject, text: str) -> bytes:
    """The file's bytes, sometimes damaged: truncated, another encoding, a BOM, CRLF, a flipped byte."""
    how = data.draw(
        st.sampled_from(["none"] * 6 + ["truncate", "latin-1", "utf-16", "bom", "crlf", "flip", "nul", "empty"]),
        label="bytes",
    )
    raw = text.encode("utf-8", errors="surrogatepass")
    if how == "truncate" and raw:
        return raw[: data.draw(st.integers(0, len(raw) - 1))]
    if how == "latin-1":
        return text.encode("latin-1", errors="replace")
    if how == "utf-16":
        return text.encode("utf-16", errors="surrogatepass")
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "crlf":
        return raw.replace(b"\n", b"\r\n")
    if how == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        return raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]
    if how == "nul":
        return raw + b"\x00" * data.draw(st.integers(1, 64))
    if how == "empty":
        return b""
    return raw


def write_json(data: st.DataObject, path: Path, value) -> None:
    path.write_bytes(damage(data, dump_json(mutate_json(data, value))))


def write_rows(data: st.DataObject, path: Path, rows: list[list[str]], delimiter: str = ",") -> None:
    path.write_bytes(damage(data, dump_rows(data, mutate_rows(data, rows), delimiter)))


# ---- oracles: the rows in the mutated file, counted independently ----------------------------------------------------
def json_of(path: Path):
    """The file's JSON value by the standard parser (the reader returned, so the bytes are valid UTF-8 JSON)."""
    return json.loads(path.read_bytes().decode("utf-8-sig"))


def csv_data_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    """Non-blank CSV rows after the header."""
    text = path.read_bytes().decode("utf-8-sig")
    rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    return rows[1:]


def text_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_bytes().decode("utf-8-sig").splitlines() if ln.strip()]


def check_spans(fit, kept, spans, store, allow_missing: bool):
    """Every span is kept or counted as dropped; every kept span ending past the features is counted as cut."""
    assert fit.total == len(spans)
    assert len(kept) + fit.dropped == len(spans), "spans lost without being counted"
    assert fit.dropped == 0 or allow_missing
    rows = {}
    past = dropped = 0
    for vid, start, end in spans:
        n = rows.setdefault(vid, store.n_seconds(vid))
        if start >= n:
            dropped += 1
        elif end > n + SPAN_SLACK:
            past += 1
    assert (fit.cut, fit.dropped) == (past, dropped)
    assert (fit.report() is None) == (past == dropped == 0)


# ---- YouCook2 -------------------------------------------------------------------------------------------------
@given(data=st.data())
@pytest.mark.slow
def test_fuzz_youcook2_annotations(world, scratch, data):
    d = scratch()
    path = d / "youcookii_annotations_trainval.json"
    write_json(data, path, world["yc2_json"])
    videos, err = attempt(lambda: youcook2.load_annotations(path), path)
    if err:
        return
    db = json_of(path)["database"]
    assert set(videos) == set(db)
    for vid, v in videos.items():
        assert len(v.segments) == len(db[vid]["annotations"]), f"video {vid}: segments lost"
        assert all(
            0 <= s.start <= s.end <= v.duration + youcook2.DURATION_SLACK and s.sentence.strip() for s in v.segments
        )
    listed = [v for v in videos if isinstance(v, str)]
    clips = youcook2.caption_clips(videos, listed)
    assert len(clips) == sum(len(videos[v].segments) for v in listed)
    store = features(d / "features", world["features"]["youcook2"], listed)
    present = [c for c in clips if c.vid in store]
    allow = data.draw(st.booleans(), label="allow_missing")
    res, err = attempt(lambda: youcook2.fit_to_features(present, store, path, "clips", allow), path)
    if not err:
        kept, fit = res
        check_spans(fit, kept, [(c.vid, c.start, c.end) for c in present], store, allow)


@given(data=st.data())
def test_fuzz_youcook2_split_list(world, scratch, data):
    path = scratch() / "train_list.txt"
    write_rows(data, path, [[ln] for ln in world["yc2_list"].splitlines()])
    vids, err = attempt(lambda: youcook2.load_split_list(path), path)
    if not err:
        assert len(vids) == len(text_lines(path)) == len(set(vids))


@given(data=st.data())
def test_fuzz_youcook2_retrieval_test(world, scratch, data):
    d = scratch()
    path = d / "validation_youcook.csv"
    write_rows(data, path, world["yc2_csv"])
    clips, err = attempt(lambda: youcook2.load_retrieval_test(path), path)
    if err:
        return
    assert len(clips) == len(csv_data_rows(path)) and len({c.clip_id for c in clips}) == len(clips)
    assert all(c.text.strip() for c in clips)
    store = features(d / "features", world["features"]["youcook2"], {c.vid for c in clips})
    present = [c for c in clips if c.vid in store]
    allow = data.draw(st.booleans(), label="allow_missing")
    res, err = attempt(lambda: youcook2.fit_to_features(present, store, path, "test clips", allow), path)
    if not err:
        kept, fit = res
        check_spans(fit, kept, [(c.vid, c.start, c.end) for c in present], store, allow)


# ---- COIN ----------------------------------------------------------------------------------------------------------
@given(data=st.data())
def test_fuzz_coin(world, scratch, data):
    d = scratch()
    path = d / "COIN.json"
    write_json(data, path, world["coin_json"])
    videos, err = attempt(lambda: coin.load_coin(path), path)
    if err:
        return
    db = json_of(path)["database"]
    assert set(videos) == set(db)
    for vid, v in videos.items():
        assert len(v.segments) == len(db[vid]["annotation"]), f"video {vid}: segments lost"
    train, test = coin.split(videos, "train"), coin.split(videos, "test")
    assert len(train) + len(test) == len(videos), "a video fell out of both splits"
    store = features(d / "features", world["features"]["coin"], videos)
    present = [v for v in videos.values() if v.vid in store]
    allow = data.draw(st.booleans(), label="allow_missing")
    res, err = attempt(lambda: coin.fit_to_features(present, store, path, "segments", allow), path)
    if not err:
        kept, fit = res
        spans = [(v.vid, s.start, s.end) for v in present for s in v.segments]
        check_spans(fit, [s for v in kept for s in v.segments], spans, store, allow)


# ---- MSR-VTT -------------------------------------------------------------------------------------------------------
@given(data=st.data())
def test_fuzz_msrvtt_retrieval_test(world, scratch, data):
    path = scratch() / "MSRVTT_JSFUSION_test.csv"
    write_rows(data, path, world["msr_test"])
    pairs, err = attempt(lambda: msrvtt.load_retrieval_test(path), path)
    if not err:
        assert len(pairs) == len(csv_data_rows(path)) and all(s.strip() for _, s in pairs)


@given(data=st.data())
def test_fuzz_msrvtt_multiple_choice(world, scratch, data):
    path = scratch() / "MSR_MC_test.csv"
    write_rows(data, path, world["msr_mc"], delimiter="\t")
    questions, err = attempt(lambda: msrvtt.load_multiple_choice(path), path)
    if not err:
        assert len(questions) == len(csv_data_rows(path, "\t"))
        assert all(0 <= q.answer < 5 and len(q.candidates) == 5 for q in questions)


@given(data=st.data())
def test_fuzz_msrvtt_train(world, scratch, data):
    d = scratch()
    train, data_json = d / "MSRVTT_train.9k.csv", d / "MSRVTT_data.json"
    which = data.draw(st.sampled_from(["train", "data", "both"]), label="which file")
    if which in ("train", "both"):
        write_rows(data, train, world["msr_train"])
    else:
        train.write_text("".join(",".join(r) + "\n" for r in world["msr_train"]))
    if which in ("data", "both"):
        write_json(data, data_json, world["msr_json"])
    else:
        data_json.write_text(json.dumps(world["msr_json"]))
    res, err = attempt(lambda: msrvtt.load_train(train, data_json), train, data_json)
    if err:
        return
    ids, captions = res
    listed = [r[0] for r in csv_data_rows(train)]
    assert ids == list(dict.fromkeys(listed))  # the documented de-duplication, nothing else
    sentences = json_of(data_json)["sentences"]
    for vid in ids:
        assert captions[vid] == [s["caption"] for s in sentences if s["video_id"] == vid], f"{vid}: captions lost"


# ---- CrossTask ---------------------------------------------------------------------------------------------------
@given(data=st.data())
def test_fuzz_crosstask_tasks(world, scratch, data):
    path = scratch() / "tasks_primary.txt"
    write_rows(data, path, [[ln] for ln in world["ct_tasks"].splitlines()], delimiter="\x1f")
    tasks, err = attempt(lambda: crosstask.load_tasks(path), path)
    if not err:
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        assert len(tasks) == math.ceil(len(lines) / 6), "a task block lost"
        assert all(s.strip() for t in tasks.values() for s in t.steps)


@given(data=st.data())
def test_fuzz_crosstask_videos(world, scratch, data):
    path = scratch() / "videos.csv"
    write_rows(data, path, world["ct_videos"])
    videos, err = attempt(lambda: crosstask.load_videos(path), path)
    if not err:
        assert len(videos) == len(text_lines(path))


@given(data=st.data())
def test_fuzz_crosstask_annotation(world, scratch, data):
    path = scratch() / "90001_ct0000.csv"
    write_rows(data, path, world["ct_ann"])
    n_steps = data.draw(st.sampled_from([None, 3, 6]), label="n_steps")
    spans, err = attempt(lambda: crosstask.read_annotation(path, n_steps), path)
    if not err:
        assert len(spans) == len(text_lines(path))
        assert all(0 <= s.start <= s.end and 1 <= s.step <= (n_steps or s.step) for s in spans)


@given(data=st.data())
def test_fuzz_crosstask_split(world, scratch, data):
    d = scratch()
    rel = d / "crosstask_release"
    src = world["root"] / "crosstask" / "crosstask_release"
    rel.mkdir()
    for f in ("tasks_primary.txt", "tasks_related.txt", "videos.csv", "videos_val.csv"):
        shutil.copy(src / f, rel / f)
    (rel / "annotations").symlink_to(src / "annotations")
    name = data.draw(st.sampled_from(["tasks_primary.txt", "tasks_related.txt", "videos.csv", "videos_val.csv"]))
    path = rel / name
    if name.startswith("tasks"):
        lines = path.read_text().splitlines()
        write_rows(data, path, [[ln] for ln in lines], delimiter="\x1f")
    else:
        write_rows(data, path, list(csv.reader(io.StringIO(path.read_text()))))
    store = FeatureStore(world["features"]["crosstask"])
    res, err = attempt(lambda: crosstask.build_split(rel, store.__contains__, n_train=30), path)
    if not err:
        train, test = res
        assert not {v for _, v in train} & {v for _, v in test}


# ---- HowTo100M: captions, the ASR rules, usable captions, the prepared corpus ----------------------------------
class Tokenizer:
    """MiniLM's tokenizer, printed by name only."""

    def __init__(self):
        from vlmbench.model import backbone as bb

        self.tok = bb.tokenizer("default")

    def __call__(self, *args, **kwargs):
        return self.tok(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.tok)

    def __repr__(self) -> str:
        return "<MiniLM tokenizer>"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


def _check_howto100m_pipeline(captions, raw_lengths, store, tokenizer):
    for vid, cap in captions.items():
        assert len(cap) == raw_lengths[vid], f"video {vid}: caption lines lost"
        clean, c = asr.prepare_captions(cap, vid=vid)
        assert c["asr_lines_in"] == len(cap) and c["asr_lines_out"] == len(clean) <= len(cap)
        removed = sum(
            c[k]
            for k in (
                "asr_lines_skipped_empty",
                "asr_merged_into_previous",
                "asr_replaced_previous",
                "asr_overlap_to_previous",
                "asr_previous_emptied",
            )
        )
        assert len(cap) - len(clean) <= removed, f"video {vid}: ASR lines dropped without a count"
    usable, err = attempt(lambda: howto100m.usable(captions, store, allow_empty=True), store.folder)
    if err:
        return
    s = usable.skipped
    assert len(usable.captions) + s["videos_no_features"] + s["videos_empty_captions"] + s[
        "videos_past_features"
    ] == len(captions), "videos lost without a count"
    assert sum(len(captions[v]) - len(c) for v, c in usable.captions.items()) <= s["captions_past_features"]
    prep, err = attempt(lambda: prepared.build(captions, store, tokenizer), store.folder)
    if not err:
        c = prep.counts
        videos_skipped = c["videos_no_features"] + c["videos_empty_captions"] + c["videos_past_features"]
        assert c["videos_in"] == len(captions) == c["videos_out"] + videos_skipped
        assert c["captions_out"] == len(prep.caption_start) and c["videos_out"] == len(prep)


@given(data=st.data())
def test_fuzz_howto100m_json(world, scratch, data, tokenizer):
    d = scratch()
    path = d / "captions.json"
    write_json(data, path, world["h100m_json"])
    captions, err = attempt(lambda: howto100m.load_captions(path), path)
    if err:
        return
    raw = json_of(path)
    assert set(captions) == set(raw)
    store = features(d / "features", world["features"]["howto100m"], captions)
    _check_howto100m_pipeline(captions, {v: len(raw[v]["text"]) for v in raw}, store, tokenizer)


@given(data=st.data())
def test_fuzz_howto100m_csv(world, scratch, data, tokenizer):
    d = scratch()
    folder = d / "captions"
    folder.mkdir()
    vid = world["h100m_vids"][0]
    entry = world["h100m_json"][vid]
    rows = [["start", "end", "text"]] + [
        [str(s), str(e), t] for s, e, t in zip(entry["start"], entry["end"], entry["text"])
    ]
    write_rows(data, folder / f"{vid}.csv", rows)
    for other in world["h100m_vids"][1:]:
        e = world["h100m_json"][other]
        (folder / f"{other}.csv").write_text(
            "start,end,text\n" + "".join(f"{s},{t},{x}\n" for s, t, x in zip(e["start"], e["end"], e["text"]))
        )
    captions, err = attempt(lambda: howto100m.load_captions(folder), folder / f"{vid}.csv")
    if err:
        return
    lengths = {v: len(csv_data_rows(folder / f"{v}.csv")) for v in captions}
    store = features(d / "features", world["features"]["howto100m"], captions)
    _check_howto100m_pipeline(captions, lengths, store, tokenizer)


@given(data=st.data())
def test_fuzz_prepared_corpus(world, scratch, data, tokenizer, tmp_path_factory):
    """A prepared corpus with a damaged manifest or array opens or is refused in one line."""
    base = tmp_path_factory.getbasetemp() / "fuzz-prepared-seed"
    if not (base / prepared.MANIFEST).is_file():
        src = base.with_name("fuzz-prepared-src")
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(world["root"] / "howto100m", src)
        prepared.prepare(src, base, backbone="default")
    d = scratch() / "prep"
    shutil.copytree(base, d)
    target = data.draw(st.sampled_from([prepared.MANIFEST, *(f"{a}.npy" for a in prepared.ARRAYS)]), label="file")
    path = d / target
    if target == prepared.MANIFEST:
        write_json(data, path, json.loads(path.read_text()))
    else:
        mutate_npy(data, path)
    prep, err = attempt(lambda: prepared.Prepared.open(d), d)
    if not err:
        prep.report(), prep.captions_report()
        assert len(prep) == len(prep.video_ids) and prep.skipped.keys() == set(prepared.SKIP_KEYS)


# ---- feature files, predictions, checkpoints -----------------------------------------------------------------------
def mutate_npy(data: st.DataObject, path: Path) -> None:
    arr = np.load(path)
    how = data.draw(
        st.sampled_from(
            [
                "dtype",
                "shape",
                "nan",
                "rows0",
                "1d",
                "3d",
                "truncate",
                "header",
                "flip",
                "empty",
                "pickle",
                "loop",
                "dir",
                "fortran",
                "dangling",
                "huge-header",
            ]
        ),
        label="npy op",
    )
    if how == "dtype":
        try:
            np.save(path, arr.astype(data.draw(st.sampled_from(["f8", "f2", "i4", "u1", "bool", "U3", "c8", "S4"]))))
        except (ValueError, TypeError):  # e.g. video ids as floats
            np.save(path, arr.view(np.uint8))
    elif how == "shape":
        np.save(path, arr.reshape(-1)[: data.draw(st.integers(0, arr.size))].reshape(-1, 1) if arr.size else arr)
    elif how == "nan" and arr.dtype.kind == "f" and arr.size:
        flat = arr.reshape(-1).copy()
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        np.save(path, flat.reshape(arr.shape))
    elif how == "rows0":
        np.save(path, arr[:0])
    elif how == "1d":
        np.save(path, arr.reshape(-1))
    elif how == "3d":
        np.save(path, arr[None])
    elif how == "fortran":
        np.save(path, np.asfortranarray(arr))
    elif how == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif how == "loop":
        path.unlink()
        path.symlink_to(path.name)
    elif how == "dangling":
        path.unlink()
        path.symlink_to("nowhere.npy")
    elif how == "dir":
        path.unlink()
        path.mkdir()
    else:
        raw = path.read_bytes()
        if how == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        elif how == "header":
            end = raw.index(b"\n") + 1
            header = raw[:end].decode("latin-1")
            for old, new in (
                data.draw(
                    st.sampled_from(
                        [
                            ("(", "(99999999999, "),
                            ("'descr'", "'desc'"),
                            ("<f", ">f"),
                            ("False", "True"),
                            (",", ""),
                            ("{", "["),
                            ("512", "-512"),
                            ("512", "513"),
                        ]
                    )
                ),
            ):
                header = header.replace(old, new, 1)
            raw = header.encode("latin-1") + raw[end:]
        elif how == "huge-header":
            raw = raw[:8] + b"\xff\xff" + raw[10:]
        elif how == "flip" and raw:
            i = data.draw(st.integers(0, min(len(raw) - 1, 200)))
            raw = raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]
        elif how == "empty":
            raw = b""
        path.write_bytes(raw)


@given(data=st.data())
def test_fuzz_feature_files(world, scratch, data):
    d = scratch() / "features"
    d.mkdir()
    src = world["features"]["msrvtt"]
    for v in ("video0", "video1"):
        shutil.copy(src / f"{v}.npy", d / f"{v}.npy")
    mutate_npy(data, d / "video0.npy")
    store = FeatureStore(d)
    path = d / "video0.npy"
    n, err = attempt(lambda: store.n_seconds("video0"), path)
    rows, err2 = attempt(lambda: store.load("video0", 0, data.draw(st.sampled_from([None, 3, 10**6]))), path)
    scan, err3 = attempt(lambda: store.scan("video0"), path)
    if err is None:
        assert n >= 1
    if rows is not None:
        assert rows.dtype == np.float32 and rows.shape[1] == 512 and np.isfinite(rows).all() and len(rows) <= n
    if scan is not None:
        assert err is None and (scan.bad_row is None) == bool(np.isfinite(np.load(path, mmap_mode="r")).all())
    attempt(lambda: prepared.feature_digest(d), path)
    from vlmbench.data.features import resolve_missing

    attempt(lambda: resolve_missing(["video0", "video1"], store, True, "videos"), path, d)


@given(data=st.data())
def test_fuzz_predictions(world, scratch, data):
    from vlmbench.records.predictions import load_predictions

    path = scratch() / "predictions.npz"
    cfg = {"ties": "pessimistic", "batch_size": 4}
    meta = {
        "__task__": "msrvtt-retrieval",
        "__config__": dump_json(mutate_json(data, cfg)) if data.draw(st.booleans()) else json.dumps(cfg),
    }
    arrays = {"ids": np.array(["a", "b"]), "t2v_gt": np.arange(2)}
    how = data.draw(
        st.sampled_from(["ok", "truncate", "flip", "member", "task", "config", "drop", "npy"]), label="npz op"
    )
    buf = io.BytesIO()
    members = {**{k: np.array(v) for k, v in meta.items()}, **arrays}
    if how == "task":
        members["__task__"] = data.draw(st.sampled_from([np.array(3), np.array(["a", "b"]), np.array(b"x")]))
    elif how == "config":
        members["__config__"] = data.draw(st.sampled_from([np.array(3.0), np.array(["{}"]), np.array("[")]))
    elif how == "drop":
        del members[data.draw(st.sampled_from(sorted(members)))]
    np.savez_compressed(buf, **members)
    raw = buf.getvalue()
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
    elif how == "member":
        z = io.BytesIO()
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("notes.txt", "hello")
            zf.writestr("__task__.npy", raw[:10])
        raw = z.getvalue()
    elif how == "npy":
        z = io.BytesIO()
        np.save(z, np.arange(4))
        raw = z.getvalue()
    path.write_bytes(raw)
    res, err = attempt(lambda: load_predictions(path), path)
    if not err:
        task, cfg_out, preds = res
        assert isinstance(task, str) and isinstance(cfg_out, dict)
        assert all(isinstance(v, np.ndarray) for v in preds.values())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from vlmbench.model.vlm import VLM

    return Path(VLM.from_backbone("tiny", seed=0).save(tmp_path_factory.mktemp("fuzz-ckpt")))


@given(data=st.data())
def test_fuzz_checkpoint_config(checkpoint, scratch, data):
    from vlmbench.model.vlm import CONFIG_FILE, VLM

    d = scratch() / "ckpt"
    shutil.copytree(checkpoint, d)
    path = d / CONFIG_FILE
    write_json(data, path, json.loads(path.read_text()))
    model, err = attempt(lambda: VLM.load(d), d)
    if not err:
        assert model.hidden_size == model.bert.config.hidden_size
