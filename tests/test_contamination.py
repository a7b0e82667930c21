"""Pre-training data against test videos: a toy HowTo100M corpus that holds two YouCook2 test videos. `data check`
counts them, pre-training records the videos it trained on, the fine-tuned result states how many of its test
videos the checkpoint saw, and `pretrain --exclude-test-videos` leaves them out."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from vlmbench.records.corpus import read_ids

pytestmark = pytest.mark.slow


def _cli(*args, cwd):
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """`data toy` plus two YouCook2 test videos copied into howto100m/ (their features and one caption each)."""
    root = tmp_path_factory.mktemp("w") / "data"
    _cli("data", "toy", "--out", root, cwd=root.parent)
    rows = list(csv.DictReader(open(root / "youcook2" / "validation_youcook.csv")))
    leaked = list(dict.fromkeys(r["video_id"] for r in rows))[:2]
    how = root / "howto100m"
    caps = json.loads((how / "captions.json").read_text())
    for vid in leaked:
        shutil.copy(root / "youcook2" / "features" / f"{vid}.npy", how / "features" / f"{vid}.npy")
        caps[vid] = {"start": [0.0, 4.0], "end": [4.0, 8.0], "text": ["peel the water", "mix the tomato"]}
    (how / "captions.json").write_text(json.dumps(caps))
    return root, leaked


def test_data_check_counts_the_test_videos_in_the_corpus(world):
    from vlmbench.checks import check_data

    root, leaked = world
    _cli("data", "check", "--data", root, "--task", "youcook2-retrieval", cwd=root.parent)  # the command: exit 0
    (row,) = check_data(root, ["youcook2-retrieval"])
    assert "2 of " in row.details and "test videos are in howto100m/ (the pre-training corpus)" in row.details
    assert all(v in row.details for v in leaked)


def test_results_say_how_many_test_videos_pretraining_saw_and_exclusion_removes_them(world):
    root, leaked = world
    for flag, want in (([], 2), (["--exclude-test-videos"], 0)):
        pt = root.parent / f"pt{want}"
        _cli(
            "pretrain",
            "--data",
            root / "howto100m",
            "--preset",
            "smoke",
            "--out",
            pt,
            "--no-progress",
            "steps=2",
            *flag,
            cwd=root.parent,
        )
        corpus = read_ids(pt / "model")
        assert len(set(leaked) & corpus) == want
        run = root.parent / f"run{want}"
        _cli(
            "run",
            "--task",
            "youcook2-retrieval",
            "--data",
            root,
            "--checkpoint",
            pt / "model",
            "--preset",
            "smoke",
            "--out",
            run,
            "--no-progress",
            "epochs=0",
            cwd=root.parent,
        )
        result = json.loads((run / "result.json").read_text())
        assert result["counts"]["test_videos_in_pretraining"] == want
        assert result["conventions"]["pretraining_overlap"].startswith(f"{want} of ")
