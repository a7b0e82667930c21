"""A pre-training run's own numbers, as a result record (`OUT/result.json`, task `pretrain`) the CI gate compares.

The fine-tuned tasks can wash out a broken pre-training (a task's own fine-tuning recovers), so the gate also
compares the training loss itself: its mean over the first and the last tenth of the updates (read from
log.jsonl, so a resumed run counts every step) and the drop between them. Seed-for-seed deterministic on one
machine; a changed mask, masking rate, loss term or layer moves them by far more than the seed noise.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..records import signature
from ..records.result import Result, provenance

TASK = "pretrain"
SHARE = 0.1  # the first / last tenth of the updates


def loss_metrics(log_path: Path) -> dict[str, float]:
    losses = [json.loads(line)["loss"] for line in Path(log_path).read_text().splitlines() if line.strip()]
    if not losses:
        return {}
    n = max(1, int(len(losses) * SHARE))
    first, last = sum(losses[:n]) / n, sum(losses[-n:]) / n
    return {"loss_first": round(first, 6), "loss_last": round(last, 6), "loss_drop": round(first - last, 6)}


def loss_result(out: Path, run_info: dict, seed: int) -> Result:
    out = Path(out)
    return Result(
        task=TASK,
        metrics=loss_metrics(out / "log.jsonl"),
        family="pretrain",
        split="train",
        conventions={
            "loss": f"mean training loss over the first / last {SHARE:.0%} of the updates "
            "(loss_drop = first - last), objective " + str(run_info["config"]["loss"])
        },
        counts={"steps": int(run_info["total_steps"]), "videos": int(run_info["videos"])},
        config=run_info["config"],
        preset=run_info["preset"],
        seed=seed,
        toy=bool(run_info["toy"]),
        provenance=provenance(None),
        signature=signature.record(
            signature.build(
                task=TASK,
                family="pretrain",
                split="train",
                n=int(run_info["total_steps"]),
                cfg=run_info["config"],
                model="vlm",
                features="toy" if run_info["toy"] else "howto100m",
                limit=None,
            )
        ),
    )
