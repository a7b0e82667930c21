"""Shared test setup: offline Hugging Face, a private toy-world cache, the real-data folder (when present)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each worker (and each vlmbench it starts) computes on one thread, so
    # two workers do not fight over the cores. Set before torch is imported by any test module.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL.is_dir():
        pytest.skip("../shared/data/real is absent")
    return REAL


def _session_cache(tmp_path_factory) -> Path:
    # One per xdist worker: a worker builds the toy world and the tiny toy checkpoint once (seconds). A cache
    # shared by the workers was tried and hung two pre-training subprocesses on its locks under load.
    return tmp_path_factory.getbasetemp() / "vlmbench-cache"


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory) -> Path:
    """One toy-world cache per test session (toy datasets + the tiny toy checkpoint, built once), never
    the user's ~/.cache. A test module may override it with a cache of its own."""
    return _session_cache(tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def _use_toy_cache(tmp_path_factory):
    # Not built on `toy_cache`, so a module-scoped override of that fixture cannot clash with this one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLMBENCH_CACHE", str(_session_cache(tmp_path_factory)))
        yield
