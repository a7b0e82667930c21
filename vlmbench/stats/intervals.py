"""Bootstrap intervals for every task family, in one place.

Each task family computes the per-example arrays its metrics are made of (its adapter's `per_example`: `example:*`
keys, saved in predictions.npz beside the raw predictions); estimators(family, arrays, metrics) gives, per metric, the function of resample weights that recomputes it (vlmbench.stats.bootstrap), so that
the point estimate at weight 1 is the reported metric and the same weights pair two runs.

Resampling units: queries (retrieval: text i with its video i), questions (MC-QA), videos (COIN, CrossTask),
clips (captioning).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError
from vlmbench.records.predictions import EXAMPLE_PREFIX as PREFIX
from vlmbench.records.predictions import PREDICTIONS, example_arrays, load_predictions
from vlmbench.stats import bootstrap as bs

UNITS = {
    "retrieval": "queries (text i with its video i)",
    "mcqa": "questions",
    "segmentation": "videos",
    "localization": "videos",
    "captioning": "clips",
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


def n_examples(arrays: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(arrays.values())))


def conventions(family: str) -> dict[str, str]:
    out = {
        "interval": f"{bs.CONVENTION}; unit: {UNITS.get(family, 'examples')}",
        "interval_resamples": str(bs.RESAMPLES),
        "interval_seed": str(bs.SEED),
    }
    if family == "captioning":
        out["interval_captioning"] = CAPTION_SCHEME
    return out


def result_intervals(
    family: str, preds: Mapping[str, np.ndarray], metrics: Mapping[str, float]
) -> dict[str, list[float]]:
    """metric -> [low, high] for result.json (the predictions must already hold their example:* arrays)."""
    arrays = example_arrays(preds)
    if not arrays:
        return {}
    est = estimators(family, arrays, metrics, preds)
    return {m: list(b) for m, b in bs.intervals(est, n_examples(arrays)).items()}


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
    """Paired bootstrap of new - ref per metric; refuses two runs on different test examples."""
    (a_arr, a_preds), (b_arr, b_preds) = new, ref
    ids_a, ids_b = a_preds.get("ids"), b_preds.get("ids")
    if ids_a is None or ids_b is None or list(map(str, ids_a)) != list(map(str, ids_b)):
        raise InputError("paired comparison needs the same test examples in the same order (ids differ)")
    n = n_examples(a_arr)
    return bs.paired(
        estimators(family, a_arr, new_metrics, a_preds), estimators(family, b_arr, ref_metrics, b_preds), n
    )
