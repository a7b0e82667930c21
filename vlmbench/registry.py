"""Task registry: tasks/*.yaml (one declarative file per task) -> TaskSpec. Declarations only: it names the task
families and the floor kinds; the adapters (vlmbench.adapters.CLASSES) and floors (vlmbench.floors.FLOORS) that
implement them live in the layers above and are tested to cover exactly these names.

Adding a task of an existing family is one YAML file; adding a family is one adapter module plus its name here
and in adapters.CLASSES. Nothing is resolved from arbitrary strings: `family` must be one of FAMILIES.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

# The repository's top-level tasks/ folder, shipped as the data package vlmbench.tasks (see pyproject.toml):
# found the same way in a wheel install, an editable install and a source checkout.
TASKS_DIR = importlib.resources.files("vlmbench.tasks")

FAMILIES = ("retrieval", "mcqa", "segmentation", "localization", "captioning")
# floor kind (`vlmbench baseline --kind`) -> the families it applies to (vlmbench.floors implements them)
FLOOR_KINDS: dict[str, tuple[str, ...]] = {"random": FAMILIES, "all-background": ("segmentation",)}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    dataset: str  # folder under the data root, e.g. "msrvtt"
    description: str
    files: dict[str, str]  # role -> path relative to the dataset folder
    features: str  # feature folder relative to the dataset folder
    metrics: tuple[str, ...]  # headline metrics, in report order
    split: str  # the split that is scored
    recipe: dict[str, Any]  # paper fine-tuning recipe (RunConfig keys)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # toy / smoke overrides
    options: dict[str, Any] = field(default_factory=dict)  # family-specific settings
    learned: tuple[LearnedRule, ...] = ()  # what the CI gate calls learned
    source: Path | None = None

    def dataset_dir(self, root: Path) -> Path:
        return Path(root) / self.dataset

    def paths(self, root: Path) -> dict[str, Path]:
        base = self.dataset_dir(root)
        return {role: base / rel for role, rel in self.files.items()}

    def feature_dir(self, root: Path) -> Path:
        return self.dataset_dir(root) / self.features


MARGINS = ("times", "plus", "at_least")


@dataclass(frozen=True)
class LearnedRule:
    """One `learned:` entry: `metric` must reach threshold(floor), where floor is the `over` result's metric
    (a floor kind of `vlmbench baseline --kind`, or another task's name) and the margin is exactly one of
    times (x floor), plus (floor + points) or at_least (an absolute value; no `over`)."""

    metric: str
    margin: str  # one of MARGINS
    value: float
    over: str | None = None

    def threshold(self, floor: float | None) -> float:
        if self.margin == "at_least":
            return self.value
        return floor * self.value if self.margin == "times" else floor + self.value

    def describe(self) -> str:
        if self.margin == "at_least":
            return f"{self.metric} >= {self.value:g}"
        op = f"{self.value:g} x" if self.margin == "times" else f"+ {self.value:g} over"
        return f"{self.metric} >= {op} {self.over}"


def _learned(raw, path) -> tuple[LearnedRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError("learned: expected a list of {metric, over, times|plus|at_least}", path=path)
    rules = []
    for i, e in enumerate(raw):
        key = f"learned[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("metric"), str):
            raise InputError(f"{key}: expected a mapping with a metric name", path=path)
        unknown = set(e) - {"metric", "over", *MARGINS}
        margins = [m for m in MARGINS if m in e]
        if unknown:
            raise InputError(f"{key}: unknown keys {', '.join(sorted(map(str, unknown)))}", path=path)
        if len(margins) != 1:
            raise InputError(f"{key}: exactly one of {', '.join(MARGINS)} expected", path=path)
        m = margins[0]
        v = e[m]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise InputError(f"{key}.{m}: expected a non-negative number, got {v!r}", path=path)
        over = e.get("over")
        if (m == "at_least") != (over is None) or (over is not None and not isinstance(over, str)):
            raise InputError(
                f"{key}.over: {'not used with at_least' if m == 'at_least' else 'a floor kind or task name expected'}",
                path=path,
            )
        rules.append(LearnedRule(metric=e["metric"], margin=m, value=float(v), over=over))
    return tuple(rules)


REQUIRED = ("name", "family", "dataset", "files", "metrics", "split", "recipe")


def load_spec(path) -> TaskSpec:
    """path: a Path or an importlib.resources Traversable."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"malformed YAML ({e.__class__.__name__})", path=path) from None
    if not isinstance(raw, dict):
        raise InputError("expected a mapping", path=path)
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise InputError(f"missing keys: {', '.join(missing)}", path=path)
    if raw["family"] not in FAMILIES:
        raise InputError(f"unknown family {raw['family']!r} (known: {', '.join(FAMILIES)})", path=path)
    return TaskSpec(
        name=raw["name"],
        family=raw["family"],
        dataset=raw["dataset"],
        description=raw.get("description", ""),
        files=dict(raw["files"]),
        features=raw.get("features", "features"),
        metrics=tuple(raw["metrics"]),
        split=raw["split"],
        recipe=dict(raw["recipe"]),
        presets=dict(raw.get("presets", {})),
        options=dict(raw.get("options", {})),
        learned=_learned(raw.get("learned"), path),
        source=path,
    )


@lru_cache(maxsize=1)
def all_tasks(tasks_dir=TASKS_DIR) -> dict[str, TaskSpec]:
    """Every *.yaml under tasks_dir (a folder Path or a Traversable), by task name."""
    specs = {}
    for path in sorted((p for p in tasks_dir.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
        spec = load_spec(path)
        if spec.name in specs:
            raise InputError(f"task {spec.name!r} defined twice", path=path)
        specs[spec.name] = spec
    # `over:` names a floor kind that applies to the task, or another task
    for spec in specs.values():
        for i, rule in enumerate(spec.learned):
            if rule.over is None or rule.over in specs:
                continue
            if spec.family not in FLOOR_KINDS.get(rule.over, ()):
                fits = [k for k, f in FLOOR_KINDS.items() if spec.family in f]
                raise InputError(
                    f"learned[{i}].over: {rule.over!r} is neither a task nor a floor kind of "
                    f"{spec.family} ({', '.join(fits)})",
                    path=spec.source,
                )
    return specs


def get(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise InputError(f"unknown task {name!r} (known: {', '.join(tasks)})", path="--task")
    return tasks[name]
