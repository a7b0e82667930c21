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
    assert re.search(r"2 of 5 test videos have no feature file in .* \(first: v2, v4\); "
                     r"pass --allow-missing to skip them", str(e.value))
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
