"""`vlmbench convert mmpt`: the authors' released VLM checkpoint (fairseq examples/MMPT) -> a vlmbench checkpoint.

Loading never runs code from the file: `torch.load(weights_only=True)`, with the few non-tensor classes a
fairseq container holds (argparse.Namespace; omegaconf classes of older files) replaced by inert stand-ins
that only record their pickled state. Any other global is refused by name before unpickling starts.
The exact MMPT key set and shapes are asserted, then mapped onto whatever `VLM.state_dict()` holds; a VLM
key the mapping does not know fails loudly. Facts: ../shared/spec/authors-checkpoint.md.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertModel

from ..errors import InputError
from ..io import file_sha256 as sha256
from ..model import backbone as bb
from ..model.vlm import VLM, VLMConfig
from .source import SOURCE_KIND, describe

PREFIX = "mmmodel.mm_encoder."
TIED_ALIAS = "cls.predictions.word_embeddings.weight"  # VLM's view of the tied decoder (stored once)

# bert-base-uncased, which VLM's BERT is (spec §3): GELU (exact), LayerNorm eps 1e-12.
BERT_BASE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
)
VIDEO_DIM = 512

# Non-tensor classes of a fairseq/MMPT container, each replaced by an inert stand-in (never imported).
ALLOWED_GLOBALS = (
    "argparse.Namespace",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode",
    "omegaconf.nodes.ValueNode",
    "typing.Any",
    "collections.defaultdict",
    # default factories of pickled defaultdicts (fairseq meters); stand-ins too, never called for real
    "builtins.list",
    "builtins.dict",
    "builtins.int",
    "builtins.float",
)


class Inert:
    """Stands in for a pickled class: records constructor arguments, state and items; runs nothing."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any):  # NEWOBJ calls cls.__new__(cls, *args), REDUCE cls(*args)
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items = args, None, {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the recorded object (Namespace attributes, DictConfig content), else default."""
        state = self.state
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]
        if isinstance(state, dict):
            if key in state:
                return state[key]
            content = state.get("_content")
            if isinstance(content, dict) and key in content:
                return content[key]
        return self.items.get(key, default)

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _first_line(e: object) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _plain_dict(*args: Any) -> dict:
    """defaultdict's stand-in: a plain dict (the unpickler fills only exact dicts); the factory is dropped."""
    return {}


def _stand_ins() -> list[tuple[Any, str]]:
    return [
        (
            _plain_dict
            if name == "collections.defaultdict"
            else type(name.rsplit(".", 1)[1], (Inert,), {"qualname": name}),
            name,
        )
        for name in ALLOWED_GLOBALS
    ]


def expected_layout(bert: dict = BERT_BASE, video_dim: int = VIDEO_DIM) -> dict[str, tuple[int, ...]]:
    """Every key of MMPT's MMFusionMTM state dict (212 for bert-base) and its shape."""
    h, v, i = bert["hidden_size"], bert["vocab_size"], bert["intermediate_size"]
    keys: dict[str, tuple[int, ...]] = {
        "videomlp.linear1.weight": (h, video_dim),
        "videomlp.linear1.bias": (h,),
        "videomlp.LayerNorm.weight": (h,),
        "videomlp.LayerNorm.bias": (h,),
        "videomlp.linear2.weight": (h, h),
        "videomlp.linear2.bias": (h,),
        "bert.embeddings.position_ids": (1, bert["max_position_embeddings"]),
        "bert.embeddings.word_embeddings.weight": (v, h),
        "bert.embeddings.position_embeddings.weight": (bert["max_position_embeddings"], h),
        "bert.embeddings.token_type_embeddings.weight": (bert["type_vocab_size"], h),
        "bert.embeddings.LayerNorm.weight": (h,),
        "bert.embeddings.LayerNorm.bias": (h,),
        "bert.embeddings.seg_embeddings.weight": (256, h),
    }
    for n in range(bert["num_hidden_layers"]):
        p = f"bert.encoder.layer.{n}."
        for name in ("query", "key", "value"):
            keys[p + f"attention.self.{name}.weight"], keys[p + f"attention.self.{name}.bias"] = (h, h), (h,)
        keys[p + "attention.output.dense.weight"], keys[p + "attention.output.dense.bias"] = (h, h), (h,)
        keys[p + "attention.output.LayerNorm.weight"] = keys[p + "attention.output.LayerNorm.bias"] = (h,)
        keys[p + "intermediate.dense.weight"], keys[p + "intermediate.dense.bias"] = (i, h), (i,)
        keys[p + "output.dense.weight"], keys[p + "output.dense.bias"] = (h, i), (h,)
        keys[p + "output.LayerNorm.weight"] = keys[p + "output.LayerNorm.bias"] = (h,)
    keys.update(
        {
            "bert.pooler.dense.weight": (h, h),
            "bert.pooler.dense.bias": (h,),
            "cls.predictions.transform.dense.weight": (h, h),
            "cls.predictions.transform.dense.bias": (h,),
            "cls.predictions.transform.LayerNorm.weight": (h,),
            "cls.predictions.transform.LayerNorm.bias": (h,),
            "cls.predictions.decoder.weight": (v, h),
        }
    )
    return {PREFIX + k: s for k, s in keys.items()}


# MMPT keys with no VLM counterpart, and why (printed as notes).
DROPPED = {
    "bert.embeddings.position_ids": "position_ids: checked equal to arange, VLM computes them",
    "bert.embeddings.seg_embeddings.weight": "seg_embeddings: never read by MMPT (kept only to match its random-init sequence)",
    "bert.pooler.dense.weight": "pooler: computed by MMPT but never in a loss; VLM has no pooler",
    "bert.pooler.dense.bias": None,
    "cls.predictions.decoder.weight": "decoder: checked equal to the word embeddings, tied",
}


def _first(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def safe_load(path: Path) -> Any:
    """torch.load(weights_only=True) with inert stand-ins for the allow-listed classes; others refused by name."""
    try:
        found, zipped = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)), True
    except Exception:  # noqa: BLE001 - a non-zip (legacy) file: weights_only below still refuses any global
        found, zipped = [], False
    refused = sorted(set(found) - set(ALLOWED_GLOBALS))
    if refused:
        raise InputError(
            f"refusing to load: the file pickles classes outside the allow-list: {_first(refused)} "
            f"(allowed: argparse.Namespace and omegaconf containers); nothing was executed",
            path=path,
        )
    try:
        with torch.serialization.safe_globals(_stand_ins()):
            # mmap (zip files only): the optimizer state fairseq stores beside the model is never read into memory
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as e:
        text = str(e)
        name = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if name:
            raise InputError(
                f"refusing to load: the file pickles a class outside the allow-list: {name[1]} "
                "(allowed: argparse.Namespace and omegaconf containers); nothing was executed",
                path=path,
            ) from None
        why = re.search(r"WeightsUnpickler error: (.+)", text)
        raise InputError(
            f"not a readable torch checkpoint ({(why[1] if why else _first_line(text))[:300]}); nothing was executed",
            path=path,
        ) from None
    except Exception as e:  # noqa: BLE001 - a garbled file fails anywhere inside the unpickler (KeyError, ...)
        raise InputError(f"not a readable torch checkpoint ({type(e).__name__}: {_first_line(e)})", path=path) from None


def model_state(ckpt: Any, path: Path) -> dict[str, torch.Tensor]:
    """ckpt['model'], else ckpt['state_dict'], else the object itself (MMPT's own loader accepts all three)."""
    state = ckpt
    if isinstance(ckpt, dict):
        state = ckpt.get("model", ckpt.get("state_dict", ckpt))
    if not isinstance(state, dict) or not state:
        raise InputError(
            "no model state dict in the file (looked for 'model', 'state_dict', the object itself)", path=path
        )
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise InputError(f"model entries that are not tensors: {_first(not_tensors)}", path=path)
    return dict(state)


def refuse_layout(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], path: Path, what: str) -> None:
    """The key set and shapes must be exactly `expected` and every weight floating point (position ids aside):
    else one InputError listing the first few missing, unexpected and misshapen keys."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = [
        f"{len(names)} {kind}: {_first(names)}"
        for kind, names in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
        if names
    ]
    if problems:
        raise InputError(f"not {what}: " + "; ".join(problems), path=path)
    not_float = [k for k, v in state.items() if not k.endswith("position_ids") and not v.is_floating_point()]
    if not_float:
        raise InputError(f"weights that are not floating point: {_first(not_float)}", path=path)


def check_layout(
    state: dict[str, torch.Tensor], path: Path, expected: dict[str, tuple[int, ...]] | None = None
) -> None:
    expected = expected or expected_layout()
    refuse_layout(state, expected, path, "the MMPT VLM pre-training checkpoint (MMFusionMTM)")
    pos = state[PREFIX + "bert.embeddings.position_ids"]
    if not torch.equal(pos.long(), torch.arange(pos.shape[1])[None]):
        raise InputError(
            "bert.embeddings.position_ids is not arange: positions differ from MMPT's embedding", path=path
        )
    words, decoder = (
        state[PREFIX + "bert.embeddings.word_embeddings.weight"],
        state[PREFIX + "cls.predictions.decoder.weight"],
    )
    diff = (words.float() - decoder.float()).abs().max().item()
    if diff != 0:
        raise InputError(
            f"cls.predictions.decoder.weight differs from the word embeddings (max |diff| {diff:.3g}): "
            "the decoder was not tied",
            path=path,
        )


def map_to_vlm(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], notes: list[str]
) -> dict[str, torch.Tensor]:
    """MMPT tensors (fp32) for every key of VLM.state_dict(); raises on a VLM key it cannot fill."""
    src = {k[len(PREFIX) :]: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, ref in target.items():
        if key == TIED_ALIAS:
            out[key] = src["bert.embeddings.word_embeddings.weight"]
        elif key in src and key not in DROPPED:
            out[key] = src[key]
        elif key == "cls.predictions.bias":
            out[key] = torch.zeros_like(ref)
            notes.append("cls.predictions.bias: zeros (MMPT's MTM decoder has no bias)")
        else:
            unknown.append(key)
    if unknown:
        raise InputError(
            f"vlmbench's VLM has keys this converter does not map: {_first(unknown)} "
            "(the VLM module changed: update vlmbench/convert/mmpt.py)",
            path="VLM.state_dict()",
        )
    unused = sorted(set(src) - set(out.keys()) - set(DROPPED))
    if unused:
        raise InputError(
            f"MMPT keys the VLM does not take: {_first(unused)} (the VLM module changed: update "
            "vlmbench/convert/mmpt.py)",
            path="VLM.state_dict()",
        )
    notes += [note for note in DROPPED.values() if note]
    return {k: v.float().contiguous() if v.is_floating_point() else v for k, v in out.items()}


def fairseq_progress(ckpt: Any) -> dict[str, int | None]:
    """fairseq's update count and epoch, when the container records them."""
    step = epoch = None
    if isinstance(ckpt, dict):
        hist = ckpt.get("optimizer_history")
        if isinstance(hist, list) and hist and isinstance(hist[-1], dict):
            step = hist[-1].get("num_updates")
        extra = ckpt.get("extra_state")
        it = extra.get("train_iterator") if isinstance(extra, dict) else None
        epoch = it.get("epoch") if isinstance(it, dict) else None
    as_int = lambda x: int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None  # noqa: E731
    return {"fairseq_step": as_int(step), "fairseq_epoch": as_int(epoch)}


def build_vlm(source: dict, bert: dict = BERT_BASE) -> VLM:
    """An empty VLM of the released architecture (weights come from the conversion)."""
    cfg = BertConfig(**bert)
    cfg._attn_implementation = "sdpa"
    config = VLMConfig(backbone=bb.DEFAULT, video_dim=VIDEO_DIM, bert=cfg.to_diff_dict(), source=source)
    return VLM(config, BertModel(cfg, add_pooling_layer=False))


def convert(
    checkpoint: str | Path, out: str | Path, say: Callable[[str], None] = print, bert: str | Path | None = None
) -> Path:
    """bert: a local bert-base-uncased folder whose MLM vocabulary bias the captioning head starts from, as the
    reference's (MMPT's checkpoint holds none; see models.vlm.VLMModel.prepare)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if bert is not None:
        from ..model.vlm import backbone_head

        found, bert_weights = backbone_head(str(bert))
        if "bias" not in found:
            raise InputError(
                "has no cls.predictions.bias (the MLM vocabulary bias) to start captioning from", path=bert
            )
    if not checkpoint.is_file():
        raise InputError("checkpoint file not found", path=checkpoint)
    if out.exists() and not (out / "vlm_config.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not a vlmbench checkpoint folder: refusing to replace it", path=out)
    ckpt = safe_load(checkpoint)
    state = model_state(ckpt, checkpoint)
    check_layout(state, checkpoint)
    source = {
        "kind": SOURCE_KIND,
        "file": checkpoint.name,
        "sha256": sha256(checkpoint),
        "model": "MMFusionMTM (VLM pre-training, HowTo100M)",
        **fairseq_progress(ckpt),
    }
    model = build_vlm(source)
    if hasattr(model.config, "head"):  # how cls.predictions was filled, as VLM.from_backbone records it
        model.config.head = {
            "transform": f"loaded from {PREFIX}cls.predictions.transform.* of {checkpoint.name}",
            "bias": "none: MMPT's MTM decoder has no vocabulary bias (cls.predictions.bias "
            "zeros; serves captioning only)",
            "loss": "vlm",
        }
    notes: list[str] = []
    mapped = map_to_vlm(state, model.state_dict(), notes)
    model.load_state_dict(mapped, strict=True)
    if bert is not None:
        if found["bias"].shape != model.cls.predictions.bias.shape:
            raise InputError(
                f"cls.predictions.bias has shape {tuple(found['bias'].shape)}, the model needs "
                f"{tuple(model.cls.predictions.bias.shape)}",
                path=bert_weights,
            )
        with torch.no_grad():
            model.cls.predictions.bias.copy_(found["bias"])
        model.config.head = {
            **model.config.head,
            "bias": f"loaded from cls.predictions.bias of {bert_weights} "
            "(captioning starts from BERT's MLM bias, as the reference's)",
        }
    for note in notes:
        say(f"note: {note}")
    publish(model, VLM.load, out)
    say(f"checkpoint: {describe(source)}")
    return out


def publish(model, load: Callable[[Path], object], out: Path) -> None:
    """Save a converted model beside `out`, load it back the way every task loads it, then put it in place of
    `out` (a failed conversion leaves the old folder as it was)."""
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    load(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
