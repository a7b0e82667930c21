"""The pre-training's own result (OUT/result.json, task `pretrain`): loss means over the first / last tenth of
the updates, read from log.jsonl, and the gate's direction for them (a higher loss is worse)."""

from __future__ import annotations

import json

import pytest

from vlmbench.records.result import Result
from vlmbench.reporting.compare import compare, direction
from vlmbench.train.loss_summary import loss_metrics


def _log(path, losses):
    path.write_text("".join(json.dumps({"step": i, "loss": v}) + "\n" for i, v in enumerate(losses)))
    return path


def test_first_and_last_tenth(tmp_path):
    losses = [10.0] * 3 + [7.0] * 24 + [2.0, 3.0, 4.0]  # 30 steps: tenths of 3
    m = loss_metrics(_log(tmp_path / "log.jsonl", losses))
    assert m == {"loss_first": 10.0, "loss_last": 3.0, "loss_drop": 7.0}
    m = loss_metrics(_log(tmp_path / "short.jsonl", [5.0, 4.0, 1.0]))  # fewer than 10 steps: one step each
    assert m == {"loss_first": 5.0, "loss_last": 1.0, "loss_drop": 4.0}


def _pre(**metrics):
    return Result(task="pretrain", metrics=metrics, family="pretrain", split="train", preset="ci", toy=True)


@pytest.mark.parametrize("new, verdict", [(4.99, "ok"), (5.2, "regressed"), (4.8, "changed beyond noise")])
def test_gate_reads_the_loss_as_lower_is_better(new, verdict):
    assert direction("loss_last") == -1 and direction("loss_drop") == +1
    df = compare([_pre(loss_last=new)], [_pre(loss_last=5.0)])
    assert df.set_index("metric").loc["loss_last", "status"] == verdict


def test_a_pretraining_run_writes_its_result(tmp_path):
    from vlmbench.config import pretrain_config
    from vlmbench.records.result import load_results
    from vlmbench.train.pretrain import pretrain

    cfg = pretrain_config("smoke", ["steps=4", "save_every=4"])
    pretrain(cfg, tmp_path / "p", progress=False, say=lambda *_: None)
    (r,) = load_results(tmp_path / "p")
    assert r.task == "pretrain" and r.preset == "smoke" and r.toy and r.counts["steps"] == 4
    assert set(r.metrics) == {"loss_first", "loss_last", "loss_drop"}
    logged = [json.loads(x)["loss"] for x in (tmp_path / "p" / "log.jsonl").read_text().splitlines()]
    assert r.metrics["loss_first"] == round(logged[0], 6) and r.metrics["loss_last"] == round(logged[-1], 6)
