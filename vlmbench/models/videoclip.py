"""VideoCLIP (Xu et al., EMNLP 2021) behind the model interface: two towers over the same S3D features and text,
scored by the dot product of their pooled vectors (vlmbench.model.videoclip holds the module and the facts read
at the authors' source). Capabilities: video, text and per-second states (retrieval, MC-QA, COIN, CrossTask);
no captioning (VideoCLIP has no decoder: the authors' configs have none)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..convert.source import describe as describe_source
from ..model import backbone as bb
from ..model.layout import MAX_VIDEO_LEN
from ..model.videoclip import CONFIG_FILE, VideoCLIP
from .interface import FRAMES, TEXT, VIDEO, VideoStates, VideoTextModel


class VideoCLIPModel(VideoTextModel):
    name = "videoclip"
    capabilities = frozenset({VIDEO, TEXT, FRAMES})
    config_file = CONFIG_FILE

    def __init__(self, net: VideoCLIP):
        super().__init__()
        self.net = net

    @classmethod
    def create(cls, backbone: str = bb.DEFAULT, seed: int = 0) -> VideoCLIPModel:
        """The authors' initialisation on a backbone: no VideoCLIP pre-training (a fresh video MLP)."""
        return cls(VideoCLIP.from_backbone(backbone, seed=seed))

    @classmethod
    def load(cls, folder: Path) -> VideoCLIPModel:
        return cls(VideoCLIP.load(folder))

    def save(self, folder: Path) -> Path:
        return self.net.save(folder)

    @property
    def hidden_size(self) -> int:
        return self.net.hidden_size

    @property
    def init_std(self) -> float:
        return self.net.text_encoder.config.initializer_range

    def notes(self) -> dict[str, str]:
        return {"backbone": note} if (note := self.net.backbone_note()) else {}

    def describe(self) -> dict:
        """Also the backbone and, for converted weights, where they came from ('converted from MMPT ...')."""
        return {
            **super().describe(),
            "backbone": self.net.config.backbone,
            "source": describe_source(self.net.config.source),
        }

    def encode_video(self, video: torch.Tensor, vmask: torch.Tensor) -> VideoStates:
        tokens, pooled = self.net.encode_video(video[:, :MAX_VIDEO_LEN], vmask[:, :MAX_VIDEO_LEN])
        return VideoStates(tokens, pooled)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.net.encode_text(list(texts))
