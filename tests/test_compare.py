"""Regression comparison: direction, tolerance, missing metrics, markdown."""

from __future__ import annotations

import pytest

from vlmbench.errors import InputError
from vlmbench.records.result import Result, save_result
from vlmbench.reporting.compare import DEFAULT_TOLERANCES, compare, compare_paths, failed, to_markdown, tolerance


@pytest.fixture(autouse=True)
def _no_floor_rules(monkeypatch):
    """These tests are about the comparison with the reference; the `learned:` floors are tests/test_gate.py's."""
    import vlmbench.reporting.compare as cmp

    real = cmp.floor_checks
    monkeypatch.setattr(cmp, "floor_checks", lambda new, enabled=True, *a: real(new, False))


def res(task="msrvtt-retrieval", **metrics) -> Result:
    return Result(task=task, metrics=metrics, toy=True)


def statuses(df):
    return dict(zip(df.metric, df.status))


def test_default_tolerances():
    assert tolerance("R@1") == 0.5 and tolerance("accuracy") == 0.5
    assert tolerance("CIDEr") == 0.01 and DEFAULT_TOLERANCES["MedR"] == 0.5
    assert tolerance("R@1", {"R@1": 2.0}) == 2.0 and tolerance("R@5", {"*": 0.1}) == 0.1


def test_regression_higher_is_better(tmp_path):
    new = save_result(res(**{"R@1": 20.0, "R@5": 50.0}), tmp_path / "new" / "result.json")
    ref = save_result(res(**{"R@1": 21.0, "R@5": 50.4}), tmp_path / "ref" / "result.json")
    df, bad = compare_paths(new, ref)
    assert bad is True
    assert statuses(df) == {"R@1": "regressed", "R@5": "ok"}
    row = df[df.metric == "R@1"].iloc[0]
    assert (row.ref, row.new, row.delta, row.tolerance) == (21.0, 20.0, -1.0, 0.5)


def test_within_tolerance_passes_and_gain_beyond_noise_fails(tmp_path):
    df, bad = compare_paths(
        save_result(res(**{"R@1": 20.5, "R@5": 60.0, "CIDEr": 1.30}), tmp_path / "n.result.json"),
        save_result(res(**{"R@1": 21.0, "R@5": 50.0, "CIDEr": 1.31}), tmp_path / "ref" / "r.result.json"),
    )
    assert bad is True  # an unexplained gain is how a wrong metric shows
    assert statuses(df) == {"R@1": "ok", "R@5": "changed beyond noise", "CIDEr": "ok"}  # exactly at tolerance is ok
    assert "run `make update-reference` and say why in the commit" in to_markdown(df)


def test_median_rank_lower_is_better():
    assert statuses(compare([res(MedR=6.0)], [res(MedR=5.0)])) == {"MedR": "regressed"}
    assert statuses(compare([res(MedR=5.5)], [res(MedR=5.0)])) == {"MedR": "ok"}
    assert statuses(compare([res(MedR=3.0)], [res(MedR=5.0)])) == {"MedR": "changed beyond noise"}
    assert statuses(compare([res(v2t_MeanR=9.0)], [res(v2t_MeanR=7.0)])) == {"v2t_MeanR": "regressed"}


def test_missing_metric_and_task_fail():
    df = compare([res(**{"R@1": 30.0})], [res(**{"R@1": 30.0, "R@10": 70.0}), res("msrvtt-mcqa", accuracy=90.0)])
    assert list(zip(df.task, df.metric, df.status)) == [
        ("msrvtt-retrieval", "R@1", "ok"),
        ("msrvtt-retrieval", "R@10", "missing"),
        ("msrvtt-mcqa", "accuracy", "missing"),
    ]
    assert failed(df)
    assert not failed(compare([res(**{"R@1": 30.0, "R@10": 70.0})], [res(**{"R@1": 30.0})]))  # extra new metric is fine


def test_baselines_keyed_apart():
    ref = [res(**{"R@1": 20.0}), Result(task="msrvtt-retrieval", metrics={"R@1": 0.1}, baseline="random")]
    new = [Result(task="msrvtt-retrieval", metrics={"R@1": 0.1}, baseline="random"), res(**{"R@1": 20.2})]
    df = compare(new, ref)
    assert list(df.task) == ["msrvtt-retrieval", "msrvtt-retrieval [random]"] and not failed(df)
    with pytest.raises(InputError, match="two new results"):
        compare([res(**{"R@1": 1.0}), res(**{"R@1": 2.0})], ref)


def test_markdown():
    md = to_markdown(
        compare([res(**{"R@1": 20.0}, MedR=4.0, CIDEr=1.3869)], [res(**{"R@1": 21.0}, MedR=4.0, CIDEr=1.3869)])
    )
    lines = md.splitlines()
    assert lines[0] == "**1 of 3 metrics failed**"
    assert lines[2] == "| | task | metric | ref | new | delta | tolerance | floor | status |"
    assert lines[3] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[4] == "| ❌ | msrvtt-retrieval | R@1 | 21.00 | 20.00 | -1.00 | 0.50 | - | regressed |"
    assert lines[6] == "| ✅ | msrvtt-retrieval | CIDEr | 1.3869 | 1.3869 | +0.0000 | 0.0100 | - | ok |"
    assert "- msrvtt-retrieval R@1: regressed: worse than the reference by more than 0.5" in lines
    missing = to_markdown(compare([], [res("msrvtt-mcqa", accuracy=90.0)]))
    assert "| ❌ | msrvtt-mcqa | accuracy | 90.00 | - | - | 0.50 | - | missing |" in missing


def test_empty_reference(tmp_path):
    (tmp_path / "ref").mkdir()
    with pytest.raises(InputError, match="no reference results"):
        compare_paths(save_result(res(**{"R@1": 1.0}), tmp_path / "n.result.json"), tmp_path / "ref")


def test_refuses_other_experiment_unless_forced(tmp_path):
    """Planted: the same task measured on another preset / backbone / data is refused, naming the field."""
    base = dict(preset="smoke", split="test", config={"backbone": "tiny"}, provenance={"data_fingerprint": "aa"})
    ref = save_result(
        Result(task="msrvtt-retrieval", metrics={"R@1": 20.0}, toy=True, **base), tmp_path / "ref" / "result.json"
    )
    for field, change in [
        ("preset", {"preset": "toy"}),
        ("backbone", {"config": {"backbone": "default"}}),
        ("data_fingerprint", {"provenance": {"data_fingerprint": "bb"}}),
        ("toy", {"toy": False}),
    ]:
        kw = {**base, "toy": True, **change}
        new = save_result(
            Result(task="msrvtt-retrieval", metrics={"R@1": 20.0}, **kw), tmp_path / field / "result.json"
        )
        with pytest.raises(InputError, match=f"msrvtt-retrieval: {field} differs"):
            compare_paths(new, ref)
        df, bad = compare_paths(new, ref, force=True)
        assert not bad and "--force" in df.attrs["compared"]
    df, _ = compare_paths(ref, ref)
    assert df.attrs["compared"].startswith(
        "Compared 1 reference tasks: preset smoke; toy toy world; backbone tiny; split test; data_fingerprint aa"
    )
    assert df.attrs["compared"] in to_markdown(df)


def _qa_run(path, correct, **kw):
    """A saved MC-QA run (result.json + predictions.npz with its per-example values), right where correct is 1."""
    import numpy as np

    from vlmbench.adapters.mcqa import MCQAAdapter
    from vlmbench.records.predictions import save_predictions

    n = len(correct)
    scores = np.zeros((n, 5))
    scores[np.arange(n), np.where(correct, 0, 1)] = 1.0
    preds = {"scores": scores, "answers": np.zeros(n, np.int64), "ids": np.array([f"q{i}" for i in range(n)])}
    preds.update(MCQAAdapter.per_example(preds, {}))
    save_predictions(path / "predictions.npz", "msrvtt-mcqa", {}, preds)
    return save_result(
        Result(task="msrvtt-mcqa", family="mcqa", metrics={"accuracy": 100.0 * np.mean(correct)}, **kw),
        path / "result.json",
    )


def test_compare_reports_the_paired_bootstrap_difference(tmp_path):
    import numpy as np

    rng = np.random.default_rng(1)
    ref = (rng.random(1000) < 0.6).astype(int)
    better = ref.copy()
    better[rng.choice(np.flatnonzero(ref == 0), 20, replace=False)] = 1  # +2 points, planted
    shuffled = ref.copy()  # same accuracy, other questions
    shuffled[rng.choice(np.flatnonzero(ref == 1), 40, replace=False)] = 0
    shuffled[rng.choice(np.flatnonzero(ref == 0), 40, replace=False)] = 1
    r = _qa_run(tmp_path / "ref", ref)
    df, _ = compare_paths(_qa_run(tmp_path / "better", better), r, tol={"accuracy": 5.0})
    row = df.iloc[0]
    assert row["paired diff"] == "+2.00" and row["significant"] == "yes" and row.status == "ok"
    lo, hi = (float(x) for x in row["paired 95% CI"].strip("[]").split(", "))
    assert 0 < lo < 2 < hi
    df, _ = compare_paths(_qa_run(tmp_path / "shuffled", shuffled), r)
    assert df.iloc[0]["paired diff"] == "+0.00" and df.iloc[0]["significant"] == "no"
    assert "| paired diff | paired 95% CI | significant |" in to_markdown(df)
    # without per-example values (a result file alone) there is no paired column
    (tmp_path / "shuffled" / "predictions.npz").unlink()
    assert "paired diff" not in compare_paths(tmp_path / "shuffled", r)[0].columns


# ---- protocol signatures ---------------------------------------------------------------------------------------


def _signed(path, ties="pessimistic", version="0.1.0", post="none", **metrics):
    from vlmbench.records import signature

    fields = signature.build(
        task="msrvtt-retrieval",
        family="retrieval",
        split="test",
        n=100,
        cfg={"ties": ties, "post": post},
        model={"name": "vlm"},
        features="toy",
        limit=None,
        version=version,
    )
    return save_result(
        Result(task="msrvtt-retrieval", metrics=metrics or {"R@1": 20.0}, signature=signature.record(fields)), path
    )


def test_compare_refuses_a_signature_mismatch_naming_the_field(tmp_path):
    ref = _signed(tmp_path / "ref" / "result.json")
    for field, kw in [("ties", {"ties": "mmpt"}), ("post", {"post": "dual-softmax"})]:
        new = _signed(tmp_path / field / "result.json", **kw)
        with pytest.raises(InputError, match=f"msrvtt-retrieval: signature field {field} differs"):
            compare_paths(new, ref)
        df, bad = compare_paths(new, ref, force=True)
        assert not bad and "--force" in df.attrs["compared"]
    # the version is recorded, not enforced; a result from before signatures is not held against the other
    compare_paths(_signed(tmp_path / "v" / "result.json", version="0.2.0"), ref)
    old = Result(task="msrvtt-retrieval", metrics={"R@1": 20.0})
    compare_paths(save_result(old, tmp_path / "old" / "result.json"), ref)
    df, _ = compare_paths(ref, ref)
    md = to_markdown(df)
    assert "Signatures:" in md
    assert "- `vlmbench|task:msrvtt-retrieval|split:test|n:100|direction:t2v+v2t|ties:pessimistic|" in md
    assert "(new and reference)" in md


# ---- verdicts: regressed / inconclusive / ok, with the minimum detectable effect ---------------------------------


def _flip(ref, rng, fixed=0, broken=0):
    """A copy of ref with `fixed` wrong answers made right and `broken` right answers made wrong."""
    import numpy as np

    new = ref.copy()
    new[rng.choice(np.flatnonzero(ref == 0), fixed, replace=False)] = 1
    new[rng.choice(np.flatnonzero(ref == 1), broken, replace=False)] = 0
    return new


def test_paired_verdicts(tmp_path):
    """Paired MC-QA runs on 1000 questions (McNemar decides for accuracy): 30 broken answers (-3 points, b=0,
    c=30) regress; 3 broken (-0.3, p = 0.25) beyond a 0.2 tolerance are inconclusive; within the tolerance the
    verdict is ok only when the minimum detectable effect is below it."""
    import numpy as np

    rng = np.random.default_rng(3)
    ref_correct = (rng.random(1000) < 0.6).astype(int)
    ref = _qa_run(tmp_path / "ref", ref_correct)

    def row(name, new_correct, **tol):
        df, bad = compare_paths(_qa_run(tmp_path / name, new_correct), ref, tol=tol or None)
        return df.iloc[0], bad, df

    r, bad, _ = row("worse", _flip(ref_correct, rng, broken=30), accuracy=1.0)
    assert (r.status, bad, r.test) == ("regressed", True, "McNemar exact") and float(r.p) < 1e-6
    assert "significant (McNemar exact p=" in r.why
    r, bad, df = row("slightly", _flip(ref_correct, rng, broken=3), accuracy=0.2)
    assert (r.status, bad) == ("inconclusive", False) and r.p == "0.25"
    assert "worse by more than 0.2 but not significant (McNemar exact p=0.25)" in r.why
    md = to_markdown(df)
    assert md.startswith("**no metric failed; 1 of 1 inconclusive**") and "| ❔ |" in md
    assert "Inconclusive (not a failure without --strict):" in md
    assert compare_paths(tmp_path / "slightly", ref, tol={"accuracy": 0.2}, strict=True)[1] is True
    # 40 answers swapped both ways: no change, paired SE ~0.9 points, MDE ~2.5
    swapped = _flip(ref_correct, rng, fixed=40, broken=40)
    r, bad, _ = row("swapped", swapped, accuracy=5.0)
    assert r.status == "ok" and 2.0 < float(r.MDE) < 3.2
    r, bad, _ = row("swapped", swapped, accuracy=1.0)
    assert (r.status, bad) == ("inconclusive", False) and "minimum detectable effect" in r.why
    # the same runs without statistics (result files alone): the tolerance decides, as before
    for name in ("worse", "slightly"):
        (tmp_path / name / "predictions.npz").unlink()
    assert (
        compare_paths(tmp_path / "slightly", tmp_path / "ref" / "result.json", tol={"accuracy": 0.2})[0].iloc[0].status
        == "regressed"
    )


def test_seed_noise_and_interval_verdicts():
    """Without per-example values: the reference's seed std (noise.json) gives SE(new - ref) = sqrt(2) std and a z
    test. With intervals alone no test applies (both runs share the test set whose sampling the intervals
    measure): the tolerance decides, as before, and the MDE is shown from the reference's interval."""
    noise = {"tasks": {"msrvtt-retrieval": {"R@1": {"std": 1.0}}}}
    # 4 points worse, tolerance 2: z = 4 / 1.414 = 2.83, significant
    df = compare([res(**{"R@1": 16.0})], [res(**{"R@1": 20.0})], tol={"R@1": 2.0}, noise=noise)
    assert df.iloc[0].status == "regressed" and df.iloc[0].test == "seed noise (z)"
    assert float(df.iloc[0].MDE) == pytest.approx(2.8016 * 2**0.5, abs=0.01)
    assert float(df.iloc[0].p) == pytest.approx(0.00468, abs=1e-4)
    # 2.5 worse: beyond 2 but z = 1.77: inconclusive
    assert compare([res(**{"R@1": 17.5})], [res(**{"R@1": 20.0})], tol={"R@1": 2.0}, noise=noise).iloc[0].status == (
        "inconclusive"
    )
    ci = {"R@1": [20 - 3.92, 20 + 3.92]}  # SE 2: MDE of two independent runs 2.80 x sqrt(2) x 2 = 7.92
    ref = Result(task="msrvtt-retrieval", metrics={"R@1": 20.0}, intervals=ci)
    new = Result(task="msrvtt-retrieval", metrics={"R@1": 17.0}, intervals=ci)
    row = compare([new], [ref], tol={"R@1": 2.0}).iloc[0]
    assert (row.status, row.test, row.p) == ("regressed", "none (tolerance)", None)
    assert float(row.MDE) == pytest.approx(7.92, abs=0.01) and row.why == "worse than the reference by more than 2"
    new.metrics["R@1"] = 19.0
    assert compare([new], [ref], tol={"R@1": 2.0}).iloc[0].status == "ok"


def test_statistics_that_do_not_reproduce_the_results_are_not_used(tmp_path):
    """An edited result.json (10 points off its own predictions): its per-example values and intervals describe
    other numbers, so the tolerance alone decides (regressed), and the row says why."""
    import json

    import numpy as np

    correct = (np.random.default_rng(4).random(200) < 0.5).astype(int)
    ref = _qa_run(tmp_path / "ref", correct)
    new = _qa_run(tmp_path / "new", correct)
    d = json.loads(new.read_text())
    d["metrics"]["accuracy"] -= 10
    d["intervals"] = {"accuracy": [0.0, 100.0]}
    new.write_text(json.dumps(d))
    df, bad = compare_paths(new, ref)
    assert bad and df.iloc[0].status == "regressed" and "do not reproduce" in df.iloc[0].why


def test_reference_is_the_seed_mean_with_its_own_tolerance():
    """With noise.json over K seeds the row is judged against the MEAN of the K runs: SE(new - mean) =
    std x sqrt(1 + 1/K) (one run's variance plus the mean's 1/K of it); the std is estimated from K runs, so the
    tolerance is the prediction interval of a new seed, Student's t with K - 1 df at 99.73% two-sided (3 normal
    sigmas' coverage): t_9 = 4.0943 from the tables. The test set's bootstrap SE is no term (both runs score the
    same examples). One seed: back to one run against one run, 3 x max(sqrt(2) std, the bootstrap SE)."""
    import statistics

    values = [70.0, 72.0, 74.0, 76.0, 73.0, 73.0, 71.0, 75.0, 73.0, 73.0]  # mean 73
    std = statistics.stdev(values)  # 1.764
    noise = {"tasks": {"msrvtt-retrieval": {"R@1": {"mean": 73.0, "std": std, "values": values}}}}
    ci = {"R@1": [60.0, 90.0]}  # a wide interval: 3 x its SE would be 23 points
    ref = Result(task="msrvtt-retrieval", metrics={"R@1": 76.0}, intervals=ci)  # the reference run: seed 3
    row = compare([res(**{"R@1": 73.0})], [ref], noise=noise).iloc[0]
    assert row.ref == 73.0 and row.delta == 0.0 and row.status == "ok"
    assert row.tolerance == pytest.approx(4.0943 * std * (1 + 1 / 10) ** 0.5, rel=1e-4)  # 7.57
    assert tolerance("R@1", std=2.0, seeds=10) == pytest.approx(4.0943 * 2 * 1.1**0.5, rel=1e-4)
    assert tolerance("R@1", std=2.0) == pytest.approx(3 * 2 * 2**0.5, rel=1e-4)  # one run against one run
    # 9 below the mean (only 6 below the reference run): regressed, by the t test against the mean
    row = compare([res(**{"R@1": 64.0})], [ref], noise=noise).iloc[0]
    assert row.status == "regressed" and row.test == "seed noise (t)" and row.delta == -9.0
    assert float(row.p) == pytest.approx(0.000890, abs=1e-5)  # 2 P(T_9 > 9 / (1.764 sqrt(1.1)) = 4.865)
    # a metric noise.json lacks, or a one-run noise entry, keeps the reference run and the one-run rule
    one = {"tasks": {"msrvtt-retrieval": {"R@1": {"mean": 73.0, "std": std, "values": [73.0]}}}}
    row = compare([res(**{"R@1": 76.0})], [ref], noise=one).iloc[0]
    assert row.ref == 76.0 and row.tolerance == pytest.approx(3 * 30 / 3.919928, abs=1e-3)


def test_a_collapsed_new_interval_fails_but_a_single_valued_median_does_not():
    """The new run's own intervals are checked (mutant 15: a bootstrap returning its point estimate): narrower than
    a quarter of the reference's fails; a median rank's interval can legitimately be one value."""
    ref = Result(
        task="msrvtt-retrieval", metrics={"R@1": 75.0, "MedR": 2.0}, intervals={"R@1": [70.0, 80.0], "MedR": [2.0, 3.0]}
    )

    def rows(r1, medr):
        new = Result(task="msrvtt-retrieval", metrics={"R@1": 75.0, "MedR": 2.0}, intervals={"R@1": r1, "MedR": medr})
        df = compare([new], [ref])
        return dict(zip(df.metric, df.status))

    assert rows([75.0, 75.0], [3.0, 3.0]) == {"R@1": "ok", "MedR": "ok", "R@1 interval": "interval collapsed"}
    assert rows([73.0, 75.4], [2.0, 2.0]) == {"R@1": "ok", "MedR": "ok", "R@1 interval": "interval collapsed"}
    assert rows([72.0, 78.0], [2.0, 2.0]) == {"R@1": "ok", "MedR": "ok"}  # 0.6 of the width: sampling, not a bug


def test_a_median_rank_may_move_one_rank_beyond_the_seeds_range():
    """MedR moves in whole ranks: nine seeds at 2 and one at 3 (std 0.32) still allow 4 (range 1 + 1 rank), not 4.5."""
    values = [2.0] * 9 + [3.0]
    noise = {"tasks": {"msrvtt-retrieval": {"v2t_MedR": {"mean": 2.1, "std": 0.316, "values": values}}}}
    ref = res(v2t_MedR=2.0)
    row = compare([res(v2t_MedR=4.0)], [ref], noise=noise).iloc[0]
    assert row.tolerance == 2.0 and row.status == "ok"
    assert compare([res(v2t_MedR=4.5)], [ref], noise=noise).iloc[0].status == "regressed"


def test_a_proportion_near_its_bound_may_have_a_narrow_interval():
    """A proportion's interval shrinks with sqrt(p (1 - p)): at 99.99% a width of 0.026 is what the reference's 0.28
    at 99.8% becomes (sqrt(0.0099 / 0.1996) = 0.22, a quarter of that 0.015), not a collapse; at 100% none is
    expected; the same width at the reference's own value is a collapse."""
    from vlmbench.reporting.compare import proportion_scale

    ref = Result(task="coin-segmentation", metrics={"frame_acc": 99.8}, intervals={"frame_acc": [99.66, 99.94]})

    def status(value, interval):
        new = Result(task="coin-segmentation", metrics={"frame_acc": value}, intervals={"frame_acc": interval})
        return dict(zip(*(lambda df: (df.metric, df.status))(compare([new], [ref], tol={"frame_acc": 100}))))

    assert proportion_scale("frame_acc", 99.8, 99.99) == pytest.approx((99.99 * 0.01 / (99.8 * 0.2)) ** 0.5)
    assert proportion_scale("CIDEr", 0.5, 0.1) == 1.0 and proportion_scale("frame_acc", 99.8, 100.0) == 0.0
    assert status(99.99, [99.974, 100.0]) == {"frame_acc": "ok"}
    assert status(100.0, [100.0, 100.0]) == {"frame_acc": "ok"}
    assert status(99.8, [99.79, 99.81]) == {"frame_acc": "ok", "frame_acc interval": "interval collapsed"}


def test_new_runs_of_several_seeds_are_judged_by_their_mean():
    """The gate runs GATE_SEEDS seeds: their mean against the reference's mean over K, SE = std x sqrt(1/n + 1/K)
    (n = 4, K = 20: sqrt(0.3), against sqrt(1.05) for one seed); a shift one seed's tolerance hides fails the mean.
    t_19 at 99.73% two-sided = 3.4472 (tables). Counts and intervals are still checked seed by seed."""
    import statistics

    values = [73.0 + (i % 5 - 2) for i in range(20)]  # mean 73
    std = statistics.stdev(values)
    noise = {"tasks": {"msrvtt-retrieval": {"R@1": {"mean": 73.0, "std": std, "values": values}}}}
    ref = Result(task="msrvtt-retrieval", metrics={"R@1": 73.0}, counts={"test_examples": 1000}, toy=True)

    def run(seed, r1, n=1000):
        return Result(task="msrvtt-retrieval", metrics={"R@1": r1}, seed=seed, counts={"test_examples": n}, toy=True)

    one = compare([run(0, 68.0)], [ref], noise=noise).iloc[0]
    assert one.tolerance == pytest.approx(3.4472 * std * (1 + 1 / 20) ** 0.5, rel=1e-4) and one.status == "ok"
    four = compare([run(s, v) for s, v in zip(range(4), (67.0, 69.0, 68.0, 68.0))], [ref], noise=noise)
    row = four.iloc[0]
    assert row.new == 68.0 and row.tolerance == pytest.approx(3.4472 * std * (1 / 4 + 1 / 20) ** 0.5, rel=1e-4)
    assert row.status == "regressed" and four.attrs["new_seeds"] == [0, 1, 2, 3]
    # one seed's count differs: the mean cannot hide it
    df = compare([run(0, 73.0), run(1, 73.0, n=999), run(2, 73.0, n=999)], [ref], noise=noise)
    assert statuses(df)["count:test_examples"] == "differs" and list(df.metric).count("count:test_examples") == 1
    assert df.set_index("metric").loc["count:test_examples", "why"].startswith("seed 1: deterministic")
    mcqa = Result(task="msrvtt-mcqa", metrics={"accuracy": 1.0}, seed=0, toy=True)
    with pytest.raises(InputError, match="seed 1: the new runs of seeds 0, 1 must hold the same tasks; msrvtt-mcqa"):
        compare([run(0, 73.0), mcqa, run(1, 73.0)], [ref], noise=noise)
