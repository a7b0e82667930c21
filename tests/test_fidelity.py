"""Issue 9, protocol fidelity: one test (or a few) per point, each expectation derived by hand, by counting,
or by a second simple implementation written here (never by calling the code under test for the answer).
Point 7 (MFM-MLM minimum text length) is pinned in tests/test_config_schema.py."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from vlmbench import registry, runner
from vlmbench.adapters import adapter_class, windows
from vlmbench.adapters.pairs import TrainItem, VideoClip
from vlmbench.adapters.retrieval import RetrievalAdapter
from vlmbench.adapters.segmentation import SegmentationAdapter
from vlmbench.cli import app
from vlmbench.config import run_config
from vlmbench.data import asr, howto100m
from vlmbench.data.features import FeatureStore
from vlmbench.errors import InputError
from vlmbench.metrics.retrieval import retrieval_metrics
from vlmbench.metrics.segmentation import sliding_windows
from vlmbench.model.masking import corrupt
from vlmbench.model.vlm import VLM, VLMConfig
from vlmbench.records.result import Result
from vlmbench.reporting.tables import report
from vlmbench.train.finetune import finetune

QUIET = dict(say=lambda s: None)


def _features(folder: Path, vids, seconds: int = 5) -> FeatureStore:
    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(vids):
        np.save(folder / f"{v}.npy", np.full((seconds, 512), 0.01 * (i + 1), dtype=np.float32))
    return FeatureStore(folder)


# ---- 1. MSR-VTT dup 20 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, batch, sizes",
    [
        # 30 videos x 20 accesses = 600 examples per epoch, counted by hand:
        ("msrvtt-retrieval", 256, [256, 256, 88]),
        ("msrvtt-mcqa", 128, [128, 128, 128, 128, 88]),
    ],
)
def test_paper_epoch_is_the_list_replicated_20_times(tmp_path, task, batch, sizes):
    spec = registry.get(task)
    cfg = run_config(spec, "paper")
    assert (cfg.dup, cfg.batch_size) == (20, batch)
    adapter = adapter_class(spec.family)(spec, cfg, tmp_path, **QUIET)
    vids = [f"video{i}" for i in range(30)]
    adapter._store = _features(tmp_path / "f", vids)
    adapter.train_items = [TrainItem(VideoClip(v), (f"caption of {v}",)) for v in vids]
    batches = list(adapter.train_batches(0, np.random.default_rng(0)))
    assert [len(b["texts"]) for b in batches] == sizes
    assert adapter.steps_per_epoch() == len(sizes)
    # every video is drawn exactly 20 times per epoch
    assert set(Counter(t for b in batches for t in b["texts"]).values()) == {20}
    # the toy and smoke presets keep one pass per epoch (their tuned recipes)
    assert run_config(spec, "smoke").dup == 1 and run_config(spec, "toy").dup == 1


# ---- 2. MC-QA training list and the leakage check -------------------------------------------------------------
def _msrvtt(root: Path, train, validate, test, mc_videos, extra_9k=()):
    """A hand-made MSR-VTT folder: MSRVTT_data.json with splits, a 9k list, the JSFusion and MC test files."""
    d = root / "msrvtt"
    d.mkdir(parents=True)
    videos = (
        [{"video_id": v, "split": "train"} for v in train]
        + [{"video_id": v, "split": "validate"} for v in validate]
        + [{"video_id": v, "split": "test"} for v in test]
    )
    sentences = [
        {"video_id": v["video_id"], "caption": f"a caption of {v['video_id']}", "sen_id": i}
        for i, v in enumerate(videos)
    ]
    (d / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    with open(d / "MSRVTT_train.9k.csv", "w", newline="") as f:
        csv.writer(f).writerows([["video_id"], *[[v] for v in [*train, *validate, *extra_9k]]])
    with open(d / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "vid_key", "video_id", "sentence"])
        for i, v in enumerate(test):
            w.writerow([f"ret{i}", v.replace("video", "msr"), v, f"a caption of {v}"])
    with open(d / "MSR_MC_test.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["key", "vid_key", "video_id", "a1", "a2", "a3", "a4", "a5", "answer"])
        for i, v in enumerate(mc_videos):
            w.writerow([f"mc{i}", v.replace("video", "msr"), v, *[f"candidate {k}" for k in range(5)], 0])
    _features(d / "features", [*train, *validate, *test])
    return root


def test_mcqa_trains_on_the_7k_style_list_never_on_mc_test_videos(tmp_path):
    train, validate, test = ["video1", "video2", "video3"], ["video4"], ["video7", "video8", "video9"]
    root = _msrvtt(tmp_path, train, validate, test, mc_videos=test, extra_9k=["video8", "video9"])
    spec = registry.get("msrvtt-mcqa")
    adapter = adapter_class(spec.family)(spec, run_config(spec, "paper"), root, **QUIET)
    adapter.load()
    # by hand: the official train + validate videos, and none of the (full-test) MC videos
    assert [it.clip.vid for it in adapter.train_items] == ["video1", "video2", "video3", "video4"]
    assert adapter.loaded.counts["train_examples"] == 4 * 20


def test_mcqa_refuses_a_training_list_that_holds_mc_test_videos(tmp_path):
    # video2 is a training video and also the subject of an MC question: leakage
    root = _msrvtt(tmp_path, ["video1", "video2"], [], ["video7"], mc_videos=["video7", "video2"])
    spec = registry.get("msrvtt-mcqa")
    adapter = adapter_class(spec.family)(spec, run_config(spec, "paper"), root, **QUIET)
    with pytest.raises(
        InputError,
        match=r"^1 video is both in the training list .*MSRVTT_data.json.* and in the "
        r"test list .*MSR_MC_test.csv",
    ):
        adapter.load()


def test_run_refuses_retrieval_leakage_with_exit_2(tmp_path, monkeypatch):
    # the 9k list holds two JSFusion test videos
    root = _msrvtt(
        tmp_path, ["video1", "video2"], [], ["video7", "video8", "video9"], mc_videos=[], extra_9k=["video8", "video9"]
    )
    monkeypatch.setenv("COLUMNS", "400")
    res = CliRunner().invoke(
        app, ["run", "--task", "msrvtt-retrieval", "--data", str(root), "--out", str(tmp_path / "out")]
    )
    assert res.exit_code == 2
    text = " ".join((res.stderr or res.output).split())
    assert "2 videos are both in the training list" in text
    assert "MSRVTT_train.9k.csv" in text and "MSRVTT_JSFUSION_test.csv" in text
    assert not (tmp_path / "out" / "result.json").exists()


# ---- 3. sliding windows ------------------------------------------------------------------------------------------
WINDOW_TABLE = [  # (n seconds, stride) -> 32-s windows, written out by hand from the reference's rule
    (1, 16, [(0, 1)]),
    (20, 16, [(0, 20)]),  # n < 32
    (31, 8, [(0, 31)]),
    (32, 16, [(0, 32)]),  # n = 32
    (33, 16, [(0, 32), (16, 33)]),  # n = 33
    (33, 8, [(0, 32), (8, 33)]),
    (40, 16, [(0, 32), (16, 40)]),
    (41, 8, [(0, 32), (8, 40), (16, 41)]),
    (48, 16, [(0, 32), (16, 48)]),  # a multiple of the stride
    (50, 16, [(0, 32), (16, 48), (32, 50)]),  # the example
    (50, 8, [(0, 32), (8, 40), (16, 48), (24, 50)]),
    (64, 16, [(0, 32), (16, 48), (32, 64)]),  # a multiple of the stride
    (65, 16, [(0, 32), (16, 48), (32, 64), (48, 65)]),
    (100, 16, [(0, 32), (16, 48), (32, 64), (48, 80), (64, 96), (80, 100)]),
]


@pytest.mark.parametrize("n, stride, expected", WINDOW_TABLE)
def test_windows_follow_the_reference_tail_rule(n, stride, expected):
    assert sliding_windows(n, 32, stride) == expected
    feats = np.zeros((n, 512), dtype=np.float32)
    assert windows.make_windows(feats, 32, stride).spans == expected


def test_window_strides_of_the_paper_recipes():
    coin = run_config(registry.get("coin-segmentation"), "paper")
    cross = run_config(registry.get("crosstask-supervised"), "paper")
    assert (coin.train_stride, coin.stride) == (8, 16)
    assert (cross.train_stride, cross.stride) == (16, 16)


class _WindowIndex(torch.nn.Module):
    """A stand-in model whose logits in window i are all i: averaging shows which windows cover a second."""

    def window_logits(self, win, chunk=0):
        return torch.arange(len(win.spans), dtype=torch.float32)[:, None, None].expand(-1, 32, 2).clone()


@pytest.mark.parametrize("n, stride, expected", [row for row in WINDOW_TABLE if row[1] == 16])
def test_test_time_averaging_uses_the_same_windows(tmp_path, n, stride, expected):
    spec = registry.get("coin-segmentation")
    adapter = SegmentationAdapter(spec, run_config(spec, "paper"), tmp_path, **QUIET)
    got = adapter.video_logits(_WindowIndex(), np.zeros((n, 512), dtype=np.float32))
    want = [np.mean([i for i, (s, e) in enumerate(expected) if s <= t < e]) for t in range(n)]
    np.testing.assert_allclose(got[:, 0], want)


# ---- 4. head initialisation and bias -------------------------------------------------------------------------
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=128,
    vocab_size=30522,
    type_vocab_size=2,
)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A BERT folder with an MLM head, written as bert-base-uncased's own file is (TF's gamma/beta names)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("bert")
    BertForMaskedLM(BertConfig(**TINY)).save_pretrained(folder, safe_serialization=True)
    state = load_file(str(folder / "model.safetensors"))
    with torch.no_grad():
        state["cls.predictions.bias"] = torch.randn(30522)
        state["cls.predictions.transform.dense.bias"] = torch.randn(64)
    renamed = {
        k.replace("transform.LayerNorm.weight", "transform.LayerNorm.gamma").replace(
            "transform.LayerNorm.bias", "transform.LayerNorm.beta"
        ): v.contiguous()
        for k, v in state.items()
        if k != "cls.predictions.decoder.bias"
    }
    save_file(renamed, str(folder / "model.safetensors"))
    return folder


def test_head_transform_loaded_and_vlm_head_has_no_bias(bert_folder):
    file = load_file(str(bert_folder / "model.safetensors"))
    model = VLM.from_backbone(str(bert_folder), seed=0, loss="vlm")
    t = model.cls.predictions.transform
    assert torch.equal(t.dense.weight, file["cls.predictions.transform.dense.weight"])
    assert torch.equal(t.dense.bias, file["cls.predictions.transform.dense.bias"])
    assert torch.equal(t.LayerNorm.weight, file["cls.predictions.transform.LayerNorm.gamma"])
    assert torch.equal(t.LayerNorm.bias, file["cls.predictions.transform.LayerNorm.beta"])
    assert not model.cls.predictions.bias.any()  # the file's bias is dropped
    assert model.config.head["transform"].startswith("loaded") and model.config.head["bias"].startswith("none")
    # the decoder stays tied to the word embeddings
    assert model.cls.predictions.word_embeddings.weight is model.bert.embeddings.word_embeddings.weight


def test_mfm_mlm_head_keeps_and_loads_the_bias(bert_folder, tmp_path):
    file = load_file(str(bert_folder / "model.safetensors"))
    model = VLM.from_backbone(str(bert_folder), seed=0, loss="mfm-mlm")
    assert torch.equal(model.cls.predictions.bias, file["cls.predictions.bias"])
    assert model.config.head["bias"].startswith("loaded")
    # what was done is in the saved model config
    saved = json.loads((model.save(tmp_path / "m") / "vlm_config.json").read_text())
    assert saved["head"]["bias"].startswith("loaded") and saved["head"]["loss"] == "mfm-mlm"


def test_captioning_head_starts_from_the_backbones_mlm_bias(bert_folder, tmp_path):
    """The reference builds its captioning model from_pretrained(bert_name) (BERT's MLM bias in
    cls.predictions.bias) and loads the VLM checkpoint over it, keeping what the checkpoint lacks (fairseq
    examples/MMPT mmfusion.py:116-117, fairseqmmmodel.py:42-45): a VLM checkpoint has no bias, so captioning
    starts from BERT's. Other families leave the head alone; a backbone without a bias says so."""
    from vlmbench.models.vlm import VLMModel

    file = load_file(str(bert_folder / "model.safetensors"))
    folder = VLM.from_backbone(str(bert_folder), seed=0, loss="vlm").save(tmp_path / "vlm")
    model = VLMModel.load(folder)
    assert model.prepare("retrieval") == {} and not model.vlm.cls.predictions.bias.any()
    note = model.prepare("captioning")
    assert torch.equal(model.vlm.cls.predictions.bias, file["cls.predictions.bias"])
    assert "the backbone's MLM bias" in note["caption_head_bias"]
    tiny = VLMModel.create("tiny", seed=0)
    assert "zeros" in tiny.prepare("captioning")["caption_head_bias"] and not tiny.vlm.cls.predictions.bias.any()
    trained = VLMModel(VLM.from_backbone(str(bert_folder), seed=0, loss="mfm-mlm"))  # a bias of its own: kept
    with torch.no_grad():
        trained.vlm.cls.predictions.bias.fill_(0.5)
    assert "own" in trained.prepare("captioning")["caption_head_bias"]
    assert (trained.vlm.cls.predictions.bias == 0.5).all()


def test_head_fresh_when_the_backbone_has_none():
    model = VLM.from_backbone("tiny", seed=0, loss="mfm-mlm")
    assert model.config.head["transform"].startswith("fresh") and model.config.head["bias"].startswith("zeros")
    assert not model.cls.predictions.transform.dense.bias.any()  # fresh init: zero biases, N(0, 0.02) weights
    assert 0.01 < float(model.cls.predictions.transform.dense.weight.detach().std()) < 0.03


# ---- 5. HowTo100M rolling-ASR preparation -----------------------------------------------------------------------
class _Fixed:
    """An rng stand-in that returns the given draws in turn."""

    def __init__(self, draws):
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)


def _cap(rows):
    return howto100m._captions([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def _lines(cap):
    return [(float(s), float(e), t) for s, e, t in zip(cap.start, cap.end, cap.text)]


@pytest.mark.parametrize(
    "rows, draws, expected",
    [
        # a: the previous line ends with the current one -> merged, end extended
        ([(0, 4, "add the salt"), (2, 6, "the salt")], [], [(0, 6, "add the salt")]),
        # b: the current line starts with the previous one -> it replaces it, start = min, end = max
        ([(1, 3, "add the"), (0, 5, "add the salt now")], [], [(0, 5, "add the salt now")]),
        # d: nothing shared
        ([(0, 2, "hello"), (2, 4, "world")], [], [(0, 2, "hello"), (2, 4, "world")]),
        # empty, whitespace-only and newline text
        ([(0, 1, "  "), (1, 2, "one\ntwo"), (2, 3, "")], [], [(1, 2, "one two")]),
        # c: "sat" is the shortest prefix of the line that ends the previous one; a draw > 0.5 keeps it there
        ([(0, 4, "the cat sat"), (3, 7, "sat on the mat")], [0.9], [(0, 4, "the cat sat"), (4, 7, "on the mat")]),
        # c: a draw <= 0.5 gives it to the current line; the previous line loses it and ends at the line's start
        ([(0, 4, "the cat sat"), (3, 7, "sat on the mat")], [0.2], [(0, 3, "the cat"), (3, 7, "sat on the mat")]),
        # c: the shortest overlap wins, even a short one ("at" of "sat"), as the reference's loop finds it
        ([(0, 2, "sat"), (1, 5, "at home")], [0.2], [(0, 1, "s"), (1, 5, "at home")]),
        ([(0, 2, "sat"), (1, 5, "at home")], [0.7], [(0, 2, "sat"), (2, 5, "home")]),
    ],
)
def test_dedup_rules_by_hand(rows, draws, expected):
    starts, ends, texts = asr.dedup([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], _Fixed(draws))
    assert list(zip(starts, ends, texts)) == expected


def test_overlap_choice_is_seeded_and_both_outcomes_occur():
    rows = [(0, 4, "the cat sat"), (3, 7, "sat on the mat")]
    into_prev = [(0, 4, "the cat sat"), (4, 7, "on the mat")]
    into_cur = [(0, 3, "the cat"), (3, 7, "sat on the mat")]
    seen = set()
    for seed in range(12):
        a, _ = asr.prepare_captions(_cap(rows), vid="abc", seed=seed)
        b, _ = asr.prepare_captions(_cap(rows), vid="abc", seed=seed)
        assert _lines(a) == _lines(b)  # same seed, same video: same result
        assert _lines(a) in (into_prev, into_cur)
        seen.add(_lines(a) == into_prev)
    assert seen == {True, False}


def test_cut_to_96_characters_and_32_tokens():
    long = "word " * 40  # 200 characters
    cap, counts = asr.prepare_captions(_cap([(0, 1, long)]), vid="x")
    assert cap.text == (long.strip()[:96],) and counts["asr_lines_cut_96"] == 1
    assert asr.cut_tokens([list(range(50)), [7]]) == [list(range(32)), [7]]
    assert (asr.MAX_CHARS, asr.MAX_TOKENS) == (96, 32)


def _reference_dedup(rows, draws):
    """A second, literal transcription of the authors' loop (the draws replace random.random())."""
    draws = list(draws)
    out = []
    for start, end, text in rows:
        if not isinstance(text, str) or not text.replace("\n", " ").strip():
            continue
        text = text.replace("\n", " ").strip()
        if not out:
            out.append([start, end, text])
            continue
        prev = out[-1]
        if prev[2].endswith(text):
            prev[1] = max(prev[1], end)
        elif text.startswith(prev[2]):
            prev[:] = [min(prev[0], start), max(prev[1], end), text]
        else:
            for k in range(1, len(text) + 1):
                if prev[2].endswith(text[:k]):
                    if draws.pop(0) > 0.5:
                        prev[1] = max(prev[1], start)
                        rest = text[k:].strip()
                        if rest:
                            s = max(prev[1], start)
                            out.append([s, max(end, s), rest])
                    else:
                        left = prev[2][:-k].strip()
                        if left:
                            prev[1], prev[2] = min(prev[1], start), left
                        else:
                            out.pop()
                        out.append([start, end, text])
                    break
            else:
                out.append([start, end, text])
    return [(float(s), float(e), t) for s, e, t in out]


def test_real_rolling_asr_files_match_a_literal_transcription(real_data):
    folder = real_data / "howto100m" / "captions"
    if not folder.is_dir():
        pytest.skip("no real HowTo100M caption files")
    files = sorted(folder.glob("*.csv"))
    total_in = total_out = 0
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [(float(r["start"]), float(r["end"]), r["text"]) for r in csv.DictReader(f)]
        draws = np.random.default_rng(len(rows)).random(len(rows)).tolist()
        s, e, t = asr.dedup([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], _Fixed(draws))
        assert list(zip(s, e, t)) == _reference_dedup(rows, draws), path.name
        cap, counts = asr.prepare_captions(howto100m.load_captions(path)[path.stem], vid=path.stem)
        assert counts["asr_lines_in"] == len(rows) and counts["asr_lines_out"] == len(cap) <= len(rows)
        assert all(0 < len(x) <= 96 and x == x.strip() for x in cap.text)
        total_in, total_out = total_in + len(rows), total_out + len(cap)
    assert total_out < total_in  # rolling ASR: the real files do repeat themselves


# ---- 6. never-masked tokens ---------------------------------------------------------------------------------------
def test_only_cls_sep_pad_are_never_masked():
    ids = torch.tensor([[101, 2023, 100, 103, 2003, 102, 0, 0]])  # [CLS] this [UNK] [MASK] is [SEP] [PAD] [PAD]
    c = corrupt(
        torch.zeros(1, 32, 4),
        torch.ones(1, 32, dtype=torch.bool),
        ids,
        mmm=0.0,
        mlm_prob=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    # by hand: with every maskable token masked, exactly the positions of this, [UNK], [MASK] and is
    assert c.text_masked.tolist() == [[False, True, True, True, True, False, False, False]]


# ---- 8, 9, 11: what a result says -------------------------------------------------------------------------------
def test_backbone_note_names_the_stand_in():
    assert VLM.from_backbone("default").backbone_note() == "MiniLM-L6 (paper: bert-base-uncased)"
    base = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, vocab_size=30522)
    stub = SimpleNamespace(config=VLMConfig(backbone="/models/bert-base-uncased", bert=base))
    assert VLM.backbone_note(stub) is None  # the paper's backbone needs no note


def test_report_shows_the_backbone_and_selection_notes():
    r = Result(
        task="msrvtt-retrieval",
        family="retrieval",
        split="test",
        metrics={"R@1": 20.0},
        conventions={"backbone": "MiniLM-L6 (paper: bert-base-uncased)"},
        config={"select": "best-of-epochs"},
        preset="paper",
        seed=0,
        toy=False,
    )
    for fmt in ("terminal", "markdown", "json"):
        out = " ".join(report([r], fmt=fmt).split())
        assert "backbone: MiniLM-L6 (paper: bert-base-uncased)" in out, fmt
        assert "selected on the test split, as the reference does" in out, fmt


class _Scripted:
    """A fake adapter: one training update per epoch on a 1-parameter module; its test score per epoch is
    scripted, so the best epoch is known by hand."""

    family = "retrieval"

    def __init__(self, values, by_loss=False):
        self.values, self.by_loss, self.epoch = values, by_loss, 0
        self.snapshots = []
        self.spec = SimpleNamespace(metrics=("R@1",))
        self.loaded = SimpleNamespace(counts={})
        self.say = lambda s: None
        if by_loss:
            self.test_loss_batches = lambda: iter(["test"])

    def train_batches(self, epoch, rng):
        yield "train"

    def loss(self, module, batch):
        if batch == "test":
            self.snapshots.append(module.w.detach().clone())
            value = self.values[len(self.snapshots) - 1]
            return torch.tensor(value)
        return (module.w - 10.0).pow(2).sum()

    def predict(self, module):
        self.snapshots.append(module.w.detach().clone())
        return {}

    def score(self, preds, cfg):
        return {"R@1": self.values[len(self.snapshots) - 1]}, {}


class _One(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


@pytest.mark.parametrize(
    "values, by_loss, best",
    [
        ([10.0, 30.0, 20.0], False, 2),  # highest R@1: epoch 2
        ([3.0, 1.0, 2.0], True, 2),  # lowest test loss: epoch 2
        ([3.0, 2.0, 1.0], True, 3),
    ],
)
def test_best_of_epochs_keeps_the_best_epoch_weights(values, by_loss, best):
    spec = registry.get("msrvtt-retrieval")
    cfg = run_config(spec, "smoke", ["epochs=3", "lr=0.1", "warmup=0", "select=best-of-epochs"])
    adapter, module = _Scripted(values, by_loss), _One()
    finetune(adapter, module, cfg, torch.device("cpu"))
    assert len(adapter.snapshots) == 3  # every epoch was scored
    assert torch.equal(module.w.detach(), adapter.snapshots[best - 1])  # and the best one kept
    assert adapter.loaded.counts["selected_epoch"] == best
    final = _One()
    finetune(
        _Scripted(values, by_loss),
        final,
        run_config(spec, "smoke", ["epochs=3", "lr=0.1", "warmup=0"]),
        torch.device("cpu"),
    )
    assert torch.equal(final.w.detach(), adapter.snapshots[-1])  # select=final: the last epoch's weights


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return VLM.from_backbone("tiny", seed=0).save(tmp_path_factory.mktemp("ckpt"))


@pytest.mark.slow
def test_a_result_records_backbone_selection_and_effective_batch(tmp_path, tiny_ckpt):
    result, _ = runner.run(
        "msrvtt-retrieval",
        preset="smoke",
        checkpoint=tiny_ckpt,
        out=tmp_path,
        pairs=["epochs=2", "select=best-of-epochs", "max_train=32", "max_test=16"],
        progress=False,
        **QUIET,
    )
    assert result.conventions["backbone"] == "tiny random BERT (2 layers, hidden 64) (paper: bert-base-uncased)"
    assert "selected on the test split, as the reference does" in result.conventions["selection"]
    assert result.counts["selected_epoch"] in (1, 2)
    # smoke batch 16, one process: 16 per update, 15 negatives per text
    assert (result.counts["effective_batch"], result.counts["in_batch_negatives"]) == (16, 15)
    assert "1 simulated process x 16" in result.conventions["batch"]


@pytest.mark.parametrize(
    "task",
    [
        "msrvtt-retrieval",
        "msrvtt-mcqa",
        "youcook2-retrieval",
        "youcook2-caption",
        "coin-segmentation",
        "crosstask-supervised",
    ],
)
def test_task_files_say_how_to_match_the_authors_2_gpu_run(task):
    text = registry.get(task).source.read_text()
    assert "Effective batch" in text and "GPU" in text


# ---- 10. retrieval ties -----------------------------------------------------------------------------------------
def test_mmpt_ties_by_hand():
    scores = np.array(
        [
            [1.0, 1.0, 0.0],  # truth tied with column 1: sorted [1, 1, 0] -> positions 0, 1
            [0.0, 2.0, 2.0],  # truth tied with column 2: positions 0, 1
            [5.0, 0.0, 1.0],
        ]
    )  # truth second: position 1
    m = retrieval_metrics(scores, ties="mmpt")
    # pooled positions [0, 1, 0, 1, 1]: 5 of them for 3 queries
    assert m["R@1"] == pytest.approx(100 * 2 / 5) and m["R@5"] == 100.0
    assert m["MedR"] == 2.0 and m["MeanR"] == pytest.approx(1.6)
    # columns: [1, 0, 5] -> 1; [1, 2, 0] -> 0; [0, 2, 1] -> 1
    assert m["v2t_R@1"] == pytest.approx(100 / 3)
    p = retrieval_metrics(scores)  # the default stays pessimistic: every rank is 2
    assert (p["R@1"], p["MedR"]) == (0.0, 2.0)
    _, conv = RetrievalAdapter.score({"scores": scores, "ids": np.array(["a", "b", "c"])}, {"ties": "mmpt"})
    assert conv["ties"].startswith("mmpt") and "optimistic on ties" not in json.dumps(conv)


# ---- tasks --show ---------------------------------------------------------------------------------------------
def test_tasks_show_prints_the_resolved_paper_recipe(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    res = CliRunner().invoke(app, ["tasks", "--show", "msrvtt-retrieval"])
    assert res.exit_code == 0, res.output
    out = res.output
    for line in ("dup: 20", "warmup: 122", "lr: 5e-05", "batch_size: 256", "never masked: [CLS], [SEP], [PAD]"):
        assert line in out, line
    assert "the last window starts at the first stride position with <= 32 s left" in out
    assert "[(0, 32), (16, 48), (32, 50)]" in out


# ---- leakage is checked on the whole lists, before max_train / max_test ---------------------------------------


@pytest.mark.parametrize("cap", ["max_train=5", "max_test=5"])
def test_leakage_check_sees_the_lists_before_the_caps(tmp_path, cap):
    """A test video at the END of the training list: the caps keep only the first 5 of a list, so a check on
    the capped lists never saw it and a capped preset trained on a test video's... list unrefused."""
    import shutil

    from vlmbench.adapters.retrieval import RetrievalAdapter
    from vlmbench.data import toy

    src = toy.ensure_dataset("msrvtt", say=lambda s: None)
    shutil.copytree(src, tmp_path / "msrvtt")
    train = tmp_path / "msrvtt" / "MSRVTT_train.9k.csv"
    leaked = "video410"  # in the JSFusion test list, past its 5th row
    train.write_text(train.read_text() + f"{leaked}\n")
    spec = registry.get("msrvtt-retrieval")
    adapter = RetrievalAdapter(spec, run_config(spec, "smoke", [cap]), tmp_path, say=lambda s: None)
    with pytest.raises(InputError, match=f"1 video is both in the training list .* \\(e.g. {leaked}\\)"):
        adapter.load()


# ---- the authors' GPU count: virtual_ranks -------------------------------------------------------------------


def test_virtual_ranks_is_the_authors_gpu_count_per_task():
    """From fairseq examples/MMPT projects/mtm/vlm/*.yaml (task_type) and mmpt_cli/localjob.py:34-45 (local_small =
    --distributed-world-size 2, local_big = 8): COIN ran sweep_big, the others sweep_small; CrossTask zero-shot
    does not train. The toy presets run one process."""
    want = {
        "coin-segmentation": 8,
        "crosstask-supervised": 2,
        "msrvtt-mcqa": 2,
        "msrvtt-retrieval": 2,
        "youcook2-caption": 2,
        "youcook2-retrieval": 2,
        "crosstask-zeroshot": 1,
    }
    for task, n in want.items():
        spec = registry.get(task)
        assert run_config(spec, "paper").virtual_ranks == n, task
        assert all(run_config(spec, p).virtual_ranks == 1 for p in ("toy", "smoke", "ci")), task


def test_virtual_ranks_average_per_rank_losses_with_their_own_negatives():
    """Two simulated ranks: one update whose gradient is the mean of the two batches' losses' gradients, each
    loss over its own batch only (in-batch negatives per rank), and half the updates per epoch."""
    from vlmbench.config import RunConfig
    from vlmbench.model.losses import contrastive_loss
    from vlmbench.train.finetune import finetune

    torch.manual_seed(0)
    batches = [torch.randn(4, 3) for _ in range(4)]

    class Adapter:
        def train_batches(self, epoch, rng):
            return iter(batches)

        def loss(self, module, batch):
            return contrastive_loss(batch @ module.w, batch, "t2v")

    def run(ranks):
        module = torch.nn.Module()
        module.w = torch.nn.Parameter(torch.eye(3, dtype=torch.float32))
        cfg = RunConfig(epochs=1, lr=0.1, warmup=0, virtual_ranks=ranks, clip_norm=1e9)
        return finetune(Adapter(), module, cfg, torch.device("cpu")), module.w.detach().clone()

    losses1, _ = run(1)
    losses2, w2 = run(2)
    assert len(losses1) == 4 and len(losses2) == 2
    assert losses2[0] == pytest.approx((losses1[0] + Adapter().loss(_eye(), batches[1]).item()) / 2, rel=1e-6)
    # the first update's gradient is the mean of the two batches' gradients: Adam's first step moves each weight
    # by lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|), so compare signs with the hand-made mean
    w = torch.nn.Parameter(torch.eye(3))
    g = torch.autograd.grad((Adapter().loss(_mod(w), batches[0]) + Adapter().loss(_mod(w), batches[1])) / 2, w)[0]
    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.eye(3))
    finetune(
        _OneUpdate(batches[:2]),
        module,
        RunConfig(epochs=1, lr=0.1, warmup=0, virtual_ranks=2, clip_norm=1e9),
        torch.device("cpu"),
    )
    moved = torch.eye(3) - module.w.detach()
    assert torch.equal(torch.sign(moved), torch.sign(g) * (g.abs() > 1e-12))


def _eye():
    m = torch.nn.Module()
    m.w = torch.nn.Parameter(torch.eye(3))
    return m


def _mod(w):
    m = torch.nn.Module()
    m.w = w
    return m


class _OneUpdate:
    def __init__(self, batches):
        self.batches = batches

    def train_batches(self, epoch, rng):
        return iter(self.batches)

    def loss(self, module, batch):
        from vlmbench.model.losses import contrastive_loss

        return contrastive_loss(batch @ module.w, batch, "t2v")


# ---- pre-training's validation slice and the checkpoint it selects --------------------------------------------


def test_paper_pretraining_holds_out_a_validation_slice_and_selects_best_val():
    """The authors pre-train with a held-out validation list (projects/mtm/vlm/how2.yaml:6 val_path) and every task
    but supervised CrossTask starts from checkpoint_best.pt, fairseq's lowest validation loss (vtt.yaml:38,
    vttqa.yaml:36, youcook.yaml:36, youcookcap.yaml:34, coin.yaml:36)."""
    from vlmbench.config import pretrain_config

    cfg = pretrain_config("paper")
    assert cfg.val_fraction > 0 and cfg.select == "best-val"
    with pytest.raises(InputError, match="select=best-val needs a validation slice"):
        pretrain_config("smoke", ["select=best-val"])


@pytest.mark.slow
def test_validation_slice_is_held_out_and_model_is_the_best_val_checkpoint(tmp_path):
    import numpy as np

    from vlmbench.config import pretrain_config
    from vlmbench.data import prepared
    from vlmbench.data.toy.howto100m import ensure_howto100m
    from vlmbench.train import pretrain as pt
    from vlmbench.train.sampler import held_out

    cfg = pretrain_config("smoke", ["steps=6", "save_every=2", "val_fraction=0.2", "select=best-val", "val_batches=2"])
    out = tmp_path / "pt"
    summary = pt.pretrain(cfg, out, progress=False, say=lambda s: None)
    corpus = prepared.for_pretraining(ensure_howto100m(seed=0, say=lambda s: None), cfg.backbone, say=lambda s: None)
    held = held_out(corpus, 0.2)
    assert summary["validation_videos"] == len(held) == round(0.2 * len(corpus))
    assert held_out(corpus, 0.2).tolist() == held.tolist()  # the same slice every time
    metas = [json.loads((p / "trainer.json").read_text()) for p in sorted((out / "checkpoints").glob("step_*"))]
    vals = {m["step"]: m["val_loss"] for m in metas}
    assert sorted(vals) == [2, 4, 6] and all(np.isfinite(v) for v in vals.values())
    best = min(vals, key=lambda s: (vals[s], s))
    assert summary["selected"]["step"] == best
    got = load_file(str(out / "model" / "model.safetensors"))
    want = load_file(str(out / "checkpoints" / f"step_{best:07d}" / "model.safetensors"))
    assert all(torch.equal(got[k], want[k]) for k in want)
    # training never drew a held-out video
    sampler = pt.ClipSampler(
        corpus, pt.FeatureStore(corpus.features), seed=0, positions=np.setdiff1d(np.arange(len(corpus)), held)
    )
    assert not set(sampler.index.tolist()) & set(held.tolist())


def test_supervised_crosstask_starts_from_the_epoch_11_weights():
    """crosstask.yaml:42 restores runs/mtm/vlm/checkpoint11.pt (epoch 11 of the 15), where the other VLM task configs
    restore checkpoint_best.pt: pre-training keeps model-epoch11/ and the suite starts supervised CrossTask there."""
    from vlmbench.config import pretrain_config

    assert pretrain_config("paper").keep_epoch == 11 and pretrain_config("paper").epochs == 15
    starts = {t: bool(s.options.get("start_from_kept_epoch")) for t, s in registry.all_tasks().items()}
    assert starts == {t: t == "crosstask-supervised" for t in starts}


@pytest.mark.slow
def test_pretraining_keeps_the_weights_of_its_kept_epoch(tmp_path):
    from vlmbench.config import pretrain_config
    from vlmbench.train.pretrain import pretrain

    cfg = pretrain_config("smoke", ["steps=0", "epochs=2", "keep_epoch=1", "save_every=1000", "lr_decay_steps=100000"])
    out = tmp_path / "pt"
    summary = pretrain(cfg, out, progress=False, say=lambda s: None)
    kept = load_file(str(out / "model-epoch1" / "model.safetensors"))
    final = load_file(str(out / "model" / "model.safetensors"))
    assert summary["final_step"] % 2 == 0 and any(not torch.equal(kept[k], final[k]) for k in final)
