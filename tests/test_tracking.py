"""TensorBoard curves: pre-training and fine-tuning write event files into the run folder, read back here with
TensorBoard's own reader, and they hold what the JSON logs hold."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_pretraining_curves_match_the_loss_log(tmp_path):
    from vlmbench.config import pretrain_config
    from vlmbench.train.pretrain import pretrain

    out = tmp_path / "pt"
    pretrain(pretrain_config("smoke", ["steps=6", "save_every=3"]), out, progress=False, say=lambda s: None)
    got = _scalars(out / "tb")
    assert {
        "pretrain/loss",
        "pretrain/lr",
        "pretrain/grad_norm",
        "pretrain/data_wait_s",
        "pretrain/clips_per_s",
    } <= set(got)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [s for s, _ in got["pretrain/loss"]] == [r["step"] for r in log] == list(range(6))
    assert [v for _, v in got["pretrain/loss"]] == pytest.approx([r["loss"] for r in log], abs=1e-6)
    assert [v for _, v in got["pretrain/lr"]] == pytest.approx([r["lr"] for r in log])


def test_finetuning_curves_and_final_metrics(tmp_path):
    from vlmbench.runner import run

    result, _ = run("msrvtt-mcqa", preset="smoke", out=tmp_path / "run", progress=False, say=lambda s: None)
    got = _scalars(tmp_path / "run" / "tb")
    losses = json.loads((tmp_path / "run" / "finetune_losses.json").read_text())
    assert [v for _, v in got["finetune/loss"]] == pytest.approx(losses, abs=1e-6)
    assert len(got["finetune/lr"]) == len(losses) and len(got["finetune/grad_norm"]) == len(losses)
    assert got["metrics/accuracy"] == [(len(losses), pytest.approx(result.metrics["accuracy"]))]
    assert not list((tmp_path / "run").glob(".tb.tmp*"))  # staged, then put in place
