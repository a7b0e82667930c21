"""Kept so `from vlmbench.runconfig import RunConfig, run_config` still works: the fine-tune/eval keys are
declared in vlmbench.config (the one schema)."""

from .config import RunConfig, run_config

__all__ = ["RunConfig", "run_config"]
