"""Task registry: tasks/*.yaml (one declarative file per task) -> TaskSpec. Declarations only: it names the task
families and the floor kinds; the adapters (vlmbench.adapters.CLASSES) and floors (vlmbench.floors.FLOORS) that
implement them live in the layers above and are tested to cover exactly these names.

Adding a task of an existing family is one YAML file; adding a family is one adapter module plus its name here
and in adapters.CLASSES. Nothing is resolved from arbitrary strings: `family` must be one of FAMILIES.
"""

from __future__ import annotations

import difflib
import importlib.resources
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

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


# ---- the task file's schema ------------------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Text = Annotated[str, StringConstraints(min_length=1)]


class Options(BaseModel):
    """Family-specific settings (each adapter reads its own)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    reader: Literal["msrvtt", "youcook2"] | None = None  # retrieval: which dataset reader
    loss: Literal["t2v", "v2t"] | None = None  # retrieval: the contrastive direction
    num_classes: Annotated[int, Field(ge=2)] | None = None  # segmentation: classes with background
    n_train: Annotated[int, Field(ge=1)] | None = None  # localization: supervised training tasks
    split_seed: Annotated[int, Field(ge=0)] | None = None  # localization: the train/test task split
    start_from_kept_epoch: bool | None = None  # a suite that pre-trains starts this task from model-epochN


class TaskFile(BaseModel):
    """tasks/<name>.yaml, validated whole when the registry loads it: a wrong type or a missing key is one line
    naming the file and the key. The recipe and presets are checked against RunConfig (vlmbench.config)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Name
    family: Literal[FAMILIES]  # type: ignore[valid-type]
    dataset: Name  # a folder under the data root
    description: str = ""
    files: dict[Text, Text]
    features: Text = "features"
    metrics: Annotated[list[Text], Field(min_length=1)]
    split: Text
    recipe: dict[Text, Any]
    presets: dict[Text, dict[Text, Any] | None] = {}
    options: Options = Options()
    learned: Any = None  # checked by _learned (its own messages)


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_error(e: ValidationError, path) -> InputError:
    errors = e.errors()
    extra = [x for x in errors if x["type"] == "extra_forbidden"]
    err = extra[0] if extra else errors[0]  # a misspelt key first: it explains the missing one
    key = _where(err["loc"])
    if err["type"] == "extra_forbidden":
        fields = TaskFile.model_fields if len(err["loc"]) == 1 else Options.model_fields
        close = difflib.get_close_matches(str(err["loc"][-1]), list(fields), n=1)
        return InputError(f"{key}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""), path=path)
    if err["type"] == "missing":
        missing = [_where(x["loc"]) for x in e.errors() if x["type"] == "missing"]
        return InputError(f"missing keys: {', '.join(missing)}", path=path)
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return InputError(f"{key}: {err['msg'][0].lower()}{err['msg'][1:]}, got {got}", path=path)


def load_spec(path) -> TaskSpec:
    """path: a Path or an importlib.resources Traversable. A malformed file is one InputError naming it."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise InputError(f"malformed YAML ({e.__class__.__name__})", path=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({getattr(e, 'strerror', None) or e})", path=path) from None
    if not isinstance(raw, dict):
        raise InputError("expected a mapping", path=path)
    if "family" in raw and isinstance(raw["family"], str) and raw["family"] not in FAMILIES:
        raise InputError(f"unknown family {raw['family']!r} (known: {', '.join(FAMILIES)})", path=path)
    try:
        f = TaskFile.model_validate(raw)
    except ValidationError as e:
        raise _schema_error(e, path) from None
    spec = TaskSpec(
        name=f.name,
        family=f.family,
        dataset=f.dataset,
        description=f.description,
        files=dict(f.files),
        features=f.features,
        metrics=tuple(f.metrics),
        split=f.split,
        recipe=dict(f.recipe),
        presets={k: dict(v or {}) for k, v in f.presets.items()},
        options=f.options.model_dump(exclude_none=True),
        learned=_learned(f.learned, path),
        source=path,
    )
    from .config import run_config

    run_config(spec, "paper")  # the recipe and every preset against RunConfig: InputError naming the file
    return spec


@dataclass(frozen=True)
class Tasks:
    """What a tasks folder holds: the usable tasks by name, and each broken file's one-line problem."""

    specs: dict[str, TaskSpec]
    broken: dict[str, InputError]  # task name (or the file's stem when it has none) -> its problem


def load(tasks_dir=None) -> Tasks:
    """Every *.yaml under tasks_dir (a folder Path or a Traversable; default TASKS_DIR). A broken file is kept
    aside with its problem, so the other tasks still work; running the broken one names its problem."""
    return _load(TASKS_DIR if tasks_dir is None else tasks_dir)


@lru_cache(maxsize=8)
def _load(tasks_dir) -> Tasks:
    specs: dict[str, TaskSpec] = {}
    broken: dict[str, InputError] = {}
    for path in sorted((p for p in tasks_dir.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
        try:
            spec = load_spec(path)
            if spec.name in specs:
                raise InputError(f"task {spec.name!r} defined twice (also in {specs[spec.name].source})", path=path)
        except InputError as e:
            broken[_declared_name(path)] = e
            continue
        specs[spec.name] = spec
    # `over:` names a floor kind that applies to the task, or another task
    for spec in list(specs.values()):
        for i, rule in enumerate(spec.learned):
            if rule.over is None or rule.over in specs or rule.over in broken:
                continue
            if spec.family not in FLOOR_KINDS.get(rule.over, ()):
                fits = [k for k, f in FLOOR_KINDS.items() if spec.family in f]
                broken[spec.name] = InputError(
                    f"learned[{i}].over: {rule.over!r} is neither a task nor a floor kind of "
                    f"{spec.family} ({', '.join(fits)})",
                    path=spec.source,
                )
                del specs[spec.name]
                break
    return Tasks(specs, broken)


def _declared_name(path) -> str:
    """The name a (broken) task file gives itself, else its file name without .yaml."""
    try:
        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"]:
            return raw["name"]
    except Exception:  # noqa: BLE001  (any unreadable file: named by its file)
        pass
    return path.name[: -len(".yaml")]


def all_tasks(tasks_dir=None) -> dict[str, TaskSpec]:
    """The usable tasks of tasks_dir (default TASKS_DIR), by name; broken files are in broken_tasks()."""
    return load(tasks_dir).specs


def broken_tasks(tasks_dir=None) -> dict[str, InputError]:
    """Task name (or file stem) -> the one-line problem of each task file that does not load."""
    return load(tasks_dir).broken


def get(name: str, tasks_dir=None) -> TaskSpec:
    tasks = load(tasks_dir)
    if name in tasks.broken:
        e = tasks.broken[name]
        raise InputError(e.problem, path=e.path)
    if name not in tasks.specs:
        raise InputError(f"unknown task {name!r} (known: {', '.join(tasks.specs)})", path="--task")
    return tasks.specs[name]
