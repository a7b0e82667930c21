"""baselines/paper_tables.csv against the paper: spot values, shape, and (when the paper text is
present beside the repo) every cell re-read from the text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vlmbench.reporting.paper import PAPER_TABLES_CSV, load_paper_table, paper_rows, parse_setting

REPO = Path(__file__).resolve().parents[1]
PAPER_TXT = REPO.parent / "shared" / "paper" / "vlm-paper.txt"
ROWS_PER_TABLE = {2: 25, 3: 22, 4: 7, 5: 9, 6: 3, 7: 30, 8: 24, 9: 30}


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return load_paper_table()


def value(df, table, method, metric, setting=""):
    hit = df[(df.table == table) & (df.method == method) & (df.metric == metric) & (df.setting == setting)]
    assert len(hit) == 1, (table, method, metric)
    return hit.value.iloc[0]


@pytest.mark.parametrize(
    "table,method,metric,expected",
    [
        (2, "VLM", "R@1", 28.1),
        (2, "VLM", "MedR", 4),
        (2, "Random", "MedR", 500),
        (3, "VLM", "R@1", 27.05),
        (3, "Random", "R@1", 0.03),
        (4, "VLM", "frame_acc", 68.39),  # printed 68.39 (68.4 when rounded)
        (5, "VLM (supervised on 540 videos)", "recall", 46.5),
        (5, "VLM (task-agnostic, zero-shot)", "recall", 28.5),
        (6, "VLM", "accuracy", 91.64),
        (7, "VLM", "BLEU-3", 17.78),
        (7, "VLM", "BLEU-4", 12.27),
        (7, "VLM", "METEOR", 18.22),
        (7, "VLM", "ROUGE-L", 41.51),
        (7, "VLM", "CIDEr", 1.3869),
        (7, "UniVL (Luo et al., 2020)", "CIDEr", 1.27),
    ],
)
def test_spot_values(df, table, method, metric, expected):
    assert value(df, table, method, metric) == pytest.approx(expected)


def test_ablation_values_and_settings(df):
    assert value(df, 8, "VLM w/ MMM 0%", "R@1", "mmm=0.0;min_text_len=8;loss=vlm") == pytest.approx(15.12)
    assert value(df, 8, "VLM w/ min. 16 text tokens", "MedR", "mmm=0.5;min_text_len=16;loss=vlm") == 5.0
    assert value(df, 9, "VLM w/ L_MFM-MLM", "CIDEr", "mmm=0.5;min_text_len=8;loss=mfm-mlm") == pytest.approx(1.3224)
    assert value(df, 9, "VLM w/ MMM 70%", "METEOR", "mmm=0.7;min_text_len=8;loss=vlm") == pytest.approx(17.67)
    # The default ablation row repeats the main tables' VLM numbers.
    assert value(df, 8, "VLM w/ MMM 50%", "R@10", "mmm=0.5;min_text_len=8;loss=vlm") == value(df, 3, "VLM", "R@10")
    assert parse_setting("mmm=0.3;min_text_len=8;loss=vlm") == {"mmm": "0.3", "min_text_len": "8", "loss": "vlm"}


def test_shape(df):
    assert df.groupby("table").size().to_dict() == ROWS_PER_TABLE
    assert not df.duplicated(["table", "method", "group", "metric", "setting"]).any()
    assert (df.source == "vlm-paper Table " + df.table.astype(str)).all()
    assert set(df.metric) == {
        "R@1",
        "R@5",
        "R@10",
        "MedR",
        "frame_acc",
        "recall",
        "accuracy",
        "BLEU-3",
        "BLEU-4",
        "METEOR",
        "ROUGE-L",
        "CIDEr",
    }
    assert (df[df.table.isin([8, 9])].setting != "").all()
    assert (df[~df.table.isin([8, 9])].setting == "").all()


def test_task_mapping(df):
    tasks = df.groupby("table")["task"].unique().map(sorted).to_dict()
    assert tasks == {
        2: ["msrvtt-retrieval"],
        3: ["youcook2-retrieval"],
        4: ["coin-segmentation"],
        5: ["crosstask-supervised", "crosstask-zeroshot"],
        6: ["msrvtt-mcqa"],
        7: ["youcook2-caption"],
        8: ["youcook2-retrieval"],
        9: ["youcook2-caption"],
    }
    assert list(paper_rows("crosstask-zeroshot").method) == ["VLM (task-agnostic, zero-shot)"]
    assert sorted(paper_rows("youcook2-retrieval").table.unique()) == [3, 8]
    assert list(paper_rows("youcook2-retrieval", tables=[3]).table.unique()) == [3]


def _paper_table_rows(lines: list[str], n: int) -> list[tuple[str, list[str]]]:
    """(row label, cells) for the numeric rows of table n, read upwards from its caption."""
    cap = next(i for i, line in enumerate(lines) if line.startswith(f"Table {n}:"))
    i = cap - 1
    while not lines[i].strip():
        i -= 1
    rows = []
    while not lines[i].startswith(("Methods\t", "Method\t", "VLM\tR@1", "VLM\tB-3")):
        cells = [c.strip() for c in lines[i].split("\t")]
        if len(cells) > 1 and cells[1]:  # section headings have no numbers
            rows.append((cells[0], cells[1:]))
        i -= 1
    return rows[::-1]


@pytest.mark.skipif(not PAPER_TXT.exists(), reason="paper text not beside the repo")
def test_every_cell_matches_paper_text():
    lines = PAPER_TXT.read_text().splitlines()
    raw = pd.read_csv(PAPER_TABLES_CSV, dtype=str, keep_default_na=False)  # values as printed
    for n, expected_rows in ROWS_PER_TABLE.items():
        paper = _paper_table_rows(lines, n)
        ours = raw[raw.table == str(n)]
        methods = list(dict.fromkeys(ours.method))
        assert len(methods) == len(paper), n
        total = 0
        for method, (label, cells) in zip(methods, paper):
            if n in (8, 9):
                assert method == "VLM " + label.replace(r"$\mathcal{L}_{\text{MFM-MLM}}$", "L_MFM-MLM")
            else:
                assert method == label
            printed = [c for c in cells if c != "-"]
            assert list(ours[ours.method == method].value) == printed, (n, method)
            total += len(printed)
        assert total == expected_rows
