"""Task registry: tasks/*.yaml (one declarative file per task) -> TaskSpec -> adapter class by family.

Adding a task of an existing family is one YAML file; adding a family is one adapter module plus one line in
ADAPTERS. Nothing is resolved from arbitrary strings: `family` must be a key of ADAPTERS.
"""
from __future__ import annotations

import importlib
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

# family -> "module:Class" under vlmbench.adapters (imported lazily: the CLI stays fast)
ADAPTERS = {
    "retrieval": "retrieval:RetrievalAdapter",
    "mcqa": "mcqa:MCQAAdapter",
    "segmentation": "segmentation:SegmentationAdapter",
    "localization": "localization:LocalizationAdapter",
    "captioning": "captioning:CaptioningAdapter",
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    dataset: str                      # folder under the data root, e.g. "msrvtt"
    description: str
    files: dict[str, str]             # role -> path relative to the dataset folder
    features: str                     # feature folder relative to the dataset folder
    metrics: tuple[str, ...]          # headline metrics, in report order
    split: str                        # the split that is scored
    recipe: dict[str, Any]            # paper fine-tuning recipe (RunConfig keys)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)   # toy / smoke overrides
    options: dict[str, Any] = field(default_factory=dict)              # family-specific settings
    source: Path | None = None

    def adapter_class(self):
        module, cls = ADAPTERS[self.family].split(":")
        return getattr(importlib.import_module(f"vlmbench.adapters.{module}"), cls)

    def dataset_dir(self, root: Path) -> Path:
        return Path(root) / self.dataset

    def paths(self, root: Path) -> dict[str, Path]:
        base = self.dataset_dir(root)
        return {role: base / rel for role, rel in self.files.items()}

    def feature_dir(self, root: Path) -> Path:
        return self.dataset_dir(root) / self.features


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
    if raw["family"] not in ADAPTERS:
        raise InputError(f"unknown family {raw['family']!r} (known: {', '.join(ADAPTERS)})", path=path)
    return TaskSpec(name=raw["name"], family=raw["family"], dataset=raw["dataset"],
                    description=raw.get("description", ""), files=dict(raw["files"]),
                    features=raw.get("features", "features"), metrics=tuple(raw["metrics"]), split=raw["split"],
                    recipe=dict(raw["recipe"]), presets=dict(raw.get("presets", {})),
                    options=dict(raw.get("options", {})), source=path)


@lru_cache(maxsize=1)
def all_tasks(tasks_dir=TASKS_DIR) -> dict[str, TaskSpec]:
    """Every *.yaml under tasks_dir (a folder Path or a Traversable), by task name."""
    specs = {}
    for path in sorted((p for p in tasks_dir.iterdir() if p.name.endswith(".yaml")), key=lambda p: p.name):
        spec = load_spec(path)
        if spec.name in specs:
            raise InputError(f"task {spec.name!r} defined twice", path=path)
        specs[spec.name] = spec
    return specs


def get(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise InputError(f"unknown task {name!r} (known: {', '.join(tasks)})", path="--task")
    return tasks[name]
