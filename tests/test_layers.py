"""The layers of vlmbench (pyproject.toml [tool.importlinter], explained in CONTRIBUTING.md) hold: no module
imports from a layer above its own, the task families, dataset readers and metric families are independent,
and the import graph has no circle. A planted upward import fails with the offending line named."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    args = [str(LINT), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_contracts_hold():
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_a_planted_upward_import_fails_naming_the_line(tmp_path):
    """A copy of the package under another name (the editable install maps `vlmbench` to the working tree), with
    `registry` importing `floors`, the import the old tree had."""
    pkg = tmp_path / "planted"
    shutil.copytree(REPO / "vlmbench", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for f in pkg.rglob("*.py"):
        f.write_text(re.sub(r"\bvlmbench\b", "planted", f.read_text()))
    registry = pkg / "registry.py"
    lines = registry.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("from .errors import")) + 1
    lines.insert(at, "from . import floors  # noqa: F401  (planted)")
    registry.write_text("\n".join(lines) + "\n")
    config = tmp_path / "contracts.toml"
    config.write_text(re.sub(r"\bvlmbench\b", "planted", (REPO / "pyproject.toml").read_text()))
    r = _lint(tmp_path, config)
    assert r.returncode != 0
    assert re.search(rf"planted\.registry -> planted\.floors \(l\.{at + 1}\)", r.stdout), r.stdout[-3000:]


def test_no_import_circle():
    """Strongly connected components of the module graph (every import, also inside functions)."""
    import grimp

    graph = grimp.build_graph("vlmbench", cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                circles.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    assert circles == []


def test_every_top_level_module_is_in_a_layer():
    """A new module must be given its place: the layers list names every top-level module and package."""
    layers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {m.strip() for layer in layers for m in re.split(r"[|:]", layer)}
    here = {f"vlmbench.{p.stem}" for p in (REPO / "vlmbench").glob("*.py") if p.name != "__init__.py"}
    here |= {f"vlmbench.{p.name}" for p in (REPO / "vlmbench").iterdir() if (p / "__init__.py").is_file()}
    assert here - named == set()


def test_declared_names_match_their_implementations():
    """registry declares the families and floor kinds; adapters and floors implement exactly those."""
    from vlmbench import floors, registry
    from vlmbench.adapters import CLASSES, adapter_class

    assert set(CLASSES) == set(registry.FAMILIES)
    assert {k: set(v) for k, v in floors.FLOORS.items()} == {k: set(v) for k, v in registry.FLOOR_KINDS.items()}
    for family in registry.FAMILIES:
        assert adapter_class(family).family == family
