"""Toy world v2: each task needs the mechanism it tests (issue 10). Cheap checks on the written files: no model.

The retrieval check uses two oracles that know the concept directions: a bag of words (sum of the caption's
concept words against the clip's mean feature) and a binding one (each phrase against its own part of the
clip, in order). Sibling clips share their caption's words, so only binding can tell them apart."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest

from vlmbench.data.toy import ACTIONS, ATTRIBUTES, OBJECTS, QUANTITIES, TOOLS, VERSION, World, plural
from vlmbench.data.toy.coin import step_table
from vlmbench.data.toy.msrvtt import write_msrvtt
from vlmbench.data.toy.youcook2 import write_youcook2

CONCEPTS = set(ACTIONS + ATTRIBUTES + QUANTITIES + TOOLS) | set(OBJECTS) | {plural(o) for o in OBJECTS}
SINGULAR = {plural(o): o for o in OBJECTS}


@pytest.fixture(scope="module")
def toy_msrvtt(tmp_path_factory):
    return write_msrvtt(tmp_path_factory.mktemp("msr") / "msrvtt", seed=0, n_train=10, n_test=60)


def _concepts(text: str) -> list[str]:
    return [SINGULAR.get(w, w) for w in text.split() if w in CONCEPTS]


def test_version_bumped():
    assert VERSION >= 2


def test_youcook2_captions_vary_in_length_and_compose(tmp_path):
    root = write_youcook2(tmp_path / "yc", seed=0, n_train=10, n_val=10)
    db = json.loads((root / "youcookii_annotations_trainval.json").read_text())["database"]
    sents = [a["sentence"] for v in db.values() for a in v["annotations"]]
    lengths = np.array([len(s.split()) for s in sents])
    assert lengths.min() >= 3 and lengths.max() <= 16 and 6 <= lengths.mean() <= 11
    assert (lengths >= 4).mean() > 0.8  # most captions have 4-grams to match
    assert 0.3 < np.mean([" and then " in s for s in sents]) < 0.7  # two-step composition
    words = Counter(w for s in sents for w in s.split())
    assert (
        any(w in words for w in QUANTITIES) and any(w in words for w in ATTRIBUTES) and any(w in words for w in TOOLS)
    )


def test_msrvtt_siblings_share_their_words(toy_msrvtt):
    rows = list(csv.DictReader(open(toy_msrvtt / "MSRVTT_JSFUSION_test.csv")))
    assert len(rows) == 60
    same_bag = 0
    for a, b in zip(rows[::2], rows[1::2]):
        ca, cb = _concepts(a["sentence"]), _concepts(b["sentence"])
        assert ca != cb  # different clips, different captions
        same_bag += Counter(ca) == Counter(cb)
        assert sum((Counter(ca) - Counter(cb)).values()) <= 1  # at most one concept word differs
    assert same_bag >= 5  # the two-step siblings: identical bags of words


def _oracle_r1(root, rows, binding: bool) -> float:
    world = World()
    d = world.direction
    feats = {r["video_id"]: np.load(root / "features" / f"{r['video_id']}.npy").astype(np.float32) for r in rows}

    def score(text: str, f: np.ndarray) -> float:
        phrases = text.split(" is going to ", 1)[1].split(" and then ")
        if not binding:
            return float(sum(f.mean(0) @ d[w] for w in _concepts(text)))
        parts = np.array_split(f, len(phrases))
        return float(sum(p.mean(0) @ d[w] for p, ph in zip(parts, phrases) for w in _concepts(ph)))

    hits = 0
    for i, r in enumerate(rows):
        s = np.array([score(r["sentence"], feats[c["video_id"]]) for c in rows])
        hits += int(np.argmax(s) == i)
    return 100 * hits / len(rows)


def test_retrieval_needs_binding_not_a_bag_of_words(toy_msrvtt):
    rows = list(csv.DictReader(open(toy_msrvtt / "MSRVTT_JSFUSION_test.csv")))
    bag, bound = _oracle_r1(toy_msrvtt, rows, binding=False), _oracle_r1(toy_msrvtt, rows, binding=True)
    assert bound >= 85 and bag <= bound - 10, (bag, bound)


def test_mcqa_negatives_differ_in_one_concept(toy_msrvtt):
    with open(toy_msrvtt / "MSR_MC_test.csv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        cands = [r[f"a{k}"] for k in range(1, 6)]
        truth = cands[int(r["answer"])].split()
        negs = [c.split() for k, c in enumerate(cands) if k != int(r["answer"])]
        assert len({" ".join(n) for n in negs}) == 4
        for n in negs:
            assert len(n) == len(truth) and sum(a != b for a, b in zip(n, truth)) == 1


def test_coin_shared_visuals_need_context():
    table = step_table()
    by_visual = Counter((a, o) for recipe in table for _, a, o in recipe)
    ids = {s for recipe in table for s, _, _ in recipe}
    assert len(ids) == 48 and len(by_visual) == 40
    assert sum(n == 2 for n in by_visual.values()) == 8  # 16 step ids look like a step of another recipe
