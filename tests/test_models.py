"""The model interface: the catalog finds models by name and by checkpoint folder, a task a model cannot do is
refused in one line before any work, and VLM behind the interface computes exactly what its halves compute."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vlmbench.adapters import CLASSES, adapter_class
from vlmbench.errors import InputError
from vlmbench.model.vlm import VLM
from vlmbench.models import catalog
from vlmbench.models.interface import CAPABILITIES, INTERFACE_VERSION, VideoTextModel, missing
from vlmbench.models.videoclip import VideoCLIPModel
from vlmbench.models.vlm import VLMModel


def test_builtin_models_and_their_capabilities():
    assert catalog.model_class("vlm") is VLMModel and catalog.model_class("videoclip") is VideoCLIPModel
    assert set(VLMModel.capabilities) == set(CAPABILITIES)
    assert "caption" not in VideoCLIPModel.capabilities  # VideoCLIP has no decoder


def test_every_family_needs_declared_capabilities():
    for family in CLASSES:
        needs = adapter_class(family).needs
        assert needs and needs <= set(CAPABILITIES), family
    assert missing(adapter_class("captioning").needs, VideoCLIPModel.capabilities) == ["caption"]
    assert missing(adapter_class("retrieval").needs, VideoCLIPModel.capabilities) == []


def test_unknown_model_is_one_line():
    with pytest.raises(InputError, match=r"--model: unknown model 'nope' \(known: vlm, videoclip"):
        catalog.model_class("nope")


def test_checkpoint_folder_picks_its_model(tmp_path):
    VLM.from_backbone("tiny", seed=0).save(tmp_path / "vlm")
    VideoCLIPModel.create("tiny", seed=0).save(tmp_path / "vc")
    assert catalog.resolve(None, tmp_path / "vlm") is VLMModel
    assert catalog.resolve(None, tmp_path / "vc") is VideoCLIPModel
    assert catalog.resolve(None, None) is VLMModel
    with pytest.raises(InputError, match="holds a vlm checkpoint, not a videoclip one"):
        catalog.resolve("videoclip", tmp_path / "vlm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a checkpoint of any known model"):
        catalog.resolve(None, tmp_path / "empty")


def test_a_broken_plugin_is_one_line(monkeypatch):
    monkeypatch.setattr(catalog, "available", lambda: {**catalog.BUILTIN, "bad": "no_such_module_xyz:Model"})
    with pytest.raises(InputError, match="model 'bad' .* cannot be imported: ModuleNotFoundError"):
        catalog.model_class("bad")
    monkeypatch.setattr(catalog, "available", lambda: {**catalog.BUILTIN, "bad": "vlmbench.errors:InputError"})
    with pytest.raises(InputError, match="is not a vlmbench.models.VideoTextModel"):
        catalog.model_class("bad")


@pytest.mark.slow
def test_refused_before_any_work_nothing_written(tmp_path):
    """A captioning run with VideoCLIP: exit 2, one line naming the model, the task and the missing capability,
    and no run folder (the entry point, as a user types it)."""
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmbench.cli",
            "run",
            "--task",
            "youcook2-caption",
            "--model",
            "videoclip",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "model videoclip cannot run youcook2-caption" in line and "needs caption" in line
    assert not out.exists()


def test_vlm_through_the_interface_equals_its_halves():
    vlm = VLM.from_backbone("tiny", seed=1).eval()
    model = VLMModel(vlm)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, 32, 512, generator=g)
    vmask = torch.arange(32)[None] < torch.tensor([[5], [32], [17]])
    texts = ["cut the onion", "stir the soup until it thickens", "a"]
    with torch.no_grad():
        states = model.encode_video(video, vmask)
        half = vlm.forward_video(video, vmask)
        assert torch.equal(states.tokens, half[:, :32]) and torch.equal(states.pooled, VLM.pool_video(half, vmask))
        got = model.encode_text(texts)
        for i, t in enumerate(texts):  # each sentence alone, untrimmed: the trimmed batch gives the same vector
            from vlmbench.model import text as textmod

            ids, mask = textmod.encode(model.tokenizer, [t])
            alone = VLM.pool_text(vlm.forward_text(ids, mask), mask)
            np.testing.assert_allclose(got[i].numpy(), alone[0].numpy(), rtol=1e-5, atol=1e-6)
    about = model.describe()
    assert about["name"] == "vlm" and about["interface"] == INTERFACE_VERSION and about["backbone"] == "tiny"
    assert about["class"] == "vlmbench.models.vlm.VLMModel"


def test_packed_evaluation_equals_the_padded_forward():
    """Evaluation (eval mode, no autograd) runs only the valid tokens, packed; training keeps the padded forward.
    Valid states and pooled vectors agree to float rounding; invalid video slots come back zero."""
    from vlmbench.model import text as textmod
    from vlmbench.models.vlm import trim_text

    vlm = VLM.from_backbone("tiny", seed=2).eval()
    model = VLMModel(vlm)
    g = torch.Generator().manual_seed(1)
    vmask = torch.arange(32)[None] < torch.tensor([[5], [32], [17], [0], [9], [32], [1], [5]])
    vmask[2, 3] = False  # not a prefix: a hole
    video = torch.randn(8, 32, 512, generator=g) * vmask[..., None]
    texts = ["cut the onion", "stir the soup until it thickens", "a", "", "cut the onion", "salt " * 80, "pour"]
    padded = vlm.forward_video(video, vmask).detach()  # autograd on: the padded forward
    ids, mask = trim_text(*textmod.encode(model.tokenizer, texts))
    text_padded = VLM.pool_text(vlm.forward_text(ids, mask), mask).detach()
    assert vlm.packs() is False
    with torch.no_grad():
        assert vlm.packs() is True
        packed = vlm.forward_video(video, vmask)
        text_packed = model.encode_text(texts)
        states = model.encode_video(video, vmask)
    keys = torch.cat([vmask, torch.ones(8, 1, dtype=torch.bool)], 1)
    torch.testing.assert_close(packed[keys], padded[keys], rtol=1e-5, atol=1e-5)
    assert packed.shape == padded.shape and not packed[~keys].any()
    assert torch.equal(packed[1], padded[1]) and torch.equal(packed[5], padded[5])  # full clips: the same layout
    torch.testing.assert_close(states.pooled, VLM.pool_video(padded, vmask), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(text_packed, text_padded, rtol=1e-5, atol=1e-5)
    assert torch.equal(text_packed[0], text_packed[4])
    vlm.train()
    with torch.no_grad():
        assert vlm.packs() is False  # train mode (dropout) never packs


def test_the_base_class_refuses_what_a_model_lacks():
    class Nothing(VideoTextModel):
        name, capabilities, config_file = "nothing", frozenset(), "nothing.json"

    with pytest.raises(NotImplementedError, match="nothing cannot encode video"):
        Nothing().encode_video(torch.zeros(1, 32, 512), torch.ones(1, 32, dtype=torch.bool))


def test_viz_refuses_a_model_without_joint_encoding():
    from typer.testing import CliRunner

    from vlmbench.cli import app

    r = CliRunner().invoke(app, ["viz", "attention", "--task", "msrvtt-retrieval", "--model", "videoclip"])
    assert r.exit_code == 2 and "viz needs the attention capability" in r.output
