"""FeatureStore, the missing-features policy, and the provenance fingerprint."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vlmbench.data.features import FeatureStore, fingerprint, resolve_missing
from vlmbench.errors import InputError


def _write(folder, vid, seconds, dtype=np.float16, seed=0):
    arr = np.random.default_rng(seed).standard_normal((seconds, 512)).astype(dtype)
    np.save(folder / f"{vid}.npy", arr)
    return arr


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_round_trip_is_float32(tmp_path, dtype):
    arr = _write(tmp_path, "video1", 7, dtype)
    out = FeatureStore(tmp_path).load("video1")
    assert out.dtype == np.float32 and out.shape == (7, 512)
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_slice_reads_only_requested_rows(tmp_path):
    arr = _write(tmp_path, "-dash_id", 40)
    arr[30] = np.nan  # outside the slice: must not be read or checked
    np.save(tmp_path / "-dash_id.npy", arr)
    store = FeatureStore(tmp_path)
    assert store.n_seconds("-dash_id") == 40
    part = store.load("-dash_id", start=5, end=12)
    np.testing.assert_array_equal(part, arr[5:12].astype(np.float32))
    assert type(part) is np.ndarray and part.flags.owndata and part.flags.writeable
    assert store.load("-dash_id", end=3).shape == (3, 512)
    assert store.load("-dash_id", start=100).shape == (0, 512)  # past the end: empty, like MMPT
    with pytest.raises(InputError, match=r"contains NaN/inf \(first at row 30\)"):
        store.load("-dash_id", start=25)


def test_ids_are_sorted_cached_and_membership(tmp_path):
    for vid in ["b", "a", "_c"]:
        _write(tmp_path, vid, 2)
    (tmp_path / "notes.txt").write_text("not a feature")
    store = FeatureStore(tmp_path)
    assert store.ids() == ("_c", "a", "b")
    _write(tmp_path, "z", 2)  # listed once: later files are not seen by this store
    assert "z" not in store and "a" in store and len(store) == 3
    assert store.missing(["a", "q", "b", "r"]) == ["q", "r"]


def test_missing_folder_is_input_error(tmp_path):
    with pytest.raises(InputError, match="feature folder not found"):
        FeatureStore(tmp_path / "nope")


def test_resolve_missing_policy(tmp_path):
    for vid in ["v1", "v3", "v5"]:
        _write(tmp_path, vid, 2)
    store = FeatureStore(tmp_path)
    ids = ["v1", "v2", "v3", "v4", "v5"]

    assert resolve_missing(["v1", "v3"], store, False, "test videos") == (["v1", "v3"], 0)
    assert resolve_missing(ids, store, True, "test videos") == (["v1", "v3", "v5"], 2)
    with pytest.raises(InputError) as e:
        resolve_missing(ids, store, False, "test videos")
    assert re.search(
        r"2 of 5 test videos have no feature file in .* \(first: v2, v4\); "
        r"pass --allow-missing to skip them",
        str(e.value),
    )
    with pytest.raises(InputError, match="none of the 2 test videos"):
        resolve_missing(["x", "y"], store, True, "test videos")


def test_fingerprint(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text('{"a": 1}')
    folder = tmp_path / "captions"
    folder.mkdir()
    (folder / "v1.csv").write_text("start,end,text\n0,1,hi\n")

    base = fingerprint([ann, folder], ["v2", "v1"])
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert fingerprint([ann, folder], ["v1", "v2"]) == base  # id order does not matter
    assert fingerprint([ann, folder], ["v1"]) != base
    ann.write_text('{"a": 2}')
    assert fingerprint([ann, folder], ["v1", "v2"]) != base
    ann.write_text('{"a": 1}')
    (folder / "v1.csv").write_text("start,end,text\n0,1,ho\n")
    assert fingerprint([ann, folder], ["v1", "v2"]) != base
    with pytest.raises(InputError, match="annotation file not found"):
        fingerprint([tmp_path / "gone.json"], [])


# ------------------------------------------- one rule for every task: 0 rows, header checks at load
def test_zero_row_file_is_refused_by_the_store(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((0, 512), np.float16))
    store = FeatureStore(tmp_path)
    for call in (lambda: store.n_seconds("v"), lambda: store.load("v"), lambda: store.scan("v")):
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value) == f"{tmp_path / 'v.npy'}: 0 rows: a feature file needs at least one second of video"


def test_resolve_missing_checks_every_kept_header_up_front(tmp_path):
    _write(tmp_path, "good", 3)
    np.save(tmp_path / "empty.npy", np.zeros((0, 512), np.float32))
    np.save(tmp_path / "narrow.npy", np.zeros((3, 256), np.float32))
    store = FeatureStore(tmp_path)
    assert resolve_missing(["good", "gone"], store, True, "test videos") == (["good"], 1)
    with pytest.raises(InputError, match="empty.npy: 0 rows"):
        resolve_missing(["good", "empty"], store, False, "test videos")
    with pytest.raises(InputError, match="narrow.npy: expected width 512"):
        resolve_missing(["narrow", "good"], store, False, "train videos")
    arr = _write(tmp_path, "late_nan", 50)
    arr[44] = np.nan  # past any clip a task would read: found at load all the same
    np.save(tmp_path / "late_nan.npy", arr)
    with pytest.raises(InputError, match=r"late_nan.npy: row 44 contains NaN/inf"):
        resolve_missing(["good", "late_nan"], FeatureStore(tmp_path), False, "test videos")


# ------------------------------------------- whole-file scans: non-finite rows, content digests, the cache
def test_check_finite_names_file_and_row(tmp_path):
    arr = _write(tmp_path, "v", 9000, np.float32)  # longer than one scan block
    arr[8191, 3] = np.inf
    np.save(tmp_path / "v.npy", arr)
    _write(tmp_path, "w", 4)
    store = FeatureStore(tmp_path)
    store.check_finite(["w"])
    with pytest.raises(InputError) as e:
        store.check_finite(["w", "v"])
    assert str(e.value) == f"{tmp_path / 'v.npy'}: row 8191 contains NaN/inf"


def test_fingerprint_covers_feature_contents(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text("{}")
    feats = tmp_path / "f"
    feats.mkdir()
    arr = _write(feats, "v1", 5)
    _write(feats, "v2", 5, seed=1)
    store = FeatureStore(feats)
    base = fingerprint([ann], ["v1", "v2"], store)
    assert fingerprint([ann], ["v2", "v1"], store) == base
    np.save(feats / "v1.npy", arr[::-1].copy())  # same name, size, shape, dtype; other bytes
    assert fingerprint([ann], ["v1", "v2"], FeatureStore(feats)) != base
    np.save(feats / "v1.npy", arr)
    assert fingerprint([ann], ["v1", "v2"], FeatureStore(feats)) == base
    assert fingerprint([ann], ["v1", "v2"]) != base  # without the store: names only, as before


def test_scans_are_cached_by_size_and_mtime_in_memory_and_on_disk(tmp_path, monkeypatch):
    import vlmbench.data.features as F

    monkeypatch.setenv("VLMBENCH_CACHE", str(tmp_path / "cache"))
    feats = tmp_path / "f"
    feats.mkdir()
    _write(feats, "a", 4)
    _write(feats, "b", 4, seed=1)
    reads = []
    real = F.FeatureStore._scan_file
    monkeypatch.setattr(
        F.FeatureStore, "_scan_file", lambda self, vid, size: reads.append(vid) or real(self, vid, size)
    )
    monkeypatch.setattr(F, "_SCANS", {})
    first = FeatureStore(feats).scans(["a", "b"])
    assert reads == ["a", "b"] and first["a"].size == (feats / "a.npy").stat().st_size
    FeatureStore(feats).scans(["a", "b"])
    assert reads == ["a", "b"]  # in memory
    monkeypatch.setattr(F, "_SCANS", {})  # a new process: the JSON cache
    assert FeatureStore(feats).scans(["a", "b"]) == first and reads == ["a", "b"]
    assert len(list((tmp_path / "cache" / F.DIGEST_CACHE_DIR).glob("*.json"))) == 1
    _write(feats, "b", 4, seed=2)  # rewritten: a new mtime, read again
    assert FeatureStore(feats).scan("b").sha256 != first["b"].sha256 and reads == ["a", "b", "b"]
