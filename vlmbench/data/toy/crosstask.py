"""Toy CrossTask: the `crosstask_release/` layout (tasks_primary.txt, tasks_related.txt, videos.csv,
videos_val.csv, annotations/<task>_<vid>.csv) + features/<vid>.npy.

Each primary task has an ordered list of steps whose texts are (action, object) sentences of the shared concept
space, so a model pre-trained on the toy HowTo100M can align them zero-shot. A video shows its task's steps in
order (some skipped) with background between them. Like the real release, the related tasks list videos that
have neither annotations nor features (they drop out of the split). 84 videos per primary task: 4 in
videos_val.csv, and the seed-0 split with n_train=30 leaves 50 test videos per task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import write_text
from . import ACTIONS, CONCEPTS, OBJECTS, Step, World, write_atomically

PRIMARY = [
    ("90001", "Make Toy Soup", 6),
    ("90002", "Bake Toy Bread", 5),
    ("90003", "Cook Toy Pasta", 7),
    ("90004", "Fry Toy Fish", 6),
]
RELATED = [("90101", "Make Toy Tea", 4), ("90102", "Grill Toy Beef", 5)]


def task_steps() -> dict[str, list[tuple[str, str]]]:
    """Ordered (action, object) steps per task (primary and related); the same for every seed."""
    rng = np.random.default_rng([CONCEPTS, 4343])
    out = {}
    for task, _, k in PRIMARY + RELATED:
        pairs: list[tuple[str, str]] = []
        while len(pairs) < k:
            pair = (str(rng.choice(ACTIONS)), str(rng.choice(OBJECTS)))
            if pair not in pairs:
                pairs.append(pair)
        out[task] = pairs
    return out


def step_text(action: str, obj: str) -> str:
    return f"{action} the {obj}"


def _task_block(task: str, title: str, steps: list[tuple[str, str]]) -> str:
    url = f"http://www.example.invalid/{title.replace(' ', '-')}"
    return f"{task}\n{title}\n{url}\n{len(steps)}\n{','.join(step_text(*s) for s in steps)}\n\n"


def write_crosstask(out: str | Path, seed: int = 0, per_task: int = 84, n_val: int = 4, n_related: int = 6) -> Path:
    world = World()
    steps_of = task_steps()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 6])
        release = tmp / "crosstask_release"
        (release / "annotations").mkdir(parents=True)
        (tmp / "features").mkdir()
        for name, tasks in (("tasks_primary.txt", PRIMARY), ("tasks_related.txt", RELATED)):
            write_text(release / name, "".join(_task_block(t, title, steps_of[t]) for t, title, _ in tasks))
        rows, val_rows, n = [], [], 0
        for task, _, k in PRIMARY:
            for i in range(per_task):
                vid = f"ct{n:04d}"
                n += 1
                keep = rng.random(k) < 0.85  # some steps are skipped; at least 3 are shown
                if keep.sum() < 3:
                    keep[rng.choice(k, 3, replace=False)] = True
                shown = [(j + 1, *steps_of[task][j]) for j in np.flatnonzero(keep)]
                steps = [Step(a, o, int(rng.integers(3, 9))) for _, a, o in shown]
                gap = int(rng.integers(3, 11))
                feats = world.features(steps, rng, background=gap)
                np.save(tmp / "features" / f"{vid}.npy", feats)
                lines, t = [], 0
                for (number, _, _), step in zip(shown, steps):
                    start, end = t + gap, t + gap + step.seconds
                    # Fractional times as in the real files; floor(start)..ceil(end) still gives the step's rows.
                    lines.append(f"{number},{start + rng.uniform(0, 0.9):.2f},{end - rng.uniform(0, 0.9):.2f}")
                    t = end
                write_text(release / "annotations" / f"{task}_{vid}.csv", "\n".join(lines) + "\n")
                row = f"{task},{vid},https://www.example.invalid/watch?v={vid}"
                rows.append(row)
                if i < n_val:
                    val_rows.append(row)
        for task, _, _ in RELATED:  # listed, but no annotation and no features (as in the real release)
            for _ in range(n_related):
                rows.append(f"{task},ct{n:04d},https://www.example.invalid/watch?v=ct{n:04d}")
                n += 1
        order = rng.permutation(len(rows))  # the real videos.csv interleaves tasks
        write_text(release / "videos.csv", "\n".join(rows[i] for i in order) + "\n")
        write_text(release / "videos_val.csv", "\n".join(val_rows) + "\n")

    return write_atomically(Path(out), fill)
