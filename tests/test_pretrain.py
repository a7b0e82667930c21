"""The pre-training runner: determinism, crash safety (SIGKILL + resume), real captions, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vlmbench.config import pretrain_config
from vlmbench.data.toy.howto100m import write_howto100m
from vlmbench.train.pretrain import pretrain

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def howto(tmp_path_factory) -> Path:
    return write_howto100m(tmp_path_factory.mktemp("how") / "howto100m", seed=0, n_videos=24)


def _cli(*args, timeout=300, **kw):
    return subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


@pytest.mark.slow
def test_same_seed_same_loss_log_and_loss_falls(howto, tmp_path):
    cfg = pretrain_config("smoke", ["steps=20", "lr_decay_steps=20"])
    a = pretrain(cfg, tmp_path / "a", data=howto, progress=False, say=lambda s: None)
    b = pretrain(cfg, tmp_path / "b", data=howto, progress=False, say=lambda s: None)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert a["rank_weight_digests"] == b["rank_weight_digests"]
    losses = _losses(tmp_path / "a")
    assert len(losses) == 20 and np.mean(losses[-5:]) < np.mean(losses[:5])
    other = pretrain(
        pretrain_config("smoke", ["steps=20", "lr_decay_steps=20", "seed=1"]),
        tmp_path / "c",
        data=howto,
        progress=False,
        say=lambda s: None,
    )
    assert _losses(tmp_path / "c") != losses and other["rank_weight_digests"] != a["rank_weight_digests"]


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(howto, tmp_path):
    args = [
        "pretrain",
        "--data",
        str(howto),
        "--preset",
        "smoke",
        "--no-progress",
        "steps=40",
        "lr_decay_steps=40",
        "save_every=5",
    ]
    ref = _cli(*args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmbench.cli", *args, "--out", str(killed_out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (killed_out / "checkpoints" / "step_0000015").exists():  # mid-way: after 3 checkpoints
        assert time.time() < deadline and proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_out / "model").exists()  # it really died before the end
    resumed = _cli(*args, "--out", str(killed_out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stderr
    ref_w, got_w = _weights(tmp_path / "ref"), _weights(killed_out)
    assert ref_w.keys() == got_w.keys()
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)
    assert _losses(killed_out) == _losses(tmp_path / "ref")
    assert not list(killed_out.rglob("*.tmp*"))


def test_real_howto100m_caption_csvs_load_and_sample(real_data, tmp_path):
    from vlmbench.data.features import FeatureStore
    from vlmbench.data.howto100m import load_captions
    from vlmbench.model.backbone import tokenizer
    from vlmbench.train.sampler import ClipSampler

    caps = load_captions(real_data / "howto100m" / "captions")
    assert len(caps) == 30
    feats = tmp_path / "features"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for vid in sorted(caps)[:5]:
        seconds = int(np.ceil(caps[vid].end.max())) + 1
        np.save(feats / f"{vid}.npy", rng.standard_normal((seconds, 512)).astype(np.float16))
    sampler = ClipSampler(caps, FeatureStore(feats), tokenizer("tiny"), clips_per_video=4, batch_size=8)
    assert sampler.n_skipped == 25 and len(sampler.videos) == 5
    batch = sampler.batch(0)
    assert batch.video.shape == (8, 32, 512) and batch.vmask.any(1).all()
    assert (batch.text_mask.sum(1) >= 2).all()  # text + the final [SEP]


def test_clip_sampler_follows_the_reference_rules(howto):
    from vlmbench.data.features import FeatureStore
    from vlmbench.data.howto100m import load_captions
    from vlmbench.model.backbone import tokenizer
    from vlmbench.train.sampler import ClipSampler

    caps = load_captions(howto / "captions.json")
    s = ClipSampler(
        caps, FeatureStore(howto / "features"), tokenizer("tiny"), min_text_len=8, clips_per_video=32, batch_size=64
    )
    assert s.videos_per_batch == 2 and s.clips_per_video == 32
    rng = np.random.default_rng(0)
    for vid in s.videos[:5]:
        for _ in range(20):
            feats, text = s.clip(vid, rng)
            assert 1 <= len(feats) <= 32 and len(text) <= 61
    assert s.batch(3).text_ids.tolist() == s.batch(3).text_ids.tolist()  # a pure function of the step


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(howto, tmp_path):
    torchrun = VENV_BIN / "torchrun"
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "vlmbench.cli",
            "pretrain",
            "--data",
            str(howto),
            "--out",
            str(out),
            "--preset",
            "smoke",
            "--no-progress",
            "steps=6",
            "save_every=3",
            "batch_size=8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_0000003", "step_0000006"]
    assert len((out / "log.jsonl").read_text().splitlines()) == 6  # rank 0 alone writes


# ---- bad input: one line naming the file or key, exit 2, no traceback, nothing half-written -----------------
def _bad(tmp_path, data: Path | None, *pairs):
    out = tmp_path / "out"
    args = ["pretrain", "--out", str(out), "--preset", "smoke", "--no-progress", *pairs]
    if data is not None:
        args += ["--data", str(data)]
    r = _cli(*args)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    return lines[0], out


def _copy_howto(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_bad_input_missing_and_empty_dirs(tmp_path):
    line, out = _bad(tmp_path, tmp_path / "nope")
    assert "nope" in line and "not found" in line and not out.exists()
    (tmp_path / "empty").mkdir()
    line, out = _bad(tmp_path, tmp_path / "empty")
    assert "empty" in line and "captions" in line and not out.exists()


@pytest.mark.slow
def test_bad_input_wrong_width_and_nan(howto, tmp_path):
    d = _copy_howto(howto, tmp_path / "w")
    np.save(d / "features" / "toy_how_00003.npy", np.zeros((10, 256), np.float16))
    line, out = _bad(tmp_path, d)
    assert "toy_how_00003.npy" in line and "width 512, got 256" in line and not out.exists()

    d = _copy_howto(howto, tmp_path / "n")
    for f in (d / "features").glob("*.npy"):
        arr = np.load(f)
        arr[0, 0] = np.nan
        np.save(f, arr)
    line, out = _bad(tmp_path, d)
    assert ".npy" in line and "NaN" in line
    assert not (out / "model").exists() and not list(out.rglob("*.tmp*"))


@pytest.mark.slow
def test_bad_input_malformed_captions(howto, tmp_path):
    d = _copy_howto(howto, tmp_path / "j")
    (d / "captions.json").write_text('{"v1": {"start": [0], "end": [1]')
    line, out = _bad(tmp_path, d)
    assert "captions.json" in line and not out.exists()

    d = tmp_path / "csv"
    (d / "captions").mkdir(parents=True)
    (d / "features").mkdir()
    (d / "captions" / "vidA.csv").write_text("start,end,text\n0.0,abc,hello\n")
    line, out = _bad(tmp_path, d)
    assert "vidA.csv" in line and not out.exists()


@pytest.mark.slow
def test_bad_input_keys_and_values(howto, tmp_path):
    line, _ = _bad(tmp_path, howto, "colour=red")
    assert "colour" in line and "unknown key" in line
    line, _ = _bad(tmp_path, howto, "steps=ten")
    assert "steps" in line and "expected int" in line
    line, _ = _bad(tmp_path, howto, "loss=ctc")
    assert "loss" in line


@pytest.mark.slow
def test_videos_without_features_are_skipped_and_none_is_an_error(howto, tmp_path):
    d = _copy_howto(howto, tmp_path / "m")
    for f in sorted((d / "features").glob("*.npy"))[:4]:
        f.unlink()
    r = _cli(
        "pretrain", "--data", str(d), "--out", str(tmp_path / "o"), "--preset", "smoke", "--no-progress", "steps=2"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "run.json").read_text())["videos_skipped_no_features"] == 4
    for f in (d / "features").glob("*.npy"):
        f.unlink()
    line, _ = _bad(tmp_path, d)
    assert "feature file" in line


def test_shutdown_does_not_wait_forever_for_a_hung_destroy(monkeypatch, capsys):
    """destroy_process_group can hang after the work is done (CI saw a torchrun run hang there): bounded wait."""
    import threading
    import time

    from vlmbench.train import distributed

    release = threading.Event()
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: release.wait(30))
    t0 = time.perf_counter()
    distributed.shutdown(distributed.Dist(rank=1, world_size=2), wait_s=0.3)
    took = time.perf_counter() - t0
    release.set()
    assert took < 5
    assert "rank 1: destroy_process_group did not return" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append(1))
    distributed.shutdown(distributed.Dist(rank=0, world_size=2), wait_s=5)
    assert calls == [1] and capsys.readouterr().err == ""
