"""Retrieval adapter (MSR-VTT, YouCook2): encode-once evaluation equals the naive per-pair isolated forward, the
training loss equals the one from full forwards, end-to-end runs re-score identically, and real-format files
load with the right counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmbench import registry
from vlmbench.adapters.pairs import batch_videos
from vlmbench.adapters.retrieval import RetrievalAdapter
from vlmbench.config import run_config
from vlmbench.data import toy
from vlmbench.errors import InputError
from vlmbench.metrics.retrieval import ranks
from vlmbench.model import backbone as bb
from vlmbench.model.losses import contrastive_loss
from vlmbench.model.text import encode as encode_62
from vlmbench.model.vlm import VLM
from vlmbench.models.vlm import VLMModel
from vlmbench.records.predictions import PREDICTIONS, RESULT, load_predictions
from vlmbench.runner import run, score_file

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
quiet = lambda s: None  # noqa: E731


def make_adapter(task: str, root: Path | None = None, allow_missing: bool = False, **overrides) -> RetrievalAdapter:
    spec = registry.get(task)
    cfg = run_config(spec, "smoke", [f"{k}={v}" for k, v in overrides.items()])
    if root is None:
        toy.ensure_dataset(spec.dataset, say=quiet)
        root = toy.toy_root()
    return RetrievalAdapter(spec, cfg, root, allow_missing=allow_missing, say=quiet)


@pytest.fixture(scope="module")
def tiny() -> VLM:
    return VLM.from_backbone("tiny", seed=3).eval()


def naive_scores(vlm: VLM, feats: list[np.ndarray], texts: list[str]) -> np.ndarray:
    """The reference's literal procedure: one full 96-token isolated forward per (text, video) pair."""
    tok = bb.tokenizer(vlm.config.backbone)
    out = np.zeros((len(texts), len(feats)), dtype=np.float64)
    with torch.no_grad():
        for i, text in enumerate(texts):
            for j, f in enumerate(feats):
                video, vmask = batch_videos([f])
                ids, mask = encode_62(tok, [text])
                h = vlm(video, vmask, ids, mask, mask="isolated")
                out[i, j] = float((vlm.pool_video(h, vmask) * vlm.pool_text(h, mask)).sum())
    return out


@pytest.mark.parametrize("task", ["msrvtt-retrieval", "youcook2-retrieval"])
def test_predict_equals_naive_pairwise_isolated_forward(task, tiny):
    adapter = make_adapter(task, max_test=5)
    adapter.load()
    t, v = adapter.embed(VLMModel(tiny))
    scores = (t @ v.T).numpy()
    preds = adapter.predict(VLMModel(tiny))
    assert scores.shape == (5, 5) and scores.dtype == np.float32 and "scores" not in preds
    assert list(preds["ids"]) == adapter.test_ids
    np.testing.assert_array_equal(preds["t2v_ge"], ranks(scores))
    np.testing.assert_array_equal(preds["v2t_ge"], ranks(scores.T))
    # Features read independently of the adapter: whole file, sliced to the clip, cut to 32 s.
    store = adapter.feature_store
    feats = [store.load(c.vid)[c.start or 0 : c.end][:32] for c in adapter.test_clips]
    if task == "youcook2-retrieval":
        assert all(c.start is not None for c in adapter.test_clips)
        assert (
            preds["ids"][0] == f"{adapter.test_clips[0].vid}_{adapter.test_clips[0].start}_{adapter.test_clips[0].end}"
        )
    ref = naive_scores(tiny, feats, adapter.test_texts)
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)
    assert np.ptp(ref) > 1e-3  # the comparison is not between constants


def test_predict_encodes_each_clip_and_text_once(tiny, monkeypatch):
    adapter = make_adapter("youcook2-retrieval", max_test=40)
    adapter.load()
    adapter.test_texts[7] = adapter.test_texts[3]  # a repeated sentence (the real file has them; toy v2 may not)
    calls = {"video": 0, "text": 0}
    fv, ft = tiny.forward_video, tiny.forward_text
    monkeypatch.setattr(
        tiny, "forward_video", lambda v, m: (calls.__setitem__("video", calls["video"] + len(v)), fv(v, m))[1]
    )
    monkeypatch.setattr(
        tiny, "forward_text", lambda i, m: (calls.__setitem__("text", calls["text"] + len(i)), ft(i, m))[1]
    )
    fp = tiny.encode_text_tokens  # evaluation encodes sentences packed (no padding)
    monkeypatch.setattr(
        tiny, "encode_text_tokens", lambda t: (calls.__setitem__("text", calls["text"] + len(t)), fp(t))[1]
    )
    monkeypatch.setattr(tiny, "forward", lambda *a, **k: pytest.fail("no full forward at evaluation"))
    t, v = adapter.embed(VLMModel(tiny))
    assert calls["video"] == len(set(adapter.test_clips)) == 40
    # a repeated sentence is encoded once, its vector reused per row
    assert calls["text"] == len(set(adapter.test_texts)) < 40
    dup = [i for i, t in enumerate(adapter.test_texts) if adapter.test_texts.index(t) != i][0]
    first = adapter.test_texts.index(adapter.test_texts[dup])
    np.testing.assert_array_equal(t[dup], t[first])


def test_train_batches_and_t2v_loss_match_full_forward(tiny):
    adapter = make_adapter("msrvtt-retrieval", max_train=40, batch_size=16)
    adapter.load()
    assert adapter.direction == "t2v"
    assert adapter.loaded.counts["train_videos"] == 40 and adapter.loaded.counts["train_captions"] == 200
    batches = list(adapter.train_batches(0, np.random.default_rng(0)))
    assert [b["video"].shape[0] for b in batches] == [16, 16, 8] and adapter.steps_per_epoch() == 3
    again = list(adapter.train_batches(0, np.random.default_rng(0)))
    assert [b["texts"] for b in again] == [b["texts"] for b in batches]  # reproducible from the rng
    # each training video exactly once per epoch, with one of its own captions
    caps = {it.clip.vid: it.captions for it in adapter.train_items}
    feats = {vid: adapter.feature_store.load(vid)[:32] for vid in caps}
    seen = []
    for b in batches:
        for video, vmask, text in zip(b["video"], b["vmask"], b["texts"]):
            n = int(vmask.sum())
            vid = next(v for v, f in feats.items() if len(f) == n and np.allclose(f, video[:n].numpy()))
            assert text in caps[vid] and not video[n:].any()
            seen.append(vid)
    assert sorted(seen) == sorted(caps)

    b = batches[0]
    loss = adapter.loss(VLMModel(tiny), b)
    ids, mask = encode_62(bb.tokenizer(tiny.config.backbone), b["texts"])
    with torch.no_grad():
        h = tiny(b["video"], b["vmask"], ids, mask, mask="isolated")
        ref = contrastive_loss(tiny.pool_text(h, mask), tiny.pool_video(h, b["vmask"]), "t2v")
    assert loss.requires_grad
    assert float(loss.detach()) == pytest.approx(float(ref), abs=1e-5)
    assert float(ref) != pytest.approx(
        float(contrastive_loss(tiny.pool_text(h, mask), tiny.pool_video(h, b["vmask"]), "v2t")), abs=1e-6
    )


def test_youcook2_train_clips_are_annotated_segments():
    adapter = make_adapter("youcook2-retrieval", max_train=0)
    adapter.load()
    ann = json.loads((adapter.root / "youcook2" / "youcookii_annotations_trainval.json").read_text())["database"]
    train_vids = [line.split("/")[1] for line in (adapter.root / "youcook2" / "train_list.txt").read_text().split()]
    expected = [(v, a["segment"][0], a["segment"][1], a["sentence"]) for v in train_vids for a in ann[v]["annotations"]]
    got = [(it.clip.vid, it.clip.start, it.clip.end, it.captions[0]) for it in adapter.train_items]
    assert got == expected
    assert adapter.loaded.counts["train_examples"] == len(expected)
    assert adapter.loaded.counts["train_videos"] == len(train_vids)
    b = next(adapter.train_batches(0, np.random.default_rng(1)))
    assert b["vmask"].sum(1).max() <= 32 and b["vmask"].sum(1).min() >= 1


def test_missing_features_error_or_counted(tmp_path):
    src = toy.ensure_dataset("msrvtt", say=quiet)
    root = tmp_path / "data"
    (root / "msrvtt" / "features").mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (root / "msrvtt" / f.name).symlink_to(f)
    test_ids = [r["video_id"] for r in csv.DictReader(open(src / "MSRVTT_JSFUSION_test.csv"))]
    drop = set(test_ids[:3])
    for f in (src / "features").iterdir():
        if f.stem not in drop:
            (root / "msrvtt" / "features" / f.name).symlink_to(f)
    with pytest.raises(InputError, match=rf"3 of {len(test_ids)} test videos .*first: {test_ids[0]}"):
        make_adapter("msrvtt-retrieval", root=root, max_test=0).load()
    adapter = make_adapter("msrvtt-retrieval", root=root, allow_missing=True, max_test=0)
    adapter.load()
    assert adapter.loaded.counts["missing_features_test_videos"] == 3
    assert adapter.test_ids == test_ids[3:]


@pytest.mark.slow
def test_end_to_end_smoke_rescores(tmp_path):
    for task in ("msrvtt-retrieval", "youcook2-retrieval"):
        out = tmp_path / task
        result, _ = run(task, preset="smoke", out=out, progress=False, say=quiet)
        assert (out / PREDICTIONS).is_file() and (out / RESULT).is_file()
        name, metrics, conventions, _ = score_file(out / PREDICTIONS)
        assert name == task and metrics == result.metrics
        assert set(result.metrics) >= {"R@1", "R@5", "R@10", "MedR", "v2t_R@1"}
        assert "pessimistic" in conventions["ties"]
        assert result.counts["test_examples"] == 64 and result.counts["finetune_updates"] == 4
        _, cfg, preds = load_predictions(out / PREDICTIONS)
        assert "scores" not in preds and preds["top"].shape == (64, 5) and len(preds["ids"]) == 64
        assert cfg["backbone"] == "tiny" and preds["example:rank"].shape == (64,)
        assert json.loads((out / RESULT).read_text())["metrics"]["R@1"] == result.metrics["R@1"]


# ---- real annotation files (synthesised features for a few videos) -----------------------------------------
def _features(folder: Path, vid: str, seconds: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{vid}.npy", rng.standard_normal((seconds, 512)).astype(np.float16))


@pytest.mark.skipif(not (REAL / "msrvtt" / "MSRVTT_JSFUSION_test.csv").is_file(), reason="real data absent")
def test_real_msrvtt_test_csv_with_few_features(tmp_path):
    rng = np.random.default_rng(0)
    ds = tmp_path / "data" / "msrvtt"
    ds.mkdir(parents=True)
    (ds / "MSRVTT_JSFUSION_test.csv").symlink_to(REAL / "msrvtt" / "MSRVTT_JSFUSION_test.csv")
    rows = list(csv.DictReader(open(REAL / "msrvtt" / "MSRVTT_JSFUSION_test.csv")))
    assert len(rows) == 1000
    train = [f"video{n}" for n in range(6)]
    assert not set(train) & {r["video_id"] for r in rows}
    (ds / "MSRVTT_train.9k.csv").write_text("video_id\n" + "\n".join(train) + "\n")
    sentences = [
        {"video_id": v, "caption": f"a person does thing {k} in {v}", "sen_id": i * 3 + k}
        for i, v in enumerate(train)
        for k in range(3)
    ]
    (ds / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": sentences}))
    picked = [rows[i]["video_id"] for i in (0, 7, 300, 999)]
    for v in train + picked:
        _features(ds / "features", v, int(rng.integers(10, 40)), rng)

    with pytest.raises(InputError, match="996 of 1000 test videos"):
        run("msrvtt-retrieval", data=tmp_path / "data", preset="smoke", out=tmp_path / "x", progress=False, say=quiet)
    result, _ = run(
        "msrvtt-retrieval",
        data=tmp_path / "data",
        preset="smoke",
        out=tmp_path / "out",
        allow_missing=True,
        progress=False,
        say=quiet,
    )
    c = result.counts
    assert (c["test_examples"], c["test_clips"], c["missing_features_test_videos"]) == (4, 4, 996)
    assert (c["train_videos"], c["train_captions"], c["missing_features_train_videos"]) == (6, 18, 0)
    assert c["finetune_updates"] == 1  # 6 videos, batch 16, 1 epoch
    _, _, preds = load_predictions(tmp_path / "out" / PREDICTIONS)
    assert list(preds["ids"]) == picked  # file order of the pairs that have features
    assert score_file(tmp_path / "out" / PREDICTIONS)[1] == result.metrics


@pytest.mark.skipif(not (REAL / "youcook2" / "validation_youcook.csv").is_file(), reason="real data absent")
def test_real_youcook2_files_with_few_features(tmp_path):
    rng = np.random.default_rng(1)
    real = REAL / "youcook2"
    ds = tmp_path / "data" / "youcook2"
    ds.mkdir(parents=True)
    for name in ("youcookii_annotations_trainval.json", "train_list.txt", "validation_youcook.csv"):
        (ds / name).symlink_to(real / name)
    db = json.loads((real / "youcookii_annotations_trainval.json").read_text())["database"]
    train_vids = [line.split("/")[1] for line in (real / "train_list.txt").read_text().split()]
    test_rows = list(csv.DictReader(open(real / "validation_youcook.csv")))
    test_vids = list(dict.fromkeys(r["video_id"] for r in test_rows))
    # oJZUxU9szWA lists the span 120-252 twice with two sentences: both rows must survive with unique ids
    picked_test = [test_vids[0], "oJZUxU9szWA", test_vids[-1]]
    picked_train = train_vids[:2]
    for v in picked_train + picked_test:
        _features(ds / "features", v, int(db[v]["duration"]) + 1, rng)

    result, _ = run(
        "youcook2-retrieval",
        data=tmp_path / "data",
        preset="smoke",
        out=tmp_path / "out",
        pairs=["max_test=0"],
        allow_missing=True,
        progress=False,
        say=quiet,
    )
    c = result.counts
    n_test = sum(r["video_id"] in picked_test for r in test_rows)
    assert c["test_examples"] == n_test and c["test_videos"] == 3
    assert c["missing_features_test_videos"] == len(test_vids) - 3
    assert c["train_examples"] == sum(len(db[v]["annotations"]) for v in picked_train)
    assert c["train_videos"] == 2 and c["missing_features_train_videos"] == len(train_vids) - 2
    _, _, preds = load_predictions(tmp_path / "out" / PREDICTIONS)
    ids = list(preds["ids"])
    assert len(ids) == len(set(ids)) == n_test
    assert "oJZUxU9szWA_120_252" in ids and "oJZUxU9szWA_120_252#2" in ids
    a, b = ids.index("oJZUxU9szWA_120_252"), ids.index("oJZUxU9szWA_120_252#2")
    # one clip, encoded once: for either query its twin ties with the truth
    assert (preds["t2v_ge"] - preds["t2v_gt"])[[a, b]].min() >= 2
