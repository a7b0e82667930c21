"""CrossTask localization adapter: scores equal an isolated full forward, windows are averaged, the DP output,
the BCE loss, the random floor, scoring, smoke runs on the toy world, and the real release with synthesised
features (including a video with T == K and one with T < K)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmbench import registry, runner
from vlmbench.adapters.localization import LocalizationAdapter, random_recall
from vlmbench.config import run_config
from vlmbench.data import crosstask as ct
from vlmbench.errors import InputError
from vlmbench.metrics.localization import crosstask_targets
from vlmbench.model import backbone as bb
from vlmbench.model.text import encode
from vlmbench.model.vlm import VLM
from vlmbench.models.vlm import VLMModel
from vlmbench.records.formats import pack_matrices

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
STEPS = ["cut the onion", "fry the egg", "boil the water pot"]


@pytest.fixture(scope="module")
def vlm():
    return VLM.from_backbone("tiny", seed=0).eval()


def _adapter(tmp_path, vlm, task="crosstask-supervised", **pairs) -> LocalizationAdapter:
    spec = registry.get(task)
    cfg = run_config(spec, "smoke", [f"{k}={v}" for k, v in pairs.items()])
    adapter = LocalizationAdapter(spec, cfg, tmp_path, say=lambda s: None)
    adapter.tasks = {"t1": ct.CrossTaskTask("t1", "Toy", "u", tuple(STEPS))}
    adapter.build(VLMModel(vlm))
    return adapter


def _full_forward_scores(vlm, feats: np.ndarray) -> np.ndarray:
    """The reference's two isolated passes through the full 96-slot sequence, for a video of <= 32 s."""
    tok = bb.tokenizer("tiny")
    n = len(feats)
    video = torch.zeros(1, 32, 512)
    video[0, :n] = torch.from_numpy(feats)
    vmask = torch.zeros(1, 32, dtype=torch.bool)
    vmask[0, :n] = True
    dummy_ids, dummy_mask = encode(tok, [""])
    frames = vlm.forward(video, vmask, dummy_ids, dummy_mask, mask="isolated")[0, 1 : 1 + n]
    # each step text with a single zero dummy video token
    ids, mask = encode(tok, STEPS)
    one = torch.zeros(len(STEPS), 32, dtype=torch.bool)
    one[:, 0] = True
    hidden = vlm.forward(torch.zeros(len(STEPS), 32, 512), one, ids, mask, mask="isolated")
    steps = VLM.pool_text(hidden, mask)
    return (frames @ steps.T).numpy()


def test_short_video_scores_equal_isolated_full_forward(tmp_path, vlm):
    adapter = _adapter(tmp_path, vlm)
    feats = np.random.default_rng(0).standard_normal((20, 512)).astype(np.float32)
    with torch.no_grad():
        got = adapter.video_logits(VLMModel(vlm), "t1", feats)
        want = _full_forward_scores(vlm, feats)
    assert got.shape == (20, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_long_video_scores_are_window_means(tmp_path, vlm):
    adapter = _adapter(tmp_path, vlm)
    feats = np.random.default_rng(1).standard_normal((40, 512)).astype(np.float32)
    with torch.no_grad():
        got = adapter.video_logits(VLMModel(vlm), "t1", feats)
        first = _full_forward_scores(vlm, feats[0:32])  # windows (0, 32) and (16, 40) at stride 16
        last = _full_forward_scores(vlm, feats[16:40])
    want = np.zeros((40, 3))
    want[:16], want[32:] = first[:16], last[16:]
    want[16:32] = (first[16:32] + last[0:16]) / 2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_bce_loss_on_valid_frames(tmp_path, vlm):
    adapter = _adapter(tmp_path, vlm)
    feats = np.random.default_rng(2).standard_normal((40, 512)).astype(np.float32)
    y = crosstask_targets(40, 3, [(1, 2, 9), (3, 30.5, 35)])
    with torch.no_grad():
        loss = adapter.loss(VLMModel(vlm), ("t1", feats, y))
        first = torch.from_numpy(_full_forward_scores(vlm, feats[0:32]))
        last = torch.from_numpy(_full_forward_scores(vlm, feats[16:40]))
        # overlapping seconds are simply repeated (56 frames x 3 steps)
        want = torch.nn.functional.binary_cross_entropy_with_logits(
            torch.cat([first, last]), torch.from_numpy(np.concatenate([y[0:32], y[16:40]])).float()
        )
    assert float(loss) == pytest.approx(float(want), rel=1e-4)


def test_random_floor_matches_enumeration():
    rng = np.random.default_rng(3)
    per_video = []
    for task, (n, k) in [("a", (7, 3)), ("a", (5, 2)), ("b", (6, 4)), ("b", (2, 3))]:
        y = (rng.random((n, k)) < 0.3).astype(np.uint8)
        y[0, 0] = 1
        per_video.append((task, y, np.zeros_like(y)))
    match = {"a": 0.0, "b": 0.0}
    total = {"a": 0.0, "b": 0.0}
    for task, y, _ in per_video:
        n, k = y.shape
        if n >= k:
            subsets = list(itertools.combinations(range(n), k))
            match[task] += sum(sum(y[t, j] for j, t in enumerate(s)) for s in subsets) / len(subsets)
        else:  # T < K: the DP's diagonal
            match[task] += sum(y[j, j] for j in range(n))
        total[task] += (y.sum(axis=0) > 0).sum()
    want = np.mean([100 * match[t] / total[t] for t in "ab"])
    assert random_recall(per_video, ["a", "b"]) == pytest.approx(want)
    assert random_recall(per_video, ["a"]) == pytest.approx(100 * match["a"] / total["a"])


def test_score_recall_per_task_and_primary_only():
    y1 = crosstask_targets(6, 2, [(1, 0, 2), (2, 3, 5)])
    p1 = np.zeros_like(y1)
    p1[1, 0], p1[2, 1] = 1, 1  # step 1 hit, step 2 missed
    y2 = crosstask_targets(4, 3, [(2, 1, 3)])
    p2 = np.zeros_like(y2)
    p2[0, 0], p2[1, 1], p2[3, 2] = 1, 1, 1  # the only annotated step is hit
    y3 = crosstask_targets(3, 1, [(1, 0, 3)])
    preds = pack_matrices(
        ["A", "B", "R"], ["v1", "v2", "v3"], [y1, y2, y3], [p1, p2, np.zeros_like(y3)], primary=["A", "B"]
    )
    metrics, conv = LocalizationAdapter.score(preds, {})
    assert metrics["recall/A"] == pytest.approx(50.0) and metrics["recall/B"] == pytest.approx(100.0)
    assert metrics["recall"] == pytest.approx(75.0)  # mean over primary tasks; R is not primary
    assert "recall/R" not in metrics
    assert "random_floor" in conv and "per_task" in conv
    with pytest.raises(InputError):
        LocalizationAdapter.score({k: v for k, v in preds.items() if k != "shapes"}, {})


@pytest.mark.parametrize("task", ["crosstask-zeroshot", "crosstask-supervised"])
@pytest.mark.slow
def test_smoke_run_writes_and_rescores(toy_cache, tmp_path, task):
    result, _ = runner.run(task, preset="smoke", out=tmp_path, progress=False, say=lambda s: None)
    assert (tmp_path / "predictions.npz").is_file() and (tmp_path / "result.json").is_file()
    assert result.counts["test_videos"] == 16
    assert result.counts["finetune_updates"] == (0 if task == "crosstask-zeroshot" else 16)
    _, metrics, *_ = runner.score_file(tmp_path / "predictions.npz")
    assert metrics == result.metrics
    assert 0 <= result.metrics["recall"] <= 100
    _, _, preds = runner.load_predictions(tmp_path / "predictions.npz")
    sizes = preds["shapes"].prod(axis=1)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for (n, k), s in zip(preds["shapes"], bounds[:-1]):
        y_pred = preds["y_pred"][s : s + n * k].reshape(n, k)
        assert (y_pred.sum(axis=0) == 1).all()  # one frame per step
        assert (np.diff(y_pred.argmax(axis=0)) > 0).all()  # in the task's order


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no real annotation files at {REAL}")
@pytest.mark.slow
def test_real_release_end_to_end(tmp_path):
    """The real release (symlinked) with synthesised features for 33 videos of one primary task (30 train,
    3 test after the seed-0 split) and 3 of another (all train). Two test videos get T == K and T < K; the
    others cover their annotations."""
    release = REAL / "crosstask" / "crosstask_release"
    root = tmp_path / "data"
    (root / "crosstask" / "features").mkdir(parents=True)
    (root / "crosstask" / "crosstask_release").symlink_to(release)
    primary = ct.load_tasks(release / "tasks_primary.txt")
    val = set(ct.load_videos(release / "videos_val.csv"))
    annotated = [
        tv
        for tv in ct.load_videos(release / "videos.csv")
        if tv.task in primary and tv not in val and ct.annotation_path(release, *tv).is_file()
    ]
    task_a, task_b = list(primary)[:2]
    chosen = [tv for tv in annotated if tv.task == task_a][:33] + [tv for tv in annotated if tv.task == task_b][:3]
    ids = {tv.vid for tv in chosen}
    _, test = ct.build_split(release, ids.__contains__, n_train=30, seed=0)
    assert len(test) == 3
    k = len(primary[task_a].steps)
    lengths = {test[0].vid: k, test[1].vid: k - 2}
    rng = np.random.default_rng(0)
    for tv in chosen:
        spans = ct.read_annotation(ct.annotation_path(release, *tv))
        n = lengths.get(tv.vid, math.ceil(max(s.end for s in spans)) + 2)
        np.save(root / "crosstask" / "features" / f"{tv.vid}.npy", rng.standard_normal((n, 512)).astype(np.float16))
    with pytest.raises(InputError, match="allow-missing"):
        runner.run(
            "crosstask-zeroshot", data=root, preset="smoke", out=tmp_path / "x", progress=False, say=lambda s: None
        )
    for task in ("crosstask-zeroshot", "crosstask-supervised"):
        result, _ = runner.run(
            task, data=root, preset="smoke", out=tmp_path / task, progress=False, allow_missing=True, say=lambda s: None
        )
        assert result.counts["test_videos"] == 3 and result.counts["test_tasks"] == 1
        assert result.counts["missing_features_annotated_videos"] == len({v for _, v in annotated}) - len(ids)
        assert result.counts["train_videos"] == (0 if task == "crosstask-zeroshot" else 16)
        _, _, preds = runner.load_predictions(tmp_path / task / "predictions.npz")
        assert [tuple(s) for s in preds["shapes"]][:2] == [(k, k), (k - 2, k)]
        y_true, y_pred = preds["y_true"][: k * k].reshape(k, k), preds["y_pred"][: k * k].reshape(k, k)
        spans = ct.read_annotation(ct.annotation_path(release, *test[0]), n_steps=k)
        assert np.array_equal(y_true, crosstask_targets(k, k, [tuple(s) for s in spans]))
        assert np.array_equal(y_pred, np.eye(k, dtype=np.uint8))  # T == K: the only ordered alignment
        short = preds["y_pred"][k * k : k * k + (k - 2) * k].reshape(k - 2, k)
        assert short[:, -2:].sum() == 0  # T < K: the last steps get no frame
        assert list(result.metrics) == ["recall", f"recall/{task_a}"]
        assert not math.isnan(result.metrics["recall"])
        _, metrics, *_ = runner.score_file(tmp_path / task / "predictions.npz")
        assert metrics == result.metrics
