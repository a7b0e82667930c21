"""CrossTask step localization: targets, the order-constrained DP, and recall."""

import math

import numpy as np

from vlmbench.metrics import MetricInputError

CONVENTIONS: dict[str, str] = {
    "fps": "1 frame per second (one feature row per second)",
    "targets": "Y_true[floor(start):ceil(end), step-1] = 1, clipped to [0, T]; a step may own several intervals",
    "prediction": "order-constrained DP (DmZhukov/CrossTask dp.pyx, exactly_one=True, bg_cost=0) on cost "
    "-logprob: every step gets exactly one frame, in the task's step order, at strictly increasing times",
    "short_videos": "T < K: steps 1..T get frames 0..T-1 and steps T+1..K get no frame, so they count as "
    "misses (the reference code breaks there); T == K gives the unique alignment frame k -> step k",
    "recall": "per task: sum of Y_true*Y_pred over its videos / number of (video, step) pairs with any GT "
    "frame (pooled over the task's videos); reported recall = unweighted mean over tasks "
    "(the primary tasks when given), in percent",
    "empty_tasks": "a task with no annotated step has per-task recall NaN and is left out of the mean",
}


def crosstask_targets(n_frames: int, n_steps: int, segments: list[tuple[int, float, float]]) -> np.ndarray:
    """uint8 (T, K) ground truth from (1-based step, start, end) segments."""
    if n_frames < 0 or n_steps < 0:
        raise MetricInputError(f"n_frames and n_steps must be >= 0, got {n_frames}, {n_steps}")
    y = np.zeros((n_frames, n_steps), dtype=np.uint8)
    for step, start, end in segments:
        if int(step) != step or not 1 <= step <= n_steps:
            raise MetricInputError(f"step {step!r} outside 1..{n_steps}")
        if not (math.isfinite(start) and math.isfinite(end)):
            raise MetricInputError(f"segment ({step}, {start}, {end}) has a non-finite time")
        # Clip both ends to [0, T]: a raw negative slice bound would wrap around in Python.
        lo = min(n_frames, max(0, math.floor(start)))
        hi = max(0, min(n_frames, math.ceil(end)))
        y[lo:hi, int(step) - 1] = 1
    return y


def dp_one_frame_per_step(logprob: np.ndarray) -> np.ndarray:
    """Binary (T, K) prediction with exactly one frame per step, steps in order, times strictly increasing.

    Viterbi over the 2K+1 states [bg, s1, bg, s2, ..., sK, bg] maximising the summed log-probability of
    the chosen step frames (background frames cost 0). A background state may stay or come from the step
    before it; a step state lasts one frame and comes from the background before it or straight from the
    previous step. The path starts in the first bg or s1 and ends in sK or the last bg.
    Ties follow dp.pyx: prefer staying, then the state just before, then the one two before; at the end
    prefer sK over the last bg.
    """
    logprob = np.asarray(logprob, dtype=np.float64)
    if logprob.ndim != 2:
        raise MetricInputError(f"logprob must be (T, K), got shape {logprob.shape}")
    if not np.isfinite(logprob).all():
        raise MetricInputError("logprob contains NaN or infinite values")
    n_frames, n_steps = logprob.shape
    y = np.zeros((n_frames, n_steps), dtype=np.uint8)
    if n_steps == 0 or n_frames == 0:
        return y
    if n_frames < n_steps:
        # Too few frames: steps 1..T take frames 0..T-1; later steps get no frame (misses).
        y[np.arange(n_frames), np.arange(n_frames)] = 1
        return y

    n_states = 2 * n_steps + 1
    is_step = np.arange(n_states) % 2 == 1
    step_of = (np.arange(n_states) - 1) // 2  # column of logprob for step states
    inf = np.inf
    cost = np.zeros(n_states)
    back = np.zeros((n_frames, n_states), dtype=np.int64)
    # Virtual time -1: only the first background state is reachable.
    prev = np.full(n_states, inf)
    prev[0] = 0.0
    for t in range(n_frames):
        stay = np.where(is_step, inf, prev)
        from1 = np.concatenate(([inf], prev[:-1]))
        from2 = np.where(is_step, np.concatenate(([inf, inf], prev[:-2])), inf)
        cand = np.stack([stay, from1, from2])
        choice = np.argmin(cand, axis=0)  # first minimum = dp.pyx's preference order on ties
        cost[is_step] = -logprob[t, step_of[is_step]]
        prev = cand[choice, np.arange(n_states)] + cost
        back[t] = np.arange(n_states) - choice

    state = n_states - 1 if prev[-1] < prev[-2] else n_states - 2
    for t in range(n_frames - 1, -1, -1):
        if is_step[state]:
            y[t, step_of[state]] = 1
        state = back[t, state]
    return y


def crosstask_recall(
    per_video: list[tuple[str, np.ndarray, np.ndarray]], primary_tasks: list[str] | None = None
) -> dict:
    """Recall per task (pooled over its videos) and its unweighted mean over tasks, in percent.

    per_video: (task_id, y_true (T, K), y_pred (T, K)). With primary_tasks, the mean covers only the
    primary tasks present in per_video; per_task still lists every task.
    """
    match: dict[str, float] = {}
    total: dict[str, float] = {}
    for i, (task, y_true, y_pred) in enumerate(per_video):
        y_true = np.asarray(y_true)
        y_pred = np.asarray(y_pred)
        if y_true.shape != y_pred.shape or y_true.ndim != 2:
            raise MetricInputError(
                f"video {i} (task {task}): y_true {y_true.shape} and y_pred {y_pred.shape} differ or are not 2-D"
            )
        match[task] = match.get(task, 0) + int((y_true.astype(np.int64) * y_pred.astype(np.int64)).sum())
        total[task] = total.get(task, 0) + int((y_true.sum(axis=0) > 0).sum())
    per_task = {t: (100.0 * match[t] / total[t] if total[t] else float("nan")) for t in match}
    tasks = list(per_task) if primary_tasks is None else [t for t in primary_tasks if t in per_task]
    scored = [per_task[t] for t in tasks if not math.isnan(per_task[t])]
    if not scored:
        raise MetricInputError(
            "no task to average: no videos" if not per_video else "no (primary) task has an annotated step"
        )
    return {
        "recall": float(np.mean(scored)),
        "per_task": {t: float(v) for t, v in per_task.items()},
        "n_videos": len(per_video),
        "n_tasks": len(scored),
    }
