"""The CI gate's verdicts (issue 10): worse / better beyond noise / below floor / missing, tolerances from
noise.json, `learned:` rules parsed from task files, and a seed-only change accepted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmbench import registry
from vlmbench.errors import InputError
from vlmbench.records.result import Result, save_result
from vlmbench.reporting.compare import BEYOND_NOISE, compare_paths, to_markdown, tolerance
from vlmbench.reporting.noise import main as noise_main
from vlmbench.reporting.noise import noise_from_runs

REPO = Path(__file__).resolve().parents[1]


def res(task, seed=0, baseline=None, **metrics) -> Result:
    return Result(task=task, metrics=metrics, toy=True, preset="smoke", seed=seed, baseline=baseline)


def suite_dir(root: Path, seed=0, r1=30.0, v2t=30.0, floor=1.6, floors=True) -> Path:
    """A suite-shaped folder for msrvtt-retrieval (its rules: R@1 and v2t_R@1 >= 5 x random)."""
    save_result(res("msrvtt-retrieval", seed, **{"R@1": r1, "v2t_R@1": v2t}), root / "msrvtt-retrieval" / "result.json")
    if floors:
        save_result(
            res("msrvtt-retrieval", seed, "random", **{"R@1": floor, "v2t_R@1": floor}),
            root / "msrvtt-retrieval" / "floor-random" / "result.json",
        )
    return root


def ref_dir(tmp_path, **kw) -> Path:
    from vlmbench.suite import save_reference

    return save_reference(suite_dir(tmp_path / "refrun", **kw), tmp_path / "ref")


def verdicts(df):
    return {(t, m): s for t, m, s in zip(df.task, df.metric, df.status)}


def test_learned_rules_are_parsed_from_the_task_files():
    rules = registry.get("msrvtt-retrieval").learned
    assert [(r.metric, r.over, r.margin, r.value) for r in rules] == [
        ("R@1", "random", "times", 5.0),
        ("v2t_R@1", "random", "times", 5.0),
    ]
    sup = registry.get("crosstask-supervised").learned
    assert {r.over for r in sup} == {"random", "crosstask-zeroshot"}
    assert [r.threshold(None) for r in registry.get("youcook2-caption").learned if r.margin == "at_least"]


@pytest.mark.parametrize(
    "entry, says",
    [
        ("- {metric: R@1, over: random}", "learned[0]: exactly one of times, plus, at_least"),
        ("- {metric: R@1, over: random, times: -1}", "learned[0].times: expected a non-negative number"),
        ("- {metric: R@1, times: 5}", "learned[0].over"),
        ("- {metric: R@1, over: random, times: 5, by: 2}", "learned[0]: unknown keys by"),
        ("- {metric: R@1, over: all-background, times: 5}", "learned[0].over: 'all-background' is neither a task"),
    ],
)
def test_bad_learned_entry_names_file_and_key(tmp_path, entry, says):
    text = (REPO / "tasks" / "msrvtt-retrieval.yaml").read_text()
    text = text[: text.index("learned:")] + "learned:\n  " + entry + "\n"
    (tmp_path / "msrvtt-retrieval.yaml").write_text(text)
    with pytest.raises(InputError, match="msrvtt-retrieval.yaml") as e:
        registry.get("msrvtt-retrieval", tmp_path)
    assert says in str(e.value)
    assert registry.all_tasks(tmp_path) == {}  # kept aside, with its problem:
    assert says in str(registry.broken_tasks(tmp_path)["msrvtt-retrieval"])


@pytest.mark.slow
def test_bad_learned_entry_is_one_line_exit_2(tmp_path):
    """Through the CLI: a broken task file (the tasks dir pointed at a copy) is one line and exit 2."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for p in (REPO / "tasks").glob("*.yaml"):
        (tasks / p.name).write_text(p.read_text())
    bad = tasks / "msrvtt-mcqa.yaml"
    bad.write_text(bad.read_text().replace("times: 2", "times: two"))
    code = (
        "import sys, pathlib; from vlmbench import registry; registry.TASKS_DIR = pathlib.Path(sys.argv[1]);"
        "from vlmbench.cli import main; "
        "sys.argv = ['vlmbench', 'tasks']; main()"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tasks)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "msrvtt-mcqa.yaml" in lines[0] and "learned[0].times" in lines[0], r.stderr


def test_worse_than_reference_fails(tmp_path):
    df, bad = compare_paths(suite_dir(tmp_path / "new", r1=28.0), ref_dir(tmp_path))
    assert bad and verdicts(df)[("msrvtt-retrieval", "R@1")] == "regressed"


def test_better_beyond_noise_fails_with_the_update_hint(tmp_path):
    df, bad = compare_paths(suite_dir(tmp_path / "new", r1=33.0), ref_dir(tmp_path))
    assert bad and verdicts(df)[("msrvtt-retrieval", "R@1")] == "changed beyond noise"
    assert BEYOND_NOISE in to_markdown(df)


def test_below_floor_fails_naming_rule_and_numbers(tmp_path):
    ref = ref_dir(tmp_path, r1=7.0, v2t=7.0)  # the reference itself need not pass for the new run to fail
    df, bad = compare_paths(suite_dir(tmp_path / "new", r1=7.0, v2t=7.0), ref)
    assert bad and verdicts(df)[("msrvtt-retrieval", "R@1")] == "below floor"
    md = to_markdown(df)
    assert "R@1 >= 5 x random needs 8 (floor 1.6), got 7" in md
    assert "| 8.00 | below floor |" in md  # the floor column shows the rule's threshold
    # floors come from the NEW results: a missing floor run fails too in the CI gate (--require-floors)
    df, bad = compare_paths(suite_dir(tmp_path / "nofloor", floors=False), ref, require_floors=True)
    assert bad and "missing floor" in to_markdown(df)
    # and a learned run above its floor passes
    assert not compare_paths(suite_dir(tmp_path / "ok", r1=7.0, v2t=7.0, floor=1.0), ref)[1]


def test_over_another_task_uses_its_new_result(tmp_path):
    new, ref = tmp_path / "new", tmp_path / "ref"
    for root, sup in ((ref, 30.0), (new, 12.0)):
        save_result(res("crosstask-zeroshot", recall=10.0), root / "crosstask-zeroshot" / "result.json")
        save_result(res("crosstask-supervised", recall=sup), root / "crosstask-supervised" / "result.json")
        save_result(
            res("crosstask-supervised", 0, "random", recall=5.0),
            root / "crosstask-supervised" / "floor-random" / "result.json",
        )
    df, bad = compare_paths(new, ref, tol={"recall": 100})
    assert bad and "recall >= + 5 over crosstask-zeroshot needs 15 (floor 10), got 12" in to_markdown(df)


def test_tolerance_from_noise_json(tmp_path):
    runs = []
    for seed, r1 in enumerate([29.0, 30.0, 31.0, 30.0, 30.0]):
        runs.append(suite_dir(tmp_path / f"s{seed}", seed=seed, r1=r1))
    noise = noise_from_runs(runs)
    m = noise["tasks"]["msrvtt-retrieval"]["R@1"]
    assert m["seeds"] == [0, 1, 2, 3, 4] and m["values"] == [29.0, 30.0, 31.0, 30.0, 30.0]
    assert m["mean"] == 30.0 and m["min"] == 29.0 and m["max"] == 31.0 and m["std"] == pytest.approx(0.7071, abs=1e-4)
    assert "msrvtt-retrieval [random]" not in noise["tasks"] and noise["preset"] == "smoke"
    # the reference and the new run are one seed's draw each: 3 x sqrt(2) std (= 3.0 here) above the minimum
    assert tolerance("R@1", std=m["std"]) == pytest.approx(3 * 2**0.5 * 0.70711, abs=1e-4)
    assert tolerance("R@1", std=0.01) == 0.5 and tolerance("CIDEr", std=0.0) == 0.01  # the stated minimums
    assert tolerance("R@1", {"R@1": 9.0}, std=m["std"]) == 9.0  # --tol still wins
    ref = ref_dir(tmp_path)
    assert noise_main([*map(str, runs), "--out", str(ref / "noise.json")]) == 0
    # against the mean of the 5 runs (30.0): t_4 (6.6202, 99.73% two-sided) x sqrt(1 + 1/5) std = 5.128
    df, bad = compare_paths(suite_dir(tmp_path / "new", seed=7, r1=35.0), ref)  # 5.0 < 5.128: noise
    row = df.set_index("metric").loc["R@1"]
    assert not bad and row["tolerance"] == pytest.approx(6.6202 * 1.2**0.5 * 0.70711, abs=1e-3) and row["ref"] == 30.0
    assert "ref = the mean over seeds 0, 1, 2, 3, 4" in df.attrs["compared"]
    assert compare_paths(suite_dir(tmp_path / "new2", r1=35.5), ref)[1]  # beyond it: fails
    assert noise_main([*map(str, runs[:3]), "--out", str(tmp_path / "x.json")]) == 2  # fewer than 5 seeds


def test_noise_tolerance_floors_test_set_resolution_and_one_example():
    """A 5-seed std of quantised values can be ~0 (a saturated R@10, a per-task recall moving in steps of one
    video's steps): beside a measured std, the tolerance is at least 3 bootstrap SE of the reference on its
    test set and one test example's worth; without noise.json neither applies (the tight bit-change check)."""
    from vlmbench.reporting.compare import bootstrap_se, example_step

    r = res("msrvtt-retrieval", **{"R@10": 100.0, "R@1": 78.0, "CIDEr": 0.5})
    r.intervals = {"R@1": [70.0, 86.0], "R@10": [100.0, 100.0]}
    r.counts = {"test_examples": 100}
    assert bootstrap_se(r, "R@1") == pytest.approx(16 / 3.919928) and bootstrap_se(r, "R@10") == 0.0
    assert bootstrap_se(r, "CIDEr") is None
    assert example_step(r, "R@10") == 1.0 and example_step(r, "CIDEr") is None  # CIDEr is not a percentage
    assert tolerance("R@10", std=0.0, se=0.0, step=1.0) == 1.0  # one query of 100 never fails
    assert tolerance("R@1", std=0.1, se=bootstrap_se(r, "R@1"), step=1.0) == pytest.approx(3 * 16 / 3.919928)
    assert tolerance("R@10", se=5.0, step=1.0) == 0.5  # no noise.json: the minimum


def test_seed_is_not_an_identity_difference(tmp_path):
    df, bad = compare_paths(suite_dir(tmp_path / "new", seed=3), ref_dir(tmp_path))
    assert not bad and set(df.status) == {"ok"}


@pytest.mark.slow
def test_real_suite_with_another_seed_passes_against_a_seed_0_reference(tmp_path):
    """Real runs: seed 0 saved as reference (with a noise.json from the measured spread), then a seed-1 suite:
    the seed reaches pre-training and the task, no identity refusal, and the gate accepts it."""
    from vlmbench.suite import save_reference, suite

    kw = dict(
        preset="smoke",
        tasks=["crosstask-zeroshot"],
        pretrain_pairs=["steps=3", "save_every=3"],
        progress=False,
        say=lambda s: None,
    )
    runs = [suite(tmp_path / f"s{seed}", seed=seed, **kw) for seed in (0, 1)]
    assert [r[0].seed for r in runs] == [0, 1]
    assert json.loads((tmp_path / "s1" / "suite.json").read_text())["seed"] == 1
    ref = save_reference(tmp_path / "s0", tmp_path / "ref")
    noise = noise_from_runs([tmp_path / "s0", tmp_path / "s1"], min_seeds=2)
    (ref / "noise.json").write_text(json.dumps(noise))
    df, bad = compare_paths(tmp_path / "s1", ref)
    assert not bad, to_markdown(df)


def test_an_identical_copy_passes_and_absent_floors_are_explained():
    """compare of the committed reference with itself: no floors are saved there, so each learned: rule says in
    one line what its floor is and the command that makes it, and the comparison passes; --require-floors (the
    CI gate) fails them."""
    from vlmbench.reporting.compare import compare_paths, failure_lines

    ref = Path(__file__).resolve().parents[1] / "results" / "reference" / "ci"
    df, failed = compare_paths(ref, ref)
    assert not failed
    notes = df.attrs["notes"]
    assert any(
        n.startswith("coin-segmentation: its learned: rule is measured over the all-background floor")
        and "vlmbench baseline --task coin-segmentation --kind all-background --preset ci --out" in n
        for n in notes
    )
    assert all("\n" not in n for n in notes)
    df, failed = compare_paths(ref, ref, require_floors=True)
    assert failed and any("missing floor" in line for line in failure_lines(df))


def test_deterministic_counts_and_recipe_values_are_compared_exactly(tmp_path):
    """A stride or a count of training examples that silently changes moves the metrics less than their noise
    tolerance; the gate compares every count and recipe value of a run for equality (the seed and paths aside)."""
    from vlmbench.reporting.compare import compare_paths, failure_lines

    def write(root, windows, stride, seed):
        r = res("coin-segmentation", frame_acc=50.0)
        r.counts, r.config, r.seed = (
            {"train_windows": windows, "test_videos": 10},
            {"stride": stride, "seed": seed},
            seed,
        )
        save_result(r, root / "coin-segmentation" / "result.json")
        return root

    ref = write(tmp_path / "ref", 120, 16, 0)
    assert not compare_paths(write(tmp_path / "same", 120, 16, 5), ref, tol={"frame_acc": 10})[1]  # a seed may differ
    df, bad = compare_paths(write(tmp_path / "new", 118, 8, 0), ref, tol={"frame_acc": 10})
    lines = failure_lines(df)
    assert bad and any("count:train_windows" in line and "120" in line and "118" in line for line in lines)
    assert any("config:stride" in line for line in lines)
    assert "differs" in to_markdown(df)


@pytest.mark.parametrize(
    "new_interval, fails", [((45.0, 55.0), False), ((47.5, 52.0), False), ((49.0, 51.5), True), ((50.0, 50.0), True)]
)
def test_the_new_runs_intervals_are_checked(tmp_path, new_interval, fails):
    """A bootstrap that collapses every interval to its point estimate passed: compare took its standard error from
    the reference and never looked at the new run's intervals. Now an interval under a quarter of the reference's
    width fails, named (one somewhat narrower is sampling)."""
    from vlmbench.reporting.compare import compare_paths, failure_lines

    def write(root, interval):
        r = res("coin-segmentation", frame_acc=50.0)
        r.intervals = {"frame_acc": list(interval)}
        save_result(r, root / "coin-segmentation" / "result.json")
        return root

    ref = write(tmp_path / "ref", (44.0, 56.0))
    df, bad = compare_paths(write(tmp_path / "new", new_interval), ref, tol={"frame_acc": 10})
    assert bad is fails
    assert any("frame_acc interval" in line and "broken bootstrap" in line for line in failure_lines(df)) is fails
