"""`pretrain --out` / `run --out` on a folder that already holds a run: refused (exit 2, one line naming the
folder and the flag to pass) unless --resume / --overwrite; --overwrite replaces only the run's own files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *args], capture_output=True, text=True, timeout=900, cwd=cwd
    )


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in sorted(folder.rglob("*"))}


def _refused(r, folder: Path, *flags: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(folder) in lines[0] and "already holds a run" in lines[0]
    for flag in flags:
        assert flag in lines[0]


@pytest.mark.parametrize("marker", ["log.jsonl", "checkpoints", "model"])
@pytest.mark.slow
def test_pretrain_refuses_a_folder_holding_a_run(tmp_path, marker):
    out = tmp_path / "pre"
    out.mkdir()
    (out / marker).mkdir() if marker != "log.jsonl" else (out / marker).write_text('{"step": 0, "loss": 1.0}\n')
    (out / "notes.txt").write_text("mine")
    before = _listing(out)
    r = _cli("pretrain", "--out", str(out), "--preset", "smoke", "--no-progress", "steps=2")
    _refused(r, out, "--resume", "--overwrite")
    assert _listing(out) == before  # nothing written, nothing removed


@pytest.mark.slow
def test_pretrain_resume_and_overwrite_exclude_each_other(tmp_path):
    r = _cli("pretrain", "--out", str(tmp_path / "p"), "--resume", "--overwrite", "--preset", "smoke")
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_pretrain_overwrite_replaces_the_old_run(tmp_path):
    """A stale later checkpoint would be picked up by a later --resume: --overwrite removes it; a user's own
    file in the folder stays."""
    from vlmbench.config import pretrain_config
    from vlmbench.train import checkpoint as ckpt
    from vlmbench.train.pretrain import pretrain

    out = tmp_path / "pre"
    stale = out / "checkpoints" / "step_0000999"
    stale.mkdir(parents=True)
    (out / "checkpoints" / "latest").write_text("step_0000999\n")
    (out / "log.jsonl").write_text('{"step": 998, "loss": 9.0}\n')
    (out / "notes.txt").write_text("mine")
    cfg = pretrain_config("smoke", ["steps=2", "save_every=2"])
    with pytest.raises(Exception, match="--overwrite"):
        pretrain(cfg, out, progress=False, say=lambda s: None)
    pretrain(cfg, out, progress=False, say=lambda s: None, overwrite=True)
    assert not stale.exists()
    assert ckpt.latest(out / "checkpoints").name == "step_0000002"
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 1]
    assert (out / "notes.txt").read_text() == "mine"
    # --resume on the finished run is allowed (it continues, here: nothing left to do)
    summary = pretrain(cfg, out, progress=False, say=lambda s: None, resume=True)
    assert summary["final_step"] == 2


@pytest.mark.parametrize("marker", ["result.json", "predictions.npz"])
@pytest.mark.slow
def test_run_refuses_a_folder_holding_a_run(tmp_path, marker):
    out = tmp_path / "run"
    out.mkdir()
    (out / marker).write_text("old")
    before = _listing(out)
    r = _cli("run", "--task", "msrvtt-retrieval", "--preset", "smoke", "--out", str(out), "--no-progress")
    _refused(r, out, "--overwrite")
    assert _listing(out) == before


@pytest.mark.slow
def test_run_overwrite_replaces_the_run_files_only(tmp_path):
    """A zero-shot run over a fine-tuned one: the stale finetune_losses.json must not survive beside it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("old")
    (out / "finetune_losses.json").write_text("[1.0]")
    (out / "notes.txt").write_text("mine")
    r = _cli(
        "run", "--task", "crosstask-zeroshot", "--preset", "smoke", "--out", str(out), "--no-progress", "--overwrite"
    )
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "crosstask-zeroshot" and result["metrics"]["recall"] >= 0
    assert not (out / "finetune_losses.json").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "predictions.npz").is_file()
