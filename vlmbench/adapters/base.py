"""What every task adapter provides; the runner (vlmbench/runner.py) drives them all the same way:

adapter.load()                     read annotations + features (train and scored split)
module = adapter.build(model)      the model (vlmbench.models interface) plus any task head
for batch in adapter.train_batches(epoch, rng): loss = adapter.loss(module, batch)   (unless zero-shot)
preds = adapter.predict(module)    dict of numpy arrays -> predictions.npz (re-scorable offline)
metrics, conventions = Adapter.score(preds, config)   pure: no model, no files beyond preds
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..config import RunConfig
from ..data.features import FeatureStore, fingerprint, resolve_missing
from ..models.interface import VideoTextModel
from ..records.predictions import CLUSTER_KEY, EXAMPLE_PREFIX, SOURCE_VIDEO, example_arrays
from ..registry import TaskSpec


@dataclass
class Loaded:
    """What load() found: counts for the result, and what the data fingerprint hashes."""

    counts: dict[str, int] = field(default_factory=dict)
    annotation_files: list[Path] = field(default_factory=list)
    feature_ids: list[str] = field(default_factory=list)
    features: FeatureStore | None = None  # set by Adapter.store(): the fingerprint hashes the files' bytes

    def fingerprint(self) -> str:
        return fingerprint(self.annotation_files, self.feature_ids, self.features)


class Adapter:
    family: ClassVar[str]
    needs: ClassVar[frozenset[str]]  # the model capabilities the family asks for (vlmbench.models.interface)

    def __init__(
        self,
        spec: TaskSpec,
        cfg: RunConfig,
        root: Path,
        allow_missing: bool = False,
        say: Callable[[str], None] = print,
        device: torch.device | None = None,
    ):
        self.spec, self.cfg, self.root = spec, cfg, Path(root)
        self.allow_missing, self.say = allow_missing, say
        self.device = device or torch.device("cpu")
        self.paths = spec.paths(self.root)
        self.loaded = Loaded()
        self.uncapped: dict[str, set[str]] = {}  # role -> every video of the list before max_train/max_test
        self.scored: dict[str, set[str]] = {}  # role -> the videos used (after the caps): "test" is what is scored

    # -- data ----------------------------------------------------------------------------------------------
    def store(self) -> FeatureStore:
        self.loaded.features = FeatureStore(self.spec.feature_dir(self.root))
        return self.loaded.features

    def keep_with_features(self, ids: list[str], store: FeatureStore, what: str) -> set[str]:
        """Ids with a feature file; an InputError for missing ones unless --allow-missing (then counted)."""
        kept, n_missing = resolve_missing(ids, store, self.allow_missing, what)
        self.loaded.counts[f"missing_features_{what.replace(' ', '_')}"] = n_missing
        return set(kept)

    def cap(self, items: list, limit: int, role: str | None = None, video=lambda item: item) -> list:
        """max_train / max_test: a deterministic prefix (toy and smoke presets keep runs short). With `role`
        ("train" / "test") the videos of the WHOLE list are kept in self.uncapped[role]: the leakage check looks
        at them, so a capped run cannot train on a test video that the cap happened to cut from its test list."""
        kept = items[:limit] if limit and limit > 0 else items
        if role is not None:
            self.uncapped.setdefault(role, set()).update(video(i) for i in items)
            self.scored.setdefault(role, set()).update(video(i) for i in kept)
        return kept

    def load(self) -> None:
        raise NotImplementedError

    # -- model ---------------------------------------------------------------------------------------------
    def build(self, model: VideoTextModel) -> nn.Module:
        return model

    def preflight(self) -> None:
        """Checks that must fail before any model work (e.g. java for METEOR)."""

    def warm_up(self) -> None:
        """Start, once the data is loaded, what scoring will need and can get ready while the model trains (e.g.
        METEOR's JVM). A run calls it; `data check` and pictures, which score nothing, do not."""

    def train_batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        raise NotImplementedError

    def steps_per_epoch(self) -> int | None:
        """For the progress bar; None when unknown."""
        return None

    def loss(self, module: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, module: nn.Module, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- scoring (pure) ------------------------------------------------------------------------------------
    @classmethod
    def score(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
        raise NotImplementedError

    @classmethod
    def examples(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """One JSON-ready record per scored example, in the predictions' order (predictions.jsonl): at least
        `id`, `target` and `prediction`, plus the family's score or rank. Pure, like score()."""
        raise NotImplementedError

    @classmethod
    def per_example(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """The per-example arrays this family's metrics are made of (`example:*` keys, first axis = the resampling
        unit, in the predictions' order), saved with the predictions so that intervals and paired comparisons
        need no adapter. Returned as they are when the predictions already hold them. Where the predictions
        name each example's source video (`source_video`: examples that share a video, e.g. YouCook2 clips), it
        is added as `example:cluster`, the unit the bootstrap resamples. Pure, like score()."""
        have = example_arrays(preds)
        if not have:
            have = {EXAMPLE_PREFIX + k: np.asarray(v) for k, v in cls.example_values(preds, cfg).items()}
        if have and SOURCE_VIDEO in preds and CLUSTER_KEY not in have:
            have = {**have, CLUSTER_KEY: np.asarray(preds[SOURCE_VIDEO]).astype(str)}
        return have

    @classmethod
    def example_values(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """name -> per-example array (see per_example); {} when the family has none."""
        return {}

    def extra_outputs(self, preds: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """Optional side outputs: the family's error-analysis CSV (retrieval_errors.csv, class_accuracy.csv,
        captions.csv: the paper's Tables 10 and 11 and per-class accuracy); returns anything to print."""
        return {}


def json_number(x: Any, digits: int = 6) -> float | None:
    """A float for predictions.jsonl: rounded, None where not finite (JSON has no NaN)."""
    x = float(x)
    return round(x, digits) if np.isfinite(x) else None
