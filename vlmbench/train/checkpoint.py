"""Training checkpoints: model (VLM.save), Adam state (safetensors) and a small JSON; no pickle anywhere.

A checkpoint is written into a temp folder and renamed into place; `latest` is then rewritten atomically, so a
run killed at any instant leaves either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..io import write_json, write_text
from ..model.vlm import VLM

LATEST = "latest"


def _unique_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return list(model.parameters())  # parameters() already yields a tied tensor once


def save(ckpt_root: Path, step: int, model: VLM, optimizer: torch.optim.Optimizer, extra: dict) -> Path:
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final, tmp = ckpt_root / name, ckpt_root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    sd = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    write_json(tmp / "trainer.json", {"step": step, "param_groups": sd["param_groups"], **extra})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_text(ckpt_root / LATEST, name + "\n")
    return final


def remove_orphans(ckpt_root: Path) -> int:
    """Delete temp files/folders a killed writer left behind (`.<name>.tmp*`); returns how many."""
    orphans = list(ckpt_root.glob(".*.tmp*")) if ckpt_root.is_dir() else []
    for path in orphans:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return len(orphans)


def latest(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / LATEST
    if not pointer.is_file():
        return None
    path = ckpt_root / pointer.read_text().strip()
    return path if path.is_dir() else None


def restore(path: Path, model: VLM, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights and Adam state in place; returns trainer.json (holds `step`, the last finished update)."""
    try:
        meta = json.loads((path / "trainer.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"unreadable checkpoint ({e})", path=path) from None
    loaded = VLM.load(path)
    model.load_state_dict(loaded.state_dict())
    tensors = load_file(str(path / "optimizer.safetensors"))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta
