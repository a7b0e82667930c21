"""Models behind one interface (interface.py), found by name (catalog.py): VLM, VideoCLIP and plug-ins."""

from .interface import (
    ATTENTION,
    CAPABILITIES,
    CAPTION,
    FRAMES,
    INTERFACE_VERSION,
    TEXT,
    VIDEO,
    Generation,
    VideoStates,
    VideoTextModel,
)

__all__ = [
    "ATTENTION",
    "CAPABILITIES",
    "CAPTION",
    "FRAMES",
    "INTERFACE_VERSION",
    "TEXT",
    "VIDEO",
    "Generation",
    "VideoStates",
    "VideoTextModel",
]
