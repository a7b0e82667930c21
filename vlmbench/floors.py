"""Floor baselines (`vlmbench baseline`): what a model-free guess scores on exactly the same test examples.

A floor runs the task adapter's load() (same data, same split, same preset caps), builds a predictions dict in
exactly the format the adapter's predict() returns, but without a model, and scores it with the adapter's own
score(). It is saved like any run (predictions.npz + result.json, Result.baseline = the kind), so `report`
shows it under the task and `score` can re-score it.

    random          every family: random scores / random labels / a random training sentence per clip /
                    random per-second log-probabilities through the same order-constrained DP (CrossTask)
    all-background  segmentation (COIN): background for every frame

Draws: one random draw is noisy (R@1 on 64 items is 0, 1.6 or 3.1%, a 5x-chance margin over it means anything
from 0 to 15.6), so a random floor's metrics are the MEAN over `draws` independent draws (DRAWS[kind], default
RANDOM_DRAWS = 16 for random: the floor's sampling error shrinks by 4x, at a cost of seconds, no model) --
this estimates the floor's expectation, which is what a margin "5x chance" means. The saved predictions are the
first draw's (so `score` re-scores one real guess); conventions['floor_draws'] records the count. A
deterministic kind (all-background) has one draw, and so has captioning (each draw is a full METEOR/CIDEr
scoring, minutes; its `learned:` rules are absolute, so the gate never runs that floor). `vlmbench baseline`
and `vlmbench suite` use the same default.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from . import config as cfgmod
from . import registry
from .adapters import adapter_class
from .config import run_config
from .data import toy
from .errors import InputError
from .records import signature
from .records.result import Result, provenance, save_result

Preds = dict[str, np.ndarray]


def _retrieval_random(a, rng: np.random.Generator) -> Preds:
    """The same N x N standard-normal draw as ever, generated and ranked a row block at a time (replayed from the
    generator's state for the second pass), saved as RetrievalAdapter.predict saves: ranks and top-5."""
    from .metrics.retrieval_blocks import rank_counts_rows
    from .records.formats import pack_retrieval

    n = len(a.test_ids)  # (texts, videos): row i's truth is column i, as RetrievalAdapter.predict
    start = rng.bit_generator.state  # after both passes the generator stands where one full draw leaves it

    def rows(lo: int, hi: int) -> np.ndarray:
        if lo == 0:  # a pass begins: replay the draw from the start
            rng.bit_generator.state = start
        return rng.standard_normal((hi - lo, n)).astype(np.float32)

    return pack_retrieval(rank_counts_rows(rows, n), a.test_ids)


def _mcqa_random(a, rng: np.random.Generator) -> Preds:
    from .data.msrvtt import N_CHOICES

    return {
        "scores": rng.standard_normal((len(a.questions), N_CHOICES)).astype(np.float32),
        "answers": np.array([q.answer for q in a.questions], dtype=np.int64),
        "ids": np.array([q.video_id for q in a.questions], dtype=str),
    }


def _segmentation(labels: Callable[[int, np.random.Generator, int], np.ndarray]):
    def floor(a, rng: np.random.Generator) -> Preds:
        from .records.formats import pack_videos

        targets = [a.targets(v.vid) for v in a.test]
        preds = [labels(len(t), rng, a.num_classes) for t in targets]
        return pack_videos([v.vid for v in a.test], preds, targets)

    return floor


def _localization_random(a, rng: np.random.Generator) -> Preds:
    from .metrics.localization import dp_one_frame_per_step
    from .records.formats import pack_matrices

    y_true, y_pred = [], []
    for tv in a.test:
        target = a.targets(tv)
        logprob = torch.log_softmax(torch.from_numpy(rng.standard_normal(target.shape)), dim=1).numpy()
        y_pred.append(dp_one_frame_per_step(logprob))
        y_true.append(target)
    return pack_matrices([tv.task for tv in a.test], [tv.vid for tv in a.test], y_true, y_pred, a.primary)


def _captioning_random(a, rng: np.random.Generator) -> Preds:
    if not a.train_tokens:
        raise InputError("no training captions to draw random sentences from", path=a.paths["train_list"])
    # decoded like a model's hypothesis (tokenizer round trip), so only the choice of sentence is random
    picks = rng.integers(len(a.train_tokens), size=len(a.test_clips))
    return {
        "ids": np.array([c.clip_id for c in a.test_clips], dtype=str),
        "hypotheses": np.array([a.decode_text(a.train_tokens[i]) for i in picks], dtype=str),
        "references": np.array(a.references, dtype=str),
    }


FLOORS: dict[str, dict[str, Callable]] = {
    "random": {
        "retrieval": _retrieval_random,
        "mcqa": _mcqa_random,
        "segmentation": _segmentation(lambda n, rng, k: rng.integers(k, size=n)),
        "localization": _localization_random,
        "captioning": _captioning_random,
    },
    "all-background": {
        "segmentation": _segmentation(lambda n, rng, k: np.zeros(n, dtype=np.int64)),
    },
}


RANDOM_DRAWS = 16
DRAWS = {"random": RANDOM_DRAWS, "all-background": 1}


def _mean_metrics(all_metrics: list[dict]) -> dict:
    """Per-key mean of scalar metrics over draws (keys absent or non-numeric in a draw keep the first draw's)."""
    out = dict(all_metrics[0])
    for k in out:
        vals = [m.get(k) for m in all_metrics]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            out[k] = float(np.mean(vals))
    return out


def floor_baseline(
    task: str,
    kind: str = "random",
    *,
    draws: int | None = None,
    data: Path | None = None,
    out: Path | None = None,
    seed: int = 0,
    preset: str | None = None,
    allow_missing: bool = False,
    say: Callable[[str], None] = print,
) -> Result:
    """Load the task's data, guess without a model, score, save; returns the saved Result."""
    from .records.predictions import PREDICTIONS, RESULT, save_predictions

    spec = registry.get(task)
    if kind not in FLOORS:
        raise InputError(f"unknown baseline kind {kind!r} (known: {', '.join(FLOORS)})", path="--kind")
    make = FLOORS[kind].get(spec.family)
    if make is None:
        fits = [t for t, s in registry.all_tasks().items() if s.family in FLOORS[kind]]
        raise InputError(
            f"baseline {kind!r} does not apply to {task} (it applies to: {', '.join(fits)})", path="--kind"
        )
    is_toy = data is None
    toy_data = is_toy or toy.is_toy_dataset(Path(data) / spec.dataset)  # a `vlmbench data toy` folder
    cfg = run_config(spec, ("toy" if toy_data else "paper") if preset is None else preset, [])
    root = toy.toy_root() if is_toy else Path(data)
    if not is_toy and not root.is_dir():
        raise InputError("data folder not found", path=root)
    out = Path(out) if out else Path("runs") / f"baseline-{task}-{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    adapter = adapter_class(spec.family)(spec, cfg, root, allow_missing=allow_missing, say=say)
    adapter.preflight()
    if is_toy:
        toy.ensure_dataset(spec.dataset, say=say)
    adapter.load()
    adapter.warm_up()

    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])  # one stream per (seed, task)
    preds = make(adapter, rng)
    cfg_dict = cfgmod.to_dict(cfg)
    save_predictions(out / PREDICTIONS, task, cfg_dict, preds, adapter.examples(preds, cfg_dict))
    metrics, conventions = adapter.score(preds, cfg_dict)
    n_draws = (1 if spec.family == "captioning" else DRAWS.get(kind, 1)) if draws is None else int(draws)
    if n_draws < 1:
        raise InputError(f"draws must be >= 1, got {n_draws}", path="draws")
    if n_draws > 1:  # same stream continued: draw i is reproducible from (seed, task)
        metrics = _mean_metrics(
            [metrics] + [adapter.score(make(adapter, rng), cfg_dict)[0] for _ in range(n_draws - 1)]
        )
    conventions = {
        **conventions,
        "floor_draws": f"{n_draws} (metrics are the mean over draws; predictions are the first draw)",
    }
    result = Result(
        task=task,
        family=spec.family,
        split=spec.split,
        metrics=metrics,
        conventions=conventions,
        counts={k: int(v) for k, v in adapter.loaded.counts.items()},
        config={**cfg_dict, "checkpoint": None, "data": str(root), "allow_missing": allow_missing},
        preset=cfg.preset,
        seed=seed,
        toy=toy_data,
        provenance=provenance(adapter.loaded.fingerprint()),
        baseline=kind,
        signature=signature.of_run(spec, root, toy_data, len(preds["ids"]), cfg_dict, f"floor:{kind}", None),
    )
    save_result(result, out / RESULT)
    result.path = out / RESULT
    return result
