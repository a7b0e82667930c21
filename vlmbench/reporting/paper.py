"""The paper's Tables 2-9 as data (baselines/paper_tables.csv), read into pandas."""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import pandas as pd

from vlmbench.errors import InputError

# The repository's top-level baselines/ folder is the data package vlmbench.baselines (see pyproject.toml).
PAPER_TABLES_CSV = importlib.resources.files("vlmbench.baselines") / "paper_tables.csv"
COLUMNS = ["table", "method", "group", "metric", "value", "source", "task", "setting"]
MAIN_TABLES = (2, 3, 4, 5, 6, 7)
ABLATION_TABLES = (8, 9)


def load_paper_table(path: str | Path | None = None) -> pd.DataFrame:
    """All paper cells, one row each; `value` as float, `setting` '' where not an ablation."""
    return _load(str(Path(path) if path is not None else PAPER_TABLES_CSV)).copy()


@lru_cache(maxsize=4)
def _load(path: str) -> pd.DataFrame:
    try:
        # keep_default_na=False: an empty `setting` stays '' instead of NaN, so it can be grouped on
        df = pd.read_csv(path, dtype={"value": float, "table": int}, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read paper table: {e}", path=path) from e
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise InputError(f"missing columns {sorted(missing)}", path=path)
    return df[COLUMNS]


def paper_rows(task: str, tables: Iterable[int] | None = None, path: str | Path | None = None) -> pd.DataFrame:
    """The paper's cells for one vlmbench task, optionally restricted to some tables (e.g. MAIN_TABLES)."""
    df = load_paper_table(path)
    keep = df["task"] == task
    if tables is not None:
        keep &= df["table"].isin(list(tables))
    return df[keep].reset_index(drop=True)


def parse_setting(setting: str) -> dict[str, str]:
    """'mmm=0.5;loss=vlm' -> {'mmm': '0.5', 'loss': 'vlm'}; '' -> {}."""
    pairs = (p.split("=", 1) for p in setting.split(";") if p.strip())
    return {k.strip(): v.strip() for k, v in pairs}
