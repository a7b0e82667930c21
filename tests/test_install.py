"""A real install: the wheel carries the task specs and the paper tables (package data mapped from the
repository's top-level tasks/ and baselines/), and the installed `vlmbench` works from any directory; the
pinned environment (constraints.txt) lies inside pyproject.toml's bounds."""

from __future__ import annotations

import re
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import fresh_venv, run_ok
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TASK_NAMES = sorted(p.stem for p in (REPO / "tasks").glob("*.yaml"))


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_package_list_covers_every_subpackage():
    """The explicit package list (needed for the mapped data packages) must not miss a new subpackage."""
    from setuptools import find_packages

    cfg = PYPROJECT["tool"]["setuptools"]
    mapped = cfg["package-dir"]
    assert mapped == {"vlmbench.tasks": "tasks", "vlmbench.baselines": "baselines"}
    on_disk = set(find_packages(str(REPO), include=["vlmbench*"]))
    assert set(cfg["packages"]) == on_disk | set(mapped), "update [tool.setuptools] packages in pyproject.toml"
    for folder in mapped.values():
        assert (REPO / folder / "__init__.py").is_file()  # a regular package: editable installs find it


def test_constraints_pin_every_dependency_inside_the_bounds():
    pins = _pins()
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    reqs += [Requirement(r) for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra]
    for req in reqs:
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier, f"{req.name} has no version bounds in pyproject.toml"
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req.name}: no upper bound"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} outside {req.specifier}"
    assert "vlmbench" not in pins and not any("+" in v for v in pins.values())  # no self pin, no local tags
    makefile = (REPO / "Makefile").read_text()
    assert makefile.count("-c constraints.txt") >= 2 and "TORCH  ?= torch==2.13.0\n" in makefile


def test_source_checkout_reads_the_top_level_folders():
    """In the development (editable) install the data packages are the repository's folders themselves."""
    from vlmbench import registry
    from vlmbench.reporting import paper

    assert Path(str(registry.TASKS_DIR)).resolve() == (REPO / "tasks").resolve()
    assert sorted(registry.all_tasks()) == TASK_NAMES
    assert Path(str(paper.PAPER_TABLES_CSV)).resolve() == (REPO / "baselines" / "paper_tables.csv").resolve()


@pytest.mark.slow
def test_wheel_carries_the_package_data(vlmbench_wheel):
    wheel = vlmbench_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"vlmbench/tasks/{t}.yaml" for t in TASK_NAMES} <= names
    assert "vlmbench/baselines/paper_tables.csv" in names
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "vlmbench" / "reporting" / "templates").iterdir()}
    assert templates and templates <= names, templates - names  # the HTML report's templates
    assert not any(n.startswith(("tasks/", "baselines/", "tests/")) for n in names)  # nothing at the top level


@pytest.mark.slow
def test_installed_wheel_works_from_another_directory(vlmbench_wheel, tmp_path):
    """`pip install` of the wheel (not editable) into a fresh venv whose dependencies come from this one (a
    .pth line, so torch is not downloaded again), then `vlmbench tasks` and a smoke run from elsewhere."""
    venv, env = fresh_venv(tmp_path, vlmbench_wheel)
    vpy = venv / "bin" / "python"
    site = Path(
        run_ok([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).stdout.strip()
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run_ok(
        [
            vpy,
            "-c",
            "import vlmbench, vlmbench.registry as r, vlmbench.reporting.paper as p; "
            "print(vlmbench.__file__); print(r.TASKS_DIR); print(p.PAPER_TABLES_CSV)",
        ],
        elsewhere,
        env,
    ).stdout.split()
    assert all(Path(w).resolve().is_relative_to(site.resolve()) for w in where), where  # not the checkout

    tasks = run_ok([venv / "bin" / "vlmbench", "tasks"], elsewhere, env)
    for name in TASK_NAMES:
        assert name in tasks.stdout

    out = elsewhere / "OUT"
    r = run_ok(
        [
            venv / "bin" / "vlmbench",
            "run",
            "--task",
            "msrvtt-retrieval",
            "--preset",
            "smoke",
            "--out",
            "OUT",
            "--no-progress",
        ],
        elsewhere,
        env,
    )
    assert "R@1" in r.stdout and "Result:" in r.stderr
    import json

    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "msrvtt-retrieval" and result["preset"] == "smoke"
    assert 0 <= result["metrics"]["R@1"] <= 100 and result["counts"]["test_examples"] > 0
    assert result["provenance"]["git_sha"] is None and result["provenance"]["versions"]["vlmbench"]
    assert (out / "predictions.npz").is_file()
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == result["counts"]["test_examples"]
