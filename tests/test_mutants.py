"""`make mutants` stays runnable: every patch applies to HEAD, the manifest names real patches and tasks, the
runner's planning, verdict parsing and table are right. Fast: no mutant is run here (that takes ~9 min: docs/ci-gate.md)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MUTANTS = REPO / "mutants"


def _runner():
    spec = importlib.util.spec_from_file_location("mutants_run", MUTANTS / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run = _runner()
MANIFEST = run.load_manifest()
SPECS = run.task_files()


@pytest.fixture(scope="module")
def head_tree(tmp_path_factory):
    """HEAD's vlmbench/ and tasks/ (the patches are against HEAD, not the working tree)."""
    dest = tmp_path_factory.mktemp("head")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD", "vlmbench", "tasks"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def test_manifest_entries_are_complete_and_unique():
    ids = [m["id"] for m in MANIFEST]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    patched = [m for m in MANIFEST if m["patch"]]
    assert len(patched) >= 12
    for m in MANIFEST:
        assert set(m) == {"id", "patch", "pretrain", "description", "tasks"}, m
        assert isinstance(m["pretrain"], bool) and m["description"].strip() and m["tasks"]
        assert not set(m["tasks"]) - set(SPECS), f"{m['id']}: unknown tasks {set(m['tasks']) - set(SPECS)}"
        assert len(m["tasks"]) == len(set(m["tasks"]))
    control = [m for m in MANIFEST if not m["patch"]]
    assert [m["id"] for m in control] == ["00"] and set(control[0]["tasks"]) == set(SPECS)


def test_every_patch_file_is_in_the_manifest():
    assert sorted(p.name for p in MUTANTS.glob("*.patch")) == sorted(m["patch"] for m in MANIFEST if m["patch"])


@pytest.mark.parametrize("m", [m for m in MANIFEST if m["patch"]], ids=lambda m: m["id"])
def test_patch_applies_cleanly_to_head(m, head_tree):
    patch = MUTANTS / m["patch"]
    assert patch.is_file(), patch
    r = subprocess.run(["git", "apply", "--check", str(patch)], cwd=head_tree, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # small: one file, a few changed lines (the kind of slip a refactor makes)
    text = patch.read_text()
    assert text.count("\n+++ ") + text.startswith("+++ ") == 1
    changed = [l for l in text.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    assert 1 <= len(changed) <= 12, changed


@pytest.mark.parametrize("m", [m for m in MANIFEST if m["patch"]], ids=lambda m: m["id"])
def test_patched_file_still_compiles(m, tmp_path):
    """A mutant must fail the gate by what it computes, not by a syntax error."""
    src = tmp_path / "src"
    run.export_head(src, MUTANTS / m["patch"])
    for line in (MUTANTS / m["patch"]).read_text().splitlines():
        if line.startswith("+++ b/vlmbench/") and line.endswith(".py"):
            compile((src / line[6:]).read_text(), line[6:], "exec")
        elif line.startswith("+++ b/tasks/"):  # laid out as the installed package: vlmbench/tasks/
            yaml.safe_load((src / "vlmbench" / line[6:]).read_text())


def test_pretrain_flag_matches_what_the_patch_touches():
    """Only code that pre-training runs may say pretrain: true (else the shared checkpoint is reused wrongly)."""
    pretrain_code = {
        "vlmbench/model/masks.py",
        "vlmbench/model/masking.py",
        "vlmbench/model/losses.py",
        "vlmbench/model/vlm.py",
        "vlmbench/train/optim.py",
        "vlmbench/train/pretrain.py",
    }
    for m in MANIFEST:
        if m["pretrain"]:
            files = {l[6:] for l in (MUTANTS / m["patch"]).read_text().splitlines() if l.startswith("+++ b/")}
            assert files <= pretrain_code, (m["id"], files)
            assert set(m["tasks"]) == set(SPECS), f"{m['id']}: a pre-training mutant reaches every task"


def test_plan_puts_a_margin_task_first():
    """crosstask-supervised's margin is over crosstask-zeroshot: the runner runs that one before it."""
    assert run.plan(["crosstask-supervised"], SPECS) == ["crosstask-zeroshot", "crosstask-supervised"]
    assert run.plan(["coin-segmentation"], SPECS) == ["coin-segmentation"]
    kinds, tasks = run.needs("coin-segmentation", SPECS)
    assert kinds == ["all-background"] and tasks == []


@pytest.mark.parametrize(
    "text,check",
    [
        ("| t | R@1 | 1 | 2 | 0.5 | below floor |", "below floor"),
        ("changed beyond noise: if intended, run `make update-reference`", "changed beyond noise"),
        ("| t | R@1 | 5 | 1 | -4 | 0.5 | regressed |", "regressed"),
        ("| t | R@1 | 5 | nan | | 0.5 | missing |", "missing metric"),
        ("| ❌ | coin-segmentation | count test_windows | 1280 | 1600 | differs |", "count/recipe differs"),
        ("| ❌ | msrvtt-mcqa | accuracy interval | 6.2 | 0.0 | -6.2 | interval collapsed |", "interval collapsed"),
        ("something else", "gate failed"),
    ],
)
def test_verdict_names_the_failed_check(text, check):
    assert run.verdict(text) == check


def test_table_and_exit_rule():
    rows = [
        {
            "mutant": "00",
            "description": "control",
            "tasks": ["a", "b"],
            "check": "none",
            "caught": False,
            "minutes": 3.04,
        },
        {"mutant": "01", "description": "mask", "tasks": ["a"], "check": "regressed", "caught": True, "minutes": 1.0},
        {"mutant": "02", "description": "ranks", "tasks": [], "check": "none", "caught": False, "minutes": 0},
    ]
    text = run.table(rows)
    lines = text.splitlines()
    assert lines[0] == "| mutant | description | tasks run | check failed | caught | minutes |"
    assert lines[2] == "| 00 | control | a, b | none | no (control: must be no) | 3.0 |"
    assert lines[3] == "| 01 | mask | a | regressed | yes | 1.0 |"
    assert lines[4] == "| 02 | ranks | - | none | no | 0.0 |"
    assert run.escaped(rows) == ["02"]
    rows[0]["caught"] = True
    assert run.escaped(rows) == ["00", "02"]


def test_unknown_mutant_id_is_refused(capsys):
    assert run.main(["--only", "99"]) == 2
    assert "unknown mutant ids 99" in capsys.readouterr().err


def test_make_mutants_calls_the_runner():
    dry = subprocess.run(
        ["make", "-n", "mutants", "ONLY=03,07", "PRESET=smoke"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "mutants/run.py --preset smoke --only 03,07" in dry.stdout


def test_the_copy_runs_instead_of_the_working_tree(tmp_path):
    """PYTHONPATH at the copy wins over the editable install (its meta-path finder is dropped by PRELUDE)."""
    src = tmp_path / "src"
    run.export_head(src, MUTANTS / "14-rank-counts-from-0.patch")
    code = (
        run.PRELUDE
        + "import vlmbench, importlib.resources as r; print(vlmbench.__file__); print(r.files('vlmbench.tasks'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(src)) and out[1].startswith(str(src)), out
    assert (
        "torch.gt(x, di, out=f), 1, dtype=self.cdt, out=self.t2v_ge"
        in (src / "vlmbench" / "metrics" / "retrieval_blocks.py").read_text()
    )


def test_verdict_reads_the_status_column_first():
    """A legend or hint line naming another check does not outrank the failing row's status."""
    out = "Legend: below floor = learning broke\n\n| ❌ | t | R@1 | 5 | 1 | -4 | 0.5 | regressed |\n"
    assert run.verdict(out) == "regressed"


def test_sanity_runs_only_for_patches_that_reach_the_metrics():
    by_id = {m["id"]: m for m in MANIFEST}
    assert run.reaches_metrics(None)  # the control runs it
    assert run.touched(MUTANTS / by_id["14"]["patch"]) == ["vlmbench/metrics/retrieval_blocks.py"]
    assert run.reaches_metrics(MUTANTS / by_id["14"]["patch"])
    assert run.reaches_metrics(MUTANTS / by_id["01"]["patch"])  # a mask: sanity's model rows
    assert run.reaches_metrics(MUTANTS / by_id["12"]["patch"])  # fine-tune lr: sanity's schedule row
    assert run.reaches_metrics(MUTANTS / by_id["09"]["patch"])  # window averaging: sanity has a row


@pytest.mark.slow
def test_baseline_is_keyed_by_what_pretraining_reads():
    """A commit that touches only adapters, metrics or the gate reuses the baseline checkpoint; one that touches
    the model, training, data or config does not."""
    now = run.pretrain_inputs("HEAD")
    assert set(now) == set(run.PRETRAIN_INPUTS) and all(len(v) == 40 for v in now.values())
    log = subprocess.run(
        ["git", "-C", str(REPO), "log", "--format=%H", "-n", "40"], capture_output=True, text=True, check=True
    ).stdout.split()
    for older in log[1:]:
        changed = subprocess.run(
            ["git", "-C", str(REPO), "diff", "--name-only", older, "HEAD", "--", *run.PRETRAIN_INPUTS],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert (run.pretrain_inputs(older) == now) == (not changed)


def test_an_identity_refusal_is_the_gate_failing_not_the_harness():
    """compare exits 2 when the new run read other data (mutant 19 drops a training video: data_fingerprint
    differs); .ci/run fails on that exit, so the mutant is caught. Other exit-2 errors stay the harness's."""
    refused = (
        "error: runs/x/msrvtt-retrieval/result.json: msrvtt-retrieval: data_fingerprint differs (new 'd3a1', "
        "reference 'd846'); these results measure different things; pass --force to compare them anyway"
    )
    assert run.refused_as_other_experiment(2, refused) and run.refusal(refused) == "refused: data_fingerprint differs"
    sig = "error: t: signature field n differs (new '999', reference '1000'); the numbers were measured"
    assert run.refused_as_other_experiment(2, sig) and run.refusal(sig) == "refused: signature field n differs"
    assert not run.refused_as_other_experiment(2, "error: results/reference/ci: no reference results found")
    assert not run.refused_as_other_experiment(1, refused)


def test_gate_seeds_are_the_makefiles():
    """The runner gates a mutant on the seeds CI runs (Makefile GATE_SEEDS), or it would judge another gate."""
    for preset in ("ci", "smoke"):
        out = subprocess.run(
            ["make", "-n", "ci-suite", f"REF_PRESET={preset}"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        loop = re.search(r"for s in ([0-9 ]+); do", out)
        assert loop and [int(x) for x in loop.group(1).split()] == run.gate_seeds(preset)


def test_only_per_seed_checks_stop_after_the_first_seed():
    """One seed's compare fails CI on its own only through a check every seed gets (counts, recipe, intervals, a
    missing metric); a regression on one seed is left to the mean of all of them."""
    differs = "| ❌ | coin-segmentation | count:test_windows | 1280 | 1600 | differs |"
    collapsed = (
        "| ❌ | t | R@1 | 5 | 1 | -4 | 0.5 | regressed |\n| ❌ | t | R@1 interval | 6 | 0 | -6 | interval collapsed |"
    )
    assert run.per_seed_verdict(differs) == "count/recipe differs"
    assert run.per_seed_verdict(collapsed) == "interval collapsed"
    assert run.per_seed_verdict("| ❌ | t | R@1 | 5 | 1 | -4 | 0.5 | regressed |") is None
    assert run.per_seed_verdict("| ❌ | t | R@1 | 5 | 1 | -4 | 0.5 | below floor |") is None
