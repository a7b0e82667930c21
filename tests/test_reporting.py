"""Result records, provenance, loading, report formats and the ablation grid."""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from vlmbench.errors import InputError
from vlmbench.records.result import SCHEMA, Result, load_results, provenance, save_result
from vlmbench.reporting import render
from vlmbench.reporting.plots import ablation_figure, plot_metric_vs_key
from vlmbench.reporting.tables import (
    SMOKE_NOTE,
    TOY_NOTE,
    grid_table,
    grid_tables,
    report,
    report_frame,
    report_tables,
    run_table,
)


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
    """Toy-world rows come after the paper's (issue 22: toy rows read as state of the art above them); results on
    real data stay above the paper's rows they are comparable with."""
    df = report_frame(mixed_results, against="paper")
    assert list(df.kind) == ["paper"] * 7 + ["ours", "floor"]
    assert df.label.iloc[-2] == "toy-run preset=toy seed=0"
    assert df.label.iloc[-1] == "random"
    vlm = df[(df.kind == "paper") & (df.label == "VLM")].iloc[0]
    assert vlm["R@1"] == pytest.approx(28.1) and vlm.source == "paper Table 2, ours"
    assert list(report_frame(mixed_results, against=None).kind) == ["ours", "floor"]
    real = report_frame([make(config={"name": "real"}), *mixed_results], against="paper")
    assert list(real.kind) == ["ours"] + ["paper"] * 7 + ["ours", "floor"] and real.label.iloc[0] == "real"


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "csv", "json"])
def test_report_toy_label_every_format(mixed_results, fmt):
    out = report(mixed_results, against="paper", fmt=fmt)
    assert TOY_NOTE == "toy world: not comparable with published numbers"
    assert TOY_NOTE in out
    assert "28.10" in out or "28.1" in out  # the paper's VLM row is there
    assert "12.30" in out or "12.3" in out  # and ours


def test_report_formats_parse(mixed_results):
    rows = json.loads(report(mixed_results, fmt="json"))["rows"]
    assert rows[-2]["note"] == TOY_NOTE and rows[-2]["R@1"] == 12.3
    assert (rows[0]["label"], rows[0]["note"], rows[0]["R@5"]) == ("Random", "", 0.5)
    videoasmt = next(r for r in rows if r["label"].startswith("VideoAsMT"))
    assert videoasmt["R@5"] is None and videoasmt["R@10"] == 52.8  # the paper's "-" cell stays empty

    csv = pd.read_csv(io.StringIO(report(mixed_results, fmt="csv")), keep_default_na=False)
    assert list(csv.note[csv.kind == "ours"]) == [TOY_NOTE]
    md = report(mixed_results, fmt="markdown")
    assert "### msrvtt-retrieval\n\n| kind | label | source | R@1 | R@5 | R@10 | MedR |\n" in md  # no notes, no column
    assert f"### msrvtt-retrieval: {TOY_NOTE}\n\n| kind | label | source | R@1 | R@5 | MedR | note |" in md
    assert f"| ours (toy) | toy-run preset=toy seed=0 | test | 12.30 | 30.00 | 9.0 | {TOY_NOTE} |" in md


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
    # both bounds: an asymmetric interval is not 'value ± the larger half' (issue 22: BLEU-4 '6.51 ± 6.51')
    assert format_interval("R@1", 10.0, 8.5, 11.0) == "10.00 [8.50, 11.00]"
    assert format_interval("BLEU-4", 6.51, 0.0007, 9.04) == "6.51 [0.00, 9.04]"
    assert format_interval("R@1", 10.0, float("nan"), float("nan")) == "10.00"
    assert format_interval("MedR", 1.5, -7.0, 10.0, signed=True) == "+1.5 [-7.0, +10.0]"


@pytest.mark.parametrize("columns", [60, 100, 220])
def test_terminal_tables_fit_the_terminal(mixed_results, monkeypatch, columns):
    """Planted: the old renderer drew at a fixed 160 columns whatever the terminal."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = report(mixed_results, fmt="terminal")
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "12.30" in out


def test_report_ci_shows_both_bounds_and_files_carry_them():
    r = make(metrics={"R@1": 12.3, "MedR": 9.0}, intervals={"R@1": [10.0, 14.1], "MedR": [7.0, 11.5]})
    md = report([r], against=None, fmt="markdown", ci=True)
    assert "| 12.30 [10.00, 14.10] | 9.0 [7.0, 11.5] |" in md
    assert "[" not in report([r], against=None, fmt="markdown")
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
    assert re.search(r"│ ours \(toy\) +│ toy-run preset=toy seed=0 │", out), out


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


# ---- issue 22: readable tables, toy never drawn as comparable ----------------------------------------------------

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
# A number as a cell shows it: '78.00', '+1.5', '0.5058', or with its interval '78.00 [70.00, 86.00]'.
NUMBER = r"[-+]?\d+\.\d+"
CELL = re.compile(rf"(?<![\w.\[-]){NUMBER}(?: \[{NUMBER}, {NUMBER}\])?(?![\w.])")


def whole_numbers(out: str) -> Counter:
    return Counter(CELL.findall(out))


def number_cells(tables) -> Counter:
    return Counter(v for t in tables for c in t.numeric for v in t.frame[c] if CELL.fullmatch(str(v)))


@pytest.mark.parametrize("ref", ["ci", "smoke"])
@pytest.mark.parametrize("ci", [False, True], ids=["values", "intervals"])
def test_terminal_report_at_80_columns_holds_every_number_whole(monkeypatch, ref, ci):
    """Issue 22: at 80 columns every cell was cut ('4.…'). Each number of each table (with its interval) is on
    the screen whole, on one line, and no line is wider than the terminal."""
    monkeypatch.setenv("COLUMNS", "80")
    results = load_results(REFERENCE / ref)
    out = report(results, fmt="terminal", ci=ci)
    expected = number_cells(report_tables(report_frame(results), ci=ci))
    assert sum(expected.values()) > 50
    missing = expected - whole_numbers(out)
    assert not missing, f"cut or missing: {dict(missing)}"
    # a protocol signature is one string to copy and match, never wrapped; every table line fits
    lines = [line for line in out.splitlines() if not line.startswith("signature: vlmbench|")]
    assert max(len(line) for line in lines) <= 80 and "…" not in out


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_wide_tables_are_transposed_grouped_or_stacked_never_cut(width):
    """A table of many metric columns at any width: transposed (few rows), column groups (many rows) or stacked
    rows (very narrow); every number whole, every line within the width."""
    rows = [
        {"kind": "ours", "label": f"run {i} with a long descriptive name", **{f"m{j}": 10.0 * i + j for j in range(12)}}
        for i in range(6)
    ]
    frame = render.cells(pd.DataFrame(rows), [f"m{j}" for j in range(12)])
    for table in (
        render.Table(frame, "many rows", numeric=[f"m{j}" for j in range(12)]),
        render.Table(frame.head(1), "one row", numeric=[f"m{j}" for j in range(12)]),
    ):
        out = render.terminal([table], width=width)
        assert not number_cells([table]) - whole_numbers(out), out
        assert max(len(line) for line in out.splitlines()) <= width, out


def test_run_table_prints_one_metric_per_row_with_both_bounds():
    """`vlmbench run`'s table: a row per metric with its [lo, hi], whole at 40 columns; the world in the title."""
    [r] = load_results(REFERENCE / "ci" / "msrvtt-retrieval")
    table, note = run_table(r)
    assert note == "" and table.title == f"msrvtt-retrieval (test): {TOY_NOTE}"
    lo, hi = r.intervals["R@1"]
    assert list(table.frame.iloc[0]) == ["R@1", f"{r.metrics['R@1']:.2f}", f"[{lo:.2f}, {hi:.2f}]"]
    out = render.terminal([table], width=40)
    assert max(len(line) for line in out.splitlines()) <= 40
    assert all(f"│ {m} " in out for m in r.metrics) and f"[{lo:.2f}, {hi:.2f}]" in out


def test_smoke_output_says_once_it_is_a_plumbing_check():
    """Issue 22: smoke runs printed COIN 0.00 and MC-QA below chance with nothing saying that is expected."""
    flat = lambda s: " ".join(s.split())  # noqa: E731  (the terminal wraps the note)
    smoke = load_results(REFERENCE / "smoke")
    for fmt in ("terminal", "markdown", "json"):
        assert flat(report(smoke, fmt=fmt)).count(flat(SMOKE_NOTE)) == 1, fmt
    assert "COIN 0.00" in SMOKE_NOTE and "expected to learn nothing" in SMOKE_NOTE
    coin = next(r for r in smoke if r.task == "coin-segmentation")
    table, note = run_table(coin)
    assert note == SMOKE_NOTE and "smoke preset" in table.title
    assert SMOKE_NOTE not in report(load_results(REFERENCE / "ci"), fmt="markdown")


@pytest.mark.parametrize("ref", ["ci", "smoke"])
def test_toy_rows_sit_in_their_own_table_below_the_papers_labelled_in_every_row(ref):
    """Issue 22: bold toy rows sat above the paper's (COIN 81.67 over 68.39). Every toy row says so in its kind;
    no table holds both a toy row and a paper row; a task's toy table comes after its paper table."""
    results = load_results(REFERENCE / ref)
    tables = list(report_tables(report_frame(results)))
    seen_toy: set[str] = set()
    for t in tables:
        task = t.title.split(":")[0]
        kinds = list(t.frame["kind"])
        toy = [k for k in kinds if k.endswith(("(toy)", "(smoke)"))]
        assert not toy or len(toy) == len(kinds), kinds  # a table is all toy or all comparable
        if toy:
            assert "not comparable with published numbers" in t.title
            seen_toy.add(task)
        else:
            assert "paper" in kinds and task not in seen_toy, t.title
    assert len(seen_toy) == 8
    md = report(results, fmt="markdown")
    assert md.index("### coin-segmentation\n") < md.index("### coin-segmentation: ")


def test_toy_grid_labels_every_row_and_keeps_the_papers_rows_apart():
    grid = grid_table(ablation_results(), ["pretrain.mmm"])
    headline = {"youcook2-retrieval": ["R@1", "MedR"]}
    toy, paper = grid_tables(grid, ["pretrain.mmm"], headline, world="toy")
    assert list(toy.frame["world"]) == ["toy"] * 3 and TOY_NOTE in toy.title
    assert not [c for c in toy.frame.columns if "paper" in str(c)]
    assert list(paper.frame["paper R@1"]) == ["15.12", "27.05", "25.30"] and "real data" in paper.title
    [real] = grid_tables(grid, ["pretrain.mmm"], headline)  # real data: the paper's values beside ours
    assert "paper R@1" in real.frame.columns and "world" not in real.frame.columns


@pytest.mark.slow
def test_toy_ablation_plot_never_draws_toy_on_the_papers_axis(tmp_path):
    """Issue 22: the ablation plots drew toy curves on the paper's axis. Toy: two panels, each its own y-axis,
    one holding only toy series, the other only the paper's; real data: one axis for both."""
    grid = grid_table(ablation_results(), ["pretrain.mmm"])

    def series(ax) -> list[str]:
        return [t.get_text() for t in ax.get_legend().get_texts()]

    toy_ax, paper_ax = ablation_figure(grid, "pretrain.mmm", "R@1", preset="ci", toy=True).axes
    assert series(paper_ax) == ["paper (Tables 8/9)"] and all(s.startswith("toy: ") for s in series(toy_ax))
    assert "own axis" in toy_ax.get_title() and "own axis" in paper_ax.get_title()
    [one] = ablation_figure(grid, "pretrain.mmm", "R@1", toy=False).axes
    assert "paper (Tables 8/9)" in series(one) and len(series(one)) == 2
    svg = plot_metric_vs_key(grid, "pretrain.mmm", "R@1", tmp_path / "p.png", toy=True).with_suffix(".svg").read_text()
    assert "paper, Tables 8/9 (real data, own axis)" in svg


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
