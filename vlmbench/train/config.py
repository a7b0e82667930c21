"""Kept so `from vlmbench.train.config import ...` still works: the pre-training keys and presets are declared
in vlmbench.config (the one schema)."""

from ..config import PRESETS, PretrainConfig, pretrain_config

__all__ = ["PRESETS", "PretrainConfig", "pretrain_config"]
