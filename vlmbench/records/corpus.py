"""Which videos a checkpoint was pre-trained on, so every later result can say how many of its test videos the
model has seen (HowTo100M is built from YouTube instructional videos, as are YouCook2, CrossTask and COIN).

Pre-training writes the ids of the videos it drew from into its model folder (`pretrain_videos.txt.gz`, one id
per line); a checkpoint without the file (e.g. converted from the authors' release) has an unknown corpus.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write

PRETRAIN_VIDEOS = "pretrain_videos.txt.gz"


def write_ids(folder: Path, ids: Iterable[str]) -> Path:
    data = gzip.compress("".join(f"{i}\n" for i in ids).encode(), mtime=0)  # same ids, same bytes
    return atomic_write(Path(folder) / PRETRAIN_VIDEOS, lambda p: p.write_bytes(data))


def read_ids(folder: Path | None) -> set[str] | None:
    """The pre-training corpus of a checkpoint folder; None when it does not list one."""
    if folder is None or not (Path(folder) / PRETRAIN_VIDEOS).is_file():
        return None
    path = Path(folder) / PRETRAIN_VIDEOS
    try:
        return set(gzip.decompress(path.read_bytes()).decode().split())
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable list of pre-training videos ({e})", path=path) from None


def contamination(test_videos: set[str], corpus: set[str] | None) -> tuple[int | None, str]:
    """(how many test videos are in the corpus, one line saying so); None when the corpus is unknown."""
    if corpus is None:
        return None, "unknown: the checkpoint does not list the videos it was pre-trained on"
    shared = sorted(test_videos & corpus)
    line = f"{len(shared)} of {len(test_videos)} test videos are in the checkpoint's pre-training corpus"
    return len(shared), line + (f" (e.g. {', '.join(shared[:3])})" if shared else "")
