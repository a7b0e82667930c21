"""CrossTask release (crosstask_release/): tasks, video lists, step annotations, and the
MMPT train/test split.

Task ids stay strings, as in every CrossTask file. YouTube ids may start with '-' or '_',
so `<task>_<vid>.csv` is only ever built, never split on '_' (or split on the first '_').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vlmbench.errors import InputError
from vlmbench.io import read_text

from .files import check_id, check_text

PRIMARY = "tasks_primary.txt"
RELATED = "tasks_related.txt"
VIDEOS = "videos.csv"
VIDEOS_VAL = "videos_val.csv"


@dataclass(frozen=True, slots=True)
class CrossTaskTask:
    task_id: str
    title: str
    url: str
    steps: tuple[str, ...]  # canonical order; step k (1-based) in annotations = steps[k-1]


class TaskVideo(NamedTuple):
    task: str
    vid: str


class StepSpan(NamedTuple):
    step: int  # 1-based
    start: float  # seconds
    end: float


def load_tasks(path: str | Path) -> dict[str, CrossTaskTask]:
    """tasks_*.txt: blocks of 6 lines (id, title, url, n_steps, comma-separated steps, blank)."""
    path = Path(path)
    lines = _read_lines(path)
    while lines and not lines[-1].strip():  # trailing blank lines end the last block
        lines.pop()
    tasks: dict[str, CrossTaskTask] = {}
    for first in range(0, len(lines), 6):
        block = lines[first : first + 6]
        if len(block) < 5:  # the blank line may be missing at end of file
            raise InputError(f"line {first + 1}: incomplete task block ({len(block)} of 6 lines)", path=path)
        task_id, title, url, n_text, steps_text = (s.strip() for s in block[:5])
        if len(block) == 6 and block[5].strip():
            raise InputError(f"line {first + 6}: expected a blank line after task {task_id}", path=path)
        if not (n_text.isascii() and n_text.isdigit() and len(n_text) < 6):
            raise InputError(f"line {first + 4}: number of steps {n_text!r} is not an integer", path=path)
        steps = tuple(
            check_text(t, f"line {first + 5}: step {k}", path, "step text")
            for k, t in enumerate(steps_text.split(","), 1)
        )
        if len(steps) != int(n_text):
            raise InputError(f"line {first + 5}: task {task_id} declares {n_text} steps, lists {len(steps)}", path=path)
        check_id(task_id, f"line {first + 1}: task id", path)
        if task_id in tasks:
            raise InputError(f"line {first + 1}: task {task_id} defined twice", path=path)
        tasks[task_id] = CrossTaskTask(task_id, title, url, steps)
    if not tasks:
        raise InputError("no tasks", path=path)
    return tasks


def load_videos(path: str | Path) -> list[TaskVideo]:
    """videos.csv / videos_val.csv: no header, `task,vid,url`; file order kept (the split uses it)."""
    path = Path(path)
    out = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        if len(fields) != 3:
            raise InputError(f"line {n}: expected 3 columns (task,vid,url), got {len(fields)}", path=path)
        out.append(TaskVideo(check_id(fields[0], f"line {n}: task", path), check_id(fields[1], f"line {n}", path)))
    return out


def annotation_path(root: str | Path, task: str, vid: str) -> Path:
    return Path(root) / "annotations" / f"{task}_{vid}.csv"


def read_annotation(path: str | Path, n_steps: int | None = None) -> list[StepSpan]:
    """annotations/<task>_<vid>.csv: `step,start,end` rows, unordered; steps may repeat/overlap."""
    path = Path(path)
    spans = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        if len(fields) != 3:
            raise InputError(f"line {n}: expected 3 columns (step,start,end), got {len(fields)}", path=path)
        try:
            step, start, end = int(fields[0]), float(fields[1]), float(fields[2])
        except ValueError:
            raise InputError(
                f"line {n}: expected integer step and numeric start,end, got {line!r}", path=path
            ) from None
        if step < 1 or (n_steps is not None and step > n_steps):
            raise InputError(f"line {n}: step {step} outside 1..{n_steps or 'n'}", path=path)
        if not (np.isfinite(start) and np.isfinite(end) and 0 <= start <= end):
            raise InputError(f"line {n}: bad span {start}..{end}", path=path)
        spans.append(StepSpan(step, start, end))
    return spans


def build_split(
    root: str | Path, has_feature: Callable[[str], bool], n_train: int = 30, seed: int = 0
) -> tuple[list[TaskVideo], list[TaskVideo]]:
    """(train, test) as MMPT's CrossTaskMetaProcessor builds them (valid = test there).

    1. videos.csv in file order, keeping videos with an annotation file and a feature;
       grouped by task in order of first appearance.
    2. Drop every (task, vid) listed in videos_val.csv; keep tasks of tasks_primary/related.
    3. For each task in that order: a primary task with more than n_train videos gets
       n_train of them drawn for train, the rest (file order) is test; any other task goes
       wholly to train.
    The draw is MMPT's `np.random.seed(seed)` then `np.random.choice(vids, n_train,
    replace=False)` per task (DmZhukov/CrossTask data.py `random_split`, plus the seed). Legacy
    `choice` on a list draws `permutation(len)[:n]` exactly as on `len`, so a private
    RandomState(seed) with index choice gives the same videos in the same order without
    touching the global numpy RNG.
    """
    root = Path(root)
    primary = load_tasks(root / PRIMARY)
    known = primary.keys() | load_tasks(root / RELATED).keys()
    val = set(load_videos(root / VIDEOS_VAL))
    task_vids: dict[str, list[str]] = {}
    for task, vid in load_videos(root / VIDEOS):
        if annotation_path(root, task, vid).is_file() and has_feature(vid):
            task_vids.setdefault(task, []).append(vid)
    rng = np.random.RandomState(seed)
    train: list[TaskVideo] = []
    test: list[TaskVideo] = []
    for task, vids in task_vids.items():
        if task not in known:
            continue
        vids = [v for v in vids if (task, v) not in val]
        if task in primary and len(vids) > n_train:
            chosen = [vids[i] for i in rng.choice(len(vids), n_train, replace=False)]
            train += [TaskVideo(task, v) for v in chosen]
            test += [TaskVideo(task, v) for v in vids if v not in chosen]
        else:
            train += [TaskVideo(task, v) for v in vids]
    return train, test


def _read_lines(path: Path) -> list[str]:
    return read_text(path).splitlines()
