"""The pre-training input pipeline: a torch DataLoader whose items are whole batches, one per step.

Item i is `sampler.batch(start + i)`, a pure function of (seed, step, rank), so the batches are the same with
0 or N worker processes and after a resume (which simply starts at a later step); the DataLoader keeps them
in step order. Workers build batches ahead of the training loop (`prefetch` batches each), feature files are
opened lazily in the worker that reads them, and batches can come back in pinned memory for a fast copy to the
GPU. A bad feature file found in a worker comes back as a value and is raised here as the InputError it was
(one line at the CLI, not a worker traceback).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError
from .sampler import Batch, ClipSampler


@dataclass
class _Failed:
    message: str


class StepBatches(Dataset):
    """Batches of steps [start, stop) of a sampler."""

    def __init__(self, sampler: ClipSampler, start: int, stop: int):
        self.sampler, self.start, self.stop = sampler, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> Batch | _Failed:
        try:
            return self.sampler.batch(self.start + i)
        except InputError as e:
            return _Failed(str(e))


def _one(item):  # batch_size=None: each item already is a batch
    return item


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # a worker builds one batch at a time; the cores are for the model and the others


def default_workers(device: torch.device, world_size: int = 1) -> int:
    """0 on CPU (the model needs the cores), else up to 4 per rank from the cores this node has."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    return max(0, min(4, cores // max(1, local) - 1))


def batches(
    sampler: ClipSampler, start: int, stop: int, workers: int = 0, pin_memory: bool = False, prefetch: int = 2
) -> Iterator[tuple[int, Batch, float]]:
    """(step, batch, seconds waited for it) for steps start..stop-1, in order."""
    kw = dict(num_workers=workers, prefetch_factor=prefetch, worker_init_fn=_worker_init) if workers > 0 else {}
    loader = DataLoader(
        StepBatches(sampler, start, stop), batch_size=None, shuffle=False, collate_fn=_one, pin_memory=pin_memory, **kw
    )
    it = iter(loader)
    try:
        for step in range(start, stop):
            t0 = time.perf_counter()
            item = next(it)
            wait = time.perf_counter() - t0
            if isinstance(item, _Failed):
                raise InputError(item.message)
            yield step, item, wait
    finally:
        del it  # shuts the worker processes down
