"""Bootstrap intervals for every task family, in one place.

Each task family computes the per-example arrays its metrics are made of (its adapter's `per_example`: `example:*`
keys, saved in predictions.npz beside the raw predictions); estimators(family, arrays, metrics) gives, per metric, the function of resample weights that recomputes it (vlmbench.stats.bootstrap), so that
the point estimate at weight 1 is the reported metric and the same weights pair two runs.

Resampling units (stated in each result's conventions["interval"]): where the examples of a task share a source
video, the predictions carry its id per example (`example:cluster`, written by the family's per_example) and the
unit is the video: all its examples are drawn together (YouCook2 retrieval and captioning: several clips per
video, whose captions and features are alike, so they are not independent draws). Elsewhere the unit is the
example: the query (MSR-VTT retrieval: text i with its video i, one caption per video), the question (MC-QA),
the video (COIN, CrossTask: one example is a whole video).

Paired comparison (`paired_difference`): the paired bootstrap of every metric (clusters drawn whole), and, for
the metrics that are a mean of per-example hits (R@k, MC-QA accuracy), McNemar's test on the same pairs: exact
without clusters, Durkalski's clustered statistic with them (vlmbench.stats.significance). The hit metrics'
verdict is McNemar's; the others' is the bootstrap interval's. Each comparison's minimum detectable effect is
2.80 x the paired bootstrap SE (80% power, two-sided 0.05; 0 for two runs that agree on every example).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError
from vlmbench.records.predictions import EXAMPLE_PREFIX as PREFIX
from vlmbench.records.predictions import PREDICTIONS, example_arrays, load_predictions
from vlmbench.stats import bootstrap as bs
from vlmbench.stats import significance as sig

UNITS = {  # the unit when every example is its own cluster
    "retrieval": "query (text i with its video i)",
    "mcqa": "question",
    "segmentation": "video",
    "localization": "video",
    "captioning": "clip",
}
PLURAL = {"retrieval": "queries", "mcqa": "questions", "segmentation": "videos", "localization": "videos"}
CLUSTER = "cluster"  # example:cluster: the source video of each example, where examples share one
# The unit per task, for the docs (a task whose examples share videos resamples videos; see conventions()).
TASK_UNITS = {
    "msrvtt-retrieval": "query (one caption per test video: a query is a video)",
    "youcook2-retrieval": "video (its clips' queries drawn together)",
    "msrvtt-mcqa": "question (one per test video)",
    "coin-segmentation": "video",
    "crosstask-zeroshot": "video",
    "crosstask-supervised": "video",
    "youcook2-caption": "video (its clips' captions drawn together)",
}
CAPTION_SCHEME = (
    "BLEU-3/4 recomputed as corpus BLEU from the resampled clips' n-gram statistics (exact); ROUGE-L "
    "mean of resampled per-clip scores (exact); CIDEr-D mean of resampled per-clip scores with IDF from "
    "the whole test set (the resample's own IDF is not recomputed); METEOR: the resampled mean of "
    "per-caption METEOR, shifted to the corpus score (its fragmentation penalty pools over the corpus, "
    "so it is not re-run in Java per resample)"
)


def estimators(
    family: str,
    arrays: Mapping[str, np.ndarray],
    metrics: Mapping[str, float],
    preds: Mapping[str, np.ndarray] | None = None,
) -> dict[str, bs.Estimator]:
    """metric -> estimator, for the metrics of `metrics` this family can resample."""
    a = {k[len(PREFIX) :]: v for k, v in arrays.items() if k.startswith(PREFIX)}
    est: dict[str, bs.Estimator] = {}
    if family == "retrieval":
        for prefix, r in (("", a["rank"]), ("v2t_", a["v2t_rank"])):
            for k in (1, 5, 10):
                est[f"{prefix}R@{k}"] = bs.mean(r <= k, 100.0)
            est[f"{prefix}MedR"] = bs.median(r)
            est[f"{prefix}MeanR"] = bs.mean(r)
    elif family == "mcqa":
        est["accuracy"] = bs.mean(a["correct"], 100.0)
    elif family == "segmentation":
        est["frame_acc"] = bs.ratio(a["hits"], a["frames"])
        est["frame_acc_nobg"] = bs.ratio(a["fg_hits"], a["fg_frames"])
    elif family == "localization":
        primary = [str(t) for t in (preds or {}).get("primary", [])] or list(dict.fromkeys(map(str, a["task"])))
        names = list(dict.fromkeys([*primary, *map(str, a["task"])]))
        group = np.array([names.index(str(t)) for t in a["task"]])
        est["recall"] = bs.grouped_ratio_mean(a["hits"], a["steps"], group, [names.index(t) for t in primary])
        for t in primary:
            est[f"recall/{t}"] = bs.grouped_ratio_mean(a["hits"], a["steps"], group, [names.index(t)])
    elif family == "captioning":
        est["BLEU-3"] = bs.corpus_bleu(a["bleu"], 3)
        est["BLEU-4"] = bs.corpus_bleu(a["bleu"], 4)
        est["ROUGE-L"] = bs.mean(a["rouge_l"])
        est["CIDEr"] = bs.mean(a["cider"])
        if "meteor" in a and np.isfinite(metrics.get("METEOR", np.nan)):
            est["METEOR"] = bs.shifted_mean(a["meteor"], metrics["METEOR"])
    return {m: f for m, f in est.items() if m in metrics}


def hit_arrays(family: str, arrays: Mapping[str, np.ndarray], metrics: Mapping[str, float]) -> dict[str, np.ndarray]:
    """metric -> per-example 0/1 hits, for the metrics that are 100 x the mean of hits (McNemar applies)."""
    a = {k[len(PREFIX) :]: v for k, v in arrays.items() if k.startswith(PREFIX)}
    out: dict[str, np.ndarray] = {}
    if family == "retrieval":
        for prefix, r in (("", a["rank"]), ("v2t_", a["v2t_rank"])):
            out.update({f"{prefix}R@{k}": np.asarray(r) <= k for k in (1, 5, 10)})
    elif family == "mcqa":
        out["accuracy"] = np.asarray(a["correct"]).astype(bool)
    return {m: h for m, h in out.items() if m in metrics}


def n_examples(arrays: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(arrays.values())))


def clusters(arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Each example's source video (example:cluster), or None where the examples do not share videos."""
    c = arrays.get(PREFIX + CLUSTER)
    return None if c is None else np.asarray(c).astype(str)


def unit(family: str, arrays: Mapping[str, np.ndarray] | None = None) -> str:
    """The resampling unit in words: 'video (N clips in C videos, drawn whole)' or the family's example."""
    c = clusters(arrays or {})
    if c is not None:
        count = len(set(c.tolist()))
        if count < len(c):
            what = PLURAL.get(family, "clips")
            return f"video ({len(c)} {what} in {count} source videos, each video drawn whole)"
    return UNITS.get(family, "example")


def conventions(family: str, arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    out = {
        "interval": f"{bs.CONVENTION}; unit: {unit(family, arrays)}",
        "interval_resamples": str(bs.RESAMPLES),
        "interval_seed": str(bs.SEED),
    }
    if family == "captioning":
        out["interval_captioning"] = CAPTION_SCHEME
    return out


def reproduces(value: float, metric: float | None) -> bool:
    """The estimator's point at weight 1 is the reported metric (else its resamples do not describe it: e.g.
    R@k under ties=mmpt, whose pooled positions are not the pessimistic per-query ranks kept per example)."""
    if metric is None or not np.isfinite(metric) or not np.isfinite(value):
        return False
    return bool(np.isclose(value, metric, rtol=1e-6, atol=1e-6))


def result_intervals(
    family: str, preds: Mapping[str, np.ndarray], metrics: Mapping[str, float]
) -> dict[str, list[float]]:
    """metric -> [low, high] for result.json (the predictions must already hold their example:* arrays); only
    for metrics whose estimator reproduces the reported value."""
    arrays = example_arrays(preds)
    if not arrays:
        return {}
    n = n_examples(arrays)
    est = {
        m: f for m, f in estimators(family, arrays, metrics, preds).items() if reproduces(bs.point(f, n), metrics[m])
    }
    return {m: list(b) for m, b in bs.intervals(est, n, clusters=clusters(arrays)).items()}


# ---- paired comparison of two saved runs ---------------------------------------------------------------------


def load_examples(result_path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """(example arrays, predictions) from the predictions.npz beside a result.json; None when absent."""
    path = Path(result_path).parent / PREDICTIONS
    if not path.is_file():
        return None
    _, _, preds = load_predictions(path)
    arrays = example_arrays(preds)
    return (arrays, preds) if arrays else None


def paired_difference(
    family: str,
    new: tuple[dict, dict],
    ref: tuple[dict, dict],
    new_metrics: Mapping[str, float],
    ref_metrics: Mapping[str, float],
) -> dict[str, dict[str, float]]:
    """Per metric both runs can resample: the paired bootstrap of new - ref (diff, lo, hi, se, boot_p), clusters
    drawn whole where either run records them; for hit metrics McNemar's test (b, c, mcnemar_p); the verdict's
    test (`test`, `p`, `significant`: McNemar for hits, else the bootstrap interval excluding 0), the minimum
    detectable effect `mde`, the unit, and `reproduces` (each run's estimator gives its reported metric; if
    not, these statistics describe other numbers than the results'). Refuses runs on different test examples
    or with different clusters."""
    (a_arr, a_preds), (b_arr, b_preds) = new, ref
    ids_a, ids_b = a_preds.get("ids"), b_preds.get("ids")
    if ids_a is None or ids_b is None or list(map(str, ids_a)) != list(map(str, ids_b)):
        raise InputError("paired comparison needs the same test examples in the same order (ids differ)")
    ca, cb = clusters(a_arr), clusters(b_arr)
    if ca is not None and cb is not None and ca.tolist() != cb.tolist():
        raise InputError("paired comparison needs the same source videos per example (example:cluster differs)")
    groups = ca if ca is not None else cb
    n = n_examples(a_arr)
    est_a, est_b = estimators(family, a_arr, new_metrics, a_preds), estimators(family, b_arr, ref_metrics, b_preds)
    boot = bs.paired(est_a, est_b, n, clusters=groups)
    hits_a, hits_b = hit_arrays(family, a_arr, new_metrics), hit_arrays(family, b_arr, ref_metrics)
    where = unit(family, {PREFIX + CLUSTER: groups} if groups is not None else {})
    clustered = where.startswith("video (")
    out = {}
    for m, p in boot.items():
        row = {**p, "boot_p": p["p"], "test": "paired bootstrap", "unit": where}
        row["reproduces"] = reproduces(bs.point(est_a[m], n), new_metrics.get(m)) and reproduces(
            bs.point(est_b[m], n), ref_metrics.get(m)
        )
        if m in hits_a and m in hits_b:
            mc = sig.mcnemar(hits_a[m], hits_b[m], groups if clustered else None)
            row.update(b=mc["b"], c=mc["c"], mcnemar_p=mc["p"], test=mc["test"], p=mc["p"])
            row["significant"] = bool(mc["p"] < sig.ALPHA)
        row["mde"] = sig.mde(p["se"])
        out[m] = row
    return out
