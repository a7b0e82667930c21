"""`vlmbench data check`: per task, are its files present and do they parse (with feature coverage)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import registry
from .errors import InputError
from .runconfig import run_config


@dataclass
class CheckRow:
    task: str
    status: str      # ok | missing | malformed
    details: str


def check_task(spec: registry.TaskSpec, root: Path) -> CheckRow:
    paths = list(spec.paths(root).values()) + [spec.feature_dir(root)]
    missing = [str(p.relative_to(root)) for p in paths if not p.exists()]
    if missing:
        return CheckRow(spec.name, "missing", "missing: " + ", ".join(missing))
    adapter = spec.adapter_class()(spec, run_config(spec, "paper"), root, allow_missing=True, say=lambda s: None)
    try:
        adapter.load()
    except InputError as e:
        return CheckRow(spec.name, "malformed", str(e))
    counts = adapter.loaded.counts
    info = ", ".join(f"{k}={v}" for k, v in counts.items())
    return CheckRow(spec.name, "ok", f"{info}; fingerprint {adapter.loaded.fingerprint()}")


def check_data(root: Path) -> list[CheckRow]:
    root = Path(root)
    if not root.is_dir():
        raise InputError("data folder not found", path=root)
    return [check_task(spec, root) for spec in registry.all_tasks().values()]
