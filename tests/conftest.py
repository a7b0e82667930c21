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


# ---- a real install: the wheel, and a fresh venv to install it into ------------------------------------------


def run_ok(cmd, cwd, env, timeout=900):
    """Run a command; fail the test with its output unless it exits 0."""
    import subprocess

    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def build_wheel(src: Path, dist: Path) -> Path:
    """`pip wheel` of a source folder, offline, with this environment's setuptools."""
    import sys

    run_ok(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            dist,
            src,
        ],
        cwd=src,
        env=os.environ.copy(),
    )
    return dist


@pytest.fixture(scope="session")
def vlmbench_wheel(tmp_path_factory) -> Path:
    """The vlmbench wheel, built from a copy of the sources it needs (the checkout gets no build/ or egg-info)."""
    import shutil

    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("vlmbench", "tasks", "baselines"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = build_wheel(src, tmp_path_factory.mktemp("dist"))
    (whl,) = dist.glob("vlmbench-*.whl")
    return whl


def fresh_venv(tmp_path: Path, *wheels: Path) -> tuple[Path, dict]:
    """A new venv holding `wheels` (not editable), whose other dependencies come from this one through a .pth
    line (torch is not downloaded again); it sits in a git repository of its own, as a project's .venv does.
    Returns the venv and the environment to run its commands in."""
    import sys
    import sysconfig

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(COLUMNS="200", HF_HUB_OFFLINE="1")
    run_ok(["git", "init", "-q", tmp_path], cwd=tmp_path, env=env)
    run_ok(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"], tmp_path, env
    )
    venv = tmp_path / "venv"
    run_ok([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    vpy = venv / "bin" / "python"
    site = Path(
        run_ok([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).stdout.strip()
    )
    (site / "_vlmbench_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    if wheels:
        run_ok([vpy, "-m", "pip", "install", "--no-deps", "--no-index", "-q", *wheels], cwd=tmp_path, env=env)
    return venv, env
