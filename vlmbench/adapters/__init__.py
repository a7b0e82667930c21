"""Task adapters: one module per task family (registry.FAMILIES), each turning a task's data and a model into
predictions and metrics (see base.Adapter). The runner, the floors and `data check` get an adapter class here.
"""

from __future__ import annotations

from importlib import import_module

# family -> "module:Class" in this package, imported when first used (the CLI stays fast)
CLASSES = {
    "retrieval": "retrieval:RetrievalAdapter",
    "mcqa": "mcqa:MCQAAdapter",
    "segmentation": "segmentation:SegmentationAdapter",
    "localization": "localization:LocalizationAdapter",
    "captioning": "captioning:CaptioningAdapter",
}


def adapter_class(family: str) -> type:
    """The adapter class of a task family (a key of registry.FAMILIES)."""
    module, cls = CLASSES[family].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def test_videos(root, say=lambda s: None) -> dict[str, set[str]]:
    """Every task's test videos under a data root (the tasks whose dataset folder is there), read the way a run
    reads them (whole lists, before any cap): what `pretrain --exclude-test-videos` keeps out of pre-training."""
    from pathlib import Path

    from .. import registry
    from ..config import run_config
    from ..errors import InputError

    found: dict[str, set[str]] = {}
    for name, spec in registry.all_tasks().items():
        if not spec.dataset_dir(Path(root)).is_dir():
            continue
        adapter = adapter_class(spec.family)(spec, run_config(spec, "paper"), Path(root), allow_missing=True, say=say)
        try:
            adapter.load()
        except InputError as e:
            say(f"{name}: its test videos could not be read ({e}); not excluded")
            continue
        found[name] = set(adapter.uncapped.get("test", set()))
    return found
