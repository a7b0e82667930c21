"""The toy COIN and CrossTask datasets: real formats (read back by the real readers), deterministic, and with
the structure the tasks need (background between steps; steps in the task's order; features that show the
annotated step)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlmbench.data import coin, crosstask
from vlmbench.data.features import FeatureStore
from vlmbench.data.toy import World
from vlmbench.data.toy.coin import step_table, write_coin
from vlmbench.data.toy.crosstask import PRIMARY, RELATED, task_steps, write_crosstask
from vlmbench.metrics.localization import crosstask_targets
from vlmbench.metrics.segmentation import frame_targets


@pytest.fixture(scope="module")
def toy_coin(tmp_path_factory):
    return write_coin(tmp_path_factory.mktemp("coin") / "coin", seed=0, n_train=24, n_test=8)


@pytest.fixture(scope="module")
def toy_crosstask(tmp_path_factory):
    return write_crosstask(tmp_path_factory.mktemp("ct") / "crosstask", seed=0)


def _step_similarity(feats: np.ndarray, action: str, obj: str) -> np.ndarray:
    world = World()
    d = world.direction[action] + world.direction[obj]
    return feats.astype(np.float64) @ (d / np.linalg.norm(d))


def test_coin_real_shape_and_readable(toy_coin):
    raw = json.loads((toy_coin / "COIN.json").read_text())["database"]
    assert len(raw) == 32
    rec = next(iter(raw.values()))
    assert set(rec) == {"recipe_type", "annotation", "video_url", "start", "end", "duration", "class", "subset"}
    assert isinstance(rec["annotation"][0]["id"], str)  # step ids are strings in the real file
    videos = coin.load_coin(toy_coin / "COIN.json")
    assert len(coin.split(videos, "train")) == 24 and len(coin.split(videos, "test")) == 8
    store = FeatureStore(toy_coin / "features")
    assert len(store) == 32
    for v in videos.values():
        assert store.n_seconds(v.vid) == int(v.duration)
        assert 30 <= v.duration <= 100


def test_coin_steps_follow_the_table_with_background_between(toy_coin):
    videos = coin.load_coin(toy_coin / "COIN.json")
    table = step_table()
    ids = [s for recipe in table for s, _, _ in recipe]
    assert len(set(ids)) == 48 and min(ids) >= 1 and max(ids) <= 778
    assert max(ids) - min(ids) > 500  # spread over the COIN id range
    label = {s: f"{a} the {o}" for recipe in table for s, a, o in recipe}
    store = FeatureStore(toy_coin / "features")
    bg = []
    for v in videos.values():
        raw = json.loads((toy_coin / "COIN.json").read_text())["database"][v.vid]
        order = [s for s, _, _ in table[raw["recipe_type"]]]
        got = [s.step_id for s in v.segments]
        assert got == sorted(got, key=order.index)  # the recipe's steps, in order
        assert all(label[s.step_id] == s.label for s in v.segments)
        assert v.segments[0].start >= 3  # background before every step
        assert all(b.start - a.end >= 3 for a, b in zip(v.segments, v.segments[1:]))
        t = frame_targets(int(v.duration), [(s.step_id, s.start, s.end) for s in v.segments])
        bg.append((t == 0).mean())
        feats = store.load(v.vid)
        s0 = v.segments[0]
        action, obj = label[s0.step_id].split(" the ")
        sim = _step_similarity(feats, action, obj)
        assert sim[int(s0.start) : int(s0.end)].mean() > sim[: int(s0.start)].mean() + 0.3
    assert 0.3 < np.mean(bg) < 0.6  # an all-background predictor is well below 100


def test_coin_deterministic_per_seed(tmp_path, toy_coin):
    again = write_coin(tmp_path / "a", seed=0, n_train=24, n_test=8)
    assert (again / "COIN.json").read_bytes() == (toy_coin / "COIN.json").read_bytes()
    assert np.array_equal(np.load(again / "features" / "coin0003.npy"), np.load(toy_coin / "features" / "coin0003.npy"))
    other = write_coin(tmp_path / "b", seed=1, n_train=24, n_test=8)
    assert (other / "COIN.json").read_bytes() != (toy_coin / "COIN.json").read_bytes()


def test_crosstask_release_layout_and_split(toy_crosstask):
    release = toy_crosstask / "crosstask_release"
    primary = crosstask.load_tasks(release / "tasks_primary.txt")
    related = crosstask.load_tasks(release / "tasks_related.txt")
    assert list(primary) == [t for t, _, _ in PRIMARY] and list(related) == [t for t, _, _ in RELATED]
    steps = task_steps()
    for task, t in primary.items():
        assert t.steps == tuple(f"{a} the {o}" for a, o in steps[task])
        assert len(set(t.steps)) == len(t.steps)
    videos = crosstask.load_videos(release / "videos.csv")
    assert len(videos) == 4 * 84 + 2 * 6
    val = crosstask.load_videos(release / "videos_val.csv")
    assert len(val) == 16 and {t for t, _ in val} == set(primary)
    store = FeatureStore(toy_crosstask / "features")
    # Related tasks' videos have neither annotations nor features, as in the real release.
    assert all(v not in store for t, v in videos if t in related)
    train, test = crosstask.build_split(release, store.__contains__, n_train=30, seed=0)
    for task in primary:
        assert sum(t == task for t, _ in train) == 30
        assert sum(t == task for t, _ in test) == 50
    assert not (set(train) | set(test)) & set(val)


def test_crosstask_steps_in_order_and_visible(toy_crosstask):
    release = toy_crosstask / "crosstask_release"
    primary = crosstask.load_tasks(release / "tasks_primary.txt")
    steps = task_steps()
    store = FeatureStore(toy_crosstask / "features")
    skipped = 0
    for task, vid in crosstask.load_videos(release / "videos.csv"):
        if task not in primary:
            continue
        k = len(primary[task].steps)
        spans = crosstask.read_annotation(crosstask.annotation_path(release, task, vid), n_steps=k)
        assert [s.step for s in spans] == sorted(s.step for s in spans)  # canonical order in time
        assert all(a.end < b.start for a, b in zip(spans, spans[1:]))
        assert len(spans) >= 3
        skipped += k - len(spans)
        feats = store.load(vid)
        y = crosstask_targets(len(feats), k, [tuple(s) for s in spans])
        assert (y.sum(axis=1) <= 1).all() and (y.sum(axis=1) == 0).any()  # background frames exist
        s = spans[0]
        sim = _step_similarity(feats, *steps[task][s.step - 1])
        assert sim[y[:, s.step - 1] == 1].mean() > sim[y.sum(axis=1) == 0].mean() + 0.3
    assert skipped > 0  # some videos skip steps
