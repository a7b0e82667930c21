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
from safetensors.torch import save_file

from ..errors import InputError
from ..io import atomic_write, is_write_error, read_safetensors, remove_temp_files, write_error, write_json, write_text
from ..model.vlm import VLM

OPTIMIZER = "optimizer.safetensors"
TRAINER = "trainer.json"

LATEST = "latest"


def _unique_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return list(model.parameters())  # parameters() already yields a tied tensor once


def save(ckpt_root: Path, step: int, model: VLM, optimizer: torch.optim.Optimizer, extra: dict) -> Path:
    """Write checkpoint `step`. A failed write (full disk, quota, read-only) is one InputError naming the
    checkpoint, and leaves the previous checkpoint as `latest` and no half-written folder."""
    name = f"step_{step:07d}"
    final, tmp = ckpt_root / name, ckpt_root / f".{name}.tmp"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(tmp)
        sd = optimizer.state_dict()
        tensors = {
            f"{i}.{k}": v.contiguous()
            for i, st in sd["state"].items()
            for k, v in st.items()
            if isinstance(v, torch.Tensor)
        }
        atomic_write(tmp / OPTIMIZER, lambda p: save_file(tensors, str(p)))
        write_json(tmp / TRAINER, {"step": step, "param_groups": sd["param_groups"], **extra})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(ckpt_root / LATEST, name + "\n")
    except (InputError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not is_write_error(e):
            raise
        reason = e.problem if isinstance(e, InputError) else write_error(final, e).problem
        kept = latest(ckpt_root)
        raise InputError(
            f"{reason.replace('cannot write', 'cannot write checkpoint', 1)}; "
            + (f"the last complete one is {kept.name}" if kept is not None else "no checkpoint was saved"),
            path=final,
        ) from None
    return final


def remove_orphans(run_dir: Path) -> int:
    """Delete every temp file/folder a killed writer left anywhere in a run folder (model/, checkpoints/, ...)."""
    return remove_temp_files(run_dir, recursive=True)


def latest(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / LATEST
    if not pointer.is_file():
        return None
    path = ckpt_root / pointer.read_text().strip()
    return path if path.is_dir() else None


def restore(path: Path, model: VLM, optimizer: torch.optim.Optimizer) -> dict:
    """Load weights and Adam state in place; returns trainer.json (holds `step`, the last finished update)."""
    try:
        meta = json.loads((path / TRAINER).read_text())
        groups, step = meta["param_groups"], int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"unreadable checkpoint ({type(e).__name__}: {e})", path=path / TRAINER) from None
    if step < 0:
        raise InputError(f"step {step} is negative", path=path / TRAINER)
    loaded = VLM.load(path)
    try:
        model.load_state_dict(loaded.state_dict())
    except RuntimeError as e:
        raise InputError(f"checkpoint is for another model ({str(e).splitlines()[-1].strip()})", path=path) from None
    tensors = read_safetensors(path / OPTIMIZER)  # never unpickled: a torch.save file is refused
    state: dict[int, dict] = {}
    try:
        for key, value in tensors.items():
            i, name = key.split(".", 1)
            state.setdefault(int(i), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"optimizer state does not match the model ({e})", path=path / OPTIMIZER) from None
    return meta
