"""`vlmbench report` and `vlmbench compare` as commands: formats, the toy label, exit codes on regression for a
higher-is-better metric and for median rank (lower is better), tolerances, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "smoke"  # real results of a smoke suite run


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def _edit(src: Path, dst: Path, task: str, metric: str, delta: float) -> Path:
    """A copy of the reference results with one metric of one task moved by delta."""
    shutil.copytree(src, dst)
    path = dst / task / "result.json"
    rec = json.loads(path.read_text())
    rec["metrics"][metric] += delta
    path.write_text(json.dumps(rec))
    return dst


@pytest.fixture(scope="module")
def new_run() -> Path:
    if not (REFERENCE / "youcook2-retrieval" / "result.json").is_file():
        pytest.fail("results/reference/smoke is missing: run `make update-reference`")
    return REFERENCE


# The smoke reference learns nothing by design, so these CLI tests of comparison and identity pass --no-floors
# (the learned rules are the ci preset's: tests/test_gate.py, tests/test_ci_reference.py).
NF = "--no-floors"


def test_compare_same_results_exit_0_markdown_table(new_run):
    r = _cli("compare", new_run, new_run, NF)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("**all ") and lines[0].endswith(" metrics ok**")
    # what was compared is stated above the table
    assert lines[2].startswith("Compared 8 reference tasks: preset smoke; toy toy world; backbone tiny")
    assert "data_fingerprint " in lines[2]
    # the reference's intervals give each row a minimum detectable effect (no test: the tolerance decides)
    assert lines[4] == "| | task | metric | ref | new | delta | tolerance | floor | MDE | test | p | status |"
    assert any(line.startswith("| ✅ | youcook2-retrieval | R@1 |") for line in lines)
    assert "❌" not in r.stdout


@pytest.mark.parametrize(
    "field, edit",
    [
        ("preset", lambda rec: rec.update(preset="toy")),
        ("toy", lambda rec: rec.update(toy=False)),
        ("backbone", lambda rec: rec["config"].update(backbone="default")),
        ("split", lambda rec: rec.update(split="validation")),
        ("data_fingerprint", lambda rec: rec["provenance"].update(data_fingerprint="0123456789abcdef")),
    ],
)
@pytest.mark.slow
def test_compare_refuses_results_of_another_experiment(new_run, tmp_path, field, edit):
    """Planted: one identity field of one task changed -> exit 2 naming the field; --force compares anyway."""
    other = tmp_path / "other"
    shutil.copytree(new_run, other)
    path = other / "msrvtt-mcqa" / "result.json"
    rec = json.loads(path.read_text())
    edit(rec)
    path.write_text(json.dumps(rec))
    r = _cli("compare", other, new_run, NF)
    assert r.returncode == 2 and f"{field} differs" in r.stderr and "--force" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    forced = _cli("compare", other, new_run, "--force", NF)
    assert forced.returncode == 0 and "--force: identity checks skipped" in forced.stdout


@pytest.mark.parametrize(
    "metric, delta, code, status",
    [
        ("R@1", +1.0, 1, "regressed"),  # reference higher than the new run: worse
        ("R@1", -1.0, 1, "changed beyond noise"),  # better beyond tolerance: unexplained, fails
        ("R@1", +0.4, 0, "ok"),  # within the default 0.5-point tolerance
        ("MedR", -1.0, 1, "regressed"),  # reference rank lower (better) than the new run's: worse
        ("MedR", +1.0, 1, "changed beyond noise"),
    ],
)
@pytest.mark.slow
def test_compare_direction_and_exit_code(new_run, tmp_path, metric, delta, code, status):
    ref = _edit(new_run, tmp_path / "ref", "youcook2-retrieval", metric, delta)
    r = _cli("compare", new_run, ref, NF)
    assert r.returncode == code, r.stdout + r.stderr
    row = next(
        line
        for line in r.stdout.splitlines()
        if line.startswith(
            ("| ✅ | youcook2-retrieval | " + metric + " |", "| ❌ | youcook2-retrieval | " + metric + " |")
        )
    )
    assert row.endswith(f"| {status} |")
    assert row.startswith("| ❌") == (code == 1)
    if code:
        assert r.stdout.startswith("**1 of ")


@pytest.mark.slow
def test_compare_tolerance_option_and_missing_task(new_run, tmp_path):
    ref = _edit(new_run, tmp_path / "ref", "youcook2-retrieval", "R@1", +1.0)
    assert _cli("compare", new_run, ref, "--tol", "R@1=1.5", NF).returncode == 0
    assert _cli("compare", new_run, ref, "--tol", "*=0.1", NF).returncode == 1  # R@1 has no own default
    # a task of the reference absent from the new results is a failure (missing), not a pass
    partial = tmp_path / "partial"
    shutil.copytree(new_run, partial)
    shutil.rmtree(partial / "msrvtt-mcqa")
    r = _cli("compare", partial, new_run, NF)
    assert r.returncode == 1 and "| ❌ | msrvtt-mcqa | accuracy |" in r.stdout and "missing" in r.stdout


@pytest.mark.slow
def test_compare_bad_input_is_exit_2(tmp_path, new_run):
    r = _cli("compare", tmp_path / "nope", new_run)
    assert r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    r = _cli("compare", new_run, new_run, "--tol", "R@1=lots", NF)
    assert r.returncode == 2 and "--tol" in r.stderr
    (tmp_path / "empty").mkdir()
    r = _cli("compare", new_run, tmp_path / "empty")
    assert r.returncode == 2 and "no reference results" in r.stderr


def test_compare_help_states_the_default_tolerances():
    r = _cli("compare", "--help")
    text = " ".join(r.stdout.replace("│", " ").split())  # the option's help wraps inside its box
    assert r.returncode == 0 and "0.5" in text and "CIDEr 0.01" in text and "MedR 0.5" in text


@pytest.mark.slow
def test_report_labels_toy_results_in_every_format(new_run):
    import os

    # a wide terminal (under pytest a child process sees COLUMNS=80, where rich rightly wraps long labels)
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "report", str(new_run / "youcook2-retrieval")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert r.returncode == 0, r.stderr
    # a table of its own below the paper's Table 3 rows, every row labelled
    title = "youcook2-retrieval: smoke preset on the toy world (a plumbing check): not comparable with published"
    assert title in r.stdout and r.stdout.index("│ paper ") < r.stdout.index(title)
    assert "│ ours (smoke) │" in r.stdout and "VLM" in r.stdout
    md = _cli("report", new_run, "--format", "markdown").stdout
    assert md.startswith("## vlmbench report\n\n> smoke preset: a plumbing check of the harness")
    assert md.count(": smoke preset on the toy world (a plumbing check)") == 8  # seven tasks + the pre-training
    assert md.count("| toy world: not comparable with published numbers; smoke preset: a plumbing check") == 8
    js = json.loads(_cli("report", new_run, "--format", "json", "--against", "none").stdout)
    # the smoke preset's meaning, the toy label; the smoke reference's tiny backbone is named beside the paper's
    # (issue 9, point 8)
    assert js["notes"][1:] == [
        "toy world: not comparable with published numbers",
        "smoke preset: a plumbing check",
        "backbone: tiny random BERT (2 layers, hidden 64) (paper: bert-base-uncased)",
    ]
    assert js["notes"][0].startswith("smoke preset: a plumbing check of the harness")
    assert {row["kind"] for row in js["rows"]} == {"ours"} and len(js["rows"]) == 8  # no paper rows
    csv = _cli("report", new_run / "msrvtt-mcqa", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("task,kind,label,source,note,accuracy")
    assert any(line.startswith("msrvtt-mcqa,paper,VLM,") for line in csv)


@pytest.mark.slow
def test_report_at_80_columns_keeps_every_number_whole():
    """Issue 22: at 80 columns every terminal cell was cut ('4.…'). `vlmbench report --ci` of the ci reference
    as a user's 80-column terminal shows it: each number of each table whole with its interval."""
    import os
    import re
    from collections import Counter

    from vlmbench.records.result import load_results
    from vlmbench.reporting.tables import report_frame, report_tables

    ci = REPO / "results" / "reference" / "ci"
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", "report", str(ci), "--ci"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert r.returncode == 0, r.stderr
    number = r"[-+]?\d+\.\d+"
    cell = re.compile(rf"(?<![\w.\[-]){number}(?: \[{number}, {number}\])?(?![\w.])")
    shown = Counter(cell.findall(r.stdout))
    tables = report_tables(report_frame(load_results(ci)), ci=True)
    expected = Counter(v for t in tables for c in t.numeric for v in t.frame[c] if cell.fullmatch(v))
    [msr] = [x for x in load_results(ci / "msrvtt-retrieval") if not x.baseline]
    lo, hi = msr.intervals["R@1"]
    assert f"{msr.metrics['R@1']:.2f} [{lo:.2f}, {hi:.2f}]" in expected and not expected - shown, dict(expected - shown)
    # a protocol signature is one string to copy and match, never wrapped; every table line fits
    assert max(len(line) for line in r.stdout.splitlines() if not line.startswith("signature: vlmbench|")) <= 80


@pytest.mark.slow
def test_report_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _cli("report", tmp_path / "empty")
    assert r.returncode == 2 and "no result files found" in r.stderr
    r = _cli("report", tmp_path / "empty", "--against", "arxiv")
    assert r.returncode == 2 and "--against" in r.stderr
    bad = tmp_path / "bad" / "result.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": "vlmbench.result/1"}')
    r = _cli("report", bad)
    assert r.returncode == 2 and "missing key 'task'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_score_prints_each_metrics_interval(tmp_path):
    import numpy as np

    from vlmbench.adapters.mcqa import MCQAAdapter
    from vlmbench.records.predictions import save_predictions

    correct = np.array([1, 0] * 50)
    scores = np.zeros((100, 5))
    scores[np.arange(100), np.where(correct, 0, 1)] = 1.0
    preds = {"scores": scores, "answers": np.zeros(100, np.int64), "ids": np.array([f"q{i}" for i in range(100)])}
    preds.update(MCQAAdapter.per_example(preds, {}))
    save_predictions(tmp_path / "predictions.npz", "msrvtt-mcqa", {}, preds)
    r = _cli("score", tmp_path / "predictions.npz")
    assert r.returncode == 0, r.stderr
    lo, hi = (float(x) for x in r.stdout.split("95% CI [")[1].split("]")[0].split(", "))
    assert "accuracy: 50.0000" in r.stdout and 38 < lo < 45 and 55 < hi < 62  # ±~10 points at n = 100
