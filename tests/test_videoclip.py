"""VideoCLIP (vlmbench/model/videoclip.py) on the tiny backbone: construction as the authors initialise it,
save/load (identical encodings, strict keys, never a pickle), the text layout (pads/truncates as the source),
padding invariance, gradients through both towers; and the VideoCLIP paper's rows in baselines/."""

from __future__ import annotations

import importlib.resources
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vlmbench.errors import InputError
from vlmbench.model import backbone as bb
from vlmbench.model.videoclip import CAPABILITIES, CONFIG_FILE, MAX_TEXT_TOKENS, WEIGHTS_FILE, VideoCLIP
from vlmbench.reporting.paper import COLUMNS, load_paper_table, parse_setting


@pytest.fixture(scope="module")
def model() -> VideoCLIP:
    return VideoCLIP.from_backbone(bb.TINY, seed=3).eval()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("vc") / "videoclip")


def batch(seed: int = 0, b: int = 3):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, 32, 512, generator=g)
    vmask = torch.zeros(b, 32, dtype=torch.bool)
    for i, n in enumerate([32, 7, 1][:b]):
        vmask[i, :n] = True
    video[~vmask] = 0
    return video, vmask


TEXTS = ["add the onions and fry until golden", "stir", "season with salt and pepper"]


def test_construction_follows_the_authors(model):
    assert model.hidden_size == 64 and model.capabilities == CAPABILITIES and "captioning" not in CAPABILITIES
    # the video tower starts as the text backbone's first layers (here all of the tiny BERT's 2), as a copy
    text, video = model.text_encoder.state_dict(), model.video_encoder.bert.state_dict()
    assert set(video) <= set(text)
    assert all(torch.equal(video[k], text[k]) for k in video)
    assert model.video_encoder.bert.embeddings.word_embeddings.weight.data_ptr() != (
        model.text_encoder.embeddings.word_embeddings.weight.data_ptr()
    )
    assert model.config.init["video"].startswith("the backbone's first 2 of 2 layers")
    assert "tiny random BERT" in model.backbone_note()
    mlp = model.video_encoder.videomlp
    assert mlp.linear1.weight.shape == (64, 512) and not mlp.linear1.bias.any() and not mlp.linear2.bias.any()
    assert 0.01 < mlp.linear1.weight.std().item() < 0.03  # N(0, initializer_range = 0.02)


def test_first_layers_only_when_the_backbone_is_deeper():
    m = VideoCLIP.from_backbone(bb.TINY, seed=0, video_layers=1)
    assert m.video_encoder.bert.config.num_hidden_layers == 1 and m.text_encoder.config.num_hidden_layers == 2
    layer0 = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(m.video_encoder.bert.state_dict()[layer0], m.text_encoder.state_dict()[layer0])


def test_encode_shapes_and_padding_invariance(model):
    video, vmask = batch()
    with torch.no_grad():
        tokens, pooled = model.encode_video(video, vmask)
        noisy = video.clone()
        noisy[~vmask] = 5.0  # invalid seconds are masked out of attention and pooling
        tokens2, pooled2 = model.encode_video(noisy, vmask)
        text = model.encode_text(TEXTS)
    assert tokens.shape == (3, 32, 64) and pooled.shape == (3, 64) and text.shape == (3, 64)
    assert torch.allclose(pooled, pooled2, atol=1e-6) and torch.allclose(tokens[vmask], tokens2[vmask], atol=1e-6)
    with torch.no_grad():  # one video alone encodes as it does in a batch
        one_tokens, one_pooled = model.encode_video(video[2:], vmask[2:])
    assert torch.allclose(one_tokens, tokens[2:], atol=1e-6) and torch.allclose(one_pooled, pooled[2:], atol=1e-6)
    scores = model.scores(text, pooled)
    assert scores.shape == (3, 3) and torch.allclose(scores, text @ pooled.T)


def test_encode_text_pads_and_truncates_as_the_source(model):
    tok = bb.tokenizer(bb.TINY)
    long = " ".join(["chop the carrots into thin slices"] * 20)
    pieces = tok(long, add_special_tokens=False)["input_ids"]
    assert len(pieces) > MAX_TEXT_TOKENS == 61
    ids, mask = model.tokenize(["stir", long, ""])
    assert ids.shape == mask.shape == (3, 63)  # [CLS] + 61 + [SEP] slots (mmfusion.py:579-586)
    stir = tok("stir", add_special_tokens=False)["input_ids"]
    assert ids[0, : len(stir) + 2].tolist() == [101, *stir, 102] and not ids[0, len(stir) + 2 :].any()
    assert ids[1].tolist() == [101, *pieces[:61], 102]  # cut to the first 61 word pieces, then [SEP]
    assert ids[2, :2].tolist() == [101, 102] and not ids[2, 2:].any()
    assert mask.sum(1).tolist() == [len(stir) + 2, 63, 2] and torch.equal(mask, ids != 0)
    # padding slots change nothing: pooled text from the 63-slot layout equals a forward on the row alone
    with torch.no_grad():
        full = model.encode_text_ids(ids[:1], mask[:1])
        short = model.encode_text_ids(ids[:1, : len(stir) + 2], mask[:1, : len(stir) + 2])
    assert torch.allclose(full, short, atol=1e-6)
    with pytest.raises(InputError, match="list of strings"):
        model.encode_text("stir")
    assert model.encode_text([]).shape == (0, 64)


def test_saved_and_loaded_gives_identical_encodings(model, saved):
    loaded = VideoCLIP.load(saved).eval()
    video, vmask = batch(1)
    with torch.no_grad():
        a, b = model.encode_video(video, vmask), loaded.encode_video(video, vmask)
        ta, tb = model.encode_text(TEXTS), loaded.encode_text(TEXTS)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(ta, tb)
    cfg = json.loads((saved / CONFIG_FILE).read_text())
    assert cfg["model"] == "videoclip" and cfg["backbone"] == bb.TINY
    assert set(load_file(str(saved / WEIGHTS_FILE))) == set(model.state_dict())


def test_load_is_strict_and_never_unpickles(saved, tmp_path):
    import shutil

    def copy(name):
        d = tmp_path / name
        shutil.copytree(saved, d)
        return d

    extra = copy("extra")
    state = load_file(str(extra / WEIGHTS_FILE))
    save_file({**state, "video_encoder.classifier.weight": torch.zeros(2, 2)}, str(extra / WEIGHTS_FILE))
    with pytest.raises(InputError, match="unexpected"):
        VideoCLIP.load(extra)
    missing = copy("missing")
    state.pop("text_encoder.encoder.layer.1.output.dense.bias")
    save_file(state, str(missing / WEIGHTS_FILE))
    with pytest.raises(InputError, match="missing"):
        VideoCLIP.load(missing)
    pickled = copy("pickled")
    torch.save(load_file(str(saved / WEIGHTS_FILE)), pickled / WEIGHTS_FILE)
    with pytest.raises(InputError, match="never loads"):
        VideoCLIP.load(pickled)
    other = copy("other")
    cfg = json.loads((other / CONFIG_FILE).read_text())
    (other / CONFIG_FILE).write_text(json.dumps({**cfg, "model": "vlm"}))
    with pytest.raises(InputError, match="expected 'videoclip'"):
        VideoCLIP.load(other)
    with pytest.raises(InputError, match="not a vlmbench VideoCLIP checkpoint"):
        VideoCLIP.load(tmp_path / "nowhere")


def test_gradients_reach_both_towers():
    m = VideoCLIP.from_backbone(bb.TINY, seed=1).train()
    video, vmask = batch(2)
    _, pooled_video = m.encode_video(video, vmask)
    pooled_text = m.encode_text(TEXTS)
    logits = m.scores(pooled_text, pooled_video)
    target = torch.arange(3)
    loss = torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
    loss.backward()
    for name in (
        "video_encoder.videomlp.linear1.weight",
        "video_encoder.bert.encoder.layer.0.attention.self.query.weight",
        "video_encoder.bert.embeddings.position_embeddings.weight",
        "text_encoder.encoder.layer.1.output.dense.weight",
        "text_encoder.embeddings.word_embeddings.weight",
    ):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_too_long_a_video_is_refused(model):
    with pytest.raises(InputError, match="at most 32"):
        model.encode_video(torch.zeros(1, 33, 512), torch.ones(1, 33, dtype=torch.bool))


# ---- the VideoCLIP paper's rows (baselines/videoclip_paper_tables.csv) ------------------------------------------


@pytest.fixture(scope="module")
def paper():
    return load_paper_table(importlib.resources.files("vlmbench.baselines") / "videoclip_paper_tables.csv")


@pytest.mark.parametrize(
    "task,transfer,metric,value",
    [
        ("youcook2-retrieval", "zero-shot", "R@1", 22.7),
        ("youcook2-retrieval", "zero-shot", "R@10", 63.1),
        ("youcook2-retrieval", "fine-tuned", "R@1", 32.2),
        ("youcook2-retrieval", "fine-tuned", "R@10", 75.0),
        ("msrvtt-retrieval", "zero-shot", "R@1", 10.4),
        ("msrvtt-retrieval", "zero-shot", "R@5", 22.2),
        ("msrvtt-retrieval", "fine-tuned", "R@1", 30.9),
        ("msrvtt-retrieval", "fine-tuned", "R@10", 66.8),
        ("msrvtt-mcqa", "zero-shot", "accuracy", 73.9),
        ("msrvtt-mcqa", "fine-tuned", "accuracy", 92.1),
        ("coin-segmentation", "zero-shot", "frame_acc", 58.9),
        ("coin-segmentation", "fine-tuned", "frame_acc", 68.7),
        ("crosstask-zeroshot", "zero-shot", "recall", 33.9),
        ("crosstask-supervised", "fine-tuned", "recall", 47.3),
    ],
)
def test_paper_values(paper, task, transfer, metric, value):
    hit = paper[(paper.task == task) & (paper.metric == metric) & (paper.setting == f"transfer={transfer}")]
    assert len(hit) == 1 and hit.value.iloc[0] == pytest.approx(value)
    assert hit.method.iloc[0] == f"VideoCLIP ({transfer.capitalize()})"


def test_paper_table_shape(paper):
    assert list(paper.columns) == COLUMNS
    assert paper.groupby("table").size().to_dict() == {1: 12, 3: 2, 4: 2, 5: 2}
    assert (paper.source == "videoclip-paper Table " + paper.table.astype(str)).all()
    assert not paper.duplicated(["table", "method", "metric", "task", "setting"]).any()
    assert {parse_setting(s)["transfer"] for s in paper.setting} == {"zero-shot", "fine-tuned"}
    assert "MedR" not in set(paper.metric)  # VideoCLIP's Table 1 prints no median rank
    tasks = {p.stem for p in importlib.resources.files("vlmbench.tasks").iterdir() if p.name.endswith(".yaml")}
    assert set(paper.task) <= tasks
