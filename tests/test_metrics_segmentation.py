import math

import numpy as np
import pytest

from vlmbench.metrics.segmentation import (
    CONVENTIONS,
    average_window_logits,
    frame_accuracy,
    frame_targets,
    sliding_windows,
)


def test_frame_targets_floor_ceil_and_overwrite():
    t = frame_targets(10, [(3, 1.2, 4.5), (5, 4.0, 6.0)])
    assert t.dtype == np.int64
    # [floor(1.2), ceil(4.5)) = [1, 5) gets 3, then [4, 6) is overwritten with 5.
    assert t.tolist() == [0, 3, 3, 3, 5, 5, 0, 0, 0, 0]


def test_frame_targets_clip_to_the_video():
    assert frame_targets(5, [(2, -2.5, 1.5), (7, 3.2, 99.0)]).tolist() == [2, 2, 0, 7, 7]
    # A segment entirely before 0 must not wrap around to the end (t[0:-1] in raw Python).
    assert frame_targets(4, [(9, -3.0, -1.0)]).tolist() == [0, 0, 0, 0]
    assert frame_targets(4, [(9, 6.0, 8.0)]).tolist() == [0, 0, 0, 0]


def test_all_background_predictor_floor():
    targets = [frame_targets(10, [(3, 1.2, 4.5), (5, 4.0, 6.0)]), np.array([4, 4])]
    preds = [np.zeros(10, dtype=np.int64), np.zeros(2, dtype=np.int64)]
    out = frame_accuracy(preds, targets)
    # 5 background frames (0, 6..9) out of 12, micro over both videos (macro: (50 + 0) / 2 = 25).
    assert out == {"frame_acc": pytest.approx(100 * 5 / 12), "frame_acc_nobg": 0.0, "n_frames": 12}


def test_frame_accuracy_with_and_without_background():
    targets = [np.array([0, 0, 1, 1, 2]), np.array([3, 0, 0])]
    preds = [np.array([0, 1, 1, 2, 2]), np.array([3, 3, 0])]
    out = frame_accuracy(preds, targets)
    assert out["frame_acc"] == pytest.approx(100 * 5 / 8)
    assert out["frame_acc_nobg"] == pytest.approx(100 * 3 / 4)  # frames 2, 3, 4 and 5
    assert out["n_frames"] == 8


def test_no_foreground_frames_gives_nan():
    out = frame_accuracy([np.array([0, 1])], [np.array([0, 0])])
    assert out["frame_acc"] == 50.0 and math.isnan(out["frame_acc_nobg"])
    assert "NaN" in CONVENTIONS["frame_acc_nobg"]


@pytest.mark.parametrize("preds, targets", [([np.zeros(3)], [np.zeros(4)]), ([np.zeros(3)], []), ([], [])])
def test_frame_accuracy_rejects_bad_input(preds, targets):
    with pytest.raises(ValueError):
        frame_accuracy(preds, targets)


@pytest.mark.parametrize(
    "n, stride, expected",
    [
        (10, 16, [(0, 10)]),
        (10, 8, [(0, 10)]),
        (32, 16, [(0, 32)]),
        (32, 8, [(0, 32)]),
        (33, 16, [(0, 32), (16, 33)]),  # the reference's tail rule (issue 9)
        (33, 8, [(0, 32), (8, 33)]),
        (70, 16, [(0, 32), (16, 48), (32, 64), (48, 70)]),
        (70, 8, [(0, 32), (8, 40), (16, 48), (24, 56), (32, 64), (40, 70)]),
        (64, 16, [(0, 32), (16, 48), (32, 64)]),
    ],
)
def test_sliding_windows(n, stride, expected):
    assert sliding_windows(n, window=32, stride=stride) == expected


def test_overlap_averaging_by_hand():
    w0 = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    w1 = np.array([[5.0, 1.0], [7.0, 1.0], [9.0, 1.0]])
    out = average_window_logits([w0, w1], [0, 2], n_frames=5)
    np.testing.assert_allclose(out, [[1, 0], [2, 0], [4, 0.5], [7, 1], [9, 1]])


def test_windows_and_averaging_agree_with_a_loop():
    n, n_classes = 70, 3
    rng = np.random.default_rng(1)
    windows = sliding_windows(n, 32, 16)
    logits = [rng.normal(size=(e - s, n_classes)) for s, e in windows]
    out = average_window_logits(logits, [s for s, _ in windows], n)
    for t in range(n):
        covering = [w[t - s] for w, (s, e) in zip(logits, windows) if s <= t < e]
        np.testing.assert_allclose(out[t], np.mean(covering, axis=0))
    # Second 40 is covered by two windows (16-48, 32-64); 50 by two (32-64, 48-70).
    assert sum(1 for s, e in windows if s <= 40 < e) == 2
    assert sum(1 for s, e in windows if s <= 50 < e) == 2


def test_averaging_rejects_gaps_and_overruns():
    with pytest.raises(ValueError, match="not covered"):
        average_window_logits([np.zeros((2, 3))], [0], n_frames=3)
    with pytest.raises(ValueError, match="outside"):
        average_window_logits([np.zeros((4, 3))], [0], n_frames=3)
    with pytest.raises(ValueError, match="shape"):
        average_window_logits([np.zeros((2, 3)), np.zeros((2, 4))], [0, 1], n_frames=3)
