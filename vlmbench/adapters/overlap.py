"""Train/test leakage is refused, never silent.

Every task whose training and test videos come from different lists (MSR-VTT retrieval and MC-QA, YouCook2
retrieval and captioning, COIN's subsets, CrossTask's split and its videos_val.csv) checks the two id sets
before any model work: one shared video is an InputError (exit 2) naming how many ids overlap, a few of them,
and both files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError


def refuse_overlap(
    train_ids: Iterable[str],
    test_ids: Iterable[str],
    train_file: str | Path,
    test_file: str | Path,
    what: str = "videos",
) -> None:
    train, test = set(train_ids), set(test_ids)
    shared = sorted(train & test)
    if shared:
        n = len(shared)
        count = f"1 {what.rstrip('s')} is" if n == 1 else f"{n} {what} are"
        raise InputError(
            f"{count} both in the training list {train_file} and in the test list {test_file} "
            f"(e.g. {', '.join(shared[:3])}): training on test {what} is refused"
        )
