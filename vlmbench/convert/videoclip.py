"""`vlmbench convert videoclip`: the authors' released VideoCLIP checkpoint -> a vlmbench VideoCLIP folder.

The file is loaded as `convert mmpt` loads VLM's (same fairseq container, same trainer): weights only, the few
container classes replaced by inert stand-ins, any other pickled global refused by name before unpickling. Then
the exact key set and every shape of the released architecture are asserted, each key is mapped onto
`VideoCLIP.state_dict()` (a key either side that the mapping does not know fails loudly), and the folder is
written atomically with its source recorded.

FACTS (facebookresearch/fairseq 3d262bb25690e4eb2e7d3c1309b1e9c406ca4b99, paths under examples/MMPT/):

| fact | source (file:line) |
|---|---|
| the released file: https://dl.fbaipublicfiles.com/MMPT/retri/videoclip/checkpoint_best.pt | README.md:44 |
| written by fairseq-train to save_dir runs/retri/videoclip (fp16 training) | projects/retri/videoclip/how2.yaml:28,45 |
| every key sits under `mmmodel.` (FairseqMMModel's attribute) | mmpt/models/fairseqmmmodel.py:21-23 |
| the authors' loader: torch.load, ckpt['state_dict'] or ckpt['model'], strip `mmmodel.`, strict=False | mmpt/tasks/task.py:104-131 |
| MMFusionSeparate's attributes: video_encoder (MMBertForEncoder), text_encoder (BertModel) | mmpt/models/mmfusion.py:118-133 |
| MMBertForEncoder: videomlp + bert (MMBertModel = BertModel with a pooler) | mmpt/models/transformermodel.py:136-142,427-435 |
| videomlp: linear1 [H,512], LayerNorm [H], linear2 [H,H] | mmpt/modules/mm.py:32-39 |
| video tower: 6 layers; no seg_embeddings | projects/retri/videoclip.yaml:10; mmpt/models/mmfusion.py:121-127; mmpt/modules/mm.py:53 |
| BertEmbeddings keeps a persistent position_ids buffer [1, 512] (transformers 3.4) | transformers 3.4.0 modeling_bert.py:179-180 |
| the poolers are computed but never read: VideoCLIP pools by masked means | mmpt/models/mmfusion.py:544-570,599-621 |

So the file holds 310 tensors for bert-base (videomlp 6, video bert 6 + 6 x 16 + 2, text bert 6 + 12 x 16 + 2).
A corroboration outside the authors' repository: MMPT-trained checkpoints of SignCLIP list
`mmmodel.video_encoder.bert.embeddings.word_embeddings.weight` and `mmmodel.text_encoder.embeddings.word_embeddings.weight`.
Not checked against the real file (no network here): whether fairseq kept extra top-level entries is irrelevant
(only ckpt['model'] is read); the key layout above is from the source, and the converter fails loudly if the
file differs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from ..errors import InputError
from ..io import file_sha256 as sha256
from ..model import backbone as bb
from ..model.videoclip import CONFIG_FILE, VIDEO_LAYERS, VideoCLIP, VideoCLIPConfig
from .mmpt import BERT_BASE, VIDEO_DIM, _first, fairseq_progress, model_state, publish, refuse_layout, safe_load
from .source import SOURCE_KIND, describe

PREFIX = "mmmodel."
VIDEO = "video_encoder."
TEXT = "text_encoder."


def released_arch() -> dict:
    """The released model: bert-base-uncased text tower, its first 6 layers as the video tower, 512-d S3D."""
    return {"bert": dict(BERT_BASE), "video_layers": VIDEO_LAYERS, "video_dim": VIDEO_DIM}


def _bert_keys(layers: int, bert: dict) -> dict[str, tuple[int, ...]]:
    h, v, i, p = bert["hidden_size"], bert["vocab_size"], bert["intermediate_size"], bert["max_position_embeddings"]
    keys: dict[str, tuple[int, ...]] = {
        "embeddings.position_ids": (1, p),
        "embeddings.word_embeddings.weight": (v, h),
        "embeddings.position_embeddings.weight": (p, h),
        "embeddings.token_type_embeddings.weight": (bert["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for n in range(layers):
        pre = f"encoder.layer.{n}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            keys[pre + name + ".weight"], keys[pre + name + ".bias"] = (h, h), (h,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            keys[pre + name + ".weight"], keys[pre + name + ".bias"] = (h,), (h,)
        keys[pre + "intermediate.dense.weight"], keys[pre + "intermediate.dense.bias"] = (i, h), (i,)
        keys[pre + "output.dense.weight"], keys[pre + "output.dense.bias"] = (h, i), (h,)
    keys["pooler.dense.weight"], keys["pooler.dense.bias"] = (h, h), (h,)
    return keys


def expected_layout(arch: dict | None = None) -> dict[str, tuple[int, ...]]:
    """Every key of MMPT's MMFusionSeparate state dict (310 for the released model) and its shape."""
    arch = arch or released_arch()
    bert, h = arch["bert"], arch["bert"]["hidden_size"]
    keys: dict[str, tuple[int, ...]] = {
        VIDEO + "videomlp.linear1.weight": (h, arch["video_dim"]),
        VIDEO + "videomlp.linear1.bias": (h,),
        VIDEO + "videomlp.LayerNorm.weight": (h,),
        VIDEO + "videomlp.LayerNorm.bias": (h,),
        VIDEO + "videomlp.linear2.weight": (h, h),
        VIDEO + "videomlp.linear2.bias": (h,),
    }
    keys.update({VIDEO + "bert." + k: s for k, s in _bert_keys(arch["video_layers"], bert).items()})
    keys.update({TEXT + k: s for k, s in _bert_keys(bert["num_hidden_layers"], bert).items()})
    return {PREFIX + k: s for k, s in keys.items()}


# MMPT keys (after PREFIX) with no VideoCLIP counterpart, and why (printed as notes once per group).
DROPPED = {
    VIDEO + "bert.embeddings.position_ids": "position_ids (both towers): checked equal to arange; computed here",
    TEXT + "embeddings.position_ids": None,
    VIDEO + "bert.pooler.dense.weight": "poolers (both towers): computed by MMPT but never read (VideoCLIP pools "
    "by masked means); not kept",
    VIDEO + "bert.pooler.dense.bias": None,
    TEXT + "pooler.dense.weight": None,
    TEXT + "pooler.dense.bias": None,
}


def check_layout(state: dict[str, torch.Tensor], path: Path, arch: dict | None = None) -> None:
    expected = expected_layout(arch)
    refuse_layout(state, expected, path, "the MMPT VideoCLIP checkpoint (MMFusionSeparate)")
    for key in (PREFIX + VIDEO + "bert.embeddings.position_ids", PREFIX + TEXT + "embeddings.position_ids"):
        pos = state[key]
        if pos.is_floating_point() or not torch.equal(pos.long(), torch.arange(pos.shape[1])[None]):
            raise InputError(f"{key} is not arange: positions differ from MMPT's embeddings", path=path)


def map_to_videoclip(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], notes: list[str]
) -> dict[str, torch.Tensor]:
    """MMPT tensors (fp32) for every key of VideoCLIP.state_dict(); raises on a key either side it cannot map."""
    src = {k[len(PREFIX) :]: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key in target:
        if key in src and key not in DROPPED:
            out[key] = src[key]
        else:
            unknown.append(key)
    if unknown:
        raise InputError(
            f"vlmbench's VideoCLIP has keys this converter does not map: {_first(unknown)} "
            "(the VideoCLIP module changed: update vlmbench/convert/videoclip.py)",
            path="VideoCLIP.state_dict()",
        )
    unused = sorted(set(src) - set(out) - set(DROPPED))
    if unused:
        raise InputError(
            f"MMPT keys the VideoCLIP module does not take: {_first(unused)} (the VideoCLIP module changed: "
            "update vlmbench/convert/videoclip.py)",
            path="VideoCLIP.state_dict()",
        )
    notes += [note for note in DROPPED.values() if note]
    return {k: v.float().contiguous() for k, v in out.items()}


def build_videoclip(source: dict, arch: dict | None = None) -> VideoCLIP:
    """An empty VideoCLIP of the given (default: released) architecture; weights come from the conversion."""
    arch = arch or released_arch()
    text_cfg = BertConfig(**arch["bert"])
    video_cfg = BertConfig(**{**arch["bert"], "num_hidden_layers": arch["video_layers"]})
    for cfg in (text_cfg, video_cfg):
        cfg._attn_implementation = "sdpa"
    config = VideoCLIPConfig(
        backbone=bb.DEFAULT,  # the bert-base-uncased WordPiece vocabulary (MiniLM ships the same vocab.txt)
        video_dim=arch["video_dim"],
        text_bert=text_cfg.to_diff_dict(),
        video_bert=video_cfg.to_diff_dict(),
        init={"all": "converted from the authors' checkpoint"},
        source=source,
    )
    return VideoCLIP(
        config, BertModel(video_cfg, add_pooling_layer=False), BertModel(text_cfg, add_pooling_layer=False)
    )


def convert(
    checkpoint: str | Path, out: str | Path, say: Callable[[str], None] = print, arch: dict | None = None
) -> Path:
    """`arch` (tests only) replaces the released architecture the file must match exactly."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise InputError("checkpoint file not found", path=checkpoint)
    if out.exists() and not (out / CONFIG_FILE).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not a vlmbench VideoCLIP folder: refusing to replace it", path=out)
    ckpt = safe_load(checkpoint)
    state = model_state(ckpt, checkpoint)
    check_layout(state, checkpoint, arch)
    source = {
        "kind": SOURCE_KIND,
        "file": checkpoint.name,
        "sha256": sha256(checkpoint),
        "model": "MMFusionSeparate (VideoCLIP pre-training, HowTo100M)",
        **fairseq_progress(ckpt),
    }
    model = build_videoclip(source, arch)
    notes: list[str] = []
    model.load_state_dict(map_to_videoclip(state, model.state_dict(), notes), strict=True)
    for note in notes:
        say(f"note: {note}")
    publish(model, VideoCLIP.load, out)
    say(f"checkpoint: {describe(source)}")
    return out
