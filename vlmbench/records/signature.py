"""The protocol signature of a result: every choice behind its numbers, as JSON fields and as one compact string
in the spirit of sacreBLEU's (`key:value|key:value|...|version:x`), printed under every table.

Two results' numbers are comparable only where their signatures agree: `vlmbench compare` refuses a mismatch
(naming the field) unless --force. The fields, per task family (a field that does not apply is left out):

    task, split, n       the task, the split scored and how many examples were scored
    direction            retrieval: the ranked directions (t2v primary, v2t beside it)
    ties                 retrieval: pessimistic | mmpt; MC-QA: the first maximum wins (argmax)
    rk                   retrieval: R@k is a hit rate (the one true item in the top k), in percent
    sim                  retrieval, MC-QA: the score is the raw dot product of the pooled states (no norm, no T)
    post                 retrieval: inference-time post-processing of the scores (none | dual-softmax(T=...))
    tok, meteor, cider   captioning: the caption tokenizer, the METEOR jar's sha256 (or skipped), the CIDEr variant
                         and the corpus its IDF comes from
    decode               captioning: search, beam, length penalty, most new tokens
    windows              COIN, CrossTask: test-time window and stride (seconds)
    acc / recall         COIN: frames pooled over videos, background included; CrossTask: macro over tasks
    loss                 the pre-training's own result (task pretrain, n = updates): the objective, and that the
                         numbers are the mean training loss over the first / last tenth of the updates
    select               the reported checkpoint: final | best-of-epochs (selected on the test split)
    features             where the video features come from: toy | s3d@<weights sha256>,fps,crop,dtype[,l2] from
                         the feature folder's extraction.json (`vlmbench features extract`) | unrecorded
    model                the model evaluated, from the model interface (result.model's name; a floor: floor:<kind>)
    limit                --limit N, or none
    version              the vlmbench version (recorded, not enforced: comparing versions is what compare is for)

The fine-tuning hyper-parameters, the seed, the weights and the data fingerprint are not part of it: they are the
system measured, not the way it is measured (the data fingerprint and preset are compare's identity fields).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXTRACTION_FILE = "extraction.json"  # written by `vlmbench features extract` (vlmbench.video.extract)
UNRECORDED = "unrecorded"
INFORMATIONAL = ("version",)  # in the signature, not a reason to refuse a comparison
# Field order of the string (and of the JSON object); short names, as sacreBLEU's.
ORDER = (
    "task",
    "split",
    "n",
    "direction",
    "ties",
    "rk",
    "sim",
    "post",
    "tok",
    "meteor",
    "cider",
    "decode",
    "windows",
    "acc",
    "recall",
    "loss",
    "select",
    "features",
    "model",
    "limit",
    "version",
)
_ESCAPES = {"%": "%25", "|": "%7C", ":": "%3A"}


def _escape(value: Any) -> str:
    """A field value with the string's separators escaped, so that the string determines the fields."""
    text = str(value)
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _num(x: Any) -> str:
    return f"{float(x):g}"


@functools.cache
def meteor_jar_sha256() -> str | None:
    """sha256 (first 12 hex digits) of pycocoevalcap's METEOR 1.5 jar, found without importing it; None if absent."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    jar = Path(next(iter(spec.submodule_search_locations))) / "meteor" / "meteor-1.5.jar"
    if not jar.is_file():
        return None
    h = hashlib.sha256()
    with open(jar, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def feature_source(folder: Path | None, toy: bool) -> str:
    """toy, or s3d@<weights sha256 12>,fps<F>,crop<S>,<dtype>[,l2] from the folder's extraction.json, or
    'unrecorded' (features from elsewhere: the authors' release, another extractor)."""
    if toy:
        return "toy"
    if folder is None:
        return UNRECORDED
    try:
        s = json.loads((Path(folder) / EXTRACTION_FILE).read_text())
    except (OSError, ValueError):
        return UNRECORDED
    if not isinstance(s, dict):
        return UNRECORDED
    weights = "random-init" if s.get("random_init") else str(s.get("weights_sha256") or "?")[:12]
    parts = [f"s3d@{weights}", f"fps{s.get('fps', '?')}", f"crop{s.get('size', '?')}", str(s.get("dtype", "?"))]
    if s.get("l2_normalize"):
        parts.append("l2")
    return ",".join(parts)


def build(
    *,
    task: str,
    family: str,
    split: str,
    n: int,
    cfg: Mapping[str, Any],
    model: Mapping[str, Any] | str | None,
    features: str,
    limit: int | None,
    version: str | None = None,
) -> dict[str, str]:
    """The signature fields (all strings, in ORDER) of a result of `task` scored on `n` examples of `split` with
    the run config `cfg` (a dict of vlmbench.config.RunConfig), the model (result.model or a name)."""
    from vlmbench import __version__

    f: dict[str, str] = {"task": task, "split": split or "?", "n": str(int(n))}
    if family == "retrieval":
        post = str(cfg.get("post", "none"))
        f.update(
            direction="t2v+v2t",
            ties=str(cfg.get("ties", "pessimistic")),
            rk="hit",
            sim="dot",
            post=f"dual-softmax(T={_num(cfg.get('post_temperature', 1.0))})" if post == "dual-softmax" else post,
        )
    elif family == "mcqa":
        f.update(ties="first-max", sim="dot")
    elif family == "captioning":
        jar = meteor_jar_sha256()
        greedy = str(cfg.get("decode", "beam")) == "greedy"
        f.update(
            tok=str(cfg.get("tokenize", "whitespace")),
            meteor="skipped" if cfg.get("skip_meteor") else f"1.5@{jar or '?'}",
            cider="CIDEr-D,idf=scored-set",
            decode=("greedy" if greedy else f"beam{int(cfg.get('beam', 5))},lp{_num(cfg.get('length_penalty', 1.0))}")
            + f",max{int(cfg.get('max_new_tokens', 21))}",
        )
    elif family in ("segmentation", "localization"):
        f["windows"] = f"{int(cfg.get('window', 32))}s/{int(cfg.get('stride', 16))}s"
        if family == "segmentation":
            f["acc"] = "frames-pooled,bg-incl"
        else:
            f["recall"] = "macro-tasks"
    elif family == "pretrain":
        f["loss"] = f"{cfg.get('loss', 'vlm')},mean-first-last-10%"
    name = model.get("name") if isinstance(model, Mapping) else model
    if family != "pretrain":
        f["select"] = str(cfg.get("select", "final"))
    f.update(
        features=features,
        model=str(name or "?"),
        limit=str(limit) if limit else "none",
        version=version or __version__,
    )
    return {k: f[k] for k in ORDER if k in f}


def to_string(fields: Mapping[str, str]) -> str:
    """`vlmbench|task:...|...|version:...`: every field as key:value, separators in values escaped."""
    return "|".join(["vlmbench", *(f"{k}:{_escape(fields[k])}" for k in fields)])


def record(fields: Mapping[str, str]) -> dict[str, Any]:
    """What result.json stores: {"string": the compact string, "fields": the same fields as JSON}."""
    return {"string": to_string(fields), "fields": dict(fields)}


def fields_of(signature: Mapping[str, Any] | None) -> dict[str, str]:
    """The fields of a stored signature ({} for a result written before signatures)."""
    got = (signature or {}).get("fields")
    return dict(got) if isinstance(got, Mapping) else {}


def mismatch(a: Mapping[str, str], b: Mapping[str, str]) -> tuple[str, str | None, str | None] | None:
    """The first protocol field (in ORDER, then any other) in which two signatures differ: (field, a's, b's), a
    field one side lacks counting as a difference; None when they agree (the version is not compared)."""
    keys = [k for k in ORDER if k in a or k in b] + sorted((set(a) | set(b)) - set(ORDER))
    for k in keys:
        if k in INFORMATIONAL:
            continue
        if a.get(k) != b.get(k):
            return k, a.get(k), b.get(k)
    return None


def of_run(spec, root: Path, toy: bool, n: int, cfg: Mapping[str, Any], model, limit: int | None) -> dict[str, Any]:
    """The signature record of a task run (or a floor) of the registry's `spec` over the data root `root`."""
    return record(
        build(
            task=spec.name,
            family=spec.family,
            split=spec.split,
            n=n,
            cfg=cfg,
            model=model,
            features=feature_source(spec.feature_dir(root), toy),
            limit=limit,
        )
    )
