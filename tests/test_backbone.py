"""Backbones load offline; checkpoints round-trip through safetensors + JSON (no pickle)."""

import json

import pytest
import torch

from vlmbench.errors import InputError
from vlmbench.model import backbone as bb
from vlmbench.model.vlm import VLM


def test_default_backbone_is_minilm_offline():
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    path = bb.resolve("default")
    assert (path / "model.safetensors").is_file() and (path / "vocab.txt").is_file()
    m = VLM.from_backbone("default")
    assert m.hidden_size == 384 and m.bert.config.num_hidden_layers == 6
    tok = bb.tokenizer("default")
    assert tok.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]", "[PAD]"]) == [101, 102, 103, 0]
    # pretrained, not random: the word embeddings of 'onion' and 'garlic' are closer than to '[unused5]'
    w = m.bert.embeddings.word_embeddings.weight
    a, b, c = (w[tok.convert_tokens_to_ids(t)] for t in ("onion", "garlic", "[unused5]"))
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, b, dim=0) > cos(a, c, dim=0)


def test_local_bert_folder_works_like_the_default(tmp_path):
    import shutil

    folder = tmp_path / "my-bert"
    shutil.copytree(bb.minilm_dir(), folder)
    m = VLM.from_backbone(str(folder))
    ref = VLM.from_backbone("default")
    assert torch.equal(m.bert.embeddings.word_embeddings.weight, ref.bert.embeddings.word_embeddings.weight)


def test_bad_backbone_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="config.json"):
        VLM.from_backbone(str(tmp_path))


def test_save_load_round_trip_without_pickle(tmp_path):
    m = VLM.from_backbone("tiny", seed=5).eval()
    m.save(tmp_path / "ck")
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["model.safetensors", "vlm_config.json"]
    json.loads((tmp_path / "ck" / "vlm_config.json").read_text())
    m2 = VLM.load(tmp_path / "ck").eval()
    assert m2.cls.predictions.word_embeddings.weight is m2.bert.embeddings.word_embeddings.weight
    video = torch.randn(1, 32, 512)
    vmask = torch.ones(1, 32, dtype=torch.bool)
    ids = torch.zeros(1, 62, dtype=torch.long)
    ids[0, :3] = torch.tensor([2000, 2001, 102])
    with torch.no_grad():
        assert torch.equal(m(video, vmask, ids, ids != 0), m2(video, vmask, ids, ids != 0))


def test_load_refuses_a_foreign_key_set(tmp_path):
    from safetensors.torch import load_file, save_file

    m = VLM.from_backbone("tiny")
    m.save(tmp_path / "ck")
    state = load_file(str(tmp_path / "ck" / "model.safetensors"))
    state["classifier.weight"] = torch.zeros(2, 2)
    save_file(state, str(tmp_path / "ck" / "model.safetensors"))
    with pytest.raises(InputError, match="keys do not match"):
        VLM.load(tmp_path / "ck")
    with pytest.raises(InputError, match="not a vlmbench checkpoint"):
        VLM.load(tmp_path)


def test_a_folder_backbone_starts_in_training_mode():
    """BERT's dropout is on in pre-training whatever the backbone: from_pretrained returns eval mode, and
    pre-training ran MiniLM without dropout until VLM.from_backbone set train mode."""
    from vlmbench.model.vlm import VLM

    for backbone in ("tiny", "default"):
        model = VLM.from_backbone(backbone, seed=0)
        assert all(m.training for m in model.modules()), backbone
