import itertools
import math

import numpy as np
import pytest

from vlmbench.metrics.localization import (
    CONVENTIONS,
    crosstask_recall,
    crosstask_targets,
    dp_one_frame_per_step,
)


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def chosen_frames(y):
    """Frame of each step (column) in a one-frame-per-step prediction."""
    assert (y.sum(axis=0) == 1).all(), "every step must get exactly one frame"
    return tuple(int(np.flatnonzero(y[:, k])[0]) for k in range(y.shape[1]))


def test_targets_floor_ceil_clip_and_multiple_intervals():
    y = crosstask_targets(6, 3, [(1, 0.5, 2.1), (3, 4.2, 10.0), (1, 5.0, 5.5)])
    assert y.dtype == np.uint8
    expected = np.zeros((6, 3), dtype=np.uint8)
    expected[0:3, 0] = 1  # [floor 0.5, ceil 2.1) = [0, 3)
    expected[4:6, 2] = 1  # [4, 10) clipped at T = 6
    expected[5:6, 0] = 1  # a second interval of step 1
    np.testing.assert_array_equal(y, expected)
    # Negative times are clipped, never wrapped around.
    assert crosstask_targets(4, 1, [(1, -3.0, -1.0)]).sum() == 0
    with pytest.raises(ValueError, match="outside 1..3"):
        crosstask_targets(6, 3, [(4, 0.0, 1.0)])


def test_dp_matches_brute_force_enumeration():
    rng = np.random.default_rng(0)
    n_cases = 0
    for n_steps in range(1, 5):
        for n_frames in range(n_steps, 8):
            for _ in range(8):
                # Log-softmax over one step would be all zeros (ties), so K = 1 uses raw log-probabilities.
                logits = rng.normal(scale=2.0, size=(n_frames, n_steps))
                logprob = log_softmax(logits) if n_steps > 1 else -np.abs(logits)
                best = max(
                    itertools.combinations(range(n_frames), n_steps),
                    key=lambda frames: sum(logprob[t, k] for k, t in enumerate(frames)),
                )
                y = dp_one_frame_per_step(logprob)
                assert y.dtype == np.uint8 and y.shape == (n_frames, n_steps)
                assert chosen_frames(y) == best, (n_frames, n_steps)
                assert y.sum() == n_steps and (y.sum(axis=1) <= 1).all()
                n_cases += 1
    assert n_cases == 8 * sum(8 - k for k in range(1, 5))


def test_dp_respects_step_order_by_hand():
    # Step 2 prefers frame 1 and step 1 prefers frame 3, but step 1 must come first:
    # (3, 4) scores -0.1 - 1.0 = -1.1, better than (0, 1) = -5.1.
    logprob = np.array([[-5.0, -5.0], [-5.0, -0.1], [-5.0, -5.0], [-0.1, -5.0], [-5.0, -1.0]])
    assert chosen_frames(dp_one_frame_per_step(logprob)) == (3, 4)


def test_dp_ties_follow_the_reference():
    # dp.pyx on a uniform matrix: step 1 on the first frame, the last step on the last frame.
    assert chosen_frames(dp_one_frame_per_step(np.zeros((4, 2)))) == (0, 3)
    assert chosen_frames(dp_one_frame_per_step(np.zeros((3, 1)))) == (2,)


def test_dp_with_as_many_frames_as_steps_is_the_diagonal():
    # Even when every step prefers the last frame, the only order-respecting alignment is frame k -> step k.
    logprob = np.full((4, 4), -9.0)
    logprob[3, :] = -0.01
    np.testing.assert_array_equal(dp_one_frame_per_step(logprob), np.eye(4, dtype=np.uint8))


def test_dp_with_fewer_frames_than_steps_leaves_later_steps_empty():
    y = dp_one_frame_per_step(np.zeros((2, 4)))
    expected = np.zeros((2, 4), dtype=np.uint8)
    expected[0, 0] = expected[1, 1] = 1
    np.testing.assert_array_equal(y, expected)
    # Steps 3 and 4 are misses in recall: 1 match (step 1) out of 3 annotated steps.
    y_true = crosstask_targets(2, 4, [(1, 0, 1), (3, 0, 2), (4, 1, 2)])
    assert crosstask_recall([("t", y_true, y)])["recall"] == pytest.approx(100 / 3)
    assert "T < K" in CONVENTIONS["short_videos"]


def test_dp_edge_shapes_and_bad_values():
    assert dp_one_frame_per_step(np.zeros((0, 3))).shape == (0, 3)
    assert dp_one_frame_per_step(np.zeros((5, 0))).shape == (5, 0)
    with pytest.raises(ValueError, match="NaN"):
        dp_one_frame_per_step(np.array([[0.0], [np.nan]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        dp_one_frame_per_step(np.array([[0.0], [-np.inf]]))


def _video(n_frames, n_steps, gt, pred_frames):
    y_true = crosstask_targets(n_frames, n_steps, gt)
    y_pred = np.zeros((n_frames, n_steps), dtype=np.uint8)
    for k, t in enumerate(pred_frames):
        y_pred[t, k] = 1
    return y_true, y_pred


def test_recall_by_hand_two_tasks():
    # Task A (3 steps). Video 1: steps 1 and 2 annotated (step 1 twice), step 3 absent from the GT.
    a1 = _video(8, 3, [(1, 0, 2), (1, 5, 6), (2, 3, 4)], pred_frames=[5, 6, 7])  # step 1 hit, 2 missed
    # Video 2: all three steps annotated and hit.
    a2 = _video(6, 3, [(1, 0, 1), (2, 2, 3), (3, 4, 6)], pred_frames=[0, 2, 5])
    # Task B (2 steps): one of two annotated steps hit.
    b1 = _video(5, 2, [(1, 0, 2), (2, 2, 4)], pred_frames=[1, 4])
    per_video = [("A", *a1), ("B", *b1), ("A", *a2)]
    out = crosstask_recall(per_video)
    # A pools its videos: (1 + 3) / (2 + 3) = 80; B: 1 / 2 = 50; mean over tasks = 65.
    assert out["per_task"] == {"A": pytest.approx(80.0), "B": pytest.approx(50.0)}
    assert out["recall"] == pytest.approx(65.0)
    assert out["n_videos"] == 3 and out["n_tasks"] == 2
    # Pooling, not averaging per video: (1/2 + 3/3) / 2 = 75 would be wrong.
    assert out["per_task"]["A"] != pytest.approx(75.0)
    only_b = crosstask_recall(per_video, primary_tasks=["B", "Z"])
    assert only_b["recall"] == pytest.approx(50.0) and only_b["n_tasks"] == 1
    assert set(only_b["per_task"]) == {"A", "B"}


def test_recall_task_without_annotated_steps_is_nan_and_excluded():
    empty = _video(4, 2, [], pred_frames=[0, 1])
    hit = _video(4, 2, [(1, 0, 1), (2, 1, 2)], pred_frames=[0, 1])
    out = crosstask_recall([("empty", *empty), ("hit", *hit)])
    assert math.isnan(out["per_task"]["empty"])
    assert out["recall"] == 100.0 and out["n_tasks"] == 1


def test_recall_rejects_bad_input():
    with pytest.raises(ValueError, match="differ"):
        crosstask_recall([("t", np.zeros((3, 2)), np.zeros((4, 2)))])
    with pytest.raises(ValueError, match="no videos"):
        crosstask_recall([])
    with pytest.raises(ValueError, match="no \\(primary\\) task"):
        crosstask_recall([("t", *_video(3, 1, [(1, 0, 1)], [0]))], primary_tasks=["other"])
