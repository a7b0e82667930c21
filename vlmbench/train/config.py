"""Pre-training config: the paper's defaults, and the presets `paper`, `toy` and `smoke`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import build, parse_overrides


@dataclass
class PretrainConfig:
    backbone: str = "default"
    loss: Literal["vlm", "mfm-mlm"] = "vlm"
    mmm: float = 0.5                 # P(masked-modality example); 0 = plain MFM-MLM
    mfm_prob: float = 0.15
    mlm_prob: float = 0.15
    min_text_len: int = 8            # VLM's sampled_min_len (10 in the mfmmlm config)
    max_text_len: int = 64
    clips_per_video: int = 32        # reference "subsampling"
    batch_size: int = 256            # clips per rank: 8 videos x 32 clips
    epochs: int = 15                 # used when steps == 0
    steps: int = 0
    lr: float = 5e-5
    warmup: int = 1000
    lr_decay_steps: int = 1_000_000  # fairseq total_num_update: the decay is ~flat in practice
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 2.0
    seed: int = 0
    save_every: int = 1024
    preset: str = "paper"


PRESETS: dict[str, dict] = {
    "paper": {},
    # A few minutes of CPU on the toy world with the default (MiniLM) backbone.
    "toy": dict(batch_size=16, clips_per_video=4, steps=150, lr=2e-4, warmup=15, lr_decay_steps=150,
                save_every=75),
    # Seconds, tiny backbone: CI and unit tests.
    "smoke": dict(backbone="tiny", batch_size=16, clips_per_video=4, steps=30, lr=1e-3, warmup=5,
                  lr_decay_steps=30, save_every=10),
}


def pretrain_config(preset: str | None = "paper", pairs: list[str] | tuple[str, ...] = ()) -> PretrainConfig:
    return build(PretrainConfig, PRESETS, preset, parse_overrides(PretrainConfig, pairs))
