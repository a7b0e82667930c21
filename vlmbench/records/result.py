"""The result record: one JSON file per task run (schema `vlmbench.result/1`), with provenance."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from vlmbench.errors import InputError
from vlmbench.io import write_json

SCHEMA = "vlmbench.result/1"
REPO_DIR = Path(__file__).resolve().parents[2]
VERSIONED_PACKAGES = ("torch", "transformers", "numpy", "vlmbench")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Result:
    task: str
    metrics: dict[str, float]
    family: str = ""
    split: str = ""
    conventions: dict[str, str] = field(default_factory=dict)  # e.g. tie policy, median convention
    counts: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    seed: int | None = None
    toy: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    baseline: str | None = None  # set for floor baselines ("random", "all-background", ...)
    # metric -> [low, high]: 95% bootstrap interval over the test examples (method in conventions["interval"])
    intervals: dict[str, list[float]] = field(default_factory=dict)
    # the model evaluated: name, class, capabilities, interface version, backbone, weights and their sha256
    model: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None  # `--limit N`: only the first N test examples were scored
    # the protocol signature: {"string": "vlmbench|task:...|...", "fields": {...}} (vlmbench.records.signature)
    signature: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    # Where the record was loaded from; not part of the file.
    path: Path | None = field(default=None, compare=False, repr=False)

    @property
    def signature_string(self) -> str | None:
        return self.signature.get("string") if self.signature else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["path"]
        d["intervals"] = {m: [None if b != b else b for b in bounds] for m, bounds in d["intervals"].items()}
        return {"schema": d.pop("schema"), **d}

    @classmethod
    def from_dict(cls, d: Any, path: Path | None = None) -> Result:
        """Validate and build; raises InputError (naming `path` when given) on a malformed record."""
        if not isinstance(d, dict):
            raise InputError("result must be a JSON object", path=path)
        if d.get("schema") != SCHEMA:
            raise InputError(f"schema is {d.get('schema')!r}, expected {SCHEMA!r}", path=path)
        for key in ("task", "metrics"):
            if key not in d:
                raise InputError(f"missing key {key!r}", path=path)
        if not isinstance(d["task"], str):
            raise InputError("'task' must be a string", path=path)
        metrics = d["metrics"]
        if not isinstance(metrics, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in metrics.values()
        ):
            raise InputError("'metrics' must map metric names to numbers", path=path)
        limit = d.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InputError("'limit' must be a positive integer or null", path=path)
        for key in ("conventions", "counts", "config", "provenance", "timings", "intervals", "model", "signature"):
            if not isinstance(d.get(key, {}), dict):
                raise InputError(f"{key!r} must be a JSON object", path=path)
        sig = d.get("signature", {})
        if sig and not (
            isinstance(sig.get("string"), str)
            and isinstance(sig.get("fields"), dict)
            and all(isinstance(v, str) for v in sig["fields"].values())
        ):
            raise InputError('\'signature\' must be {"string": text, "fields": {name: text}}', path=path)
        intervals = {}
        for m, bounds in d.get("intervals", {}).items():
            if not (
                isinstance(bounds, list)
                and len(bounds) == 2
                and all(b is None or isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            ):
                raise InputError(f"intervals[{m!r}] must be [low, high]", path=path)
            intervals[m] = [float("nan") if b is None else float(b) for b in bounds]
        known = {f.name for f in fields(cls)} - {"path"}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown keys {sorted(unknown)}", path=path)
        # JSON null is allowed for a metric that could not be computed; keep it as NaN.
        d = {
            **d,
            "metrics": {k: float("nan") if v is None else float(v) for k, v in metrics.items()},
            "intervals": intervals,
        }
        return cls(**d, path=path)


def _git(*args: str) -> str | None:
    # Only a source checkout has a git SHA: an installed package (site-packages) must not report the SHA of
    # whatever repository its venv happens to sit in.
    if not (REPO_DIR / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance(data_fingerprint: str | None) -> dict[str, Any]:
    """git SHA + dirty flag (tracked files only: stray untracked files do not change what ran),
    package versions and the data fingerprint. git fields are None outside a git checkout."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if sha is not None else None
    return {
        "git_sha": sha.strip() if sha is not None else None,
        "git_dirty": bool(status.strip()) if status is not None else None,
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in VERSIONED_PACKAGES}},
        "data_fingerprint": data_fingerprint,
    }


def save_result(result: Result, path: str | Path) -> Path:
    """Atomic write, so an interrupted run never leaves half a result file for `report` to trip on."""
    return write_json(path, result.to_dict())


def _result_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        found = set(path.rglob("result.json")) | set(path.rglob("*.result.json"))
        return sorted(p for p in found if p.is_file())
    raise InputError("no such file or folder", path=path)


def load_result(path: str | Path) -> Result:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable JSON result ({e})", path=path) from e
    return Result.from_dict(data, path=path)


def load_results(paths: str | Path | Iterable[str | Path]) -> list[Result]:
    """Load result files; folders are searched recursively for result.json and *.result.json."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        files += [f for f in _result_files(Path(p)) if f not in files]
    return [load_result(f) for f in files]
