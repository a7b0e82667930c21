"""Every configuration key of vlmbench, declared once: type, default (the paper's), bounds and description.

    PretrainConfig   `vlmbench pretrain`      paper defaults < preset (PRESETS) < key=value
    RunConfig        `vlmbench run`           paper defaults < task recipe (tasks/*.yaml) < task preset < key=value

Every `key=value` a user types (pretrain, run, suite, each value of an ablation axis) and every key of a task
file's `recipe:` and `presets:` goes through these pydantic models. A bad one (unknown key, wrong type,
out of range, a choice that does not exist, min_text_len > max_text_len) is one InputError line naming the key,
the value and what is allowed, raised while resolving the config: before any work starts or any file is
written. The `-h` texts of `pretrain`, `run` and `ablate` and the key tables of docs/keys.md are rendered from the
same fields (`help_text`, `markdown`; `python -m vlmbench.config` rewrites docs/keys.md's tables).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import InputError


class TaskRecipe(Protocol):
    """What run_config reads of a task (registry.TaskSpec has it; config sits below the registry)."""

    name: str
    source: Any
    recipe: dict[str, Any]
    presets: dict[str, dict[str, Any]]


C = TypeVar("C", bound="Schema")

# Upper bounds of counts and seeds: numpy and torch take seeds below 2**32, and a count past these is a typo that
# would otherwise fail deep inside (an overflow in the seeds drawn per step) after files were written.
MAX_SEED = 2**32 - 1
MAX_STEPS = 10**9
MAX_EPOCHS = 10**6

# The authors' MFM-MLM baseline config (mfmmlm.yaml) samples text budgets from 10 tokens; VLM's from 8.
MFM_MLM_MIN_TEXT_LEN = 10


class Schema(BaseModel):
    """A config: every field is a `key=value` key except `preset`, which names where the values came from."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    preset: str = Field("paper", description="the preset these values were resolved with (set by --preset)")

    @classmethod
    def keys(cls) -> list[str]:
        return [k for k in cls.model_fields if k != "preset"]


def _key(default: Any, description: str, note: str | None = None, **bounds: Any) -> Any:
    """A documented key; `note` replaces the default in help where it depends on another key."""
    return Field(default, description=description, json_schema_extra={"note": note} if note else None, **bounds)


class Optimiser(Schema):
    """The optimiser and schedule keys `pretrain` and `run` share (Adam with fairseq's defaults, polynomial decay,
    gradient clipping), declared once. `warmup` is declared by each command: its paper default differs (1000
    updates of pre-training, 122 of fine-tuning)."""

    lr: float = _key(5e-5, "peak learning rate (Adam)", gt=0)
    lr_decay_steps: int = _key(
        1_000_000,
        "polynomial decay reaches 0 here (fairseq total_num_update: ~constant lr after warm-up)",
        ge=1,
        le=MAX_STEPS,
    )
    beta1: float = _key(0.9, "Adam beta1", ge=0, lt=1)
    beta2: float = _key(0.98, "Adam beta2", ge=0, lt=1)
    eps: float = _key(1e-8, "Adam epsilon", gt=0)
    weight_decay: float = _key(0.0, "Adam weight decay", ge=0)
    clip_norm: float = _key(2.0, "gradient norm clipping", gt=0)

    @classmethod
    def keys(cls) -> list[str]:
        """The command's own keys in declaration order, then the shared optimiser keys."""
        shared = [k for k in Optimiser.model_fields if k != "preset"]
        return [k for k in cls.model_fields if k != "preset" and k not in shared] + shared


class PretrainConfig(Optimiser):
    backbone: str = _key(
        "default", "'default' (MiniLM-L6), 'tiny' (2-layer random BERT, tests) or a local BERT folder", min_length=1
    )
    init_range: float = _key(
        0.0,
        "std of the normal init of every freshly initialised weight (the tiny backbone's, the video MLP's, the "
        "head transform's); 0 = the backbone config's initializer_range (BERT's 0.02)",
        ge=0,
        le=1,
    )
    loss: Literal["vlm", "mfm-mlm"] = _key(
        "vlm",
        "vlm: masked token loss (one softmax over frames and words); "
        "mfm-mlm: the baseline's separate MFM NCE + MLM losses",
    )
    mmm: float = _key(
        0.5,
        "P(an example is masked-modality: all of its video or all of its text masked); 0 = plain MFM-MLM masking",
        ge=0,
        le=1,
    )
    mfm_prob: float = _key(0.15, "P(a video token is masked) in an MFM-MLM example", ge=0, le=1)
    mlm_prob: float = _key(0.15, "P(a text token is masked) in an MFM-MLM example", ge=0, le=1)
    min_text_len: int = _key(
        8,
        "lower bound of each clip's random text budget (tokens) when neighbouring captions are added",
        note=f"8 ({MFM_MLM_MIN_TEXT_LEN} with loss=mfm-mlm)",
        ge=1,
    )
    max_text_len: int = _key(64, "upper bound of each clip's random text budget (tokens); >= min_text_len", ge=1)
    clips_per_video: int = _key(32, "clips sampled from each video per batch (the reference's subsampling)", ge=1)
    batch_size: int = _key(256, "clips per process and update (8 videos x 32 clips)", ge=1)
    epochs: int = _key(15, "passes over the videos; used when steps=0", ge=1, le=MAX_EPOCHS)
    steps: int = _key(0, "updates to run; 0 = epochs x batches per epoch", ge=0, le=MAX_STEPS)
    warmup: int = _key(1000, "linear warm-up updates; 0 = none", ge=0, le=MAX_STEPS)
    seed: int = _key(0, "seed of sampling, masking, dropout and initialisation", ge=0, le=MAX_SEED)
    save_every: int = _key(1024, "updates between checkpoints (--resume continues the latest)", ge=1, le=MAX_STEPS)
    val_fraction: float = _key(
        0.01,
        "share of the videos held out for a validation loss at every checkpoint (the authors' how2_s3d_val.lst); "
        "0 = none",
        ge=0,
        lt=0.5,
    )
    val_batches: int = _key(
        100, "validation batches per checkpoint at most (the slice's first videos; the same every time)", ge=1
    )
    keep_epoch: int = _key(
        11,
        "also keep the weights after this epoch as model-epochN/ (the authors fine-tune supervised CrossTask from "
        "their epoch-11 checkpoint, not the best); 0 = none",
        ge=0,
    )
    select: Literal["final", "best-val"] = _key(
        "best-val",
        "model/ = the final weights, or the checkpoint with the lowest validation loss (the authors' "
        "checkpoint_best.pt; needs val_fraction > 0)",
    )

    @model_validator(mode="after")
    def _resolve(self) -> PretrainConfig:
        if self.loss == "mfm-mlm" and "min_text_len" not in self.model_fields_set:
            self.__dict__["min_text_len"] = MFM_MLM_MIN_TEXT_LEN  # the authors' baseline, unless set
        if self.select == "best-val" and self.val_fraction == 0:
            raise PydanticCustomError(
                "select_needs_val", "select=best-val needs a validation slice: set val_fraction > 0 (or select=final)"
            )
        if self.min_text_len > self.max_text_len:
            raise PydanticCustomError(
                "text_len_order",
                "min_text_len={a}, max_text_len={b}: min_text_len must be <= max_text_len",
                {"a": self.min_text_len, "b": self.max_text_len},
            )
        return self

    def implied(self) -> dict[str, str]:
        """Values that came from another key rather than from a preset or the user: recorded in run.json."""
        if self.loss == "mfm-mlm" and "min_text_len" not in self.model_fields_set:
            return {"min_text_len": f"{self.min_text_len}: loss=mfm-mlm follows the authors' MFM-MLM config (VLM: 8)"}
        return {}


class RunConfig(Optimiser):
    backbone: str = _key("default", "backbone when no --checkpoint is given (and of the toy checkpoint)", min_length=1)
    seed: int = _key(0, "seed of fine-tuning (shuffles, dropout, head initialisation)", ge=0, le=MAX_SEED)
    zeroshot: bool = _key(False, "evaluate without fine-tuning")
    epochs: int = _key(10, "fine-tuning epochs; 0 = no fine-tuning", ge=0, le=MAX_EPOCHS)
    batch_size: int = _key(128, "training examples per update (task recipes set the paper's)", ge=1)
    virtual_ranks: int = _key(
        1,
        "processes simulated in one: an update takes virtual_ranks batches, each with its own in-batch negatives, "
        "gradients averaged (the authors' DDP without all-gather; the paper recipes set their GPU count)",
        ge=1,
        le=64,
    )
    warmup: int = _key(122, "linear warm-up updates; 0 = none", ge=0, le=MAX_STEPS)
    eval_batch_size: int = _key(256, "examples per forward at test time", ge=1)
    max_train: int = _key(0, "cap on training examples; 0 = all", ge=0)
    max_test: int = _key(0, "cap on test examples; 0 = all", ge=0)
    dup: int = _key(1, "training-list replication per epoch (the authors use 20 on MSR-VTT)", ge=1)
    window: int = _key(32, "sliding window, seconds (COIN, CrossTask)", ge=1)
    stride: int = _key(16, "test-time window stride, seconds", ge=1)
    train_stride: int = _key(8, "COIN training window stride, seconds", ge=1)
    decode: Literal["beam", "greedy"] = _key("beam", "caption decoding")
    beam: int = _key(5, "beam width", ge=1)
    max_new_tokens: int = _key(21, "most caption tokens generated", ge=1)
    length_penalty: float = _key(1.0, "beam-search length penalty (transformers-3.4 semantics)")
    tokenize: Literal["whitespace", "ptb"] = _key("whitespace", "caption tokenisation before scoring")
    skip_meteor: bool = _key(False, "skip METEOR (needs Java)")
    ties: Literal["pessimistic", "mmpt"] = _key(
        "pessimistic", "retrieval ties: pessimistic rank, or the reference's pooled positions"
    )
    select: Literal["final", "best-of-epochs"] = _key(
        "final", "reported checkpoint: the final model, or the best epoch on the test split (as the reference does)"
    )
    post: Literal["none", "dual-softmax"] = _key(
        "none",
        "retrieval scores before ranking: none (the paper), or dual-softmax (each score times its softmax over the "
        "other test queries: transductive, opt-in; shown in the result's signature)",
    )
    post_temperature: float = _key(1.0, "dual-softmax temperature T (softmax of score / T)", gt=0)


# Pre-training presets: overrides of the paper defaults, validated like key=value pairs.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A few minutes of CPU on the toy world with the default (MiniLM) backbone.
    "toy": dict(
        batch_size=16,
        clips_per_video=4,
        steps=150,
        lr=2e-4,
        warmup=15,
        lr_decay_steps=150,
        save_every=75,
        val_fraction=0.0,
        select="final",
    ),
    # Seconds, tiny backbone: CI and unit tests.
    "smoke": dict(
        backbone="tiny",
        batch_size=16,
        clips_per_video=4,
        steps=30,
        lr=1e-3,
        warmup=5,
        lr_decay_steps=30,
        save_every=10,
        val_fraction=0.0,
        select="final",
    ),
    # The CI gate's run: every task learns (see `learned:` in tasks/*.yaml) within minutes on 2 CPU cores.
    # Measured on toy world v2 (seeds 0-4; v3 only adds test examples): the tasks' own fine-tuning does most
    # of the work (MSR-VTT from a 1-update checkpoint: R@1 74), so the gate also compares this run's own loss
    # (OUT/pretrain/result.json: loss_first, loss_last, loss_drop; seed std ~0.04 nats).
    "ci": dict(
        backbone="tiny",
        batch_size=32,
        clips_per_video=4,
        steps=300,
        lr=1e-3,
        warmup=30,
        lr_decay_steps=300,
        save_every=150,
        val_fraction=0.0,
        select="final",
    ),
}
# Caption-clip alignment matters (issue 25; docs/ci-gate.md): ci's 300 updates at BERT's 0.02 init leave the tiny
# model close to a per-position unigram model that never reads the video (the text loss of whole-text-masked
# clips: 4.1567 with each clip's own video, 4.1569 with another's; CrossTask zero-shot recall 6.8). A 0.1
# init, clips of at most 16 text tokens and 1,500 updates make the clip's video worth 0.29 nats per masked word and
# zero-shot recall 43.6 (8 seeds); captions moved to the next video leave loss_last 0.94 nats higher and zero-shot
# recall 13.1 (results/reference/align/seeds.json, tests/test_alignment.py). About 2 min on 2 CPU cores.
PRESETS["align"] = {
    **PRESETS["ci"],
    **dict(init_range=0.1, max_text_len=16, steps=1500, lr=2e-3, warmup=100, lr_decay_steps=1500, save_every=500),
}

SCHEMAS: dict[str, type[Schema]] = {"pretrain": PretrainConfig, "run": RunConfig}


# ---- parsing and validation ----------------------------------------------------------------------------------


def _norm(key: str) -> str:
    return key.strip().replace("-", "_")


def split_pairs(pairs: Iterable[str], where: str | None = None) -> dict[str, str]:
    """['mmm=0.3', 'loss=vlm'] -> {'mmm': '0.3', 'loss': 'vlm'} (a later pair wins)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, raw = str(pair).partition("=")
        if not eq or not key.strip():
            raise InputError(f"{pair!r}: expected key=value", path=where)
        out[_norm(key)] = raw.strip()
    return out


def _type_name(cls: type[Schema], key: str) -> str:
    ann = cls.model_fields[key].annotation
    if getattr(ann, "__origin__", None) is Literal:
        return "one of " + ", ".join(map(str, ann.__args__))
    return {int: "int", float: "float", bool: "true or false", str: "text"}.get(ann, str(ann))


def allowed(cls: type[Schema], key: str) -> str:
    """'float between 0 and 1', 'int >= 1', 'one of vlm, mfm-mlm', ... (what help and errors say)."""
    return " ".join(p for p in (_type_name(cls, key), _bounds(cls, key)) if p)


def _bounds(cls: type[Schema], key: str) -> str:
    b: dict[str, Any] = {}
    for m in cls.model_fields[key].metadata:
        for name in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(at, name.capitalize())):
                b[name] = getattr(m, name)
    lo, hi = b.get("ge", b.get("gt")), b.get("le", b.get("lt"))
    num = lambda v: str(v) if isinstance(v, int) else f"{v:g}"  # noqa: E731  (4294967295, not 4.29497e+09)
    if "ge" in b and "le" in b:
        return f"between {num(lo)} and {num(hi)}"
    parts = [
        f"{'>=' if 'ge' in b else '>'} {num(lo)}" if lo is not None else "",
        f"{'<=' if 'le' in b else '<'} {num(hi)}" if hi is not None else "",
    ]
    return " and ".join(p for p in parts if p)


@cache
def _adapter(cls: type[Schema], key: str) -> TypeAdapter:
    from typing import Annotated

    info = cls.model_fields[key]
    typ = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(typ, config=ConfigDict(allow_inf_nan=False))


def _unknown(cls: type[Schema], key: str, raw: Any, what: str) -> str:
    close = difflib.get_close_matches(key, cls.keys(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{key}={raw}: unknown key {key!r} ({hint}{what} keys: {', '.join(cls.keys())})"


RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _message(cls: type[Schema], key: str, raw: Any, error: dict) -> str:
    if error["type"] in RANGE_ERRORS:
        return f"{key}={raw}: must be {_bounds(cls, key)}"
    if error["type"] == "string_too_short":
        return f"{key}={raw!r}: must not be empty"
    return f"{key}={raw!r}: expected {allowed(cls, key)}"  # wrong type, not a choice, inf/nan


def parse_value(cls: type[Schema], key: str, raw: Any, where: str | None = None, what: str | None = None) -> Any:
    """One value, typed and bounded by its field (cross-key rules are checked when the config is built)."""
    what = what or ("pre-training" if cls is PretrainConfig else "fine-tune/eval")
    if key not in cls.keys():
        if key == "preset":
            raise InputError(f"preset={raw}: set it with --preset", path=where)
        raise InputError(_unknown(cls, key, raw, what), path=where)
    if isinstance(raw, bool) and cls.model_fields[key].annotation in (int, float):  # YAML `true` is no number
        raise InputError(f"{key}={raw!r}: expected {allowed(cls, key)}", path=where)
    try:
        return _adapter(cls, key).validate_python(raw)
    except ValidationError as e:
        raise InputError(_message(cls, key, raw, e.errors()[0]), path=where) from None


def parse_overrides(cls: type[Schema], pairs: Iterable[str], where: str | None = None) -> dict[str, Any]:
    """['mmm=0.3', 'loss=vlm'] -> {'mmm': 0.3, 'loss': 'vlm'}, each value validated by its field."""
    return {k: parse_value(cls, k, v, where) for k, v in split_pairs(pairs, where).items()}


def _layer(cls: type[Schema], values: Mapping[str, Any], where: str | None) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise InputError(f"expected a mapping of keys, got {type(values).__name__}", path=where)
    return {_norm(str(k)): parse_value(cls, _norm(str(k)), v, where) for k, v in values.items()}


def resolve(cls: type[C], layers: Sequence[tuple[str | None, Mapping[str, Any]]], preset: str) -> C:
    """Defaults < each (source, values) layer in order; every value and the whole config validated."""
    values: dict[str, Any] = {}
    for where, layer in layers:
        values.update(_layer(cls, layer, where))
    try:
        return cls(**values, preset=preset)
    except ValidationError as e:
        err = e.errors()[0]
        key = err["loc"][0] if err["loc"] else None
        msg = err["msg"] if key is None else _message(cls, key, values.get(key), err)
        raise InputError(msg) from None


def build(cls: type[C], presets: dict[str, dict[str, Any]], preset: str | None, overrides: dict[str, Any]) -> C:
    """Defaults < presets[preset] < overrides (already-typed values)."""
    preset = _check_preset("paper" if preset is None else preset, presets)
    return resolve(cls, [(f"preset {preset}", presets[preset]), (None, overrides)], preset)


def _check_preset(preset: str, known: Iterable[str], where: str = "--preset") -> str:
    known = list(known)
    if not str(preset).strip():  # `--preset ''` is a mistake, never "the default"
        raise InputError(f"must not be empty (known: {', '.join(known)})", path=where)
    if preset not in known:
        raise InputError(f"unknown preset {preset!r} (known: {', '.join(known)})", path=where)
    return preset


def pretrain_config(preset: str | None = "paper", pairs: Iterable[str] = ()) -> PretrainConfig:
    """paper defaults < PRESETS[preset] < key=value pairs."""
    preset = _check_preset("paper" if preset is None else preset, PRESETS)
    return resolve(PretrainConfig, [(f"preset {preset}", PRESETS[preset]), (None, split_pairs(pairs))], preset)


def run_config(spec: TaskRecipe, preset: str | None, pairs: Iterable[str] = ()) -> RunConfig:
    """paper defaults < task recipe < task preset < key=value pairs. Every preset of the task file is
    validated too (a broken task file fails on any preset, not only on the one that has the typo)."""
    preset = "paper" if preset is None else preset
    where = str(spec.source or spec.name)
    recipe = (f"{where}: recipe", spec.recipe)
    for name, values in spec.presets.items():
        resolve(RunConfig, [recipe, (f"{where}: presets.{name}", values or {})], name)
    _check_preset(preset, ["paper", *spec.presets])
    own = [] if preset == "paper" else [(f"{where}: presets.{preset}", spec.presets[preset] or {})]
    return resolve(RunConfig, [recipe, *own, (None, split_pairs(pairs))], preset)


def field_types(cls: type[Schema]) -> dict[str, Any]:
    """key -> annotation, for every key=value key of cls."""
    return {k: cls.model_fields[k].annotation for k in cls.keys()}


def to_dict(cfg: Schema) -> dict[str, Any]:
    """Every field (preset included), JSON-ready, in declaration order."""
    return cfg.model_dump(mode="json")


# ---- help and docs/keys.md ---------------------------------------------------------------------------------------


def key_docs(cls: type[Schema]) -> list[tuple[str, str, str, str]]:
    """(key, default, allowed, description) per key, in declaration order."""
    rows = []
    for k in cls.keys():
        info = cls.model_fields[k]
        extra = info.json_schema_extra or {}
        default = extra.get("note") or (
            str(info.default).lower()
            if isinstance(info.default, bool)
            else repr(info.default)
            if isinstance(info.default, float)
            else str(info.default)
        )
        rows.append((k, default, allowed(cls, k), info.description or ""))
    return rows


def help_text(cls: type[Schema], title: str, width: int = 78) -> str:
    """Rich-markup text for a command's -h: per key `key=default, allowed: description`, wrapped to `width`
    with a hanging indent (typer keeps the indent of lines after the first unindented one)."""
    import textwrap

    from rich.markup import escape

    lines = [f"[bold]{escape(title)}[/bold] (key=value: default, allowed values, meaning):"]
    for key, default, allow, desc in key_docs(cls):
        wrapped = textwrap.wrap(
            f"{key}={default}, {allow}: {desc}", width=width, subsequent_indent="    ", break_on_hyphens=False
        )
        first = escape(wrapped[0])
        lines.append(f"[bold]{key}[/bold]{first[len(key) :]}")
        lines += [escape(w) for w in wrapped[1:]]
    return "\n".join(lines)


def markdown(cls: type[Schema]) -> str:
    """The key table docs/keys.md carries between `<!-- keys:NAME -->` and `<!-- /keys:NAME -->`."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| key | default | allowed | description |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {esc(d)} | {esc(a)} | {esc(s)} |" for k, d, a, s in key_docs(cls)]
    return "\n".join(lines)


def readme_blocks(text: str) -> dict[str, str]:
    """name -> the table currently between a document's key markers (docs/keys.md)."""
    return {m[1]: m[2].strip() for m in re.finditer(r"<!-- keys:(\w+) -->\n(.*?)<!-- /keys:\1 -->", text, re.S)}


def sync_readme(path: Path) -> bool:
    """Rewrite each key table of a document (docs/keys.md) from the schema; True when something changed."""
    from .io import write_text

    text = Path(path).read_text()
    new = re.sub(
        r"(<!-- keys:(\w+) -->\n).*?(<!-- /keys:\2 -->)",
        lambda m: f"{m[1]}{markdown(SCHEMAS[m[2]])}\n{m[3]}",
        text,
        flags=re.S,
    )
    if new != text:
        write_text(Path(path), new)
    return new != text


KEYS_DOC = "docs/keys.md"  # the document holding the key tables

if __name__ == "__main__":  # python -m vlmbench.config [docs/keys.md]
    for p in sys.argv[1:] or [KEYS_DOC]:
        print(f"{p}: {'updated' if sync_readme(Path(p)) else 'up to date'}")
