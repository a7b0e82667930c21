"""Test examples of a task as (id, video features (seconds, 512), text), read through the task's own adapter,
for the pictures (retrieval and captioning tasks: a clip and its sentence)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vlmbench import registry
from vlmbench.adapters import adapter_class
from vlmbench.errors import InputError

FAMILIES = ("retrieval", "captioning")


def task_examples(
    task: str, data: Path | None = None, preset: str | None = None, say: Callable[[str], None] = lambda s: None
) -> list[tuple[str, np.ndarray, str]]:
    import torch

    from vlmbench.config import run_config
    from vlmbench.data import toy

    spec = registry.get(task)
    if spec.family not in FAMILIES:
        raise InputError(
            f"pictures are drawn for clip + sentence tasks ({', '.join(FAMILIES)} families); {task} is {spec.family}",
            path="--task",
        )
    root = toy.toy_root() if data is None else Path(data)
    if data is None:
        toy.ensure_dataset(spec.dataset, say=say)
    cfg = run_config(spec, ("toy" if data is None else "paper") if preset is None else preset, [])
    adapter = adapter_class(spec.family)(spec, cfg, root, allow_missing=True, say=say, device=torch.device("cpu"))
    adapter.preflight()
    adapter.load()
    if spec.family == "retrieval":
        store = adapter.feature_store
        return [(str(i), c.load(store), t) for i, c, t in zip(adapter.test_ids, adapter.test_clips, adapter.test_texts)]
    store = adapter._store
    return [(c.clip_id, store.load(c.vid, c.start, min(c.end, c.start + 32)), c.text) for c in adapter.test_clips]


def pick(examples: list[tuple[str, np.ndarray, str]], example: str | None) -> tuple[str, np.ndarray, str]:
    if example is None:
        return examples[0]
    for ex in examples:
        if ex[0] == example:
            return ex
    raise InputError(f"no test example {example!r} (e.g. {', '.join(e[0] for e in examples[:3])})", path="--example")
