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
