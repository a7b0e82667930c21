"""SIGINT and SIGTERM: one stderr line saying what was saved and the exact command that resumes, exit 130 / 143;
that command resumes pre-training bit for bit; an interrupted `run` leaves nothing and reruns as it was typed."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlmbench.data.toy.howto100m import write_howto100m

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "vlmbench.cli"]
ARGS = ["--preset", "smoke", "--no-progress", "save_every=2", "steps=30", "lr_decay_steps=30"]


@pytest.fixture(scope="module")
def howto(tmp_path_factory) -> Path:
    return write_howto100m(tmp_path_factory.mktemp("how") / "howto100m", seed=0, n_videos=24)


@pytest.fixture(scope="module")
def reference(howto, tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "pre"
    r = subprocess.run(
        [*CLI, "pretrain", "--data", str(howto), *ARGS, "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return out


def _as_subprocess(command: str) -> list[str]:
    """`vlmbench ...` as printed, run with this interpreter (the same thing as the installed entry point)."""
    argv = shlex.split(command)
    assert argv[0] == "vlmbench", command
    return [*CLI, *argv[1:]]


def _interrupt_when(proc: subprocess.Popen, ready, signum: int) -> tuple[int, str]:
    deadline = time.time() + 300
    while not ready():
        assert proc.poll() is None, "the command ended before it could be interrupted: " + proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def _interrupt_line(stderr: str, signum: int) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if "interrupted" in ln]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"interrupted ({signal.Signals(signum).name}): "), lines[0]
    return lines[0]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_pretrain_says_the_step_and_resumes_bitwise(howto, reference, tmp_path, signum, code):
    out = tmp_path / "pre"
    proc = subprocess.Popen(
        [*CLI, "pretrain", "--data", str(howto), *ARGS, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    rc, stderr = _interrupt_when(proc, lambda: (out / "checkpoints" / "step_0000004").exists(), signum)
    assert rc == code, stderr
    line = _interrupt_line(stderr, signum)
    assert not (out / "model").exists()  # it stopped before the end
    latest = (out / "checkpoints" / "latest").read_text().strip()
    step = int(latest.rpartition("_")[2])
    assert f"checkpoint step {step} saved in {out / 'checkpoints' / latest}; resume with: vlmbench pretrain" in line
    command = line.split("resume with: ", 1)[1]
    assert command.endswith(" --resume")
    resumed = subprocess.run(_as_subprocess(command), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(step {step})" in resumed.stderr  # it resumed from the checkpoint the line named
    ref, got = (
        load_file(str(reference / "model" / "model.safetensors")),
        load_file(str(out / "model" / "model.safetensors")),
    )
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    losses = lambda o: [json.loads(x)["loss"] for x in (o / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert losses(out) == losses(reference)
    assert not list(out.rglob("*.tmp*")) and not (out / ".vlmbench.lock").exists()


def test_interrupted_run_saves_nothing_and_reruns_with_the_same_command(tmp_path):
    from vlmbench.data import toy
    from vlmbench.model.vlm import VLM

    data = tmp_path / "data"
    toy.write_dataset("youcook2", data / "youcook2", seed=0)
    ckpt = VLM.from_backbone("tiny", seed=0).save(tmp_path / "ckpt")
    out = tmp_path / "run"
    argv = ["run", "--task", "youcook2-retrieval", "--preset", "smoke", "--no-progress"]
    argv += ["--data", str(data), "--checkpoint", str(ckpt), "--out", str(out), "epochs=50"]
    proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the run folder's lock is taken once every check passed, just before the work (data, model, fine-tuning)
    rc, stderr = _interrupt_when(proc, lambda: (out / ".vlmbench.lock").exists(), signal.SIGINT)
    assert rc == 130, stderr
    line = _interrupt_line(stderr, signal.SIGINT)
    assert (
        line == f"interrupted (SIGINT): nothing saved (a run is atomic); rerun with: {shlex.join(['vlmbench', *argv])}"
    )
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    command = line.split("rerun with: ", 1)[1].replace("epochs=50", "epochs=1")
    again = subprocess.run(_as_subprocess(command), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (out / "result.json").is_file()
