"""`vlmbench data check` as a user runs it: exit 0 only when every task checked is usable, 2 when a file is
malformed, 3 when something is missing; the HowTo100M pre-training folder is checked too; NaN/inf rows are
found by file and row; the fingerprint follows the feature files' contents."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmbench import checks, registry
from vlmbench.data import toy


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400"},
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    for name in toy.WRITERS:
        toy.write_dataset(name, root / name, seed=0)
    return root


def _copy(world: Path, tmp_path: Path, *datasets: str) -> Path:
    root = tmp_path / "data"
    for name in datasets:
        shutil.copytree(world / name, root / name)
    return root


def _status(stdout: str, task: str) -> str:
    line = next(ln for ln in stdout.splitlines() if f" {task} " in ln)
    return line.split("│")[2].strip()


@pytest.mark.slow
def test_every_task_usable_exits_0_and_names_the_pretraining_row(world):
    r = _cli("data", "check", "--data", str(world))
    assert r.returncode == 0, r.stdout + r.stderr
    for task in [checks.PRETRAIN, "msrvtt-retrieval", "coin-segmentation", "crosstask-zeroshot", "youcook2-caption"]:
        assert _status(r.stdout, task) == "ok", task
    assert "videos=240" in r.stdout  # the toy HowTo100M corpus, read and counted


@pytest.mark.slow
def test_missing_files_exit_3_and_malformed_outranks_missing(world, tmp_path):
    root = _copy(world, tmp_path, "msrvtt", "coin")
    r = _cli("data", "check", "--data", str(root))  # howto100m, youcook2, crosstask absent
    assert r.returncode == 3, r.stdout + r.stderr
    assert _status(r.stdout, checks.PRETRAIN) == "missing" and _status(r.stdout, "youcook2-caption") == "missing"
    assert _status(r.stdout, "msrvtt-retrieval") == "ok"
    (root / "coin" / "COIN.json").write_text('{"database": [1')
    r = _cli("data", "check", "--data", str(root))
    assert r.returncode == 2 and _status(r.stdout, "coin-segmentation") == "malformed"
    assert checks.exit_code([checks.CheckRow("a", "missing", ""), checks.CheckRow("b", "malformed", "")]) == 2


@pytest.mark.slow
def test_exit_codes_are_documented_in_the_help():
    r = _cli("data", "check", "-h")
    help_text = " ".join(r.stdout.split())
    assert r.returncode == 0
    assert checks.EXIT_HELP in help_text
    for status, code in checks.EXIT_CODES.items():
        assert str(code) in checks.EXIT_HELP and status in ("ok", "missing", "malformed")
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert "0 when every task checked is usable, 2 when any file is malformed, 3 when none is malformed" in readme


@pytest.mark.slow
def test_some_features_missing_is_missing_unless_allowed(world, tmp_path):
    root = _copy(world, tmp_path, "msrvtt")
    for f in sorted((root / "msrvtt" / "features").glob("*.npy"))[:3]:
        f.unlink()
    r = _cli("data", "check", "--data", str(root), "--task", "msrvtt-retrieval")
    assert r.returncode == 3 and "usable with --allow-missing" in r.stdout, r.stdout
    r = _cli("data", "check", "--data", str(root), "--task", "msrvtt-retrieval", "--allow-missing")
    assert r.returncode == 0, r.stdout
    r = _cli("data", "check", "--data", str(root), "--task", "nope")
    assert r.returncode == 2 and "unknown task 'nope'" in r.stderr and checks.PRETRAIN in r.stderr


def _poison(path: Path, row: int, value: float = np.nan) -> None:
    arr = np.load(path)
    arr[row, 5] = value
    np.save(path, arr)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.slow
def test_nan_or_inf_in_a_task_feature_file_is_reported_by_file_and_row(world, tmp_path, value):
    root = _copy(world, tmp_path, "coin")
    victim = sorted((root / "coin" / "features").glob("*.npy"))[4]
    _poison(victim, 7, value)
    r = _cli("data", "check", "--data", str(root), "--task", "coin-segmentation")
    assert r.returncode == 2, r.stdout
    row = checks.check_task(registry.get("coin-segmentation"), root)
    assert (row.status, row.details) == ("malformed", f"{victim}: row 7 contains NaN/inf")


@pytest.mark.slow
def test_pretraining_folder_is_checked(world, tmp_path):
    root = _copy(world, tmp_path, "howto100m")
    feats = sorted((root / "howto100m" / "features").glob("*.npy"))
    _poison(feats[2], 3)
    row = checks.check_pretraining(root)
    assert (row.status, row.details) == ("malformed", f"{feats[2]}: row 3 contains NaN/inf")
    r = _cli("data", "check", "--data", str(root), "--task", checks.PRETRAIN)
    assert r.returncode == 2 and "row 3 contains NaN/inf" in r.stdout
    # skips are counted and reported, not silent: a video with no features, one whose captions are all empty
    np.save(feats[2], np.zeros((20, 512), np.float16))
    feats[5].unlink()
    caps = json.loads((root / "howto100m" / "captions.json").read_text())
    empty = sorted(caps)[0]
    caps[empty]["text"] = ["" for _ in caps[empty]["text"]]
    (root / "howto100m" / "captions.json").write_text(json.dumps(caps))
    row = checks.check_pretraining(root)
    assert row.status == "ok", row.details
    assert "skipped 2 of 240 captioned videos: 1 with no feature file, 1 whose captions are all empty" in row.details, (
        row.details
    )
    shutil.rmtree(root / "howto100m" / "features")
    r = _cli("data", "check", "--data", str(root), "--task", checks.PRETRAIN)
    assert r.returncode == 3 and _status(r.stdout, checks.PRETRAIN) == "missing"


@pytest.mark.slow
def test_fingerprint_follows_feature_contents(world, tmp_path):
    root = _copy(world, tmp_path, "msrvtt")
    spec = registry.get("msrvtt-retrieval")
    before = checks.check_task(spec, root).details.rsplit("fingerprint ", 1)[1]
    victim = sorted((root / "msrvtt" / "features").glob("*.npy"))[0]
    arr = np.load(victim)
    np.save(victim, arr[::-1].copy())  # same name, size, shape and dtype; other values
    after = checks.check_task(spec, root).details.rsplit("fingerprint ", 1)[1]
    assert before != after
    np.save(victim, arr)
    assert checks.check_task(spec, root).details.rsplit("fingerprint ", 1)[1] == before


def test_zero_row_feature_file_is_malformed_for_retrieval_and_pretraining(world, tmp_path):
    root = _copy(world, tmp_path, "msrvtt", "howto100m")
    test_vid = (root / "msrvtt" / "MSRVTT_JSFUSION_test.csv").read_text().splitlines()[1].split(",")[2]
    victim = root / "msrvtt" / "features" / f"{test_vid}.npy"
    np.save(victim, np.zeros((0, 512), np.float16))
    row = checks.check_task(registry.get("msrvtt-retrieval"), root)
    assert (row.status, row.details) == (
        "malformed",
        f"{victim}: 0 rows: a feature file needs at least one second of video",
    )
    victim = sorted((root / "howto100m" / "features").glob("*.npy"))[0]
    np.save(victim, np.zeros((0, 512), np.float32))
    row = checks.check_pretraining(root)
    assert row.status == "malformed" and row.details.startswith(f"{victim}: 0 rows")
