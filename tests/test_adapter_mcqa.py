"""MC-QA adapter: each video encoded once, scores equal the reference's 5 isolated forwards per question, V2T
fine-tuning on the MSR-VTT retrieval training data, end-to-end run re-scores identically."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmbench import registry
from vlmbench.adapters.mcqa import MCQAAdapter
from vlmbench.adapters.pairs import batch_videos
from vlmbench.config import run_config
from vlmbench.data import toy
from vlmbench.errors import InputError
from vlmbench.model import backbone as bb
from vlmbench.model.losses import contrastive_loss
from vlmbench.model.text import encode as encode_62
from vlmbench.model.vlm import VLM
from vlmbench.models.vlm import VLMModel
from vlmbench.records.predictions import PREDICTIONS, RESULT, load_predictions
from vlmbench.runner import run, score_file

quiet = lambda s: None  # noqa: E731


def make_adapter(root: Path | None = None, allow_missing: bool = False, **overrides) -> MCQAAdapter:
    spec = registry.get("msrvtt-mcqa")
    cfg = run_config(spec, "smoke", [f"{k}={v}" for k, v in overrides.items()])
    if root is None:
        root = toy.ensure_dataset("msrvtt", say=quiet).parent
    return MCQAAdapter(spec, cfg, root, allow_missing=allow_missing, say=quiet)


@pytest.fixture(scope="module")
def tiny() -> VLM:
    return VLM.from_backbone("tiny", seed=5).eval()


def test_predict_encodes_each_video_once_and_matches_reference_procedure(tiny, monkeypatch):
    adapter = make_adapter(max_test=6, eval_batch_size=4)
    adapter.load()
    qs = adapter.questions
    assert len(qs) == 6 and adapter.loaded.counts["test_examples"] == 6

    rows = {"video": [], "text": 0}
    fv, ft, fp = tiny.forward_video, tiny.forward_text, tiny.encode_text_tokens
    monkeypatch.setattr(tiny, "forward_video", lambda v, m: (rows["video"].append(len(v)), fv(v, m))[1])
    monkeypatch.setattr(
        tiny, "forward_text", lambda i, m: (rows.__setitem__("text", rows["text"] + len(i)), ft(i, m))[1]
    )
    # evaluation encodes sentences packed (no padding): the rows counted there
    monkeypatch.setattr(
        tiny, "encode_text_tokens", lambda t: (rows.__setitem__("text", rows["text"] + len(t)), fp(t))[1]
    )
    preds = adapter.predict(VLMModel(tiny))
    assert rows["video"] == [4, 2]  # 6 videos in eval batches of 4, each once
    assert rows["text"] == len({c for q in qs for c in q.candidates}) <= 30
    assert preds["scores"].shape == (6, 5) and preds["scores"].dtype == np.float32
    assert list(preds["answers"]) == [q.answer for q in qs] and list(preds["ids"]) == [q.video_id for q in qs]

    # The reference: the video repeated 5 times, paired with a1..a5, through the full 96-token isolated model.
    monkeypatch.undo()
    tok, store = bb.tokenizer(tiny.config.backbone), adapter.feature_store
    with torch.no_grad():
        for q, got in zip(qs, preds["scores"]):
            video, vmask = batch_videos([store.load(q.video_id)[:32]] * 5)
            ids, mask = encode_62(tok, list(q.candidates))
            h = tiny(video, vmask, ids, mask, mask="isolated")
            ref = (tiny.pool_video(h, vmask) * tiny.pool_text(h, mask)).sum(-1).numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
            assert np.ptp(ref) > 1e-4


def test_v2t_training_on_retrieval_train_data(tiny):
    adapter = make_adapter(max_train=20, batch_size=8)
    adapter.load()
    assert adapter.direction == "v2t"
    train_csv = toy.toy_root() / "msrvtt" / "MSRVTT_train.9k.csv"
    first = [r["video_id"] for r in csv.DictReader(open(train_csv))][:20]
    assert [it.clip.vid for it in adapter.train_items] == first
    assert all(len(it.captions) == 5 for it in adapter.train_items)
    batches = list(adapter.train_batches(0, np.random.default_rng(2)))
    assert [len(b["texts"]) for b in batches] == [8, 8, 4]
    b = batches[0]
    ids, mask = encode_62(bb.tokenizer(tiny.config.backbone), b["texts"])
    with torch.no_grad():
        h = tiny(b["video"], b["vmask"], ids, mask, mask="isolated")
        t, v = tiny.pool_text(h, mask), tiny.pool_video(h, b["vmask"])
    loss = float(adapter.loss(VLMModel(tiny), b).detach())
    assert loss == pytest.approx(float(contrastive_loss(t, v, "v2t")), abs=1e-5)
    assert loss != pytest.approx(float(contrastive_loss(t, v, "t2v")), abs=1e-6)


def test_missing_test_features_raise(tmp_path):
    src = toy.ensure_dataset("msrvtt", say=quiet)
    ds = tmp_path / "msrvtt"
    (ds / "features").mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (ds / f.name).symlink_to(f)
    mc = [r["video_id"] for r in csv.DictReader(open(src / "MSR_MC_test.csv"), delimiter="\t")]
    for f in (src / "features").iterdir():
        if f.stem != mc[1]:
            (ds / "features" / f.name).symlink_to(f)
    with pytest.raises(InputError, match=rf"1 of {len(mc)} test videos .*first: {mc[1]}"):
        make_adapter(root=tmp_path).load()
    adapter = make_adapter(root=tmp_path, allow_missing=True, max_test=0)
    adapter.load()
    assert adapter.loaded.counts["missing_features_test_videos"] == 1
    assert [q.video_id for q in adapter.questions] == mc[:1] + mc[2:]


def test_end_to_end_smoke_rescores(tmp_path):
    result, _ = run("msrvtt-mcqa", preset="smoke", out=tmp_path, progress=False, say=quiet)
    assert (tmp_path / PREDICTIONS).is_file() and (tmp_path / RESULT).is_file()
    task, metrics, conventions, _ = score_file(tmp_path / PREDICTIONS)
    assert task == "msrvtt-mcqa" and metrics == result.metrics and set(metrics) == {"accuracy"}
    assert "argmax" in conventions["prediction"]
    assert result.counts["test_examples"] == 64 and result.counts["train_videos"] == 64
    assert result.counts["finetune_updates"] == 4
    _, _, preds = load_predictions(tmp_path / PREDICTIONS)
    acc = 100.0 * np.mean(preds["scores"].argmax(1) == preds["answers"])
    assert metrics["accuracy"] == pytest.approx(acc)
