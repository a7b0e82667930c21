"""Pictures of a model: attention maps respect the mask in use (a masked pair has exactly zero attention in the
picture's data), token labels are seconds and word pieces; the embedding projection has one labelled 2-D point
per valid video second and word piece, at the input and the output; t-SNE falls back to PCA for many tokens."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vlmbench.adapters.pairs import batch_videos
from vlmbench.model import backbone as bb
from vlmbench.model import text as textmod
from vlmbench.model.vlm import VLM
from vlmbench.viz import embeddings as emb
from vlmbench.viz.attention import attention_maps, plot_attention


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VLM.from_backbone("tiny", seed=0), bb.tokenizer("tiny")


def _example(tok, seconds=(10,), texts=("cut the onion into slices",)):
    video, vmask = batch_videos(
        [np.random.default_rng(i).normal(size=(s, 512)).astype(np.float32) for i, s in enumerate(seconds)]
    )
    ids, mask = textmod.encode(tok, list(texts))
    return video, vmask, ids, mask


def _block(maps, rows, cols):
    k = np.array(maps.kinds)
    return maps.weights[:, :, np.isin(k, rows)][:, :, :, np.isin(k, cols)]


def test_isolated_mask_zero_between_modalities(model):
    vlm, tok = model
    maps = attention_maps(vlm, *_example(tok), tok, mask="isolated")
    n = 1 + 10 + 1 + 6  # [CLS], 10 s, [SEP], 5 words + [SEP]
    assert maps.weights.shape[2:] == (n, n) and maps.mask == "isolated"
    assert maps.labels[:3] == ["[CLS]", "0s", "1s"] and maps.labels[11] == "[SEP]"
    assert maps.labels[12:] == ["cut", "the", "onion", "into", "slices", "[SEP]"]
    assert np.all(_block(maps, ["text"], ["video", "sep", "cls"]) == 0)  # text -> video: masked
    assert np.all(_block(maps, ["video"], ["text", "cls"]) == 0)
    assert np.allclose(maps.weights.sum(-1), 1, atol=1e-5)  # rows are distributions
    joint = attention_maps(vlm, *_example(tok), tok, mask="joint")
    assert _block(joint, ["text"], ["video"]).min() > 0  # planted: joint attends across


def test_text_causal_mask_hides_future_words(model):
    vlm, tok = model
    maps = attention_maps(vlm, *_example(tok), tok, mask="text_causal")
    text = np.flatnonzero(np.array(maps.kinds) == "text")
    w = maps.weights[:, :, text][:, :, :, text]
    assert np.all(np.triu(np.ones((len(text), len(text))), 1)[None, None] * w == 0)


def test_plot_attention_writes_png_and_svg_with_mask_in_title(model, tmp_path):
    vlm, tok = model
    maps = attention_maps(vlm, *_example(tok), tok, mask="isolated")
    png = plot_attention(maps, tmp_path / "a.png", layer=-1, head=None, title="t")
    svg = png.with_suffix(".svg").read_text()
    assert png.read_bytes()[:4] == b"\x89PNG" and "isolated mask" in svg and "onion" in svg
    assert svg.count("head ") == vlm.bert.config.num_attention_heads


@pytest.mark.slow
def test_embedding_projection_shapes_and_labels(model, tmp_path, monkeypatch):
    vlm, tok = model
    video, vmask, ids, mask = _example(tok, seconds=(4, 7, 3), texts=("stir the pot", "add salt", "fry an egg now"))
    inputs, outputs, modality = emb.token_states(vlm, video, vmask, ids, mask)
    n_words = int(mask.sum()) - 3  # each text's closing [SEP] is not a word piece
    assert inputs.shape == outputs.shape == (14 + n_words, vlm.hidden_size)
    assert list(modality).count("video") == 14 and list(modality).count("text") == n_words
    p = emb.project(inputs, outputs, modality)
    assert p.method == "t-SNE" and p.points["input"].shape == p.points["output"].shape == (len(modality), 2)
    monkeypatch.setattr(emb, "TSNE_MAX", 10)
    assert emb.project(inputs, outputs, modality).method == "PCA"
    png = emb.plot_projection(p, tmp_path / "e.png")
    svg = png.with_suffix(".svg").read_text()
    assert "video tokens (14)" in svg and f"text tokens ({n_words})" in svg


@pytest.mark.slow
def test_cli_viz_attention_on_the_toy_world(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmbench.cli",
            "viz",
            "attention",
            "--task",
            "youcook2-retrieval",
            "--head",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    [png] = tmp_path.glob("attention-*.png")
    assert "isolated mask" in png.with_suffix(".svg").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "viz", "attention", "--task", "msrvtt-mcqa", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--task" in bad.stderr
