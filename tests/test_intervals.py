"""Bootstrap intervals: each family's estimators against a hand computation and against a percentile bootstrap
written here (the real metric function applied to resampled examples, same seeded indices); the paired
bootstrap detects a planted 2-point difference at N = 1000 and does not flag permutation noise."""

from __future__ import annotations

import numpy as np
import pytest

from vlmbench.adapters import adapter_class
from vlmbench.metrics.captioning import caption_metrics
from vlmbench.metrics.localization import crosstask_recall
from vlmbench.metrics.qa import mcqa_accuracy
from vlmbench.metrics.retrieval import retrieval_metrics
from vlmbench.metrics.segmentation import frame_accuracy
from vlmbench.records.formats import pack_matrices, pack_videos
from vlmbench.stats import bootstrap as bs
from vlmbench.stats.intervals import estimators, paired_difference

B = 200


def indices(n: int, resamples: int = B, seed: int = bs.SEED) -> np.ndarray:
    """The documented draw: default_rng(seed).integers(0, n, (resamples, n))."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile(values) -> tuple[float, float]:
    lo, hi = np.percentile(np.asarray(values, float), [2.5, 97.5])
    return float(lo), float(hi)


def ours(family, preds, metrics, cfg=None, resamples=B):
    arrays = adapter_class(family).per_example(preds, cfg or {})
    est = estimators(family, arrays, metrics, preds)
    n = len(next(iter(arrays.values())))
    points = {m: bs.point(f, n) for m, f in est.items()}
    return points, bs.intervals(est, n, resamples=resamples)


def test_hand_computation_two_questions():
    """Two questions, one right: a resample holds 0, 1 or 2 right answers with probability 1/4, 1/2, 1/4, so the
    95% percentile interval of the accuracy is [0, 100] and the point is 50."""
    preds = {"scores": np.array([[1.0, 0.0], [1.0, 0.0]]), "answers": np.array([0, 1])}
    points, ci = ours("mcqa", preds, {"accuracy": 50.0}, resamples=4000)
    assert points["accuracy"] == 50.0
    assert ci["accuracy"] == (0.0, 100.0)
    w = bs.resample_weights(2, 4000)
    share = np.mean(w[:, 0] == 1)  # exactly one copy of each question
    assert share == pytest.approx(0.5, abs=0.03)


def test_percentile_interval_is_np_percentile():
    assert bs.percentile_interval(np.arange(101.0)) == (2.5, 97.5)
    assert bs.percentile_interval(np.array([np.nan, 1.0, 1.0])) == (1.0, 1.0)


def test_retrieval_against_a_bootstrap_written_here():
    rng = np.random.default_rng(3)
    n = 60
    scores = rng.normal(size=(n, n)) + 2.0 * np.eye(n)
    metrics = retrieval_metrics(scores)
    points, ci = ours("retrieval", {"scores": scores}, metrics)
    for m, v in metrics.items():
        assert points[m] == pytest.approx(v, abs=1e-9), m
    # the test's own bootstrap: resample queries (row i with its column i), re-rank against the fixed gallery
    r = (scores >= np.diagonal(scores)[:, None]).sum(axis=1)
    rv = (scores.T >= np.diagonal(scores)[:, None]).sum(axis=1)
    idx = indices(n)
    assert ci["R@1"] == pytest.approx(percentile([100 * np.mean(r[i] <= 1) for i in idx]))
    assert ci["R@5"] == pytest.approx(percentile([100 * np.mean(r[i] <= 5) for i in idx]))
    assert ci["MedR"] == pytest.approx(percentile([np.median(r[i]) for i in idx]))
    assert ci["v2t_MeanR"] == pytest.approx(percentile([np.mean(rv[i]) for i in idx]))


def test_mcqa_and_segmentation_against_the_metric_on_resampled_examples():
    rng = np.random.default_rng(4)
    scores, answers = rng.normal(size=(80, 5)), rng.integers(0, 5, 80)
    points, ci = ours("mcqa", {"scores": scores, "answers": answers}, mcqa_accuracy(scores, answers))
    idx = indices(80)
    assert ci["accuracy"] == pytest.approx(percentile([mcqa_accuracy(scores[i], answers[i])["accuracy"] for i in idx]))

    targets = [rng.integers(0, 3, rng.integers(5, 40)) for _ in range(25)]
    preds_ = [np.where(rng.random(len(t)) < 0.6, t, rng.integers(0, 3, len(t))) for t in targets]
    packed = pack_videos([f"v{i}" for i in range(25)], preds_, targets)
    acc = frame_accuracy(preds_, targets)
    points, ci = ours("segmentation", packed, acc)
    assert points["frame_acc"] == pytest.approx(acc["frame_acc"]) and points["frame_acc_nobg"] == pytest.approx(
        acc["frame_acc_nobg"]
    )
    idx = indices(25)
    own = [frame_accuracy([preds_[j] for j in i], [targets[j] for j in i]) for i in idx]
    assert ci["frame_acc"] == pytest.approx(percentile([o["frame_acc"] for o in own]))
    assert ci["frame_acc_nobg"] == pytest.approx(percentile([o["frame_acc_nobg"] for o in own]))


def test_crosstask_recall_resampled_by_video():
    rng = np.random.default_rng(5)
    tasks, y_true, y_pred = [], [], []
    for i in range(30):
        t, k = ("a", "b", "c")[i % 3], 3 + i % 3
        n = rng.integers(k, 20)
        yt = np.zeros((n, k), np.uint8)
        yt[rng.integers(0, n, k), np.arange(k)] = 1
        yp = np.zeros((n, k), np.uint8)
        yp[rng.integers(0, n, k), np.arange(k)] = 1
        yp[:, 0] |= yt[:, 0]  # step 1 always found: recall well above 0
        tasks.append(t), y_true.append(yt), y_pred.append(yp)
    primary = ["a", "b"]
    packed = pack_matrices(tasks, [f"v{i}" for i in range(30)], y_true, y_pred, primary)
    res = crosstask_recall(list(zip(tasks, y_true, y_pred)), primary_tasks=primary)
    metrics = {"recall": res["recall"], "recall/a": res["per_task"]["a"], "recall/b": res["per_task"]["b"]}
    points, ci = ours("localization", packed, metrics)
    assert points == pytest.approx(metrics)
    idx = indices(30)
    own = []
    for i in idx:
        try:
            own.append(crosstask_recall([(tasks[j], y_true[j], y_pred[j]) for j in i], primary_tasks=primary))
        except ValueError:
            own.append({"recall": np.nan, "per_task": {}})
    assert ci["recall"] == pytest.approx(percentile([o["recall"] for o in own if np.isfinite(o["recall"])]))
    assert ci["recall/a"] == pytest.approx(percentile([o["per_task"]["a"] for o in own if "a" in o["per_task"]]))


CAPS = [
    "a man cuts the onion",
    "stir the pot slowly",
    "add salt and pepper",
    "pour the oil in the pan",
    "fry the egg",
    "mix the flour and water",
    "cut the bread",
    "put the cheese on top",
]


def test_corpus_bleu_and_rouge_resampled_as_corpora():
    rng = np.random.default_rng(6)
    n = 16
    refs = {f"c{i}": CAPS[i % 8] for i in range(n)}
    hyps = {
        f"c{i}": " ".join(w for w in CAPS[(i + rng.integers(0, 2)) % 8].split() if rng.random() < 0.8) or "x"
        for i in range(n)
    }
    full = caption_metrics(hyps, refs, meteor=False)
    preds = {
        "ids": np.array(list(refs)),
        "hypotheses": np.array([hyps[k] for k in refs]),
        "references": np.array(list(refs.values())),
    }
    points, ci = ours(
        "captioning",
        preds,
        {k: full[k] for k in ("BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")},
        cfg={"skip_meteor": True},
        resamples=60,
    )
    for m in ("BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert points[m] == pytest.approx(full[m], abs=1e-9), m
    keys = list(refs)
    own = []
    for i in indices(n, 60):  # each resample is a corpus of its own (a drawn clip twice is two clips)
        h = {f"{j}:{keys[k]}": hyps[keys[k]] for j, k in enumerate(i)}
        r = {f"{j}:{keys[k]}": refs[keys[k]] for j, k in enumerate(i)}
        own.append(caption_metrics(h, r, meteor=False))
    for m in ("BLEU-3", "BLEU-4", "ROUGE-L"):
        assert ci[m] == pytest.approx(percentile([o[m] for o in own]), rel=1e-9), m


# ---- paired ------------------------------------------------------------------------------------------------


def _qa(correct: np.ndarray) -> dict:
    """MC-QA predictions whose argmax is right exactly where `correct` is 1."""
    answers = np.zeros(len(correct), dtype=np.int64)
    scores = np.zeros((len(correct), 5))
    scores[np.arange(len(correct)), np.where(correct, 0, 1)] = 1.0
    return {"scores": scores, "answers": answers, "ids": np.array([f"q{i}" for i in range(len(correct))])}


def _paired(new: dict, ref: dict) -> dict:
    arrays = [(adapter_class("mcqa").per_example(p, {}), p) for p in (new, ref)]
    return paired_difference(
        "mcqa",
        arrays[0],
        arrays[1],
        mcqa_accuracy(new["scores"], new["answers"]),
        mcqa_accuracy(ref["scores"], ref["answers"]),
    )["accuracy"]


def test_paired_detects_a_planted_two_point_difference_at_n_1000():
    rng = np.random.default_rng(7)
    ref = (rng.random(1000) < 0.6).astype(int)
    new = ref.copy()
    new[rng.choice(np.flatnonzero(ref == 0), 20, replace=False)] = 1  # 20 of 1000 fixed: +2 points
    got = _paired(_qa(new), _qa(ref))
    assert got["diff"] == pytest.approx(2.0) and got["significant"] and got["lo"] > 0
    # the same two accuracies unpaired would overlap: each run's own interval is about ±3 points
    (_, ci_new), (_, ci_ref) = (ours("mcqa", _qa(x), {"accuracy": 100 * x.mean()}) for x in (new, ref))
    assert ci_new["accuracy"][0] < ci_ref["accuracy"][1]


def test_paired_does_not_flag_permutation_noise():
    """Two runs with the same accuracy, right on different questions (50 right answers swapped for wrong)."""
    rng = np.random.default_rng(8)
    ref = (rng.random(1000) < 0.6).astype(int)
    new = ref.copy()
    new[rng.choice(np.flatnonzero(ref == 1), 50, replace=False)] = 0
    new[rng.choice(np.flatnonzero(ref == 0), 50, replace=False)] = 1
    got = _paired(_qa(new), _qa(ref))
    assert got["diff"] == 0.0 and not got["significant"] and got["lo"] < 0 < got["hi"]


def test_paired_refuses_different_test_examples():
    from vlmbench.errors import InputError

    a, b = _qa(np.ones(10, int)), _qa(np.ones(10, int))
    b["ids"] = b["ids"][::-1]
    with pytest.raises(InputError, match="same test examples"):
        _paired(a, b)


def test_skipped_meteor_stores_no_nan_column():
    """NaN arrays in predictions.npz would make two identical runs compare unequal (NaN != NaN)."""
    preds = {
        "ids": np.array(["a", "b"]),
        "hypotheses": np.array(["cut it", "stir"]),
        "references": np.array(["cut it now", "stir the pot"]),
    }
    arrays = adapter_class("captioning").per_example(preds, {"skip_meteor": True})
    assert "example:meteor" not in arrays and all(np.isfinite(v).all() for v in arrays.values())
    assert "METEOR" not in estimators("captioning", arrays, {"METEOR": float("nan"), "BLEU-4": 0.0})


# ---- clustered (examples sharing a source video) ----------------------------------------------------------------


def _clustered_hits(videos: int = 40, size: int = 5, seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """MC-QA hits that are alike within a video (each video's questions right with that video's probability)."""
    rng = np.random.default_rng(seed)
    p = np.repeat(rng.choice([0.05, 0.95], videos), size)
    return (rng.random(videos * size) < p).astype(np.int8), np.repeat([f"v{i}" for i in range(videos)], size)


def _interval(correct: np.ndarray, cluster=None) -> tuple[float, float]:
    from vlmbench.stats.intervals import result_intervals

    arrays = {"example:correct": correct, **({"example:cluster": cluster} if cluster is not None else {})}
    return tuple(result_intervals("mcqa", arrays, {"accuracy": 100 * correct.mean()})["accuracy"])


def test_clustered_interval_is_wider_on_clustered_examples():
    correct, video = _clustered_hits()
    lo, hi = _interval(correct)
    clo, chi = _interval(correct, video)
    assert chi - clo > 1.8 * (hi - lo)  # ~sqrt(design effect 1 + 4 x ~0.8)
    assert clo < 100 * correct.mean() < chi


def test_clustered_interval_equals_unclustered_with_one_example_per_cluster():
    correct, _ = _clustered_hits()
    singletons = np.array([f"q{i}" for i in range(len(correct))])
    assert _interval(correct, singletons) == _interval(correct)
    shuffled_labels = np.random.default_rng(1).permutation(singletons)  # numbered by first appearance, not by name
    assert _interval(correct, shuffled_labels) == _interval(correct)


def test_cluster_bootstrap_recomputes_corpus_bleu_from_the_drawn_videos():
    """Against a cluster bootstrap written here: draw videos (the documented indices), concatenate their clips into
    one corpus and run the real metric on it."""
    rng = np.random.default_rng(12)
    videos, size = 6, 3
    n = videos * size
    refs = {f"c{i}": CAPS[i % 8] for i in range(n)}
    hyps = {k: " ".join(w for w in v.split() if rng.random() < 0.7) or "x" for k, v in refs.items()}
    keys = list(refs)
    vid = np.repeat([f"v{j}" for j in range(videos)], size)
    preds = {
        "ids": np.array(keys),
        "hypotheses": np.array([hyps[k] for k in keys]),
        "references": np.array([refs[k] for k in keys]),
        "source_video": vid,
    }
    arrays = adapter_class("captioning").per_example(preds, {"skip_meteor": True})
    assert arrays["example:cluster"].tolist() == vid.tolist()
    full = caption_metrics(hyps, refs, meteor=False)
    metrics = {k: full[k] for k in ("BLEU-4", "ROUGE-L")}
    est = estimators("captioning", arrays, metrics, preds)
    ci = bs.intervals(est, n, resamples=60, clusters=arrays["example:cluster"])
    own = []
    for draw in indices(videos, 60):
        picked = [i for j in draw for i in range(j * size, (j + 1) * size)]
        h = {f"{t}:{keys[i]}": hyps[keys[i]] for t, i in enumerate(picked)}
        r = {f"{t}:{keys[i]}": refs[keys[i]] for t, i in enumerate(picked)}
        own.append(caption_metrics(h, r, meteor=False))
    for m in metrics:
        assert ci[m] == pytest.approx(percentile([o[m] for o in own]), rel=1e-9), m


def test_retrieval_clusters_come_from_the_source_videos():
    """YouCook2 retrieval predictions name each clip's video; per_example turns them into example:cluster, and the
    result's conventions state the unit."""
    from vlmbench.records.formats import pack_retrieval
    from vlmbench.stats.intervals import conventions, result_intervals

    rng = np.random.default_rng(2)
    scores = rng.normal(size=(12, 12)) + 2 * np.eye(12)
    from vlmbench.metrics.retrieval_blocks import rank_counts_rows

    preds = pack_retrieval(rank_counts_rows(lambda a, b: scores[a:b], 12), [f"c{i}" for i in range(12)])
    preds["source_video"] = np.repeat(["a", "b", "c"], 4)
    arrays = adapter_class("retrieval").per_example(preds, {})
    assert arrays["example:cluster"].tolist() == ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert "unit: video (12 queries in 3 source videos" in conventions("retrieval", arrays)["interval"]
    assert "unit: query" in conventions("retrieval", {})["interval"]
    cis = result_intervals("retrieval", {**preds, **arrays}, retrieval_metrics(scores))
    assert set(cis) >= {"R@1", "v2t_MeanR"}


def test_intervals_only_where_the_estimator_reproduces_the_metric():
    """R@k under ties=mmpt pools tied positions; the per-query pessimistic ranks kept per example do not give it,
    so no interval is claimed for it (planted: integer scores with ties)."""
    from vlmbench.stats.intervals import result_intervals

    scores = np.random.default_rng(3).integers(0, 3, size=(30, 30)).astype(float)
    pess, mmpt = retrieval_metrics(scores), retrieval_metrics(scores, ties="mmpt")
    arrays = adapter_class("retrieval").per_example({"scores": scores}, {})
    assert "R@1" in result_intervals("retrieval", arrays, pess)
    assert pess["R@1"] != mmpt["R@1"] and "R@1" not in result_intervals("retrieval", arrays, mmpt)


def test_paired_difference_reports_mcnemar_beside_the_bootstrap():
    rng = np.random.default_rng(7)
    ref = (rng.random(1000) < 0.6).astype(int)
    new = ref.copy()
    new[rng.choice(np.flatnonzero(ref == 0), 20, replace=False)] = 1
    new[rng.choice(np.flatnonzero(ref == 1), 5, replace=False)] = 0
    got = _paired(_qa(new), _qa(ref))
    assert (got["b"], got["c"], got["test"]) == (20, 5, "McNemar exact")
    from scipy.stats import binomtest

    assert got["p"] == pytest.approx(binomtest(20, 25, 0.5).pvalue) and got["significant"]
    assert got["diff"] == pytest.approx(1.5) and got["reproduces"]
    assert got["mde"] == pytest.approx(2.8016 * got["se"], rel=1e-4) and 0.3 < got["se"] < 0.7  # ~sqrt(25)/10


def test_every_task_states_its_unit():
    from vlmbench import registry
    from vlmbench.stats.intervals import TASK_UNITS, UNITS

    assert set(TASK_UNITS) == set(registry.all_tasks())
    assert set(UNITS) == {s.family for s in registry.all_tasks().values()}
