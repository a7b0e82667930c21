"""Floor baselines: normal result files, metrics at chance level, COIN all-background = the background
fraction counted by hand, re-scorable predictions, wrong kind -> one-line error."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from vlmbench.errors import InputError
from vlmbench.floors import floor_baseline
from vlmbench.records.result import load_result
from vlmbench.runner import score_file


def _floor(task, kind, out, seed=0, **kw):
    return floor_baseline(task, kind, out=out, seed=seed, say=lambda s: None, **kw)


@pytest.mark.parametrize("task", ["msrvtt-retrieval", "youcook2-retrieval"])
def test_random_retrieval_is_at_chance(task, tmp_path):
    r = _floor(task, "random", tmp_path / "a")
    n = r.counts["test_examples"]
    chance = 100.0 / n  # P(the true video is ranked first)
    assert n >= 100 and r.baseline == "random" and r.toy
    assert r.metrics["R@1"] < 5 * chance and r.metrics["R@10"] < 5 * 10 * chance
    assert 0.3 * n < r.metrics["MedR"] < 0.7 * n  # the true video lands mid-list
    # a normal result file + predictions, re-scorable offline to the same numbers
    saved = load_result(tmp_path / "a" / "result.json")
    assert saved.baseline == "random" and saved.metrics == r.metrics and saved.seed == 0
    task_name, metrics, *_ = score_file(tmp_path / "a" / "predictions.npz")
    one = _floor(task, "random", tmp_path / "one", draws=1)  # the saved predictions are the first draw
    assert task_name == task and metrics == one.metrics and r.conventions["floor_draws"].startswith("16 ")
    again = _floor(task, "random", tmp_path / "b")
    other = _floor(task, "random", tmp_path / "c", seed=1)
    assert again.metrics == r.metrics and other.metrics != r.metrics


def test_random_mcqa_is_one_in_five(tmp_path):
    accs = [_floor("msrvtt-mcqa", "random", tmp_path / str(s), seed=s).metrics["accuracy"] for s in range(4)]
    assert 12.0 < np.mean(accs) < 28.0  # 20% +- noise of 4 x 100 questions


@pytest.mark.slow
def test_coin_all_background_equals_the_background_fraction_by_hand(tmp_path):
    from vlmbench.data import toy

    r = _floor("coin-segmentation", "all-background", tmp_path / "bg")
    # by hand: COIN.json segments over the test videos' seconds (a second is foreground when any segment
    # [start, end] covers part of it), videos as long as their feature files
    root = toy.toy_root() / "coin"
    db = json.loads((root / "COIN.json").read_text())["database"]
    frames = background = 0
    testing = [vid for vid, v in db.items() if v["subset"] == "testing"]
    assert r.counts["test_videos"] == 40 < len(testing)  # the toy preset scores v2's 40 test videos (max_test)
    for vid in testing[:40]:
        v = db[vid]
        n = len(np.load(root / "features" / f"{vid}.npy", mmap_mode="r"))
        fg = np.zeros(n, bool)
        for seg in v["annotation"]:
            start, end = seg["segment"]
            fg[max(0, math.floor(start)) : min(n, math.ceil(end))] = True
        frames += n
        background += int((~fg).sum())
    assert r.counts["test_frames"] == frames
    assert r.metrics["frame_acc"] == pytest.approx(100.0 * background / frames, abs=1e-9)
    assert r.metrics["frame_acc_nobg"] == 0.0
    assert 10.0 < r.metrics["frame_acc"] < 90.0  # the toy COIN has both kinds of frames
    rnd = _floor("coin-segmentation", "random", tmp_path / "rnd")
    assert rnd.metrics["frame_acc"] < 5 * 100.0 / 779  # 779 classes


@pytest.mark.slow
def test_random_crosstask_dp_matches_the_analytic_floor(tmp_path):
    """Random log-probabilities through the order-constrained DP: recall near the expected recall of a
    uniformly random increasing assignment (which the adapter reports as conventions.random_floor)."""
    runs = [_floor("crosstask-zeroshot", "random", tmp_path / str(s), seed=s) for s in range(4)]
    floor = float(runs[0].conventions["random_floor"].split()[0])
    mean = float(np.mean([r.metrics["recall"] for r in runs]))
    assert 0 < floor < 60 and abs(mean - floor) < 6.0, (mean, floor)
    assert all(0 <= r.metrics[k] <= 100 for r in runs for k in r.metrics)


def test_random_captions_are_training_sentences(tmp_path):
    r = _floor("youcook2-caption", "random", tmp_path / "cap")
    with np.load(tmp_path / "cap" / "predictions.npz") as z:
        hyps, refs = list(z["hypotheses"]), list(z["references"])
    assert len(hyps) == r.counts["test_clips"] and len(set(hyps)) > 1
    assert r.metrics["CIDEr"] < 0.5 and r.metrics["BLEU-4"] < 5.0
    assert sum(h == ref for h, ref in zip(hyps, refs)) < 0.2 * len(hyps)


@pytest.mark.slow
def test_all_background_only_for_coin(tmp_path):
    with pytest.raises(InputError, match="does not apply to msrvtt-retrieval.*coin-segmentation"):
        _floor("msrvtt-retrieval", "all-background", tmp_path)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmbench.cli",
            "baseline",
            "--task",
            "msrvtt-mcqa",
            "--kind",
            "oracle",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "unknown baseline kind 'oracle'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_baseline_writes_a_result_report_shows_as_floor(tmp_path):
    out = tmp_path / "floor"
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "baseline", "--task", "msrvtt-retrieval", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (out / "result.json").is_file() and (out / "predictions.npz").is_file()
    rep = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "report", str(out), "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stderr
    floor_rows = [line for line in rep.stdout.splitlines() if line.startswith("msrvtt-retrieval,floor,random")]
    assert len(floor_rows) == 1 and "floor baseline" in floor_rows[0]
