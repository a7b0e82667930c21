"""`vlmbench suite`: one pre-training, every task from it; repeatable to the bit; the committed reference;
save_reference replaces a reference folder as a whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmbench import registry
from vlmbench.records.result import load_results
from vlmbench.reporting.compare import compare_paths
from vlmbench.suite import save_reference, suite

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "smoke"


def _predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k].copy() for k in z.files}


@pytest.mark.slow
def test_every_task_is_repeatable_to_the_bit(tmp_path):
    """Each of the seven tasks, fine-tuned and predicted twice from one checkpoint (smoke preset, fewer
    examples): identical predictions and metrics. Unseeded shuffles or dropout would show up here."""
    from vlmbench.model.vlm import VLM
    from vlmbench.runner import run

    ckpt = VLM.from_backbone("tiny", seed=0).save(tmp_path / "ckpt")
    for task in registry.all_tasks():
        pairs = ["max_train=4", "max_test=4"] + (["skip_meteor=true"] if task == "youcook2-caption" else [])
        got = []
        for i in range(2):
            out = tmp_path / f"{task}-{i}"
            result, _ = run(
                task, checkpoint=ckpt, out=out, preset="smoke", pairs=pairs, progress=False, say=lambda s: None
            )
            got.append(
                (
                    result.metrics,
                    _predictions(out / "predictions.npz"),
                    json.loads((out / "finetune_losses.json").read_text())
                    if (out / "finetune_losses.json").exists()
                    else [],
                )
            )
        (m1, p1, l1), (m2, p2, l2) = got
        assert json.dumps(m1, sort_keys=True) == json.dumps(m2, sort_keys=True), task
        assert p1.keys() == p2.keys() and all(
            np.array_equal(p1[k], p2[k], equal_nan=p1[k].dtype.kind == "f") for k in p1
        ), task
        assert l1 == l2, task
        if not registry.get(task).recipe.get("zeroshot"):
            assert len(l1) >= 1, f"{task} did not fine-tune"


def test_committed_reference_covers_all_seven_tasks():
    everything = load_results(REFERENCE)
    assert sorted(r.task for r in everything) == sorted([*registry.all_tasks(), "pretrain"])
    results = [r for r in everything if r.task != "pretrain"]  # the suite's own pre-training result
    for r in results:
        assert r.preset == "smoke" and r.toy and r.baseline is None and r.config["backbone"] == "tiny"
        assert set(registry.get(r.task).metrics) <= set(r.metrics)
        # every task ran from the one suite checkpoint
        assert r.config["checkpoint"].endswith("pretrain/model")
    assert len({r.config["checkpoint"] for r in results}) == 1


def test_save_reference_replaces_the_folder_as_a_whole(tmp_path):
    def fake_run(folder: Path, tasks: dict[str, float]) -> Path:
        for task, value in tasks.items():
            (folder / task).mkdir(parents=True)
            (folder / task / "result.json").write_text(
                json.dumps({"schema": "vlmbench.result/1", "task": task, "metrics": {"R@1": value}})
            )
            (folder / task / "predictions.npz").write_bytes(b"not copied")
        return folder

    ref = tmp_path / "results" / "reference" / "smoke"
    save_reference(fake_run(tmp_path / "run1", {"msrvtt-retrieval": 1.0, "youcook2-retrieval": 2.0}), ref)
    assert sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file()) == [
        "msrvtt-retrieval/result.json",
        "youcook2-retrieval/result.json",
    ]
    save_reference(fake_run(tmp_path / "run2", {"msrvtt-retrieval": 3.0}), ref)
    assert [r.metrics["R@1"] for r in load_results(ref)] == [3.0]  # the old task is gone
    assert sorted(p.name for p in ref.parent.iterdir()) == ["smoke"]  # no temp or old folder left


@pytest.mark.slow
def test_suite_pretrains_once_and_runs_tasks_from_it(tmp_path):
    out = tmp_path / "suite"
    results = suite(
        out,
        preset="smoke",
        tasks=["msrvtt-retrieval", "crosstask-zeroshot"],
        pretrain_pairs=["steps=3", "save_every=3"],
        progress=False,
        say=lambda s: None,
    )
    assert [r.task for r in results] == ["msrvtt-retrieval", "crosstask-zeroshot"]
    assert all(r.config["checkpoint"] == str(out / "pretrain" / "model") for r in results)
    assert len((out / "pretrain" / "log.jsonl").read_text().splitlines()) == 3  # one pre-training
    info = json.loads((out / "suite.json").read_text())
    assert info["preset"] == "smoke" and info["wall_s"]["total"] > 0
    # the CI path: save as reference, then compare a run against it (exit 0), via the CLI
    # the floors msrvtt-retrieval's `learned:` rules need were run beside it (3 steps learn nothing: the
    # reference comparison alone is checked here; floors are tests/test_gate.py's)
    floor = load_results(out / "msrvtt-retrieval" / "floor-random")
    assert [f.baseline for f in floor] == ["random"] and floor[0].conventions["floor_draws"].startswith("16 ")
    save_reference(out, tmp_path / "ref")
    assert not list((tmp_path / "ref").glob("*/floor-*"))
    df, failed = compare_paths(out, tmp_path / "ref", floors=False)
    assert not failed and (df["delta"] == 0).all()
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "compare", str(out), str(tmp_path / "ref"), "--no-floors"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "all " in r.stdout and "msrvtt-retrieval" in r.stdout


@pytest.mark.slow
def test_suite_cli_bad_preset_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "suite", "--preset", "huge", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "unknown preset 'huge'" in r.stderr and "Traceback" not in r.stderr
