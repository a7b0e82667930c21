"""The fine-tune/evaluate config of `vlmbench run`: paper defaults, then the task's recipe, its preset, and
the user's key=value overrides (in that order)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import _convert, build, field_types, parse_overrides
from .registry import TaskSpec


@dataclass
class RunConfig:
    backbone: str = "default"        # used when no --checkpoint is given (and for the toy checkpoint)
    seed: int = 0
    zeroshot: bool = False
    # fine-tuning (paper: Adam (0.9, 0.98), lr 5e-5, warm-up 122, clip 2.0, ~constant lr after warm-up)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-5
    warmup: int = 122
    lr_decay_steps: int = 1_000_000
    beta1: float = 0.9
    beta2: float = 0.98
    clip_norm: float = 2.0
    eval_batch_size: int = 256
    max_train: int = 0               # 0 = all training examples (toy/smoke presets cap these)
    max_test: int = 0
    # sliding windows (COIN / CrossTask)
    window: int = 32
    stride: int = 16                 # test stride
    train_stride: int = 8            # COIN training stride
    # captioning
    decode: Literal["beam", "greedy"] = "beam"
    beam: int = 5
    max_new_tokens: int = 21
    length_penalty: float = 1.0
    tokenize: Literal["whitespace", "ptb"] = "whitespace"
    skip_meteor: bool = False
    preset: str = "paper"


def run_config(spec: TaskSpec, preset: str | None, pairs: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """paper defaults < task recipe < task preset < key=value pairs."""
    types = field_types(RunConfig)
    recipe = {k: _typed(k, v, types) for k, v in spec.recipe.items()}
    presets = {"paper": {}, **{name: {**recipe, **{k: _typed(k, v, types) for k, v in values.items()}}
                               for name, values in spec.presets.items()}}
    presets["paper"] = recipe
    return build(RunConfig, presets, preset or "paper", parse_overrides(RunConfig, pairs))


def _typed(key, value, types):
    from .errors import InputError

    if key not in types:
        raise InputError(f"unknown recipe key {key!r}", path="task yaml")
    return _convert(key, str(value).lower() if isinstance(value, bool) else str(value), types[key])
