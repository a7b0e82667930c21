"""The captioning adapter end to end: toy world (smoke preset, tiny backbone), real-format annotations with
synthesised features, missing java, skip_meteor, captions.csv."""

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from vlmbench import registry, runner
from vlmbench.adapters.captioning import CAPTIONS_CSV, CaptioningAdapter
from vlmbench.config import run_config
from vlmbench.data import toy, youcook2
from vlmbench.errors import InputError
from vlmbench.metrics.captioning import caption_metrics
from vlmbench.model.caption import teacher_forcing
from vlmbench.model.text import tokenize
from vlmbench.model.vlm import VLM
from vlmbench.records.result import load_result

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
METRICS = ["BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")


@pytest.fixture(scope="session")
def cache_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("vlmbench-cache")


@pytest.fixture(scope="module", autouse=True)
def toy_cache(cache_folder):
    """A private toy-world cache, so these tests never touch (or depend on) ~/.cache/vlmbench; restored after
    this module so other test files keep their own."""
    folder = cache_folder
    old = os.environ.get("VLMBENCH_CACHE")
    os.environ["VLMBENCH_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("VLMBENCH_CACHE", None)
    else:
        os.environ["VLMBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny VLM: the runs below test the pipeline, not toy pre-training (tested elsewhere)."""
    return VLM.from_backbone("tiny", seed=0).save(tmp_path_factory.mktemp("ckpt"))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_java
@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path, tiny_checkpoint):
    result, extra = runner.run(
        "youcook2-caption", preset="smoke", checkpoint=tiny_checkpoint, out=tmp_path, progress=False, say=lambda s: None
    )
    assert set(METRICS) <= set(result.metrics) and all(math.isfinite(result.metrics[m]) for m in METRICS)
    assert result.counts["test_clips"] == 32 and result.counts["train_clips"] == 64
    assert result.counts["finetune_updates"] == 4  # 64 clips / batch 16, 1 epoch
    assert result.conventions["tokenize"].startswith("used: whitespace") and "beam 5" in result.conventions["decoding"]
    assert "not_computed" not in result.conventions
    saved = load_result(tmp_path / "result.json")
    assert saved.metrics == pytest.approx(result.metrics)

    task, metrics, *_ = runner.score_file(tmp_path / "predictions.npz")
    assert task == "youcook2-caption" and metrics == pytest.approx(result.metrics, rel=1e-9)

    _, _, preds = runner.load_predictions(tmp_path / "predictions.npz")
    # the predictions, plus the per-example statistics the bootstrap intervals resample
    # (+ each clip's beam and greedy outputs scored by the search objective: search_gain, the decoder's self-check;
    # + each clip's source video: clips of one video are resampled together, example:cluster)
    assert {k for k in preds if not k.startswith("example:")} == {
        "ids",
        "hypotheses",
        "references",
        "beam_score",
        "greedy_score",
        "source_video",
    }
    assert preds["example:cluster"].tolist() == preds["source_video"].tolist()
    assert len(set(preds["source_video"])) == result.counts["test_videos"] < 32
    assert "unit: video (32 clips in" in result.conventions["interval"]
    assert result.metrics["search_gain"] == pytest.approx(float(np.mean(preds["beam_score"] - preds["greedy_score"])))
    assert len(preds["ids"]) == 32 and all(len(preds[k]) == 32 for k in preds if k.startswith("example:"))
    # ids and references are the first 32 validation segments, decoded like the hypotheses (lower-case)
    root = toy.toy_root(0) / "youcook2"
    anns = youcook2.load_annotations(root / "youcookii_annotations_trainval.json")
    expected = youcook2.caption_clips(anns, youcook2.load_split_list(root / "val_list.txt"))[:32]
    assert list(preds["ids"]) == [c.clip_id for c in expected]
    assert list(preds["references"]) == [c.text.lower() for c in expected]
    assert all(h.strip() for h in preds["hypotheses"])

    rows = read_csv(tmp_path / CAPTIONS_CSV)
    assert len(rows) == 32 and list(rows[0]) == ["clip_id", "hypothesis", "reference", "cider"]
    scores = [float(r["cider"]) for r in rows]
    assert scores == sorted(scores)  # worst first
    assert {r["clip_id"] for r in rows} == set(preds["ids"])
    assert extra["captions_csv"] == str(tmp_path / CAPTIONS_CSV)
    worst, best = extra["examples"].values()
    assert worst[0][0] == rows[0]["clip_id"] and best[0][0] == rows[-1]["clip_id"]


def test_missing_java_fails_before_any_model_work(tmp_path, monkeypatch, toy_cache):
    monkeypatch.setenv("PATH", "")
    before = sorted(p.name for p in toy_cache.rglob("*"))
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="java"):
        runner.run("youcook2-caption", preset="smoke", out=tmp_path / "run", progress=False, say=lambda s: None)
    assert time.perf_counter() - t0 < 5
    assert sorted(p.name for p in toy_cache.rglob("*")) == before  # no toy data, no pre-training
    assert not (tmp_path / "run").exists()


def test_skip_meteor_runs_without_java(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.setenv("PATH", "")
    result, _ = runner.run(
        "youcook2-caption",
        preset="smoke",
        checkpoint=tiny_checkpoint,
        out=tmp_path,
        pairs=["skip_meteor=true", "max_test=12", "decode=greedy"],
        progress=False,
        say=lambda s: None,
    )
    assert math.isnan(result.metrics["METEOR"]) and "METEOR" in result.conventions["not_computed"]
    assert all(math.isfinite(result.metrics[m]) for m in METRICS if m != "METEOR")
    assert result.counts["test_clips"] == 12
    assert math.isnan(load_result(tmp_path / "result.json").metrics["METEOR"])
    assert len(read_csv(tmp_path / CAPTIONS_CSV)) == 12


def test_score_matches_metric_function():
    preds = {
        "ids": np.array(["a_0", "a_1", "b_0"]),
        "hypotheses": np.array(["cut the onion", "add salt", "none"]),
        "references": np.array(["cut the onion", "add the salt", "stir the soup"]),
    }
    metrics, conventions = CaptioningAdapter.score(preds, {"skip_meteor": True, "tokenize": "whitespace"})
    direct = caption_metrics(
        dict(zip(preds["ids"], preds["hypotheses"])), dict(zip(preds["ids"], preds["references"])), meteor=False
    )
    assert list(metrics) == METRICS
    assert all(metrics[k] == direct[k] for k in METRICS if k != "METEOR") and math.isnan(metrics["METEOR"])
    assert metrics["CIDEr"] > 0 and conventions["tokenize"].startswith("used: whitespace")
    assert conventions["not_computed"].startswith("METEOR")
    preds["ids"] = np.array(["a_0", "a_0", "b_0"])
    with pytest.raises(InputError, match="repeated"):
        CaptioningAdapter.score(preds, {"skip_meteor": True, "tokenize": "whitespace"})


# ---- data loading on a small real-format dataset ----------------------------------------------------------------
def write_dataset(root: Path, videos: dict, train: list[str], val: list[str], features: dict[str, int]) -> Path:
    folder = root / "youcook2"
    (folder / "features").mkdir(parents=True)
    (folder / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": videos}))
    (folder / "train_list.txt").write_text("".join(f"{videos[v]['recipe_type']}/{v}\n" for v in train))
    (folder / "val_list.txt").write_text("".join(f"{videos[v]['recipe_type']}/{v}\n" for v in val))
    rng = np.random.default_rng(0)
    for vid, seconds in features.items():
        np.save(folder / "features" / f"{vid}.npy", rng.standard_normal((seconds, 512)).astype(np.float16))
    return root


def adapter_for(root: Path, allow_missing=False, pairs=()) -> CaptioningAdapter:
    spec = registry.get("youcook2-caption")
    return CaptioningAdapter(
        spec, run_config(spec, "smoke", list(pairs)), root, allow_missing=allow_missing, say=lambda s: None
    )


def video(subset, segments):
    return {
        "subset": subset,
        "recipe_type": "101",
        "duration": 100.0,
        "video_url": "",
        "annotations": [{"segment": s, "id": i, "sentence": t} for i, (s, t) in enumerate(segments)],
    }


def test_load_slices_cuts_and_batches(tmp_path):
    videos = {
        "trainA": video("training", [([2, 6], "Cut the Onion."), ([10, 50], "it's a long step")]),
        "valA": video("validation", [([0, 3], "Stir it, don't burn")]),
    }
    root = write_dataset(tmp_path, videos, ["trainA"], ["valA"], {"trainA": 60, "valA": 5})
    ad = adapter_for(root)
    ad.load()
    assert [c.clip_id for c in ad.train_clips] == ["trainA_0", "trainA_1"]
    assert ad.references == ["stir it, don't burn"]  # decoded like a hypothesis
    feats = np.load(root / "youcook2" / "features" / "trainA.npy").astype(np.float32)
    v, m = ad.videos(ad.train_clips)
    assert m.sum(1).tolist() == [4, 32]  # [10:50] is cut to the first 32 s
    np.testing.assert_array_equal(v[1].numpy(), feats[10:42])
    np.testing.assert_array_equal(v[0, :4].numpy(), feats[2:6])
    assert not v[0, 4:].any()
    batch = next(ad.train_batches(0, np.random.default_rng(0)))
    assert batch["video"].shape == (2, 32, 512) and sorted(batch["texts"]) == ["Cut the Onion.", "it's a long step"]
    # what VLM's caption_loss teaches on them: [BOS] t1..tn -> t1..tn [SEP] (model.caption.teacher_forcing)
    tok = ad.tokenizer("cut the onion.", add_special_tokens=False)["input_ids"]
    ids, _, labels = teacher_forcing(tokenize(ad.tokenizer, batch["texts"]))
    row = batch["texts"].index("Cut the Onion.")
    assert ids[row, 1 : len(tok) + 1].tolist() == tok and labels[row, : len(tok) + 1].tolist() == tok + [102]
    assert ad.steps_per_epoch() == 1
    assert ad.loaded.counts["train_videos"] == 1 and ad.loaded.counts["test_clips"] == 1


def test_missing_features_policy(tmp_path):
    videos = {
        "t1": video("training", [([0, 4], "a")]),
        "t2": video("training", [([0, 4], "b")]),
        "v1": video("validation", [([0, 4], "c")]),
    }
    root = write_dataset(tmp_path, videos, ["t1", "t2"], ["v1"], {"t1": 10, "v1": 10})
    with pytest.raises(InputError, match="allow-missing"):
        adapter_for(root).load()
    ad = adapter_for(root, allow_missing=True)
    ad.load()
    assert [c.vid for c in ad.train_clips] == ["t1"]
    assert ad.loaded.counts["missing_features_training_videos"] == 1


@pytest.mark.skipif(not (REAL / "youcook2").is_dir(), reason="real annotation files not present")
@pytest.mark.slow
def test_real_annotations_end_to_end(tmp_path, tiny_checkpoint):
    src = REAL / "youcook2"
    data = tmp_path / "data"
    (data / "youcook2" / "features").mkdir(parents=True)
    for name in ("youcookii_annotations_trainval.json", "train_list.txt", "val_list.txt"):
        shutil.copy(src / name, data / "youcook2" / name)
    anns = youcook2.load_annotations(src / "youcookii_annotations_trainval.json")
    train_ids = youcook2.load_split_list(src / "train_list.txt")[:3]
    val_ids = youcook2.load_split_list(src / "val_list.txt")[:2]
    rng = np.random.default_rng(0)
    for vid in train_ids + val_ids:  # synthesised S3D-like features, 1 row per second
        seconds = int(math.ceil(anns[vid].duration))
        np.save(data / "youcook2" / "features" / f"{vid}.npy", rng.standard_normal((seconds, 512)).astype(np.float16))
    out = tmp_path / "run"
    result, _ = runner.run(
        "youcook2-caption",
        data=data,
        checkpoint=tiny_checkpoint,
        out=out,
        preset="smoke",
        allow_missing=True,
        pairs=["skip_meteor=true", "decode=greedy", "max_new_tokens=8"],
        progress=False,
        say=lambda s: None,
    )
    n_val = sum(len(anns[v].segments) for v in val_ids)
    assert result.counts["test_clips"] == min(32, n_val) and result.counts["test_videos"] == 2
    assert result.counts["missing_features_training_videos"] == 1330
    assert result.counts["missing_features_validation_videos"] == 455
    assert not result.toy and math.isfinite(result.metrics["CIDEr"])
    _, _, preds = runner.load_predictions(out / "predictions.npz")
    first = anns[val_ids[0]].segments[0].sentence
    assert preds["ids"][0] == f"{val_ids[0]}_0" and preds["references"][0] == " ".join(first.lower().split())
    assert all(len(h.split()) <= 8 for h in preds["hypotheses"])  # WordPieces join: words <= tokens


@needs_java
@pytest.mark.parametrize("skip", [False, True])
def test_meteor_starts_when_the_data_is_loaded(toy_cache, skip):
    """METEOR's JVM (~6 s to load) starts with the run's data (warm_up, which a run calls after load), so its
    start-up overlaps fine-tuning and decoding; loading alone (data check) starts none, nor skip_meteor=true."""
    from vlmbench.metrics import meteor

    meteor.close_shared()
    toy.ensure_dataset("youcook2", say=lambda s: None)
    spec = registry.get("youcook2-caption")
    adapter = CaptioningAdapter(spec, run_config(spec, "smoke", [f"skip_meteor={str(skip).lower()}"]), toy.toy_root())
    adapter.load()
    assert meteor._shared is None
    adapter.warm_up()
    started = meteor._shared is not None and meteor._shared.alive
    meteor.close_shared()
    assert started is not skip
