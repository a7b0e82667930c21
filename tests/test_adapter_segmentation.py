"""COIN segmentation adapter: windows and their averaging, equality with an isolated full forward, the loss,
scoring, end-to-end smoke runs on the toy world, and the real COIN excerpt with synthesised features."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmbench import registry, runner
from vlmbench.adapters import windows
from vlmbench.adapters.segmentation import SegmentationAdapter, SegmentationModel
from vlmbench.config import run_config
from vlmbench.data import coin
from vlmbench.data.toy.coin import step_table
from vlmbench.errors import InputError
from vlmbench.metrics.segmentation import frame_targets
from vlmbench.model import backbone as bb
from vlmbench.model.text import encode
from vlmbench.model.vlm import VLM
from vlmbench.models.vlm import VLMModel
from vlmbench.records.formats import pack_videos

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def model():
    vlm = VLM.from_backbone("tiny", seed=0)
    torch.manual_seed(1)
    m = SegmentationModel(VLMModel(vlm), coin.NUM_CLASSES).eval()
    with torch.no_grad():  # a visible classifier, so the test compares more than tiny numbers
        m.classifier.weight.normal_(0, 1.0)
    return m


def _adapter(tmp_path, **pairs) -> SegmentationAdapter:
    spec = registry.get("coin-segmentation")
    cfg = run_config(spec, "smoke", [f"{k}={v}" for k, v in pairs.items()])
    return SegmentationAdapter(spec, cfg, tmp_path, say=lambda s: None)


def test_windows_spans_padding_and_targets():
    feats = np.arange(50 * 512, dtype=np.float32).reshape(50, 512)
    win = windows.make_windows(feats, 32, 16)
    assert win.spans == [(0, 32), (16, 48), (32, 50)]  # the tail starts at 32: <= 32 s left
    assert win.video.shape == (3, 32, 512) and win.vmask[:2].all() and win.video[2, 18:].abs().sum() == 0
    assert torch.equal(win.video[2, 0], torch.from_numpy(feats[32])) and win.vmask[2].sum() == 18
    short = windows.make_windows(feats[:20], 32, 16)
    assert short.spans == [(0, 20)] and short.vmask.sum() == 20 and short.video[0, 20:].abs().sum() == 0
    t = windows.window_targets(np.arange(20), short, -100)
    assert t.shape == (1, 32) and t[0, 19] == 19 and (t[0, 20:] == -100).all()
    with pytest.raises(InputError):
        windows.make_windows(feats, 40, 16)  # more than the 32 video slots


def test_window_averaging_matches_hand_computation(tmp_path, model):
    adapter = _adapter(tmp_path)
    feats = np.random.default_rng(0).standard_normal((50, 512)).astype(np.float32)
    with torch.no_grad():
        got = adapter.video_logits(model, feats)
        # By hand: each window alone, then per second the mean over the windows that cover it.
        per_window = {}
        for s, e in [(0, 32), (16, 48), (32, 50)]:
            video = torch.zeros(1, 32, 512)
            video[0, : e - s] = torch.from_numpy(feats[s:e])
            vmask = torch.zeros(1, 32, dtype=torch.bool)
            vmask[0, : e - s] = True
            per_window[s] = model.classifier(model.model.vlm.forward_video(video, vmask)[0, : e - s]).numpy()
    want = np.zeros((50, coin.NUM_CLASSES))
    for t in range(50):
        covering = [per_window[s][t - s] for s, e in [(0, 32), (16, 48), (32, 50)] if s <= t < e]
        want[t] = np.mean(covering, axis=0)
    assert got.shape == (50, coin.NUM_CLASSES)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Seconds 16..31 are covered by windows 0 and 16: the average differs from window 0 alone.
    assert not np.allclose(got[20], per_window[0][20], atol=1e-4)


def test_short_video_equals_isolated_full_forward(tmp_path, model):
    adapter = _adapter(tmp_path)
    feats = np.random.default_rng(1).standard_normal((20, 512)).astype(np.float32)
    with torch.no_grad():
        got = adapter.video_logits(model, feats)
        video = torch.zeros(1, 32, 512)
        video[0, :20] = torch.from_numpy(feats)
        vmask = torch.zeros(1, 32, dtype=torch.bool)
        vmask[0, :20] = True
        text_ids, text_mask = encode(bb.tokenizer("tiny"), ["any text at all: isolation hides it"])
        hidden = model.model.vlm.forward(video, vmask, text_ids, text_mask, mask="isolated")
        want = model.classifier(hidden[0, 1:21]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_loss_ignores_padding_and_duplicates_overlaps(tmp_path, model):
    adapter = _adapter(tmp_path)
    feats = np.random.default_rng(2).standard_normal((40, 512)).astype(np.float32)
    target = np.zeros(40, dtype=np.int64)
    target[5:15] = 91
    win = windows.make_windows(feats, 32, 8)
    assert win.spans == [(0, 32), (8, 40)]
    batch = (win, torch.from_numpy(windows.window_targets(target, win, -100)))
    with torch.no_grad():
        loss = adapter.loss(model, batch)
        logits = model.window_logits(win)
        logp = torch.log_softmax(logits, dim=-1)
        # mean over the 32 + 32 window seconds (seconds 8..31 twice), none padded here
        want = -torch.cat(
            [
                logp[0, torch.arange(32), torch.from_numpy(target[0:32])],
                logp[1, torch.arange(32), torch.from_numpy(target[8:40])],
            ]
        ).mean()
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    short = windows.make_windows(feats[:10], 32, 8)
    with torch.no_grad():
        loss_short = adapter.loss(model, (short, torch.from_numpy(windows.window_targets(target[:10], short, -100))))
        logp = torch.log_softmax(model.window_logits(short)[0, :10], dim=-1)
    assert float(loss_short) == pytest.approx(
        float(-logp[torch.arange(10), torch.from_numpy(target[:10])].mean()), rel=1e-5
    )


def test_score_frame_accuracy_and_floor():
    preds = pack_videos(
        ["a", "b"], [np.array([0, 5, 5, 0]), np.array([7, 7])], [np.array([0, 5, 6, 6]), np.array([7, 0])]
    )
    metrics, conv = SegmentationAdapter.score(preds, {"window": 32, "stride": 16, "train_stride": 8})
    assert metrics["frame_acc"] == pytest.approx(100 * 3 / 6)
    assert metrics["frame_acc_nobg"] == pytest.approx(100 * 2 / 4)  # fg frames: 5, 6, 6, 7 -> 5 and 7 right
    assert conv["all_background_floor"].startswith("33.33")
    assert "10 fps" in conv["fps"]
    bad = dict(preds, offsets=np.array([0, 4, 7]))
    with pytest.raises(InputError):
        SegmentationAdapter.score(bad, {})


@pytest.mark.slow
def test_smoke_run_writes_and_rescores(toy_cache, tmp_path):
    result, _ = runner.run("coin-segmentation", preset="smoke", out=tmp_path, progress=False, say=lambda s: None)
    assert (tmp_path / "predictions.npz").is_file() and (tmp_path / "result.json").is_file()
    assert result.counts["train_videos"] == 16 and result.counts["test_videos"] == 16
    assert result.counts["finetune_updates"] == 16
    assert 0 <= result.metrics["frame_acc"] <= 100
    task, metrics, conv, _ = runner.score_file(tmp_path / "predictions.npz")
    assert task == "coin-segmentation"
    assert metrics == result.metrics
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["metrics"]["frame_acc"] == pytest.approx(result.metrics["frame_acc"])
    _, _, preds = runner.load_predictions(tmp_path / "predictions.npz")
    assert len(preds["ids"]) == 16 and preds["offsets"][-1] == result.counts["test_frames"]
    assert set(np.unique(preds["target"])) - {0} <= {s for recipe in step_table() for s, _, _ in recipe}


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no real annotation files at {REAL}")
def test_real_coin_excerpt_end_to_end(tmp_path):
    """The real COIN.json excerpt with synthesised features for a few videos (the rest missing, allowed)."""
    root = tmp_path / "data"
    (root / "coin" / "features").mkdir(parents=True)
    shutil.copy(REAL / "coin" / "COIN_excerpt.json", root / "coin" / "COIN.json")
    videos = coin.load_coin(root / "coin" / "COIN.json")
    train, test = coin.split(videos, "train")[:4], coin.split(videos, "test")[:3]
    rng = np.random.default_rng(0)
    for v in train + test:
        n = min(int(math.ceil(v.duration)), 90)  # capped: segments past the end are clipped, as in the metric
        np.save(root / "coin" / "features" / f"{v.vid}.npy", rng.standard_normal((n, 512)).astype(np.float16))
    with pytest.raises(InputError, match="allow-missing"):
        runner.run(
            "coin-segmentation", data=root, preset="smoke", out=tmp_path / "x", progress=False, say=lambda s: None
        )
    result, _ = runner.run(
        "coin-segmentation",
        data=root,
        preset="smoke",
        out=tmp_path / "run",
        progress=False,
        allow_missing=True,
        say=lambda s: None,
    )
    assert result.counts["train_videos"] == 4 and result.counts["test_videos"] == 3
    assert result.counts["missing_features_train_videos"] == 240 - 4
    assert result.counts["missing_features_test_videos"] == 160 - 3
    _, _, preds = runner.load_predictions(tmp_path / "run" / "predictions.npz")
    assert list(preds["ids"]) == [v.vid for v in test]
    for i, v in enumerate(test):
        n = min(int(math.ceil(v.duration)), 90)
        want = frame_targets(n, [(s.step_id, s.start, s.end) for s in v.segments])
        assert np.array_equal(preds["target"][preds["offsets"][i] : preds["offsets"][i + 1]], want)
    assert (preds["target"] > 0).any() and (preds["target"] == 0).any()
    _, metrics, *_ = runner.score_file(tmp_path / "run" / "predictions.npz")
    assert metrics == result.metrics
