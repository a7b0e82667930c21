"""The model interface: what a task family may ask of a model, and nothing more (interface version 1).

Every model vlmbench evaluates (VLM, VideoCLIP, a plug-in) is a `VideoTextModel`: a torch Module over the suite's
inputs, 32 per-second 512-d S3D features per clip (zero-padded, with a mask of the valid seconds) and raw
sentences, that declares which of these it can do:

    video      encode_video(video, vmask) -> VideoStates: per-second states (B, 32, H) and a pooled vector (B, H)
    text       encode_text(texts) -> (B, H) pooled sentence vectors (the model tokenises)
    frames     the per-second states of encode_video are meaningful per second (segmentation, localisation)
    caption    caption_loss(video, vmask, texts) and generate(video, vmask, ...) -> Generation (captioning)
    attention  joint encoding with attention maps (`vlmbench viz`): VLM only

Task families declare what they need (their adapter's `needs`); a task a model cannot do is refused before any
work (`missing()`). Scores are what the families compute from these outputs (dot products, heads, losses): the
protocol stays the suite's, whatever the model.

A model also says what it is (`describe()`: name, class, capabilities, interface version, backbone), and how it
is stored: `save(folder)` / `load(folder)` with `config_file` in the folder naming its kind (`detect`), and
`create(backbone, seed)` for fresh weights when no checkpoint is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

INTERFACE_VERSION = 1

VIDEO, TEXT, FRAMES, CAPTION, ATTENTION = "video", "text", "frames", "caption", "attention"
CAPABILITIES = {
    VIDEO: "encode_video: pooled clip vectors",
    TEXT: "encode_text: pooled sentence vectors",
    FRAMES: "per-second video states",
    CAPTION: "caption_loss + generate",
    ATTENTION: "joint encoding with attention maps (viz)",
}


@dataclass
class VideoStates:
    tokens: torch.Tensor  # (B, 32, H) per-second states; slots past a clip's valid seconds are unspecified
    pooled: torch.Tensor  # (B, H)


@dataclass
class Generation:
    texts: list[str]  # one decoded caption per clip ("" when the model emitted nothing)
    objective: np.ndarray | None = None  # (B,) the search's own score of each output, when the model has one


class VideoTextModel(nn.Module):
    """Base class of every model (see the module docstring). Subclasses set the class attributes and implement
    the methods of their capabilities; the others raise."""

    name: ClassVar[str]  # what `--model NAME` selects
    capabilities: ClassVar[frozenset[str]]
    config_file: ClassVar[str]  # the file in a checkpoint folder that marks this kind of model

    # ---- construction and storage ------------------------------------------------------------------------
    @classmethod
    def create(cls, backbone: str = "default", seed: int = 0) -> VideoTextModel:
        """Fresh weights (what `--model NAME` without `--checkpoint` evaluates)."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path) -> VideoTextModel:
        raise NotImplementedError

    @classmethod
    def detect(cls, folder: Path) -> bool:
        """Whether `folder` holds a checkpoint of this kind of model."""
        return (Path(folder) / cls.config_file).is_file()

    def save(self, folder: Path) -> Path:
        raise NotImplementedError

    # ---- what it is ----------------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    @property
    def init_std(self) -> float:
        """Standard deviation for a task head's fresh weights (BERT's initializer_range)."""
        return 0.02

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def prepare(self, family: str) -> dict[str, str]:
        """Called once before a task family fine-tunes or evaluates the model: a model may set up what that family
        uses (e.g. an LM head). Returns conventions to record in the result ({} when nothing was done)."""
        return {}

    def notes(self) -> dict[str, str]:
        """Conventions a result should carry about this model (e.g. which backbone stands in for the paper's)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """name, class, capabilities and interface version: recorded in every result."""
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "capabilities": sorted(self.capabilities),
            "interface": INTERFACE_VERSION,
        }

    # ---- capabilities --------------------------------------------------------------------------------------
    def encode_video(self, video: torch.Tensor, vmask: torch.Tensor) -> VideoStates:
        raise NotImplementedError(f"{self.name} cannot encode video")

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot encode text")

    def caption_loss(self, video: torch.Tensor, vmask: torch.Tensor, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} cannot caption")

    def generate(
        self,
        video: torch.Tensor,
        vmask: torch.Tensor,
        *,
        decode: str = "beam",
        beam: int = 5,
        max_new_tokens: int = 21,
        length_penalty: float = 1.0,
        objective: bool = False,
    ) -> Generation:
        raise NotImplementedError(f"{self.name} cannot caption")


def missing(needs: frozenset[str] | set[str], capabilities: frozenset[str] | set[str]) -> list[str]:
    """The capabilities a task needs that a model lacks, in a stable order."""
    return sorted(set(needs) - set(capabilities))
