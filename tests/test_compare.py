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
