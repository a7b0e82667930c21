"""The committed CI reference (results/reference/ci) learned: every task meets its `learned:` rule over floors
measured now on the same split and preset (issue 10's acceptance), and its noise.json (once measured) covers
>= 5 seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlmbench import registry
from vlmbench.floors import floor_baseline
from vlmbench.records.result import load_results
from vlmbench.reporting.compare import floor_checks
from vlmbench.suite import floor_kinds

REF = Path(__file__).resolve().parent.parent / "results" / "reference" / "ci"


@pytest.fixture(scope="module")
def everything():
    results = [r for r in load_results(REF) if not r.baseline]
    assert {r.task for r in results} == set(registry.all_tasks()) | {"pretrain"}
    return results


@pytest.fixture(scope="module")
def reference(everything):
    return [r for r in everything if r.task != "pretrain"]


def test_reference_pretraining_learned(everything):
    (pre,) = [r for r in everything if r.task == "pretrain"]
    assert pre.preset == "ci" and pre.toy and pre.counts["steps"] == 300
    assert pre.metrics["loss_drop"] > 1.0 and pre.metrics["loss_last"] < pre.metrics["loss_first"]


@pytest.mark.slow
def test_every_reference_task_learned(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("floors")
    floors = [
        floor_baseline(r.task, kind, out=out / r.task / f"floor-{kind}", preset="ci", say=lambda *_: None)
        for r in reference
        for kind in floor_kinds(r.task)
    ]
    checks = floor_checks(reference + floors)
    rules = sum(len(registry.get(r.task).learned) for r in reference)
    assert rules >= 8 and checks  # the rules are really there and were checked
    failures = {k: why for k, (_, why) in checks.items() if why}
    assert not failures, failures
    for r in reference:
        assert r.preset == "ci" and r.toy


@pytest.mark.skipif(not (REF / "noise.json").is_file(), reason="noise.json not measured yet (make update-noise)")
def test_reference_noise_has_five_seeds(everything):
    noise = json.loads((REF / "noise.json").read_text())
    assert len(noise["seeds"]) >= 5
    for r in everything:
        for metric in r.metrics:
            if "/" in metric:
                continue
            stats = noise["tasks"][r.task][metric]
            assert len(stats["values"]) == len(noise["seeds"]) and stats["min"] <= stats["mean"] <= stats["max"]


HELDOUT = REF.parent.parent / "heldout" / "ci-gate"  # seed25/ ... seed32/: the gate's eight suites under new seeds


def test_a_held_out_gate_passes():
    """results/heldout/ci-gate: the ci suite under eight seeds that are not noise.json's (25-32), its result files as
    `make ci-suite` writes them (seedS/, floors included). The gate must accept their mean against the seed mean:
    a seed change is not a regression, and every seed's counts and recipe values are the reference's exactly.
    (One seed alone need not pass: seeds 22 and 24 each failed the one-seed rule on retrieval, and are among
    noise.json's 25 since; the gate's mean of eight is what CI runs.)"""
    from vlmbench.reporting.compare import compare_paths, to_markdown

    noise = json.loads((REF / "noise.json").read_text())
    seeds = sorted({r.seed for r in load_results(HELDOUT)})
    assert seeds == list(range(25, 33)) and not set(seeds) & set(noise["seeds"])
    df, bad = compare_paths(HELDOUT, REF)
    assert not bad, to_markdown(df)
    assert len(df) >= 40 and set(df["status"]) == {"ok"} and df.attrs["new_seeds"] == seeds
