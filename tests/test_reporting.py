"""Result records, provenance, loading, report formats and the ablation grid."""

from __future__ import annotations

import io
import json
import math
import os
import re

import pandas as pd
import pytest

from vlmbench.errors import InputError
from vlmbench.records.result import SCHEMA, Result, load_results, provenance, save_result
from vlmbench.reporting.plots import plot_metric_vs_key
from vlmbench.reporting.tables import TOY_NOTE, grid_table, report, report_frame


def make(task="msrvtt-retrieval", metrics=None, **kw) -> Result:
    kw.setdefault("family", "retrieval")
    kw.setdefault("split", "test")
    return Result(task=task, metrics=metrics or {"R@1": 12.3, "R@5": 30.0, "MedR": 9.0}, **kw)


def test_round_trip(tmp_path):
    r = make(
        conventions={"ties": "pessimistic", "median": "np.median"},
        counts={"examples": 1000, "missing_features": 0},
        config={"name": "run-a", "pretrain": {"mmm": 0.5}},
        preset="toy",
        seed=0,
        toy=True,
        provenance={"git_sha": "abc", "git_dirty": False, "versions": {"python": "3.11"}, "data_fingerprint": "f00"},
        timings={"finetune_s": 1.2, "predict_s": 0.3, "score_s": 0.1},
        baseline=None,
    )
    d = r.to_dict()
    assert d["schema"] == SCHEMA and list(d)[0] == "schema" and "path" not in d
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["created"])
    assert Result.from_dict(json.loads(json.dumps(d))) == r
    saved = save_result(r, tmp_path / "run-a" / "result.json")
    [back] = load_results(saved)
    assert back == r and back.path == saved and back.metrics["R@1"] == 12.3
    assert [p.name for p in tmp_path.joinpath("run-a").iterdir()] == ["result.json"]  # no temp file left


def test_null_metric_loads_as_nan():
    d = make(metrics={"CIDEr": 1.0}).to_dict()
    d["metrics"]["CIDEr"] = None
    assert math.isnan(Result.from_dict(d).metrics["CIDEr"])


def test_provenance_keys():
    p = provenance("abc123")
    assert set(p) == {"git_sha", "git_dirty", "versions", "data_fingerprint"}
    assert p["data_fingerprint"] == "abc123"
    assert set(p["versions"]) == {"python", "torch", "transformers", "numpy", "vlmbench"}
    assert p["versions"]["numpy"] and p["versions"]["python"].startswith("3.")
    # this test runs inside the repo checkout: a 40-hex SHA and a boolean dirty flag
    assert re.fullmatch(r"[0-9a-f]{40}", p["git_sha"]) and isinstance(p["git_dirty"], bool)


def test_provenance_without_git(monkeypatch):
    import vlmbench.records.result as result_mod

    monkeypatch.setattr(result_mod, "REPO_DIR", result_mod.Path("/"))  # not a git checkout
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", "/")
    p = provenance(None)
    assert p["git_sha"] is None and p["git_dirty"] is None


def test_load_results_folder(tmp_path):
    save_result(make(task="msrvtt-retrieval"), tmp_path / "a" / "result.json")
    save_result(make(task="msrvtt-mcqa", metrics={"accuracy": 50.0}), tmp_path / "b" / "deep" / "mcqa.result.json")
    (tmp_path / "notes.json").write_text("{not a result")  # other names are ignored
    results = load_results(tmp_path)
    assert sorted(r.task for r in results) == ["msrvtt-mcqa", "msrvtt-retrieval"]
    assert load_results([tmp_path, tmp_path / "a" / "result.json"])[0].task == "msrvtt-retrieval"
    assert len(load_results([tmp_path, tmp_path / "a" / "result.json"])) == 2  # no duplicates


@pytest.mark.parametrize(
    "text,why",
    [
        ("{broken", "JSON"),
        ("[1, 2]", "JSON object"),
        ('{"schema": "other/2", "task": "x", "metrics": {}}', "schema"),
        (json.dumps({"schema": SCHEMA, "task": "x"}), "metrics"),
        (json.dumps({"schema": SCHEMA, "task": "x", "metrics": {"R@1": "high"}}), "numbers"),
        (json.dumps({"schema": SCHEMA, "task": "x", "metrics": {}, "colour": 1}), "unknown keys"),
    ],
)
def test_malformed_result_names_file(tmp_path, text, why):
    bad = tmp_path / "run" / "result.json"
    bad.parent.mkdir()
    bad.write_text(text)
    with pytest.raises(InputError) as e:
        load_results(tmp_path)
    assert e.value.path == bad and str(bad) in str(e.value) and why in str(e.value)


def test_load_results_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_results(tmp_path / "nope")


@pytest.fixture
def mixed_results():
    return [
        make(config={"name": "toy-run"}, preset="toy", seed=0, toy=True),
        make(metrics={"R@1": 0.1, "MedR": 500.0}, baseline="random", toy=True),
    ]


def test_report_frame_order(mixed_results):
    df = report_frame(mixed_results, against="paper")
    assert list(df.kind) == ["ours"] + ["paper"] * 7 + ["floor"]
    assert df.label.iloc[0] == "toy-run preset=toy seed=0"
    assert df.label.iloc[-1] == "random"
    vlm = df[(df.kind == "paper") & (df.label == "VLM")].iloc[0]
    assert vlm["R@1"] == pytest.approx(28.1) and vlm.source == "paper Table 2, ours"
    assert list(report_frame(mixed_results, against=None).kind) == ["ours", "floor"]


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "csv", "json"])
def test_report_toy_label_every_format(mixed_results, fmt):
    out = report(mixed_results, against="paper", fmt=fmt)
    assert TOY_NOTE == "toy world: not comparable with published numbers"
    assert TOY_NOTE in out
    assert "28.10" in out or "28.1" in out  # the paper's VLM row is there
    assert "12.30" in out or "12.3" in out  # and ours


def test_report_formats_parse(mixed_results):
    rows = json.loads(report(mixed_results, fmt="json"))["rows"]
    assert rows[0]["note"] == TOY_NOTE and rows[0]["R@1"] == 12.3
    assert (rows[1]["label"], rows[1]["note"], rows[1]["R@5"]) == ("Random", "", 0.5)
    videoasmt = next(r for r in rows if r["label"].startswith("VideoAsMT"))
    assert videoasmt["R@5"] is None and videoasmt["R@10"] == 52.8  # the paper's "-" cell stays empty

    csv = pd.read_csv(io.StringIO(report(mixed_results, fmt="csv")), keep_default_na=False)
    assert list(csv.note[csv.kind == "ours"]) == [TOY_NOTE]
    md = report(mixed_results, fmt="markdown")
    assert "| kind | label | source | R@1 | R@5 | MedR | R@10 | note |" in md
    assert f"> {TOY_NOTE}" in md


def test_report_not_toy_has_no_label():
    out = report([make(toy=False)], fmt="markdown")
    assert TOY_NOTE not in out


def test_report_bad_format():
    with pytest.raises(InputError, match="format"):
        report([make()], fmt="html")


def ablation_results():
    out = []
    for mmm, r1 in [(0.0, 10.0), (0.5, 20.0), (0.3, 18.0)]:
        for seed, jitter in [(0, -1.0), (1, 1.0)]:
            out.append(
                make(
                    task="youcook2-retrieval",
                    metrics={"R@1": r1 + jitter, "MedR": 5.0},
                    seed=seed,
                    toy=True,
                    config={"pretrain": {"mmm": mmm, "min_text_len": 8, "loss": "vlm"}},
                )
            )
    out.append(make(task="youcook2-retrieval", metrics={"R@1": 0.03}, baseline="random"))
    return out


def test_grid_table_matches_paper_rows():
    grid = grid_table(ablation_results(), ["pretrain.mmm"])
    assert list(grid["pretrain.mmm"]) == [0.0, 0.5, 0.3]
    assert list(grid.n) == [2, 2, 2]  # seeds averaged, the floor baseline left out
    assert list(grid["R@1"]) == [10.0, 20.0, 18.0]
    assert list(grid.paper) == ["Table 8: VLM w/ MMM 0%", "Table 8: VLM w/ MMM 50%", "Table 8: VLM w/ MMM 30%"]
    assert list(grid["paper:R@1"]) == [15.12, 27.05, 25.30]
    assert grid.attrs["varied_keys"] == ["pretrain.mmm"]


def test_grid_table_loss_and_no_match():
    rs = [
        make(task="youcook2-caption", metrics={"CIDEr": 1.0}, config={"loss": loss, "mmm": 0.5})
        for loss in ("mfm_mlm", "other")
    ]
    grid = grid_table(rs, ["loss"])
    assert grid.paper.iloc[0] == "Table 9: VLM w/ L_MFM-MLM" and grid["paper:CIDEr"].iloc[0] == pytest.approx(1.3224)
    assert pd.isna(grid.paper.iloc[1])
    # a grid over a key the paper did not vary claims no paper row
    lr = grid_table([make(task="youcook2-caption", metrics={"CIDEr": 1.0}, config={"lr": 1e-4})], ["lr"])
    assert "paper" not in lr.columns


def test_plot_metric_vs_key(tmp_path):
    rs = [
        make(
            task="youcook2-retrieval",
            metrics={"R@1": 10.0 + mmm * 10 + (n == 16)},
            config={"mmm": mmm, "min_text_len": n},
        )
        for mmm in (0.0, 0.3, 0.5)
        for n in (8, 16)
    ]
    grid = grid_table(rs, ["mmm", "min_text_len"])
    out = plot_metric_vs_key(grid, "mmm", "R@1", tmp_path / "plots" / "r1.png", preset="toy", toy=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r1.png", "r1.svg"]
    svg = out.with_suffix(".svg").read_text()
    for text in ("R@1 vs mmm", "R@1 (%)", "preset toy", "toy world: not comparable", "min_text_len=8"):
        assert text in svg, text

    with pytest.raises(InputError, match="no column"):
        plot_metric_vs_key(grid, "mmm", "CIDEr", tmp_path / "x.png")


# ---- the one table renderer --------------------------------------------------------------------------------


def test_numbers_in_the_metrics_own_format():
    from vlmbench.reporting.render import format_interval, format_value

    assert format_value("R@1", 7.5e-06) == "0.00"  # never scientific notation
    assert format_value("CIDEr", 1.38691) == "1.3869" and format_value("MedR", 5.0) == "5.0"
    assert format_value("recall/12345", 33.333) == "33.33" and format_value("paper:CIDEr", 1.3) == "1.3000"
    assert format_value("R@1", float("nan")) == "-" and format_value("R@1", None) == "-"
    assert format_interval("R@1", 10.0, 8.5, 11.0) == "10.00 ± 1.50"  # the larger half of an asymmetric CI
    assert format_interval("R@1", 10.0, float("nan"), float("nan")) == "10.00"
    assert format_interval("MedR", 1.5, -7.0, 10.0, signed=True) == "+1.5 ± 8.5"


@pytest.mark.parametrize("columns", [60, 100, 220])
def test_terminal_tables_fit_the_terminal(mixed_results, monkeypatch, columns):
    """Planted: the old renderer drew at a fixed 160 columns whatever the terminal."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = report(mixed_results, fmt="terminal")
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "12.30" in out


def test_report_ci_shows_half_width_and_files_carry_both_bounds():
    r = make(metrics={"R@1": 12.3, "MedR": 9.0}, intervals={"R@1": [10.0, 14.1], "MedR": [7.0, 11.5]})
    md = report([r], against=None, fmt="markdown", ci=True)
    assert "| 12.30 ± 2.30 | 9.0 ± 2.5 |" in md
    assert "±" not in report([r], against=None, fmt="markdown")
    csv = pd.read_csv(io.StringIO(report([r], against=None, fmt="csv")))
    assert (csv["R@1:lo"][0], csv["R@1:hi"][0], csv["MedR:hi"][0]) == (10.0, 14.1, 11.5)
    rows = json.loads(report([r], against=None, fmt="json"))["rows"]
    assert rows[0]["R@1:lo"] == 10.0 and rows[0]["R@1:hi"] == 14.1


def test_intervals_round_trip_and_validation(tmp_path):
    r = make(intervals={"R@1": [10.0, float("nan")]})
    d = json.loads(json.dumps(r.to_dict()))
    assert d["intervals"] == {"R@1": [10.0, None]}
    back = Result.from_dict(d)
    assert back.intervals["R@1"][0] == 10.0 and math.isnan(back.intervals["R@1"][1])
    with pytest.raises(InputError, match="intervals"):
        Result.from_dict({**d, "intervals": {"R@1": [1.0]}})


def test_grid_table_seeds_mean_std_and_mean_bounds():
    rs = [
        make(
            task="youcook2-retrieval",
            metrics={"R@1": v},
            seed=s,
            intervals={"R@1": [v - 2, v + 2]},
            config={"mmm": mmm},
        )
        for mmm, vals in ((0.0, (10.0, 12.0, 14.0)), (0.5, (20.0, 20.0, 23.0)))
        for s, v in enumerate(vals)
    ]
    grid = grid_table(rs, ["mmm"])
    assert list(grid.n) == [3, 3] and list(grid["R@1"]) == [12.0, 21.0]
    assert grid["R@1:std"].tolist() == pytest.approx([2.0, 3**0.5])
    assert grid["R@1:lo"].tolist() == [10.0, 19.0] and grid["R@1:hi"].tolist() == [14.0, 23.0]
    assert "R@1:diff" not in grid.columns  # several runs per cell: no single paired difference


# ---- error analysis exports ----------------------------------------------------------------------------------


def _csv_rows(path):
    import csv as csvmod

    with open(path, newline="") as f:
        return list(csvmod.DictReader(f))


def test_retrieval_errors_csv(tmp_path):
    import numpy as np

    from vlmbench.adapters.retrieval import RETRIEVAL_ERRORS, retrieval_errors
    from vlmbench.io import write_csv

    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.8], [0.0, 0.1, 0.5]])  # query 1 retrieves clip 2
    preds = {"scores": scores, "ids": np.array(["a", "b", "c"]), "texts": np.array(["cut", "stir", "fry"])}
    path = write_csv(tmp_path / RETRIEVAL_ERRORS, *retrieval_errors(preds))
    [row] = _csv_rows(path)
    assert (row["query_id"], row["query_text"], row["retrieved_id"], row["retrieved_caption"], row["true_rank"]) == (
        "b",
        "stir",
        "c",
        "fry",
        "2",
    )


def test_segmentation_and_localization_class_csv(tmp_path):
    import numpy as np

    from vlmbench.adapters.localization import localization_steps
    from vlmbench.adapters.segmentation import segmentation_classes
    from vlmbench.io import write_csv
    from vlmbench.records.formats import pack_matrices, pack_videos

    packed = pack_videos(["v"], [np.array([0, 0, 2, 2, 1, 2])], [np.array([0, 1, 1, 2, 1, 2])])
    rows = {r["class"]: r for r in _csv_rows(write_csv(tmp_path / "s.csv", *segmentation_classes(packed)))}
    assert rows["1"]["accuracy"] == "33.33" and rows["1"]["most_confused_with"] == "0"
    assert rows["0"]["note"] == "background" and rows["2"]["accuracy"] == "100.00"
    yt = np.array([[1, 0], [0, 0], [0, 1]], np.uint8)
    yp = np.array([[1, 0], [0, 1], [0, 0]], np.uint8)
    packed = pack_matrices(["t1"], ["v"], [yt], [yp], ["t1"])
    got = [
        (r["task"], r["step"], r["recall"])
        for r in _csv_rows(write_csv(tmp_path / "l.csv", *localization_steps(packed)))
    ]
    assert got == [("t1", "1", "100.00"), ("t1", "2", "0.00")]


def test_seed_table_mean_std_beside_each_runs_interval():
    from vlmbench.reporting.tables import seed_table

    rs = [
        make(metrics={"R@1": v, "MedR": m}, seed=s, intervals={"R@1": [v - 1, v + 1]})
        for s, (v, m) in enumerate([(10.0, 5.0), (14.0, 7.0), (12.0, 6.0)])
    ]
    t = seed_table(rs)
    rows = t.frame.set_index("metric")
    assert rows.loc["R@1", "mean ± std"] == "12.00 ± 2.00" and rows.loc["MedR", "mean ± std"] == "6.0 ± 1.0"
    assert rows.loc["R@1", "seed 1"] == "14.00 [13.00, 15.00]" and rows.loc["MedR", "seed 2"] == "6.0"


def test_piped_output_is_not_wrapped(mixed_results, monkeypatch):
    """No terminal (a pipe, a file) and no $COLUMNS: the table keeps its natural width, labels unbroken."""
    import vlmbench.reporting.render as render_mod

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(render_mod.shutil, "get_terminal_size", lambda fallback: os.terminal_size(fallback))
    out = report(mixed_results, fmt="terminal")
    assert "toy-run preset=toy seed=0 (toy)" in out


def test_plot_draws_each_runs_interval_and_the_seeds_std(tmp_path):
    one = [
        make(
            task="youcook2-retrieval",
            metrics={"R@1": 10.0 + mmm},
            intervals={"R@1": [8.0 + mmm, 13.0 + mmm]},
            config={"mmm": mmm},
        )
        for mmm in (0.0, 0.5)
    ]
    svg = plot_metric_vs_key(grid_table(one, ["mmm"]), "mmm", "R@1", tmp_path / "a.png").with_suffix(".svg").read_text()
    assert "95% bootstrap CI" in svg and "paper (Tables 8/9)" in svg
    seeds = [
        make(task="youcook2-retrieval", metrics={"R@1": v}, seed=s, config={"mmm": mmm})
        for mmm in (0.0, 0.5)
        for s, v in enumerate((10.0, 12.0))
    ]
    svg = (
        plot_metric_vs_key(grid_table(seeds, ["mmm"]), "mmm", "R@1", tmp_path / "b.png").with_suffix(".svg").read_text()
    )
    assert "mean ± std over seeds" in svg


def test_grid_marks_cells_that_differ_after_holm(tmp_path):
    """Three MC-QA cells against the first (1000 questions, McNemar decides): +6 points (p ~ 1e-18), 12 fixed and
    3 broken (+0.9, p = 0.035: significant alone, 0.07 after Holm over 3 cells), 30 swapped both ways (p = 1).
    Only the first is starred; grid.csv carries the raw and adjusted p."""
    import numpy as np

    from vlmbench.adapters.mcqa import MCQAAdapter
    from vlmbench.records.predictions import save_predictions
    from vlmbench.reporting.tables import PAIRED_NOTE, grid_tables
    from vlmbench.stats.significance import holm, mcnemar_exact

    rng = np.random.default_rng(5)
    base = (rng.random(1000) < 0.5).astype(int)

    def flip(fixed, broken):
        new = base.copy()
        new[rng.choice(np.flatnonzero(base == 0), fixed, replace=False)] = 1
        new[rng.choice(np.flatnonzero(base == 1), broken, replace=False)] = 0
        return new

    cells = {0.0: base, 0.3: flip(60, 0), 0.5: flip(12, 3), 0.7: flip(30, 30)}
    for mmm, correct in cells.items():
        scores = np.zeros((1000, 5))
        scores[np.arange(1000), np.where(correct, 0, 1)] = 1.0
        preds = {"scores": scores, "answers": np.zeros(1000, np.int64), "ids": np.array([f"q{i}" for i in range(1000)])}
        preds.update(MCQAAdapter.per_example(preds, {}))
        d = tmp_path / f"mmm{mmm}"
        save_predictions(d / "predictions.npz", "msrvtt-mcqa", {}, preds)
        save_result(
            Result(task="msrvtt-mcqa", family="mcqa", metrics={"accuracy": 100 * correct.mean()}, config={"mmm": mmm}),
            d / "result.json",
        )
    grid = grid_table(load_results(sorted(tmp_path.iterdir())), ["mmm"])
    p = grid["accuracy:p"].tolist()
    assert math.isnan(p[0]) and p[2] == pytest.approx(mcnemar_exact(12, 3)) and p[3] == 1.0
    assert 0.025 < p[2] < 0.05 and grid["accuracy:p_holm"].tolist()[1:] == pytest.approx(holm(p[1:]))
    assert grid["accuracy:sig"].tolist()[1:] == ["yes", "no", "no"]
    (table,) = grid_tables(grid, ["mmm"], {"msrvtt-mcqa": ["accuracy"]})
    assert list(table.frame["Δ accuracy"])[1:] == ["+6.00*", "+0.90", "+0.00"]
    assert "Holm" in PAIRED_NOTE and table.note.startswith(PAIRED_NOTE)


def test_signature_printed_under_every_report_table():
    """Each task's table is followed by its results' protocol signature (model run, then floors); without
    signatures the report is what it was."""
    from vlmbench.records import signature

    def signed(task, family, **kw):
        fields = signature.build(
            task=task,
            family=family,
            split="test",
            n=10,
            cfg={},
            model=kw.pop("model", "vlm"),
            features="toy",
            limit=None,
        )
        return make(task=task, family=family, signature=signature.record(fields), **kw)

    runs = [
        signed("msrvtt-retrieval", "retrieval"),
        signed("msrvtt-retrieval", "retrieval", model="floor:random", baseline="random"),
        signed("msrvtt-mcqa", "mcqa", metrics={"accuracy": 50.0}),
    ]
    sig = [r.signature_string for r in runs]
    for fmt in ("terminal", "markdown"):
        text = report(runs, against=None, fmt=fmt)
        retrieval, mcqa = text.split("msrvtt-mcqa", 1)
        assert sig[0] in retrieval and sig[1] in retrieval and sig[2] in mcqa
        assert retrieval.index(sig[0]) > retrieval.rindex("R@1") and retrieval.index(sig[0]) < retrieval.index(sig[1])
        assert text.rstrip().endswith(sig[2] + ("`" if fmt == "markdown" else ""))
    assert json.loads(report(runs, against=None, fmt="json"))["signatures"][sig[2]]["task"] == "msrvtt-mcqa"
    plain = [make(), make(task="msrvtt-mcqa", family="mcqa", metrics={"accuracy": 50.0})]
    from vlmbench.reporting import render
    from vlmbench.reporting.tables import report_tables

    tables = list(report_tables(report_frame(plain, None), markdown=True))
    assert report(plain, against=None, fmt="markdown") == render.markdown(tables, heading="## vlmbench report")
