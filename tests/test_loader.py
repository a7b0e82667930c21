"""The pre-training input pipeline: the prepared-corpus sampler and the DataLoader give exactly the batches (and
losses) of the old in-process sampler, with any number of workers and after a resume; data-wait is measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmbench.config import pretrain_config
from vlmbench.data import asr, prepared
from vlmbench.data.features import FeatureStore
from vlmbench.data.howto100m import load_captions, usable
from vlmbench.data.toy.howto100m import write_howto100m
from vlmbench.errors import InputError
from vlmbench.model.backbone import tokenizer
from vlmbench.train import pretrain as P
from vlmbench.train.loader import batches
from vlmbench.train.sampler import Batch, ClipSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from legacy_loader import OldClipSampler  # noqa: E402  (the old sampler, verbatim: the reference)


# ---- fixtures ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def howto(tmp_path_factory) -> Path:
    return write_howto100m(tmp_path_factory.mktemp("how") / "howto100m", seed=0, n_videos=24)


@pytest.fixture(scope="module")
def prep(howto, tmp_path_factory) -> prepared.Prepared:
    return prepared.prepare(howto, tmp_path_factory.mktemp("prep") / "prep", backbone="tiny")


def _old_sampler(howto: Path, **kw) -> OldClipSampler:
    """The old sampler over the same cleaned captions (the caption rules are the prepare step's, not the sampler's)."""
    store = FeatureStore(howto / "features")
    raw = load_captions(howto / "captions.json")
    clean = {vid: asr.prepare_captions(cap, vid=vid)[0] for vid, cap in raw.items()}
    return OldClipSampler(usable(clean, store).captions, store, tokenizer("tiny"), **kw)


def _same(a: Batch, b: Batch) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("video", "vmask", "text_ids", "text_mask"))


SHAPES = [
    dict(clips_per_video=4, batch_size=16),
    dict(clips_per_video=32, batch_size=64, seed=3),
    dict(clips_per_video=4, batch_size=8, rank=1, world_size=2, min_text_len=20, max_text_len=40),
]


@pytest.mark.parametrize("kw", SHAPES)
@pytest.mark.slow
def test_prepared_sampler_gives_the_old_samplers_batches(howto, prep, kw):
    old = _old_sampler(howto, **kw)
    new = ClipSampler(prep, FeatureStore(prep.features), **kw)
    assert new.videos == old.videos and new.steps_per_epoch() == old.steps_per_epoch()
    for step in range(3 * new.steps_per_epoch() + 1):  # across epoch boundaries (new permutations)
        assert _same(old.batch(step), new.batch(step)), step


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")  # 4 workers on 2 cores
def test_loader_batches_same_with_0_and_4_workers_and_after_resume(prep):
    s = ClipSampler(prep, FeatureStore(prep.features), clips_per_video=4, batch_size=16, seed=5)
    n = 12
    plain = [(step, b) for step, b, _ in batches(s, 0, n, workers=0)]
    assert [step for step, _ in plain] == list(range(n))
    four = list(batches(s, 0, n, workers=4, prefetch=3))
    assert [step for step, _, _ in four] == list(range(n))
    assert all(_same(a, b) for (_, a), (_, b, _) in zip(plain, four))
    resumed = list(batches(s, 7, n, workers=2))  # a run resumed at step 7
    assert [step for step, _, _ in resumed] == list(range(7, n))
    assert all(_same(plain[step][1], b) for step, b, _ in resumed)
    assert not _same(plain[0][1], plain[1][1])  # the steps really differ


def test_start_up_reads_no_feature_file(prep, monkeypatch):
    def no(*a, **k):
        raise AssertionError("a feature file was opened at start-up")

    monkeypatch.setattr(FeatureStore, "n_seconds", no)
    monkeypatch.setattr(FeatureStore, "_open", no)
    s = ClipSampler(prep, FeatureStore(prep.features), clips_per_video=4, batch_size=16)
    assert s.n_videos == len(prep) == 24 and s.steps_per_epoch() == 6


@pytest.mark.slow
def test_pretrain_losses_and_weights_identical_to_the_old_loader(howto, tmp_path, monkeypatch):
    """20 steps of pre-training: old in-process batches vs the DataLoader with 0 and 2 workers."""
    cfg = pretrain_config("smoke", ["steps=20", "lr_decay_steps=20", "save_every=100"])

    def run(name, workers):
        summary = P.pretrain(cfg, tmp_path / name, data=howto, progress=False, say=lambda s: None, workers=workers)
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        return summary, log

    new0, log0 = run("new0", 0)
    new2, log2 = run("new2", 2)
    old = _old_sampler(howto, clips_per_video=cfg.clips_per_video, batch_size=cfg.batch_size, seed=cfg.seed)

    def old_source(sampler, start, stop, workers, pin_memory):
        for step in range(start, stop):
            yield step, old.batch(step), 0.0

    monkeypatch.setattr(P, "_batch_source", old_source)
    ref, log_ref = run("old", 0)
    losses = [r["loss"] for r in log_ref]
    assert len(losses) == 20 and len(set(losses)) > 10
    assert [r["loss"] for r in log0] == losses and [r["loss"] for r in log2] == losses
    assert new0["rank_weight_digests"] == ref["rank_weight_digests"] == new2["rank_weight_digests"]
    for r in log0 + log2:  # (3) data wait and model time, every step
        assert r["data_wait_s"] >= 0 and r["model_s"] > 0
    assert 0 <= new0["data_wait_share"] <= 1


def test_bad_feature_file_in_a_worker_is_one_input_error(howto, tmp_path):
    import shutil

    d = tmp_path / "h"
    shutil.copytree(howto, d)
    p = prepared.prepare(d, tmp_path / "prep", backbone="tiny")
    for f in (d / "features").glob("*.npy"):  # after preparing: headers fine, rows not
        arr = np.load(f)
        arr[:, 0] = np.nan
        np.save(f, arr)
    s = ClipSampler(p, FeatureStore(p.features), clips_per_video=4, batch_size=16)
    with pytest.raises(InputError) as e:
        list(batches(s, 0, 3, workers=2))
    msg = str(e.value)
    assert "\n" not in msg and ".npy" in msg and "NaN" in msg and "Traceback" not in msg


def test_data_wait_warning_once_over_10_percent():
    said = []
    w = P.DataWait(said.append, workers=0)
    for step in range(30):
        w.add(step, 0.05, 1.0)  # 4.8%: fine
    w.finish()
    assert said == [] and w.share() == pytest.approx(0.05 / 1.05, abs=1e-3)
    w = P.DataWait(said.append, workers=1)
    w.add(0, 100.0, 1.0)  # the first step (worker start-up) is not judged
    for step in range(1, 50):
        w.add(step, 0.2, 1.0)  # 16.7%
    w.finish()
    assert len(said) == 1 and "17%" in said[0] and "1 loader worker" in said[0]


@pytest.mark.slow
def test_cli_pretrain_warns_when_input_bound(howto, tmp_path, monkeypatch):
    """`vlmbench pretrain` says it when data wait is over 10% (made so by a slow sampler in a child process)."""
    code = (
        "import sys, time\n"
        "from vlmbench.train import sampler\n"
        "orig = sampler.ClipSampler.batch\n"
        "sampler.ClipSampler.batch = lambda self, step: (time.sleep(0.5), orig(self, step))[1]\n"
        "from vlmbench.cli import app\n"
        "sys.argv = ['vlmbench'] + sys.argv[1:]\n"
        "app()\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "pretrain",
            "--data",
            str(howto),
            "--out",
            str(tmp_path / "o"),
            "--preset",
            "smoke",
            "--no-progress",
            "steps=4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "waited for data" in r.stderr
