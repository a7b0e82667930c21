"""Caption metrics against pycocoevalcap itself: hand cases, 240 generated hypothesis sets, the real references.

`reference` is the scoring as vlmbench did it before (pycocoevalcap's PTBTokenizer, Bleu, Rouge, Cider and
Meteor called directly); every value of caption_metrics, caption_statistics and per_clip_scores must equal
it exactly (==, not approx).
"""

import math
import random
import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from vlmbench.metrics import captioning, coco
from vlmbench.metrics.captioning import caption_metrics, caption_statistics, per_clip_scores

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and the PTB jar need java")


# -- hand cases -------------------------------------------------------------------------------------------


def scores(hyps: dict, refs: dict) -> tuple:
    gts = {k: v if isinstance(v, list) else [v] for k, v in refs.items()}
    res = {k: [v] for k, v in hyps.items()}
    cooked = coco.Cooked(gts, res)
    return coco.bleu(cooked), coco.rouge_l(gts, res), coco.cider_d(cooked)


def test_bleu_and_rouge_by_hand():
    # hyp: the cat sat on the mat / ref: the cat is on the mat (6 words each: brevity penalty 1)
    # clipped matches: unigrams the x2, cat, on, mat = 5/6; bigrams "the cat", "on the", "the mat" = 3/5;
    # trigrams "on the mat" = 1/4; 4-grams 0/3.
    (bleu, per_clip, stats), (rouge, _), _ = scores({"a": "the cat sat on the mat"}, {"a": "the cat is on the mat"})
    assert stats.tolist() == [[6, 6, 6, 5, 4, 3, 5, 3, 1, 0]]
    assert bleu[0] == pytest.approx(5 / 6)
    assert bleu[1] == pytest.approx((5 / 6 * 3 / 5) ** (1 / 2))
    assert bleu[2] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))  # 0.5
    # 0 of 3 four-grams: (tiny / 3) keeps it a tiny positive number, not 0
    assert bleu[3] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1e-15 / 3) ** (1 / 4), rel=1e-6)
    assert [p[0] for p in per_clip] == bleu  # one clip: per-clip is the corpus score
    # ROUGE-L: LCS "the cat on the mat" = 5, P = R = 5/6, F(beta 1.2) = 5/6
    assert rouge == pytest.approx(5 / 6)
    # a shorter hypothesis pays the brevity penalty exp(1 - r/c): 3 words vs 6
    (bleu, _, _), _, _ = scores({"a": "the cat sat"}, {"a": "the cat sat on the mat"})
    assert bleu[0] == pytest.approx(math.exp(1 - 6 / 3))
    # the closest reference length: 4 words vs references of 2 and 5 words -> 5
    (_, _, stats), (rouge, _), _ = scores({"a": "a b c d"}, {"a": ["a b", "a b c d e"]})
    assert stats[0, 1] == 5
    # ROUGE-L: max precision (2/4 vs 4/4) and max recall (2/2 vs 4/5) over references: P = 1, R = 1
    assert rouge == pytest.approx(1.0)


def test_cider_d_by_hand():
    # Two clips; idf = log(2) - log(df) is log 2 for n-grams in one clip's references.
    # A: "a b" / "a b": unigram and bigram cosine 1, no 3/4-grams (0), same length -> mean(1,1,0,0) x 10 = 5.
    # B: "c d" / "e f": nothing shared -> 0. CIDEr-D = 2.5.
    _, _, (cider, per_clip) = scores({"A": "a b", "B": "c d"}, {"A": "a b", "B": "e f"})
    assert per_clip.tolist() == pytest.approx([5.0, 0.0]) and cider == pytest.approx(2.5)
    # A: "a b" / "a b c": unigram cosine 2/sqrt(2*3), bigram 1/sqrt(2); 1 bigram vs 2: penalty exp(-1/72)
    _, _, (cider, per_clip) = scores({"A": "a b", "B": "z"}, {"A": "a b c", "B": "y"})
    expected = 10 * math.exp(-1 / 72) * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4
    assert per_clip.tolist() == pytest.approx([expected, 0.0]) and cider == pytest.approx(expected / 2)
    # an n-gram in every clip's references has idf 0; a single clip scores 0
    _, _, (cider, _) = scores({"A": "a b"}, {"A": "a b"})
    assert cider == 0.0


def test_lcs_against_dynamic_programming():
    from pycocoevalcap.rouge.rouge import my_lcs

    rng = random.Random(0)
    for _ in range(3000):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 14))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 14))]
        assert coco.lcs_length(a, b) == my_lcs(a, b)


# -- pycocoevalcap as vlmbench called it before --------------------------------------------------------------


def reference(hyps, refs, tokenize="whitespace", meteor_scorer=None):
    """(caption_metrics, caption_statistics, per_clip_scores) the way vlmbench computed them with
    pycocoevalcap's scorers (meteor_scorer: a pycocoevalcap Meteor, or None for no METEOR)."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    if tokenize == "whitespace":
        gts, res = captioning._prepare(hyps, refs, "whitespace")
    else:  # the sanitising and the "none" rule of _prepare, then pycocoevalcap's tokenizer on one dict
        res = {k: [captioning._UNSAFE.sub(" ", h).strip() or "none"] for k, h in hyps.items()}
        gts = {k: [captioning._UNSAFE.sub(" ", r) for r in ([v] if isinstance(v, str) else v)] for k, v in refs.items()}
        out = ptbtokenizer.PTBTokenizer().tokenize(
            {("res", k): [{"caption": s} for s in v] for k, v in res.items()}
            | {("gts", k): [{"caption": s} for s in v] for k, v in gts.items()}
        )
        res = {k: [out[("res", k)][0] or "none"] for k in res}
        gts = {k: out[("gts", k)] for k in gts}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    cider, cider_per = Cider().compute_score(gts, res)
    scorer = BleuScorer(n=4)
    for k in gts:
        scorer += (res[k][0], gts[k])
    bleu_stats = np.array(
        [
            [c["testlen"], min((abs(r - c["testlen"]), r) for r in ref[0])[1], *c["guess"], *c["correct"]]
            for c, ref in zip(scorer.ctest, scorer.crefs)
        ],
        dtype=np.float64,
    )
    if meteor_scorer is not None:
        m, m_per = meteor_scorer.compute_score(gts, res)
        m, m_per = float(m), [float(x) for x in m_per]
    else:
        m, m_per = float("nan"), [float("nan")] * len(gts)
    metrics = {
        "BLEU-3": float(100.0 * bleu[2]),
        "BLEU-4": float(100.0 * bleu[3]),
        "METEOR": 100.0 * m,
        "ROUGE-L": float(100.0 * rouge),
        "CIDEr": float(cider),
        "not_computed": [] if meteor_scorer else ["METEOR"],
        "n_clips": len(res),
    }
    stats = {
        "bleu": bleu_stats,
        "rouge_l": 100.0 * np.asarray(rouge_per, np.float64),
        "cider": np.asarray(cider_per, np.float64),
        "meteor": 100.0 * np.asarray(m_per, np.float64),
        "meteor_corpus": np.array([100.0 * m]),
    }
    per_clip = {k: float(s) for k, s in zip(gts, cider_per)}
    return metrics, stats, per_clip


def assert_identical(hyps, refs, tokenize="whitespace", meteor_scorer=None):
    want_m, want_s, want_p = reference(hyps, refs, tokenize, meteor_scorer)
    meteor = meteor_scorer is not None
    got_m = caption_metrics(hyps, refs, tokenize=tokenize, meteor=meteor)
    got_s = caption_statistics(hyps, refs, tokenize=tokenize, meteor=meteor)
    got_p = per_clip_scores(hyps, refs, tokenize=tokenize)
    nan_eq = lambda a, b: a == b or (math.isnan(a) and math.isnan(b))  # noqa: E731
    assert got_m.keys() == want_m.keys()
    for k in want_m:
        if isinstance(want_m[k], float):
            assert nan_eq(got_m[k], want_m[k]) and type(got_m[k]) is float, k
        else:
            assert got_m[k] == want_m[k], k
    for k in want_s:
        assert got_s[k].dtype == want_s[k].dtype and got_s[k].shape == want_s[k].shape, k
        assert np.array_equal(got_s[k], want_s[k], equal_nan=True), k
    assert got_p == want_p and list(got_p) == list(want_p)


WORDS = "the a man cut cuts onion onions pan oil salt add stir mix into and with of it bowl".split()
ODD = ["", " ", "none", "the", "the the the the", "a a a", ".", "!!", "-", "?", "it's", "don't", "1/2", "5-10"]
UNICODE = ["café", "crème brûlée", "漢字", "😀", "naïve", "ß", "Ωmega", "\u00a0", "x\u200by"]
PUNCT = [",", ".", "!", "?", ";", ":", "(", ")", '"', "'", "--", "...", "&", "%"]


def random_sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(ODD)
    if kind < 0.25:
        return " ".join([rng.choice(WORDS)] * rng.randint(1, 6))  # repeated words
    pool = WORDS * 3 + PUNCT + (UNICODE if kind < 0.45 else [])
    words = [rng.choice(pool) for _ in range(rng.randint(1, 14))]
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.replace(" ,", ",").replace(" .", ".").capitalize()
    return text


def generated_sets(n: int, seed: int = 0):
    """n hypothesis sets of 1-40 clips, 1-4 references each; hypotheses empty, one word, repeated words,
    punctuation, unicode, or a copy of a reference."""
    rng = random.Random(seed)
    for i in range(n):
        clips = rng.choice([1, 2, 3, 5, 12, 40])
        refs = {
            f"s{i}c{j}": [random_sentence(rng) or "x" for _ in range(rng.choice([1, 1, 2, 4]))] for j in range(clips)
        }
        hyps = {}
        for k, r in refs.items():
            x = rng.random()
            hyps[k] = r[0] if x < 0.15 else ("" if x < 0.25 else random_sentence(rng))
        yield hyps, {k: (v[0] if len(v) == 1 and rng.random() < 0.5 else v) for k, v in refs.items()}


N_SETS = 240


@pytest.mark.slow
def test_generated_sets_match_pycocoevalcap_without_meteor():
    for hyps, refs in generated_sets(N_SETS):
        assert_identical(hyps, refs)


@needs_java
@pytest.mark.slow
def test_generated_sets_match_pycocoevalcap_with_meteor_and_ptb(monkeypatch):
    """METEOR through one pycocoevalcap Meteor (one Java process) for all sets, and the PTB path on a few
    sets (pycocoevalcap's tokenizer starts Java for each; tests/test_ptb_tokenizer.py covers the rest)."""
    from pycocoevalcap.meteor.meteor import Meteor

    theirs = Meteor()
    try:
        for i, (hyps, refs) in enumerate(generated_sets(N_SETS, seed=1)):
            monkeypatch.setattr(captioning, "_METEOR_CACHE", {})
            assert_identical(hyps, refs, meteor_scorer=theirs)
            if i % 40 == 0:
                assert_identical(hyps, refs, tokenize="ptb", meteor_scorer=theirs)
    finally:
        theirs.meteor_p.stdin.close()
        theirs.meteor_p.wait(timeout=60)


def real_pairs(real_data):
    """YouCook2 validation references (one per clip) and hypotheses made from them: another clip's
    sentence, a shortened own sentence, an empty one, one word, a repeated word, the sentence itself."""
    import json

    with open(real_data / "youcook2" / "youcookii_annotations_trainval.json") as f:
        db = json.load(f)["database"]
    refs = {
        f"{vid}_{i}": a["sentence"]
        for vid, v in db.items()
        if v["subset"] == "validation"
        for i, a in enumerate(v["annotations"])
    }
    keys, sents = list(refs), list(refs.values())
    rng = random.Random(3)
    hyps = {}
    for i, k in enumerate(keys):
        words = sents[i].split()
        hyps[k] = rng.choice(
            [
                sents[(i + 1) % len(sents)],
                " ".join(words[: max(1, len(words) // 2)]),
                "",
                words[0],
                "add " * 4,
                sents[i],
            ]
        )
    return hyps, refs


@pytest.mark.slow
def test_real_references_match_pycocoevalcap_without_meteor(real_data):
    hyps, refs = real_pairs(real_data)
    assert len(refs) == 3492
    assert_identical(hyps, refs)


@needs_java
@pytest.mark.slow
def test_real_references_match_pycocoevalcap(real_data, monkeypatch):
    """All metrics with METEOR, whitespace and PTB tokenization, on the 3,492 validation references."""
    from pycocoevalcap.meteor.meteor import Meteor

    hyps, refs = real_pairs(real_data)
    theirs = Meteor()
    try:
        for tokenize in ("whitespace", "ptb"):
            monkeypatch.setattr(captioning, "_METEOR_CACHE", {})
            assert_identical(hyps, refs, tokenize=tokenize, meteor_scorer=theirs)
    finally:
        theirs.meteor_p.stdin.close()
        theirs.meteor_p.wait(timeout=60)
