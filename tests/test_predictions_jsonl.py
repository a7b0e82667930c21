"""predictions.jsonl beside predictions.npz for every task: one JSON object per scored example (id, target,
prediction, score or rank), readable without numpy. Each task's headline metric is recomputed here from the
.jsonl alone, by its definition, and must equal the one in result.json: the file says what was scored."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vlmbench import registry

TASKS = sorted(registry.all_tasks())


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "predictions.jsonl"
    assert path.is_file() and (run_dir / "predictions.npz").is_file()
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text  # strict JSON, any reader parses it
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows and all({"id", "target", "prediction"} <= set(r) for r in rows)
    return rows


def _recomputed(family: str, rows: list[dict]) -> dict[str, float]:
    """The headline metrics from the readable records only."""
    if family == "retrieval":
        rank = np.array([r["rank"] for r in rows])
        for r in rows:  # a rank-1 query's top prediction is its truth
            assert len(r["top5"]) == min(5, len(rows)) and r["top5"][0] == r["prediction"]
            if r["rank"] == 1:
                assert r["prediction"] == r["target"]
        return {"R@1": 100 * np.mean(rank <= 1), "R@5": 100 * np.mean(rank <= 5), "MedR": float(np.median(rank))}
    if family == "mcqa":
        for r in rows:
            assert len(r["scores"]) == 5 and r["prediction"] == int(np.argmax(r["scores"]))
        return {"accuracy": 100 * np.mean([r["prediction"] == r["target"] for r in rows])}
    if family == "segmentation":
        pred = np.concatenate([r["prediction"] for r in rows])
        target = np.concatenate([r["target"] for r in rows])
        assert [r["frames"] for r in rows] == [len(r["target"]) for r in rows]
        return {"frame_acc": 100 * np.mean(pred == target)}
    if family == "localization":
        hits, steps = {}, {}
        for r in rows:
            assert len(r["target"]) == len(r["prediction"]) == len(r["hit"])
            for t, f, h in zip(r["target"], r["prediction"], r["hit"]):
                assert h == (f is not None and f in t)
            if r["primary"]:
                hits[r["task"]] = hits.get(r["task"], 0) + r["hits"]
                steps[r["task"]] = steps.get(r["task"], 0) + r["annotated_steps"]
        return {"recall": float(np.mean([100 * hits[t] / steps[t] for t in steps if steps[t]]))}
    if family == "captioning":
        assert all(isinstance(r["prediction"], str) and isinstance(r["target"], str) for r in rows)
        scores = [r["score"] for r in rows if "score" in r]
        return {"CIDEr": float(np.mean(scores))} if scores else {}
    raise AssertionError(family)


def _check(task: str, run_dir: Path, n_examples: int) -> None:
    spec = registry.get(task)
    rows = _records(run_dir)
    assert len(rows) == n_examples
    result = json.loads((run_dir / "result.json").read_text())
    for metric, value in _recomputed(spec.family, rows).items():
        assert math.isclose(value, result["metrics"][metric], rel_tol=1e-6, abs_tol=1e-6), (task, metric)


def _n_examples(family: str, counts: dict) -> int:
    key = {
        "retrieval": "test_examples",
        "mcqa": "test_examples",
        "segmentation": "test_videos",
        "localization": "test_videos",
        "captioning": "test_clips",
    }[family]
    return counts[key]


@pytest.mark.parametrize("task", TASKS)
def test_floor_baselines_write_predictions_jsonl(task, tmp_path):
    """No model needed: the random floor goes through the same save_predictions as a run."""
    from vlmbench.floors import floor_baseline

    # one draw: the saved predictions are the first draw, the metrics of more draws their mean
    result = floor_baseline(task, "random", draws=1, out=tmp_path, preset="smoke", say=lambda s: None)
    _check(task, tmp_path, _n_examples(registry.get(task).family, result.counts))


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_every_task_run_writes_predictions_jsonl(task, tmp_path):
    """A real smoke run (tiny backbone, the cached toy checkpoint) of each of the seven tasks."""
    from vlmbench.runner import run

    pairs = ["max_test=12", "decode=greedy"] if registry.get(task).family == "captioning" else []
    result, _ = run(task, preset="smoke", out=tmp_path, pairs=pairs, progress=False, say=lambda s: None)
    assert result.config["backbone"] == "tiny"
    _check(task, tmp_path, _n_examples(registry.get(task).family, result.counts))
    if registry.get(task).family == "captioning":  # a run carries per-clip CIDEr-D
        assert all("score" in r for r in _records(tmp_path))
