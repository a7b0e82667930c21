"""`vlmbench convert videoclip`: a fairseq container in the released VideoCLIP layout (random tensors, a tiny BERT
shape), its key table written here from the authors' source (fairseq examples/MMPT at 3d262bb: mmfusion.py:118-133,
transformermodel.py:136-142/427-435, mm.py:32-58, fairseqmmmodel.py:21-23), not from the converter's own table;
the converted model's forward against a reference built from the raw tensors with plain torch ops."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from vlmbench.cli import app
from vlmbench.convert import videoclip as conv
from vlmbench.errors import InputError
from vlmbench.model import backbone as bb
from vlmbench.model.videoclip import VideoCLIP

# A tiny architecture in the released layout: text tower T_LAYERS, video tower its first V_LAYERS layers.
H, HEADS, I, P, VOCAB, T_LAYERS, V_LAYERS = 32, 4, 64, 128, 30522, 3, 2
TINY = {
    "bert": dict(
        vocab_size=VOCAB,
        hidden_size=H,
        num_hidden_layers=T_LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=I,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=P,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
    ),
    "video_layers": V_LAYERS,
    "video_dim": 512,
}


def bert_table(prefix: str, layers: int, h: int, i: int, p: int, v: int) -> dict[str, tuple[int, ...]]:
    """A transformers-3.4 BertModel's state dict: embeddings (position_ids buffer kept), layers, pooler."""
    k = {
        "embeddings.position_ids": (1, p),
        "embeddings.word_embeddings.weight": (v, h),
        "embeddings.position_embeddings.weight": (p, h),
        "embeddings.token_type_embeddings.weight": (2, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h),
        "pooler.dense.bias": (h,),
    }
    for n in range(layers):
        b = f"encoder.layer.{n}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            k[b + m + ".weight"], k[b + m + ".bias"] = (h, h), (h,)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            k[b + m + ".weight"], k[b + m + ".bias"] = (h,), (h,)
        k[b + "intermediate.dense.weight"], k[b + "intermediate.dense.bias"] = (i, h), (i,)
        k[b + "output.dense.weight"], k[b + "output.dense.bias"] = (h, i), (h,)
    return {prefix + name: s for name, s in k.items()}


def source_keys(h=H, i=I, p=P, v=VOCAB, t_layers=T_LAYERS, v_layers=V_LAYERS) -> dict[str, tuple[int, ...]]:
    k = {
        "mmmodel.video_encoder.videomlp.linear1.weight": (h, 512),
        "mmmodel.video_encoder.videomlp.linear1.bias": (h,),
        "mmmodel.video_encoder.videomlp.LayerNorm.weight": (h,),
        "mmmodel.video_encoder.videomlp.LayerNorm.bias": (h,),
        "mmmodel.video_encoder.videomlp.linear2.weight": (h, h),
        "mmmodel.video_encoder.videomlp.linear2.bias": (h,),
    }
    k.update(bert_table("mmmodel.video_encoder.bert.", v_layers, h, i, p, v))
    k.update(bert_table("mmmodel.text_encoder.", t_layers, h, i, p, v))
    return k


def random_state(seed: int = 0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in source_keys().items():
        if key.endswith("position_ids"):
            state[key] = torch.arange(shape[1])[None]
        elif "LayerNorm.weight" in key:
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    return state


def container(state, **extra) -> dict:
    """fairseq's Trainer.state_dict() as MMPT trains (see ../shared/spec/authors-checkpoint.md §1)."""
    return {
        "args": None,
        "cfg": {
            "task": argparse.Namespace(task="mmtask", taskconfig="projects/retri/videoclip/how2.yaml"),
            "model": argparse.Namespace(arch="mmarch"),
            "criterion": argparse.Namespace(_name="mmloss"),
            "common": {"fp16": True, "seed": 1},
        },
        "model": state,
        "criterion": None,
        "task_state": {},
        "optimizer_history": [
            {"criterion_name": "MMCriterion", "optimizer_name": "FP16Optimizer", "num_updates": 4242}
        ],
        "extra_state": {"train_iterator": {"epoch": 25, "iterations_in_epoch": 0}, "val_loss": 0.5},
        **extra,
    }


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[Path, OrderedDict]:
    state = random_state()
    path = tmp_path_factory.mktemp("vclip") / "checkpoint_best.pt"
    torch.save(container(state), path)
    return path, state


@pytest.fixture(scope="module")
def converted(released, tmp_path_factory) -> Path:
    path, _ = released
    out = tmp_path_factory.mktemp("conv") / "videoclip"
    conv.convert(path, out, say=lambda s: None, arch=TINY)
    return out


class Planted:
    """Writes a marker file when constructed: unpickling it with code execution would leave the marker."""

    def __init__(self, marker: str):
        Path(marker).write_text("constructed")

    def __reduce__(self):
        return (Planted, (self.marker,))


def planted(marker: Path) -> Planted:
    obj = object.__new__(Planted)
    obj.marker = str(marker)
    return obj


# ---- reference forward, straight from the raw MMPT tensors (double precision, plain torch ops) ---------------


def ref_bert(w: dict, pre: str, layers: int, x: torch.Tensor, pos: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """x: (B, N, H) input embeddings before position/type; pos (N,); keys (B, N) bool. Token types all 0."""
    b, n, _ = x.shape
    x = (
        x
        + w[pre + "embeddings.position_embeddings.weight"][pos]
        + w[pre + "embeddings.token_type_embeddings.weight"][0]
    )
    x = F.layer_norm(x, (H,), w[pre + "embeddings.LayerNorm.weight"], w[pre + "embeddings.LayerNorm.bias"], eps=1e-12)
    bias = (1.0 - keys.double())[:, None, None, :] * -10000.0  # transformers 3.4's extended attention mask
    d = H // HEADS
    for layer in range(layers):
        p = f"{pre}encoder.layer.{layer}."
        lin = lambda t, name: t @ w[p + name + ".weight"].T + w[p + name + ".bias"]  # noqa: E731, B023
        split = lambda t: t.view(b, n, HEADS, d).transpose(1, 2)  # noqa: E731
        q, k, v = (split(lin(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, n, H)
        ln = p + "attention.output.LayerNorm."
        x = F.layer_norm(x + lin(ctx, "attention.output.dense"), (H,), w[ln + "weight"], w[ln + "bias"], eps=1e-12)
        ff = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(x + ff, (H,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps=1e-12)
    return x


def weights(raw: dict) -> dict:
    return {k[len("mmmodel.") :]: v.double() for k, v in raw.items() if not k.endswith("position_ids")}


def reference_video(raw: dict, video: torch.Tensor, vmask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = weights(raw)
    m = "video_encoder.videomlp."
    t = F.gelu(video.double() @ w[m + "linear1.weight"].T + w[m + "linear1.bias"])
    t = F.layer_norm(t, (H,), w[m + "LayerNorm.weight"], w[m + "LayerNorm.bias"], eps=1e-5)
    t = t @ w[m + "linear2.weight"].T + w[m + "linear2.bias"]
    words = w["video_encoder.bert.embeddings.word_embeddings.weight"]
    b = video.shape[0]
    x = torch.cat([words[101].expand(b, 1, H), t, words[102].expand(b, 1, H)], dim=1)  # [CLS] video [SEP]
    pos = torch.tensor(list(range(33)) + [33])  # 0..32, then max_video_len + 1 for the [SEP]
    ones = torch.ones(b, 1, dtype=torch.bool)
    keys = torch.cat([ones, vmask, ones], dim=1)
    h = ref_bert(w, "video_encoder.bert.", V_LAYERS, x, pos, keys)
    mask = torch.cat([torch.zeros(b, 1), vmask.double(), torch.ones(b, 1)], dim=1)
    mask = mask / mask.sum(1, keepdim=True)
    return h[:, 1:33], torch.einsum("bnh,bn->bh", h, mask)


def reference_text(raw: dict, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, 63) built here the authors' way, and the pooled text (B, H)."""
    w = weights(raw)
    tok = bb.tokenizer(bb.DEFAULT)
    ids = torch.zeros(len(texts), 63, dtype=torch.long)
    for i, s in enumerate(texts):
        row = [101] + tok(s, add_special_tokens=False)["input_ids"][:61] + [102]
        ids[i, : len(row)] = torch.tensor(row)
    keys = ids != 0
    x = w["text_encoder.embeddings.word_embeddings.weight"][ids]
    h = ref_bert(w, "text_encoder.", T_LAYERS, x, torch.arange(63), keys)
    mask = torch.cat([torch.zeros(len(texts), 1), keys[:, 1:].double()], dim=1)
    mask = mask / mask.sum(1, keepdim=True)
    return ids, torch.einsum("bnh,bn->bh", h, mask)


TEXTS = [
    "a man is slicing tomatoes in a kitchen",
    "",
    " ".join(["whisk the eggs with sugar and flour until smooth"] * 12),  # > 61 word pieces: cut at 61
]


def fixed_video(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(3, 32, 512, generator=g)
    vmask = torch.zeros(3, 32, dtype=torch.bool)
    vmask[0, :20], vmask[1, :32], vmask[2, :1] = True, True, True
    video[~vmask] = 0  # as the authors' _build_video_seq zero-fills
    return video, vmask


# ---- tests ---------------------------------------------------------------------------------------------------


def test_converter_layout_equals_the_source_table():
    assert conv.expected_layout(TINY) == source_keys()
    released = conv.expected_layout()
    assert released == source_keys(h=768, i=3072, p=512, v=30522, t_layers=12, v_layers=6)
    assert len(released) == 310


def test_released_layout_fits_the_released_module_exactly():
    """bert-base towers built on the meta device (no memory): every VideoCLIP key is a released key of the same
    shape, and the released keys it does not take are exactly the dropped ones (poolers, position_ids)."""
    with torch.device("meta"):
        model = conv.build_videoclip({})
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    released = {k[len("mmmodel.") :]: s for k, s in conv.expected_layout().items()}
    assert all(released.get(k) == s for k, s in ours.items())
    assert set(released) - set(ours) == set(conv.DROPPED)
    assert model.config.video_bert["num_hidden_layers"] == 6 and model.backbone_note() is None


def test_converted_forward_equals_reference_from_raw_tensors(released, converted):
    _, raw = released
    model = VideoCLIP.load(converted).eval()
    video, vmask = fixed_video()
    with torch.no_grad():
        tokens, pooled = model.encode_video(video, vmask)
        ids, mask = model.tokenize(TEXTS)
        text = model.encode_text(TEXTS)
    ref_tokens, ref_pooled = reference_video(raw, video, vmask)
    assert (tokens.double() - ref_tokens)[vmask].abs().max().item() <= 1e-5
    assert (pooled.double() - ref_pooled).abs().max().item() <= 1e-5
    ref_ids, ref_text = reference_text(raw, TEXTS)
    assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_ids != 0)
    assert mask.sum(1).tolist()[1:] == [2, 63]  # empty text: [CLS][SEP]; long text: 61 pieces + 2
    assert (text.double() - ref_text).abs().max().item() <= 1e-5
    scores = model.scores(text, pooled).double()
    assert (scores - ref_text @ ref_pooled.T).abs().max().item() <= 1e-4


def test_config_records_the_source_and_notes_the_dropped_keys(released, tmp_path):
    path, _ = released
    said: list[str] = []
    out = conv.convert(path, tmp_path / "vc", say=said.append, arch=TINY)
    cfg = json.loads((out / "videoclip_config.json").read_text())
    assert cfg["model"] == "videoclip"
    src = cfg["source"]
    assert src["kind"] == "MMPT" and src["file"] == "checkpoint_best.pt" and "MMFusionSeparate" in src["model"]
    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert src["fairseq_step"] == 4242 and src["fairseq_epoch"] == 25
    assert cfg["video_bert"]["num_hidden_layers"] == V_LAYERS and cfg["text_bert"]["num_hidden_layers"] == T_LAYERS
    assert any("poolers" in s for s in said) and any("position_ids" in s for s in said)
    assert said[-1].startswith("checkpoint: converted from MMPT checkpoint_best.pt (sha256 ")
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_converts(released, tmp_path, monkeypatch):
    """The command as a user types it (in-process; the tiny architecture stands in for the released one)."""
    path, _ = released
    monkeypatch.setattr(conv, "released_arch", lambda: TINY)
    res = CliRunner().invoke(app, ["convert", "videoclip", str(path), "--out", str(tmp_path / "ck")])
    assert res.exit_code == 0, res.output
    assert "checkpoint: converted from MMPT checkpoint_best.pt" in res.output
    assert (tmp_path / "ck" / "model.safetensors").is_file()


def test_cli_refuses_a_vlm_checkpoint_in_one_line(tmp_path):
    """The released architecture (bert-base) against a file of another layout: one error line, exit 2."""
    path = tmp_path / "small.pt"
    torch.save(container(OrderedDict(random_state())), path)
    res = CliRunner().invoke(app, ["convert", "videoclip", str(path), "--out", str(tmp_path / "ck")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "not the MMPT VideoCLIP checkpoint" in res.output and "wrong shapes" in res.output
    assert not (tmp_path / "ck").exists()


def test_foreign_pickled_class_is_refused_without_running_it(released, tmp_path):
    _, state = released
    marker = tmp_path / "constructed.txt"
    bad = tmp_path / "bad.pt"
    torch.save(container(state, extra_state={"planted": planted(marker)}), bad)
    torch.load(bad, weights_only=False)  # the plant is live: loading it with code execution constructs it
    assert marker.is_file()
    marker.unlink()
    with pytest.raises(InputError, match="Planted") as e:
        conv.convert(bad, tmp_path / "out", say=lambda s: None, arch=TINY)
    assert "allow-list" in str(e.value) and len(str(e.value).splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def _mutated(state: OrderedDict, tmp_path: Path, name: str, fn) -> Path:
    s = OrderedDict(state)
    fn(s)
    path = tmp_path / name
    torch.save(container(s), path)
    return path


@pytest.mark.parametrize(
    "name,mutate,message",
    [
        (
            "missing",
            lambda s: s.pop("mmmodel.text_encoder.encoder.layer.2.attention.self.key.bias"),
            r"1 missing keys: mmmodel\.text_encoder\.encoder\.layer\.2\.attention\.self\.key\.bias",
        ),
        (
            "shape",
            lambda s: s.__setitem__("mmmodel.video_encoder.videomlp.linear1.weight", torch.zeros(H, 1024)),
            r"videomlp\.linear1\.weight \(32, 1024\) \(expected \(32, 512\)\)",
        ),
        (
            "unknown",  # e.g. a COIN fine-tune's token classifier (MMBertForTokenClassification): not the release
            lambda s: s.__setitem__("mmmodel.video_encoder.classifier.weight", torch.zeros(779, H)),
            r"1 unexpected keys: mmmodel\.video_encoder\.classifier\.weight",
        ),
        (
            "seventh_layer",  # a video tower one layer deeper than the architecture
            lambda s: s.update(
                {
                    k.replace("layer.1.", f"layer.{V_LAYERS}."): v
                    for k, v in s.items()
                    if k.startswith("mmmodel.video_encoder.bert.encoder.layer.1.")
                }
            ),
            r"unexpected keys: mmmodel\.video_encoder\.bert\.encoder\.layer\.2\.",
        ),
        (
            "positions",
            lambda s: s.__setitem__("mmmodel.text_encoder.embeddings.position_ids", torch.arange(P).flip(0)[None]),
            r"text_encoder\.embeddings\.position_ids is not arange",
        ),
        (
            "int_weight",
            lambda s: s.__setitem__("mmmodel.text_encoder.pooler.dense.bias", torch.zeros(H, dtype=torch.long)),
            r"not floating point: mmmodel\.text_encoder\.pooler\.dense\.bias",
        ),
    ],
)
def test_layout_problems_are_refused_by_name(released, tmp_path, name, mutate, message):
    _, state = released
    path = _mutated(state, tmp_path, f"{name}.pt", mutate)
    with pytest.raises(InputError, match=message):
        conv.convert(path, tmp_path / "out", say=lambda s: None, arch=TINY)
    assert not (tmp_path / "out").exists()


def test_model_entries_may_sit_under_state_dict_or_at_top_level(released, tmp_path):
    """MMPT's own loader accepts ckpt['state_dict'], ckpt['model'] or the bare state dict (task.py:118-121)."""
    _, state = released
    for name, obj in (("sd.pt", {"state_dict": state}), ("bare.pt", state)):
        torch.save(obj, tmp_path / name)
        conv.convert(tmp_path / name, tmp_path / name.replace(".pt", ""), say=lambda s: None, arch=TINY)
        assert VideoCLIP.load(tmp_path / name.replace(".pt", "")).hidden_size == H


def test_mapping_fails_loudly_when_the_module_drifts(released):
    _, state = released
    target = conv.build_videoclip({}, TINY).state_dict()
    mapped = conv.map_to_videoclip(state, target, [])
    assert set(mapped) == set(target) and all(mapped[k].shape == target[k].shape for k in target)
    with pytest.raises(InputError, match="does not map: video_encoder.extra.weight"):
        conv.map_to_videoclip(state, dict(target, **{"video_encoder.extra.weight": torch.zeros(3)}), [])
    renamed = {k.replace("text_encoder.", "text_tower."): v for k, v in target.items()}
    with pytest.raises(InputError, match="does not map"):
        conv.map_to_videoclip(state, renamed, [])


def test_refuses_to_replace_a_folder_that_is_not_a_videoclip_checkpoint(released, tmp_path):
    path, _ = released
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="refusing to replace"):
        conv.convert(path, tmp_path / "keep", say=lambda s: None, arch=TINY)
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"


# ---- the converted checkpoint in the suite ---------------------------------------------------------------------


@pytest.mark.slow
def test_zero_shot_retrieval_on_the_toy_world_from_the_converted_checkpoint(released, converted, tmp_path):
    """`vlmbench run --checkpoint <converted>` picks VideoCLIP from the folder, runs MSR-VTT retrieval zero-shot
    (no update), records the model, and ranks exactly as the raw-tensor reference's dot products do."""
    import numpy as np

    from vlmbench import registry
    from vlmbench.adapters.retrieval import RetrievalAdapter
    from vlmbench.config import run_config
    from vlmbench.data import toy
    from vlmbench.metrics.retrieval import retrieval_metrics

    r = CliRunner().invoke(
        app,
        [
            "run",
            "--task",
            "msrvtt-retrieval",
            "--checkpoint",
            str(converted),
            "--preset",
            "smoke",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "zeroshot=true",
            "max_test=12",
        ],
    )
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["model"]["name"] == "videoclip" and result["config"]["zeroshot"] is True
    assert result["counts"]["finetune_updates"] == 0 and result["model"]["weights_sha256"]

    spec = registry.get("msrvtt-retrieval")
    adapter = RetrievalAdapter(spec, run_config(spec, "smoke", ["max_test=12"]), toy.toy_root(), say=lambda s: None)
    adapter.load()
    raw = released[1]
    feats = [c.load(adapter.feature_store)[:32] for c in adapter.test_clips]
    video = torch.zeros(len(feats), 32, 512)
    vmask = torch.zeros(len(feats), 32, dtype=torch.bool)
    for i, f in enumerate(feats):
        video[i, : len(f)], vmask[i, : len(f)] = torch.from_numpy(np.asarray(f, dtype=np.float32)), True
    _, pooled_video = reference_video(raw, video, vmask)
    _, pooled_text = reference_text(raw, adapter.test_texts)
    want = retrieval_metrics((pooled_text @ pooled_video.T).numpy())
    for k in ("R@1", "R@5", "R@10", "MedR"):
        assert result["metrics"][k] == pytest.approx(want[k]), k
