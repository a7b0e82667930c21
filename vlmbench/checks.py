"""`vlmbench data check`: is each task's data (and the HowTo100M pre-training folder) usable as it is?

A task is checked the way a run reads it (the adapter's own load), then every feature file it uses is read
whole: NaN/inf rows are found by file and row, and the content digests that go into the fingerprint are
cached for the runs that follow. The exit code says the worst finding (see EXIT_CODES).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import registry
from .adapters import adapter_class
from .config import run_config
from .data import howto100m
from .data.features import FeatureStore, fingerprint
from .errors import InputError
from .records.corpus import contamination

PRETRAIN = "howto100m-pretrain"  # the row for the pre-training corpus
OK, MISSING, MALFORMED = "ok", "missing", "malformed"
EXIT_CODES = {OK: 0, MALFORMED: 2, MISSING: 3}
EXIT_HELP = (
    "Exit code 0 when every task checked is usable, 2 when any file is malformed, "
    "3 when none is malformed but files or features are missing."
)


@dataclass
class CheckRow:
    task: str
    status: str  # ok | missing | malformed
    details: str


def exit_code(rows: Sequence[CheckRow]) -> int:
    """The worst finding: malformed (2) over missing (3) over ok (0)."""
    statuses = {r.status for r in rows}
    for status in (MALFORMED, MISSING):
        if status in statuses:
            return EXIT_CODES[status]
    return EXIT_CODES[OK]


def check_task(
    spec: registry.TaskSpec, root: Path, allow_missing: bool = False, corpus: set[str] | None = None
) -> CheckRow:
    """corpus: the video ids of the HowTo100M folder under the root: the row says how many of the task's test videos
    it holds (HowTo100M and the task datasets share YouTube videos)."""
    paths = list(spec.paths(root).values()) + [spec.feature_dir(root)]
    missing = [str(p.relative_to(root)) for p in paths if not p.exists()]
    if missing:
        return CheckRow(spec.name, MISSING, "missing: " + ", ".join(missing))
    if spec.feature_dir(root).is_dir() and not len(FeatureStore(spec.feature_dir(root))):
        return CheckRow(spec.name, MISSING, f"no feature files (<video_id>.npy) in {spec.feature_dir(root)}")
    try:
        adapter = adapter_class(spec.family)(
            spec, run_config(spec, "paper"), root, allow_missing=True, say=lambda s: None
        )
        adapter.load()
        store = adapter.loaded.features
        if store is not None:
            store.check_finite(sorted(set(adapter.loaded.feature_ids)))
        digest = adapter.loaded.fingerprint()
    except InputError as e:
        return CheckRow(spec.name, MALFORMED, str(e))
    counts = adapter.loaded.counts
    info = ", ".join(f"{k}={v}" for k, v in counts.items() if v or not k.startswith("missing_features_"))
    lacking = {k[len("missing_features_") :]: v for k, v in counts.items() if k.startswith("missing_features_") and v}
    if lacking and not allow_missing:
        what = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in lacking.items())
        return CheckRow(spec.name, MISSING, f"no feature file for {what} (usable with --allow-missing); {info}")
    overlap = ""
    if corpus is not None:
        overlap = "; " + contamination(adapter.uncapped.get("test", set()), corpus)[1].replace(
            "the checkpoint's pre-training corpus", "howto100m/ (the pre-training corpus)"
        )
    return CheckRow(spec.name, OK, f"{info}; fingerprint {digest}{overlap}")


def check_pretraining(root: Path) -> CheckRow:
    """The HowTo100M folder under the data root: captions parse, features fit them, no NaN/inf."""
    folder = Path(root) / "howto100m"
    if not folder.is_dir():
        return CheckRow(PRETRAIN, MISSING, "missing: howto100m/ (captions.json or captions/, and features/)")
    try:
        cap_path, feat_path = howto100m.find(folder)
    except InputError:
        absent = [
            name
            for name, present in (
                ("howto100m/captions.json (or captions/)", any((folder / c).exists() for c in howto100m.CAPTION_NAMES)),
                ("howto100m/features", (folder / "features").is_dir()),
            )
            if not present
        ]
        return CheckRow(PRETRAIN, MISSING, "missing: " + ", ".join(absent))
    try:
        captions = howto100m.load_captions(cap_path)
        store = FeatureStore(feat_path)
        corpus = howto100m.usable(captions, store)
        ids = sorted(corpus.captions)
        store.check_finite(ids)
        digest = fingerprint([cap_path], ids, store)
    except InputError as e:
        return CheckRow(PRETRAIN, MALFORMED, str(e))
    n_captions = sum(len(c) for c in corpus.captions.values())
    skipped = corpus.report()
    return CheckRow(
        PRETRAIN,
        OK,
        f"videos={len(ids)}, captions={n_captions}" + (f"; {skipped}" if skipped else "") + f"; fingerprint {digest}",
    )


def check_data(root: Path, tasks: Sequence[str] | None = None, allow_missing: bool = False) -> list[CheckRow]:
    """One row per task (all of them, or those named; PRETRAIN names the pre-training corpus)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("data folder not found", path=root)
    known = [PRETRAIN, *registry.all_tasks()]
    names = list(dict.fromkeys(tasks)) if tasks else known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown task {unknown[0]!r} (known: {', '.join(known)})", path="--task")
    corpus = corpus_ids(root)
    rows = []
    for name in names:
        if name == PRETRAIN:
            rows.append(check_pretraining(root))
        else:
            rows.append(check_task(registry.get(name), root, allow_missing, corpus))
    return rows


def corpus_ids(root: Path) -> set[str] | None:
    """The video ids of ROOT/howto100m's captions (None when it has none, or they do not parse)."""
    try:
        cap_path, _ = howto100m.find(Path(root) / "howto100m")
        return set(howto100m.load_captions(cap_path))
    except InputError:
        return None
