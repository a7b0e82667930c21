"""The prepared HowTo100M corpus: layout checked by hand, parallel = serial, resumable, atomic, cached, refused
when it does not fit, and usable by `vlmbench pretrain --data PREP`."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmbench.data import prepared as P
from vlmbench.data.toy.howto100m import write_howto100m
from vlmbench.errors import InputError
from vlmbench.model.backbone import tokenizer

VLMBENCH = Path(sys.executable).parent / "vlmbench"  # the installed entry point, as a user types it


def _csv(path: Path, rows) -> None:
    path.write_text("start,end,text\n" + "".join(f'{s},{e},"{t}"\n' for s, e, t in rows))


LONG = " ".join(["word"] * 40)  # 199 characters, cut to 96: 19 x "word" and a "w" (< 32 tokens)
MANY = "a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f g h i j"  # 71 chars, 36 tokens -> 32


@pytest.fixture()
def hand(tmp_path) -> Path:
    """Four videos, each exercising one rule, with expectations worked out by hand below."""
    root = tmp_path / "howto100m"
    caps, feats = root / "captions", root / "features"
    caps.mkdir(parents=True), feats.mkdir()
    _csv(
        caps / "vb.csv",
        [
            (0.0, 2.5, "cut the onion"),
            (1.0, 3.0, "onion"),  # "onion": merged (subset)
            (4.0, 6.0, " "),
            (5.0, 7.5, LONG),
        ],
    )  # empty dropped; LONG cut
    _csv(caps / "va.csv", [(0.5, 1.5, "hello"), (2.0, 3.0, MANY), (12.0, 13.0, "late")])  # "late": past features
    _csv(caps / "vc.csv", [(0.0, 1.0, "no features here")])
    _csv(caps / "vd.csv", [(0.0, 1.0, "")])  # all empty
    np.save(feats / "va.npy", np.zeros((12, 512), np.float16))
    np.save(feats / "vb.npy", np.zeros((9, 512), np.float32))
    np.save(feats / "vd.npy", np.zeros((3, 512), np.float16))
    return root


def test_layout_and_counts_by_hand(hand, tmp_path):
    p = P.prepare(hand, tmp_path / "prep", backbone="tiny")
    tok = tokenizer("tiny")
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert [p.video_id(i) for i in range(len(p))] == ["va", "vb"]
    assert p.video_seconds.tolist() == [12, 9]
    # va: hello, MANY (32 of 36 tokens); "late" starts at 12 >= 12 rows. vb: "cut the onion" (end 3.0 after the
    # merge), LONG cut to 96 characters.
    assert p.video_captions.tolist() == [0, 2, 4]
    assert p.caption_start.tolist() == [0.5, 2.0, 0.0, 5.0]
    assert p.caption_end.tolist() == [1.5, 3.0, 3.0, 7.5]
    expected = [ids("hello"), ids(MANY)[:32], ids("cut the onion"), ids(LONG[:96])]
    assert len(ids(MANY)) == 36 and len(LONG[:96].split()) == 20
    assert p.caption_ntokens.tolist() == [len(t) for t in expected]
    assert p.tokens.tolist() == [i for t in expected for i in t]
    assert p.video_tokens.tolist() == [0, len(expected[0]) + 32, sum(map(len, expected))]
    assert p.tokens.dtype == np.uint16 and isinstance(p.tokens, np.memmap)
    c = p.counts
    assert (c["videos_in"], c["captions_in"], c["videos_out"], c["captions_out"]) == (4, 9, 2, 4)
    assert c["videos_no_features"] == 1 and c["videos_empty_captions"] == 1 and c["captions_past_features"] == 1
    assert c["asr_merged_into_previous"] == 1 and c["asr_lines_skipped_empty"] == 2 and c["asr_lines_cut_96"] == 1
    assert c["captions_cut_tokens"] == 1 and c["tokens_out"] == len(p.tokens)
    m = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    assert m["tokenizer"]["backbone"] == "tiny" and m["version"] == P.VERSION and m["rules"]["max_tokens"] == 32
    assert m["arrays"]["tokens"] == ["<u2", [len(p.tokens)]]
    assert not (tmp_path / "prep" / P.SHARDS).exists()
    # pickling (a spawned worker) re-maps the files, it does not copy them
    assert len(pickle.dumps(p)) < 4000 and pickle.loads(pickle.dumps(p)).tokens.tolist() == p.tokens.tolist()


@pytest.mark.slow
def test_parallel_shards_equal_serial_and_in_memory(hand, tmp_path, monkeypatch):
    for i in range(9):  # more videos, so there are several shards
        shutil.copy(hand / "captions" / "va.csv", hand / "captions" / f"w{i}.csv")
        shutil.copy(hand / "features" / "va.npy", hand / "features" / f"w{i}.npy")
    monkeypatch.setattr(P, "SHARD_VIDEOS", 3)
    serial = P.prepare(hand, tmp_path / "s", backbone="tiny", workers=1)
    parallel = P.prepare(hand, tmp_path / "p", backbone="tiny", workers=2)
    from vlmbench.data.features import FeatureStore
    from vlmbench.data.howto100m import load_captions

    memory = P.build(load_captions(hand / "captions"), FeatureStore(hand / "features"), tokenizer("tiny"))
    assert len(serial) == 11
    for name in P.ARRAYS:
        assert np.array_equal(serial.arrays[name], parallel.arrays[name]), name
        assert np.array_equal(serial.arrays[name], memory.arrays[name]), name
    assert serial.counts == parallel.counts


def test_a_killed_prepare_resumes_with_the_shards_it_had(hand, tmp_path, monkeypatch):
    for i in range(5):
        shutil.copy(hand / "captions" / "vb.csv", hand / "captions" / f"x{i}.csv")
        shutil.copy(hand / "features" / "vb.npy", hand / "features" / f"x{i}.npy")
    monkeypatch.setattr(P, "SHARD_VIDEOS", 3)  # 9 videos: 3 shards
    ref = P.prepare(hand, tmp_path / "ref", backbone="tiny")

    class Killed(Exception):
        pass

    def die_after_two(done, total):
        if done >= 6:
            raise Killed

    with pytest.raises(Killed):
        P.prepare(hand, tmp_path / "out", backbone="tiny", progress=die_after_two)
    assert not (tmp_path / "out" / "manifest.json").exists()  # never a manifest over partial arrays
    assert len(list((tmp_path / "out" / P.SHARDS).glob("shard-*.npz"))) == 2
    calls = []
    real = P.prepare_videos
    monkeypatch.setattr(P, "prepare_videos", lambda caps, *a: calls.append(sorted(caps)) or real(caps, *a))
    again = P.prepare(hand, tmp_path / "out", backbone="tiny")
    assert calls == [["x2", "x3", "x4"]]  # only the missing shard was prepared
    for name in P.ARRAYS:
        assert np.array_equal(ref.arrays[name], again.arrays[name]), name
    assert again.counts == ref.counts
    calls.clear()
    P.prepare(hand, tmp_path / "out", backbone="tiny")  # complete and unchanged: nothing to do
    assert calls == []
    os.utime(hand / "captions" / "va.csv", ns=(1, 1))  # changed input: prepared again
    P.prepare(hand, tmp_path / "out", backbone="tiny")
    assert len(calls) == 3


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_write_nothing(hand, tmp_path):
    np.save(hand / "features" / "vb.npy", np.zeros((9, 256), np.float16))
    r = subprocess.run(
        [
            str(VLMBENCH),
            "data",
            "prepare-howto100m",
            "--data",
            str(hand),
            "--out",
            str(tmp_path / "prep"),
            "--backbone",
            "tiny",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("Preparing", "prepare"))]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and "vb.npy" in lines[0] and "width 512, got 256" in lines[0]
    assert not (tmp_path / "prep" / "manifest.json").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not a prepared corpus"):
        P.prepare(hand, tmp_path / "notes", backbone="tiny")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep"
    with pytest.raises(InputError, match="no manifest.json"):
        P.Prepared.open(tmp_path / "notes")


@pytest.mark.slow
def test_pretrain_reads_a_prepared_corpus_and_caches_a_raw_folder(tmp_path, monkeypatch):
    how = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=12)
    r = subprocess.run(
        [
            str(VLMBENCH),
            "data",
            "prepare-howto100m",
            "--data",
            str(how),
            "--out",
            str(tmp_path / "prep"),
            "--backbone",
            "tiny",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "videos out" in r.stdout and "asr merged into previous" in r.stdout
    r = subprocess.run(
        [
            str(VLMBENCH),
            "pretrain",
            "--data",
            str(tmp_path / "prep"),
            "--out",
            str(tmp_path / "run"),
            "--preset",
            "smoke",
            "--no-progress",
            "steps=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["prepared"] == str(tmp_path / "prep") and info["captions"]["videos_out"] == 12
    cache = Path(os.environ["VLMBENCH_CACHE"]) / P.CACHE_DIR

    def entries():
        return sorted(
            e
            for e in cache.glob("*/manifest.json")
            if json.loads(e.read_text())["source"]["captions"] == str((how / "captions.json").resolve())
        )

    assert info["preset"] == "smoke" and entries() == []  # a prepared corpus is read as it is
    # the same corpus given raw: prepared once into the cache, then reused, with identical arrays
    first = P.for_pretraining(how, "tiny")
    assert len(entries()) == 1
    mtime = entries()[0].stat().st_mtime_ns
    second = P.for_pretraining(how, "tiny")
    assert first.folder == second.folder and first.folder.parent == cache and entries()[0].stat().st_mtime_ns == mtime
    for name in P.ARRAYS:
        assert np.array_equal(first.arrays[name], P.Prepared.open(tmp_path / "prep").arrays[name]), name
    # a changed feature file makes a new entry and the stale one goes
    arr = np.load(how / "features" / "toy_how_00000.npy")
    np.save(how / "features" / "toy_how_00000.npy", arr[:-1])
    third = P.for_pretraining(how, "tiny")
    assert third.folder != first.folder and not first.folder.exists() and len(entries()) == 1
    assert third.video_seconds[0] == len(arr) - 1


def test_a_corpus_prepared_for_another_vocabulary_is_refused(tmp_path):
    how = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=4)
    P.prepare(how, tmp_path / "prep", backbone="tiny")
    m = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    m["tokenizer"]["vocab_sha256"] = "0" * 64
    (tmp_path / "prep" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="tokenizer"):
        P.for_pretraining(tmp_path / "prep", "tiny")


def test_real_caption_csvs_prepare(real_data, tmp_path):
    """The 30 real caption files: every line counted, rolling lines de-duplicated, the kept ones tokenised."""
    from vlmbench.data.howto100m import load_captions

    src = real_data / "howto100m" / "captions"
    root = tmp_path / "howto100m"
    shutil.copytree(src, root / "captions")
    (root / "features").mkdir()
    caps = load_captions(src)
    for vid, cap in caps.items():
        np.save(root / "features" / f"{vid}.npy", np.zeros((int(np.ceil(cap.end.max())) + 1, 512), np.float16))
    p = P.prepare(root, tmp_path / "prep", backbone="tiny", workers=2)
    c = p.counts
    assert c["videos_in"] == len(caps) == c["videos_out"] == len(p)
    assert c["captions_in"] == sum(len(x) for x in caps.values())
    assert c["captions_out"] == len(p.caption_start) < c["captions_in"]  # rolling lines merged
    assert c["captions_out"] == c["asr_lines_out"] - c["captions_past_features"]
    assert p.caption_ntokens.max() <= 32 and c["tokens_out"] == int(p.caption_ntokens.astype(int).sum())
    assert (np.diff(p.video_captions) > 0).all()


def test_shards_of_a_killed_run_are_not_reused_for_changed_input(hand, tmp_path, monkeypatch):
    for i in range(5):
        shutil.copy(hand / "captions" / "vb.csv", hand / "captions" / f"x{i}.csv")
        shutil.copy(hand / "features" / "vb.npy", hand / "features" / f"x{i}.npy")
    monkeypatch.setattr(P, "SHARD_VIDEOS", 3)

    def die(done, total):
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        P.prepare(hand, tmp_path / "out", backbone="tiny", progress=die)
    _csv(hand / "captions" / "va.csv", [(0.0, 1.0, "a different first video")])  # in the first shard
    calls = []
    real = P.prepare_videos
    monkeypatch.setattr(P, "prepare_videos", lambda caps, *a: calls.append(sorted(caps)) or real(caps, *a))
    got = P.prepare(hand, tmp_path / "out", backbone="tiny")
    assert len(calls) == 3  # nothing stale reused
    assert got.caption_start[0] == 0.0 and got.video_captions[1] == 1


def test_a_prepared_folder_notices_re_extracted_features(tmp_path):
    """`--data PREP` whose feature files changed since preparing is refused (one line), not read stale."""
    how = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=4)
    P.prepare(how, tmp_path / "prep", backbone="tiny")
    assert P.for_pretraining(tmp_path / "prep", "tiny")  # unchanged: accepted
    f = how / "features" / "toy_how_00000.npy"
    np.save(f, np.load(f)[:-1])
    with pytest.raises(InputError, match="feature files changed"):
        P.for_pretraining(tmp_path / "prep", "tiny")
    P.prepare(how, tmp_path / "prep", backbone="tiny")  # prepared again: accepted
    assert P.for_pretraining(tmp_path / "prep", "tiny")


def test_caption_rules_version_is_part_of_the_cache_key(tmp_path, monkeypatch):
    from vlmbench.data import asr

    how = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=4)
    first = P.for_pretraining(how, "tiny")
    P.prepare(how, tmp_path / "prep", backbone="tiny")
    monkeypatch.setattr(asr, "RULES_VERSION", asr.RULES_VERSION + 1)
    second = P.for_pretraining(how, "tiny")
    assert second.folder != first.folder and second.manifest["rules"]["version"] == asr.RULES_VERSION
    with pytest.raises(InputError, match="caption rules version"):  # a PREP made under the old rules
        P.for_pretraining(tmp_path / "prep", "tiny")
    assert P.prepare(how, tmp_path / "prep", backbone="tiny").manifest["rules"]["version"] == asr.RULES_VERSION
