"""A folder that already holds a run is never reused by accident: `pretrain` and `run` refuse it unless told
to continue (`--resume`) or to replace it (`--overwrite`). Replacing removes only the files a run writes,
never the folder itself or anything else a user keeps there."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError


def existing(out: Path, markers: Iterable[str]) -> list[str]:
    """The markers (file or folder names) present in out."""
    out = Path(out)
    return [m for m in markers if (out / m).exists()]


def refuse_existing(out: Path, markers: Iterable[str], hint: str) -> None:
    """InputError naming the folder when it holds any marker; hint says which flag to pass."""
    found = existing(out, markers)
    if found:
        raise InputError(f"already holds a run ({', '.join(found)}); {hint}", path=out)


def clear(out: Path, names: Iterable[str]) -> list[str]:
    """Remove these files / folders of a previous run from out; returns what was removed."""
    removed = []
    for name in names:
        paths = sorted(Path(out).glob(name)) if any(c in name for c in "*?[") else [Path(out) / name]
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(path.name)
    return removed
