"""The random-init marker: a feature folder extracted with `--random-init` says so to every later reader.

Kept free of heavy imports so the feature reader can check it cheaply.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARKER = "S3D_RANDOM_INIT.txt"
NOTE = (
    "features in {folder} were extracted with a RANDOMLY INITIALISED S3D (--random-init, testing only): "
    "results on them mean nothing"
)
_reported: set[str] = set()


def note(folder: str | Path) -> str | None:
    """The warning for a random-init feature folder, None for any other folder."""
    folder = Path(folder)
    return NOTE.format(folder=folder) if (folder / MARKER).is_file() else None


def report(folder: str | Path, stream=None) -> str | None:
    """Print the warning (once per folder and process) to stderr; returns it, or None when unmarked."""
    text = note(folder)
    key = str(Path(folder).resolve())
    if text and key not in _reported:
        _reported.add(key)
        print(f"warning: {text}", file=stream or sys.stderr, flush=True)
    return text
