"""The toy corpus makes caption-clip alignment matter under the `align` pre-training preset (issue 25): a pairing
shifted by one video moves the pre-training loss beyond the gate's one-run tolerance and CrossTask zero-shot recall
below every measured aligned seed, and the aligned pairing reproduces its measured seeds."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from scipy.stats import mannwhitneyu

from vlmbench import alignment
from vlmbench.alignment import METRICS, PRESET, measure, shifted_corpus
from vlmbench.config import PRESETS, pretrain_config
from vlmbench.data.toy import ensure_dataset
from vlmbench.reporting.compare import tolerance

SEEDS = Path(__file__).resolve().parents[1] / "results" / "reference" / "align" / "seeds.json"


def _reference() -> dict:
    return json.loads(SEEDS.read_text())


def _spread(side: dict, metric: str) -> tuple[float, float, int]:
    values = [run[metric] for run in side.values()]
    return statistics.mean(values), statistics.stdev(values), len(values)


def _tolerance(metric: str) -> tuple[float, float]:
    """(mean, the gate's one-run tolerance) of the aligned seeds."""
    mean, std, k = _spread(_reference()["aligned"], metric)
    return mean, tolerance(metric, std=std, seeds=k)


def test_the_reference_separates_the_pairings():
    ref = _reference()
    assert ref["preset"] == PRESET and len(ref["aligned"]) >= 8 and len(ref["shifted"]) >= 3
    # the pre-training loss: every shifted seed lies beyond the gate's one-run tolerance of the aligned seeds
    mean, tol = _tolerance("loss_last")
    assert all(run["loss_last"] - mean > tol for run in ref["shifted"].values()), tol
    # zero-shot recall: its seed spread is wide (std ~12 points), so the pairings are told apart by rank: every
    # shifted seed below every aligned one, exact one-sided Mann-Whitney p = 1 / C(n + m, m) < 0.01
    aligned = [run["recall"] for run in ref["aligned"].values()]
    shifted = [run["recall"] for run in ref["shifted"].values()]
    assert max(shifted) < min(aligned)
    p = mannwhitneyu(shifted, aligned, alternative="less", method="exact").pvalue
    assert p == pytest.approx(1 / math.comb(len(aligned) + len(shifted), len(shifted))) and p < 0.01


def test_the_align_preset_is_the_one_measured():
    cfg = pretrain_config(PRESET)
    assert cfg.backbone == "tiny" and cfg.init_range == 0.1 and cfg.steps == 1500 and cfg.max_text_len == 16
    # the ci preset keeps BERT's own init: its references were measured with it
    assert pretrain_config("ci").init_range == 0.0 and "init_range" not in PRESETS["ci"]


def test_shifted_corpus_moves_each_videos_captions_to_the_next(tmp_path):
    src = ensure_dataset("howto100m", say=lambda s: None)
    before = json.loads((src / "captions.json").read_text())
    after = json.loads((shifted_corpus(src, tmp_path / "shifted") / "captions.json").read_text())
    ids = sorted(before)
    assert sorted(after) == ids and after[ids[0]] == before[ids[1]] and after[ids[-1]] == before[ids[0]]
    assert any((tmp_path / "shifted" / "features").iterdir())  # the features are reachable (linked)


def test_update_align_writes_the_layout_the_tests_read(tmp_path, monkeypatch):
    """`make update-align`'s main, its pre-training replaced by a stand-in (the real one: the slow test below)."""
    calls = []

    def fake(seed, out, data=None, say=None):
        calls.append((seed, data is None))
        return {"loss_last": 3.0 + (data is not None), "recall": 40.0 - 30 * (data is not None) + seed}

    monkeypatch.setattr(alignment, "measure", fake)
    out = tmp_path / "seeds.json"
    alignment.main(
        ["--seeds", "0", "1", "2", "--shifted-seeds", "0", "1", "--work", str(tmp_path / "w"), "--out", str(out)]
    )
    got = json.loads(out.read_text())
    assert calls == [(0, True), (1, True), (2, True), (0, False), (1, False)]
    assert (
        got["preset"] == PRESET and sorted(got["aligned"]) == ["0", "1", "2"] and sorted(got["shifted"]) == ["0", "1"]
    )
    assert got["shifted"]["1"] == {"loss_last": 4.0, "recall": 11.0} and "git_sha" in got["provenance"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("align")
    shifted = shifted_corpus(ensure_dataset("howto100m", say=lambda s: None), work / "howto100m-shifted")
    return {
        "aligned": measure(0, work / "aligned"),
        "shifted": measure(0, work / "shifted", data=shifted),
    }


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_shifted_pairing_moves_pretraining_and_zero_shot(runs):
    ref = _reference()
    for metric in METRICS:  # the aligned pairing reproduces its measured seeds
        mean, tol = _tolerance(metric)
        got = runs["aligned"][metric]
        assert abs(got - mean) <= tol, f"aligned seed 0: {metric} {got} vs the seeds' {mean:.4f} +- {tol:.4f}"
    mean, tol = _tolerance("loss_last")
    moved = runs["shifted"]["loss_last"] - runs["aligned"]["loss_last"]
    assert moved > tol, f"shifted captions moved loss_last by {moved:.4f}, tolerance {tol:.4f}"
    lowest = min(run["recall"] for run in ref["aligned"].values())
    assert runs["shifted"]["recall"] < lowest, (runs["shifted"]["recall"], lowest)
