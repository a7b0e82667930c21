"""The paper's tables as data (paper_tables.csv, see README.md here).

This folder is shipped inside the wheel as the data package `vlmbench.baselines` (pyproject.toml package-dir).
"""
