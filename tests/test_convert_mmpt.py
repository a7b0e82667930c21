"""`vlmbench convert mmpt`: a container with the released file's layout (random tensors), built here from the
spec's key table (../shared/spec/authors-checkpoint.md §1-2), not from the converter's own table."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from vlmbench.convert import mmpt
from vlmbench.errors import InputError
from vlmbench.model.vlm import VLM

P = "mmmodel.mm_encoder."
H, V, I, L, HEADS = 768, 30522, 3072, 12, 12


def spec_keys() -> dict[str, tuple[int, ...]]:
    k = {
        "videomlp.linear1.weight": (768, 512),
        "videomlp.linear1.bias": (768,),
        "videomlp.LayerNorm.weight": (768,),
        "videomlp.LayerNorm.bias": (768,),
        "videomlp.linear2.weight": (768, 768),
        "videomlp.linear2.bias": (768,),
        "bert.embeddings.position_ids": (1, 512),
        "bert.embeddings.word_embeddings.weight": (30522, 768),
        "bert.embeddings.position_embeddings.weight": (512, 768),
        "bert.embeddings.token_type_embeddings.weight": (2, 768),
        "bert.embeddings.LayerNorm.weight": (768,),
        "bert.embeddings.LayerNorm.bias": (768,),
        "bert.embeddings.seg_embeddings.weight": (256, 768),
    }
    for n in range(12):
        b = f"bert.encoder.layer.{n}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            k[b + m + ".weight"], k[b + m + ".bias"] = (768, 768), (768,)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            k[b + m + ".weight"], k[b + m + ".bias"] = (768,), (768,)
        k[b + "intermediate.dense.weight"], k[b + "intermediate.dense.bias"] = (3072, 768), (3072,)
        k[b + "output.dense.weight"], k[b + "output.dense.bias"] = (768, 3072), (768,)
    k.update(
        {
            "bert.pooler.dense.weight": (768, 768),
            "bert.pooler.dense.bias": (768,),
            "cls.predictions.transform.dense.weight": (768, 768),
            "cls.predictions.transform.dense.bias": (768,),
            "cls.predictions.transform.LayerNorm.weight": (768,),
            "cls.predictions.transform.LayerNorm.bias": (768,),
            "cls.predictions.decoder.weight": (30522, 768),
        }
    )
    assert len(k) == 212  # the spec's count
    return {P + name: shape for name, shape in k.items()}


def random_state(seed: int = 0) -> OrderedDict:
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in spec_keys().items():
        if key.endswith("position_ids"):
            state[key] = torch.arange(512)[None]
        elif key.endswith("decoder.weight"):
            continue
        elif "LayerNorm.weight" in key:
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    # fairseq's move_to_cpu converts each tensor alone: the tied decoder is a separate, equal tensor
    state[P + "cls.predictions.decoder.weight"] = state[P + "bert.embeddings.word_embeddings.weight"].clone()
    return state


def container(state, **extra) -> dict:
    cfg = {
        "task": argparse.Namespace(task="mmtask", taskconfig="projects/mtm/vlm/how2.yaml"),
        "model": argparse.Namespace(arch="mmarch"),
        "criterion": argparse.Namespace(_name="mmloss"),
        "common": {"fp16": True, "seed": 1},
    }
    return {
        "args": None,
        "cfg": cfg,
        "model": state,
        "criterion": None,
        "task_state": {},
        "optimizer_history": [
            {
                "criterion_name": "MMCriterion",
                "optimizer_name": "FP16Optimizer",
                "lr_scheduler_state": {"best": 1.5},
                "num_updates": 123456,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 7, "iterations_in_epoch": 0}, "val_loss": 1.5},
        **extra,
    }


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[Path, OrderedDict]:
    state = random_state()
    path = tmp_path_factory.mktemp("mmpt") / "checkpoint_best.pt"
    torch.save(container(state), path)
    return path, state


@pytest.fixture(scope="module")
def converted(released, tmp_path_factory) -> Path:
    path, _ = released
    out = tmp_path_factory.mktemp("conv") / "vlm"
    mmpt.convert(path, out, say=lambda s: None)
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


# ---- reference forward, straight from the raw MMPT tensors ----------------------------------------------------


def reference_hidden(raw: dict, video, vmask, text_ids, text_mask) -> torch.Tensor:
    w = {k[len(P) :]: v.double() for k, v in raw.items() if not k.endswith("position_ids")}
    v = F.gelu(video.double() @ w["videomlp.linear1.weight"].T + w["videomlp.linear1.bias"])
    v = F.layer_norm(v, (H,), w["videomlp.LayerNorm.weight"], w["videomlp.LayerNorm.bias"], eps=1e-5)
    v = v @ w["videomlp.linear2.weight"].T + w["videomlp.linear2.bias"]
    words = w["bert.embeddings.word_embeddings.weight"]
    b = video.shape[0]
    x = torch.cat([words[101].expand(b, 1, H), v, words[102].expand(b, 1, H), words[text_ids]], dim=1)
    n = x.shape[1]  # [CLS] 32 video [SEP] 62 text slots = 96
    types = torch.tensor([0] * 34 + [1] * (n - 34))
    x = (
        x
        + w["bert.embeddings.position_embeddings.weight"][:n]
        + w["bert.embeddings.token_type_embeddings.weight"][types]
    )
    x = F.layer_norm(x, (H,), w["bert.embeddings.LayerNorm.weight"], w["bert.embeddings.LayerNorm.bias"], eps=1e-12)
    keys = torch.cat([torch.ones(b, 1, dtype=torch.bool), vmask, torch.ones(b, 1, dtype=torch.bool), text_mask], 1)
    bias = torch.zeros(b, 1, 1, n, dtype=torch.double).masked_fill(~keys[:, None, None, :], -1e30)
    d = H // HEADS
    for layer in range(L):
        p = f"bert.encoder.layer.{layer}."
        lin = lambda t, name: t @ w[p + name + ".weight"].T + w[p + name + ".bias"]  # noqa: E731, B023
        split = lambda t: t.view(b, n, HEADS, d).transpose(1, 2)  # noqa: E731
        q, k, val = (split(lin(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ val).transpose(1, 2).reshape(b, n, H)
        x = F.layer_norm(
            x + lin(ctx, "attention.output.dense"),
            (H,),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps=1e-12,
        )
        ff = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(x + ff, (H,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps=1e-12)
    return x


def fixed_input(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(2, 32, 512, generator=g)
    vmask = torch.zeros(2, 32, dtype=torch.bool)
    vmask[0, :20], vmask[1, :32] = True, True
    video[~vmask] = 0
    text_ids = torch.zeros(2, 62, dtype=torch.long)
    text_ids[0, :6] = torch.tensor([2023, 2003, 1037, 3899, 2000, 102])
    text_ids[1, :3] = torch.tensor([7592, 2088, 102])
    return video, vmask, text_ids, text_ids != 0


# ---- tests ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_converted_forward_equals_reference_from_raw_tensors(released, converted):
    _, raw = released
    vlm = VLM.load(converted).eval()
    video, vmask, text_ids, text_mask = fixed_input()
    with torch.no_grad():
        ours = vlm(video, vmask, text_ids, text_mask, mask="joint").double()
    ref = reference_hidden(raw, video, vmask, text_ids, text_mask)
    valid = torch.cat([torch.ones(2, 1, dtype=torch.bool), vmask, torch.ones(2, 1, dtype=torch.bool), text_mask], 1)
    assert (ours - ref)[valid].abs().max().item() <= 1e-5
    # the MTM head: transform, then the decoder tied to the (converted) word embeddings, no bias
    w = {k[len(P) :]: t.double() for k, t in raw.items()}
    h = F.gelu(ref @ w["cls.predictions.transform.dense.weight"].T + w["cls.predictions.transform.dense.bias"])
    h = F.layer_norm(
        h,
        (H,),
        w["cls.predictions.transform.LayerNorm.weight"],
        w["cls.predictions.transform.LayerNorm.bias"],
        eps=1e-12,
    )
    ref_logits = h[valid] @ w["cls.predictions.decoder.weight"].T
    with torch.no_grad():
        head = vlm.cls.predictions
        ours_logits = head.transform(ours.float())[valid] @ head.word_embeddings.weight.T
    assert head.word_embeddings.weight.data_ptr() == vlm.bert.embeddings.word_embeddings.weight.data_ptr()
    assert (ours_logits.double() - ref_logits).abs().max().item() <= 1e-4  # 768-term dot products of O(1) values
    bias = dict(vlm.named_parameters()).get("cls.predictions.bias")
    assert bias is None or not bias.any()  # MMPT's MTM decoder has no bias


def test_config_records_the_source(released, converted):
    path, _ = released
    cfg = json.loads((converted / "vlm_config.json").read_text())
    src = cfg["source"]
    assert src["kind"] == "MMPT" and src["file"] == "checkpoint_best.pt"
    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert src["fairseq_step"] == 123456 and src["fairseq_epoch"] == 7
    assert mmpt.describe(src).startswith("converted from MMPT checkpoint_best.pt (sha256 ")
    assert cfg["bert"].get("num_hidden_layers", 12) == 12
    assert cfg["head"]["loss"] == "vlm" and "checkpoint_best.pt" in cfg["head"]["transform"]


@pytest.mark.slow
def test_cli_converts_and_notes_the_dropped_keys(released, tmp_path):
    """The README's command, as a user types it (a subprocess of the installed entry point)."""
    path, _ = released
    exe = Path(sys.executable).parent / "vlmbench"
    res = subprocess.run(
        [str(exe), "convert", "mmpt", str(path), "--out", str(tmp_path / "ck")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "seg_embeddings" in res.stderr and "checkpoint: converted from MMPT checkpoint_best.pt" in res.stderr
    assert (tmp_path / "ck" / "model.safetensors").is_file()


def test_extra_pickled_class_is_refused_without_running_it(released, tmp_path):
    _, state = released
    marker = tmp_path / "constructed.txt"
    bad = tmp_path / "bad.pt"
    torch.save(container(state, extra_state={"planted": planted(marker)}), bad)
    # the plant is live: loading it with code execution would construct it
    torch.load(bad, weights_only=False)
    assert marker.is_file()
    marker.unlink()
    with pytest.raises(InputError, match="Planted") as e:
        mmpt.convert(bad, tmp_path / "out", say=lambda s: None)
    assert "allow-list" in str(e.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_namespace_loads_as_an_inert_stand_in(released):
    path, _ = released
    ckpt = mmpt.safe_load(path)
    ns = ckpt["cfg"]["model"]
    assert not isinstance(ns, argparse.Namespace) and isinstance(ns, mmpt.Inert)
    assert ns.get("arch") == "mmarch"


def _mutated(state: OrderedDict, tmp_path: Path, name: str, fn) -> Path:
    s = OrderedDict(state)
    fn(s)
    path = tmp_path / name
    torch.save(container(s), path)
    return path


@pytest.mark.slow
def test_missing_key_is_refused_by_name(released, tmp_path):
    _, state = released
    key = P + "bert.encoder.layer.7.attention.self.key.bias"
    path = _mutated(state, tmp_path, "missing.pt", lambda s: s.pop(key))
    with pytest.raises(InputError, match="missing keys: " + key.replace(".", r"\.")):
        mmpt.convert(path, tmp_path / "out", say=lambda s: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_wrong_shape_is_refused_by_name(released, tmp_path):
    _, state = released
    key = P + "videomlp.linear1.weight"
    path = _mutated(state, tmp_path, "shape.pt", lambda s: s.__setitem__(key, torch.zeros(768, 1024)))
    with pytest.raises(InputError, match=r"videomlp\.linear1\.weight \(768, 1024\) \(expected \(768, 512\)\)"):
        mmpt.convert(path, tmp_path / "out", say=lambda s: None)


@pytest.mark.slow
def test_unexpected_key_untied_decoder_and_bad_positions_are_refused(released, tmp_path):
    _, state = released
    cases = {
        "unexpected keys: " + P + "cls.predictions.bias": lambda s: s.__setitem__(
            P + "cls.predictions.bias", torch.zeros(V)
        ),
        "not tied": lambda s: s.__setitem__(
            P + "cls.predictions.decoder.weight", s[P + "cls.predictions.decoder.weight"] + 1e-3
        ),
        "not arange": lambda s: s.__setitem__(P + "bert.embeddings.position_ids", torch.arange(512).flip(0)[None]),
    }
    for i, (message, fn) in enumerate(cases.items()):
        path = _mutated(state, tmp_path, f"case{i}.pt", fn)
        with pytest.raises(InputError, match=message.replace(".", r"\.")):
            mmpt.convert(path, tmp_path / "out", say=lambda s: None)


@pytest.mark.slow
def test_mapping_fails_loudly_when_the_vlm_drifts(released):
    _, state = released
    target = mmpt.build_vlm({}).state_dict()
    notes: list[str] = []
    mapped = mmpt.map_to_vlm(state, target, notes)
    assert set(mapped) == set(target)  # every VLM key filled, from today's VLM
    assert all(tuple(mapped[k].shape) == tuple(target[k].shape) for k in target)
    drifted = dict(target, **{"videomlp.extra.weight": torch.zeros(3)})
    with pytest.raises(InputError, match="does not map: videomlp.extra.weight"):
        mmpt.map_to_vlm(state, drifted, [])
    renamed = {
        ("bert.emb.word.weight" if k == "bert.embeddings.word_embeddings.weight" else k): v for k, v in target.items()
    }
    with pytest.raises(InputError):
        mmpt.map_to_vlm(state, renamed, [])


def test_converter_layout_equals_the_spec_table():
    assert mmpt.expected_layout() == spec_keys()


@pytest.mark.slow
def test_a_run_on_the_converted_checkpoint_says_so_and_reports_beside_the_paper(converted, tmp_path):
    from vlmbench.records.result import load_result
    from vlmbench.reporting.tables import report_frame
    from vlmbench.runner import run

    said: list[str] = []
    result, _ = run(
        "msrvtt-retrieval",
        checkpoint=converted,
        out=tmp_path / "run",
        preset="smoke",
        pairs=["epochs=0", "max_test=16"],
        progress=False,
        say=said.append,
    )
    assert any(s.startswith("checkpoint: converted from MMPT checkpoint_best.pt") for s in said)
    saved = load_result(tmp_path / "run" / "result.json")
    assert saved.config["checkpoint_source"].startswith("converted from MMPT checkpoint_best.pt (sha256 ")
    df = report_frame([saved], against="paper")
    ours = df[df["kind"] == "ours"]
    assert len(ours) == 1 and "checkpoint: converted from MMPT" in ours["label"].iloc[0]
    assert (df["kind"] == "paper").any() and set(df["task"]) == {"msrvtt-retrieval"}


@pytest.mark.slow
def test_an_omegaconf_era_container_loads_without_omegaconf(released, tmp_path, monkeypatch):
    """Nov 2020 - Mar 2021 fairseq pickled `cfg` as an omegaconf DictConfig. The classes are faked here only to
    write such a file; the converter never imports them (stand-ins replace them by name)."""
    import collections
    import sys as _sys
    import types

    _, state = released
    made = {}
    monkeypatch.setitem(_sys.modules, "omegaconf", types.ModuleType("omegaconf"))
    for module, name in (
        ("omegaconf.dictconfig", "DictConfig"),
        ("omegaconf.base", "ContainerMetadata"),
        ("omegaconf.nodes", "AnyNode"),
    ):
        mod = _sys.modules.get(module) or types.ModuleType(module)
        cls = type(name, (), {"__module__": module, "__qualname__": name})
        setattr(mod, name, cls)
        monkeypatch.setitem(_sys.modules, module, mod)
        made[name] = cls
    node = made["AnyNode"]()
    node.__dict__.update(_val="mmarch", _metadata=None)
    cfg = made["DictConfig"]()
    cfg.__dict__.update(_metadata=made["ContainerMetadata"](), _content={"arch": node})
    meters = collections.defaultdict(list, {"loss": [1.0, 2.0]})
    path = tmp_path / "checkpoint_dictconfig.pt"
    torch.save({"args": None, "cfg": cfg, "model": state, "extra_state": {"meters": meters}}, path)
    for module in ("omegaconf", "omegaconf.dictconfig", "omegaconf.base", "omegaconf.nodes"):
        monkeypatch.delitem(_sys.modules, module)
    ckpt = mmpt.safe_load(path)
    assert isinstance(ckpt["cfg"], mmpt.Inert) and ckpt["cfg"].get("arch").get("_val") == "mmarch"
    out = mmpt.convert(path, tmp_path / "out", say=lambda s: None)
    assert (out / "model.safetensors").is_file()


def test_legacy_non_zip_files_are_held_to_the_same_rules(tmp_path):
    small = {"cfg": {"model": argparse.Namespace(arch="mmarch")}, "model": {"w": torch.ones(2)}}
    path = tmp_path / "legacy.pt"
    torch.save(small, path, _use_new_zipfile_serialization=False)
    ckpt = mmpt.safe_load(path)
    assert isinstance(ckpt["cfg"]["model"], mmpt.Inert) and torch.equal(ckpt["model"]["w"], torch.ones(2))
    marker = tmp_path / "constructed.txt"
    bad = tmp_path / "legacy_bad.pt"
    torch.save({**small, "x": planted(marker)}, bad, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match="Planted"):
        mmpt.safe_load(bad)
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_one_error_line(tmp_path):
    for name, data in (("text.pt", b"hello\n"), ("empty.pt", b""), ("noise.pt", bytes(range(256)) * 8)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="not a readable torch checkpoint"):
            mmpt.convert(tmp_path / name, tmp_path / "out", say=lambda s: None)
    assert not (tmp_path / "out").exists()
