"""Task specs, one YAML file per task (see vlmbench/registry.py).

This folder is shipped inside the wheel as the data package `vlmbench.tasks` (pyproject.toml package-dir).
"""
