"""The fuzz suite: bad inputs across every reader, command and config key.

Each case copies the toy world's datasets it needs, breaks one thing, runs one command through the CLI, and
asserts what the README promises: exit code 2, exactly one `error:` line on stderr that names the file or key,
no traceback (an exception escaping the CLI fails the case), and no file left in the output folder.
Most cases run the CLI in-process (typer's runner, so the suite stays fast); `test_entry_point_agrees` runs
a sample through the installed entry point as a subprocess to show both paths behave the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vlmbench.cli import app

DATASETS = ("howto100m", "msrvtt", "youcook2", "coin", "crosstask")
SMOKE = ["--preset", "smoke", "--no-progress"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """The toy world (written once) and a tiny VLM checkpoint, so no case pre-trains."""
    from vlmbench.data import toy
    from vlmbench.model.vlm import VLM

    root = tmp_path_factory.mktemp("world")
    for name in DATASETS:
        toy.write_dataset(name, root / name, seed=0)
    ckpt = VLM.from_backbone("tiny", seed=0).save(root / "ckpt")
    return {"root": root, "ckpt": Path(ckpt)}


# ---- mutations ---------------------------------------------------------------------------------------------


def first_feature(data: Path, ds: str) -> Path:
    return sorted((data / ds / "features").glob("*.npy"))[0]


def edit_feature(ds: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], str]:
    """Every feature file of the dataset broken the same way, so whichever examples a preset keeps meet it."""

    def setup(data: Path) -> str:
        for path in sorted((data / ds / "features").glob("*.npy")):
            np.save(path, fn(np.load(path)))
        return ".npy"

    return setup


def write(rel: str, content: str | bytes) -> Callable[[Path], str]:
    def setup(data: Path) -> str:
        path = data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return path.name

    return setup


def edit_text(rel: str, fn: Callable[[str], str]) -> Callable[[Path], str]:
    def setup(data: Path) -> str:
        path = data / rel
        path.write_text(fn(path.read_text()))
        return path.name

    return setup


def edit_json(rel: str, fn: Callable[[object], object]) -> Callable[[Path], str]:
    def setup(data: Path) -> str:
        path = data / rel
        path.write_text(json.dumps(fn(json.loads(path.read_text()))))
        return path.name

    return setup


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], str]:
    def setup(data: Path) -> str:
        path = data / rel
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * keep)])
        return path.name

    return setup


def _first(db: dict) -> dict:
    return db[sorted(db)[0]]


def coin_subset(db):
    _first(db["database"])["subset"] = "validation"
    return db


def coin_reversed(db):
    _first(db["database"])["annotation"][0]["segment"] = [20.0, 5.0]
    return db


def coin_negative(db):
    _first(db["database"])["annotation"][0]["segment"] = [-3.0, 5.0]
    return db


def yc_reversed(db):
    _first(db["database"])["annotations"][0]["segment"] = [30, 10]
    return db


def yc_string_segment(db):
    _first(db["database"])["annotations"][0]["segment"] = "2-10"
    return db


def how_reversed(caps):
    first = caps[sorted(caps)[0]]
    first["start"][0], first["end"][0] = 9.0, 2.0
    return caps


def how_string_start(caps):
    caps[sorted(caps)[0]]["start"][0] = "zero"
    return caps


def how_ragged(caps):
    caps[sorted(caps)[0]]["end"].pop()
    return caps


def how_traversal(caps):
    caps["../../etc/passwd"] = caps.pop(sorted(caps)[0])
    return caps


def msr_sentences_type(d):
    d["sentences"] = {"not": "a list"}
    return d


def msr_video_type(d):
    d["sentences"][0]["video_id"] = 17
    return d


# ---- cases -------------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    argv: list[str]  # {data} {out} {ckpt} are filled in
    names: str  # the error line must contain this (the file or key)
    setup: Callable[[Path], str] | None = None
    datasets: tuple[str, ...] = ()
    code: int = 2


def pre(*pairs: str) -> list[str]:
    return ["pretrain", "--data", "{data}/howto100m", "--out", "{out}", "--backbone", "tiny", *SMOKE, "steps=2", *pairs]


def run(task: str, *pairs: str, data: bool = True) -> list[str]:
    return [
        "run",
        "--task",
        task,
        *(["--data", "{data}"] if data else []),
        "--checkpoint",
        "{ckpt}",
        "--out",
        "{out}",
        *SMOKE,
        "max_train=4",
        "max_test=4",
        *pairs,
    ]


HOW = ("howto100m",)
MSR = ("msrvtt",)
YC = ("youcook2",)
COIN = ("coin",)
CT = ("crosstask",)
HOWCAP = "howto100m/captions.json"
MSRDATA = "msrvtt/MSRVTT_data.json"
MSRTEST = "msrvtt/MSRVTT_JSFUSION_test.csv"
MSRTRAIN = "msrvtt/MSRVTT_train.9k.csv"
MCTEST = "msrvtt/MSR_MC_test.csv"
YCANN = "youcook2/youcookii_annotations_trainval.json"
YCVAL = "youcook2/validation_youcook.csv"
COINJSON = "coin/COIN.json"
CTREL = "crosstask/crosstask_release"

CASES = [
    # -- configuration keys (one schema): out of range, wrong type, unknown, bad choice ---------------------
    Case("pretrain-mmm-above-1", pre("mmm=2"), "mmm", datasets=HOW),
    Case("pretrain-mmm-negative", pre("mmm=-0.1"), "mmm", datasets=HOW),
    Case("pretrain-clips-per-video-0", pre("clips_per_video=0"), "clips_per_video", datasets=HOW),
    Case("pretrain-lr-negative", pre("lr=-1"), "lr", datasets=HOW),
    Case("pretrain-lr-not-a-number", pre("lr=fast"), "lr", datasets=HOW),
    Case("pretrain-loss-choice", pre("loss=contrastive"), "loss", datasets=HOW),
    Case("pretrain-unknown-key", pre("learning_rate=1e-4"), "learning_rate", datasets=HOW),
    Case("pretrain-no-equals", pre("mmm"), "mmm", datasets=HOW),
    Case("pretrain-batch-size-0", pre("batch_size=0"), "batch_size", datasets=HOW),
    Case("pretrain-min-above-max-text", pre("min_text_len=70", "max_text_len=64"), "min_text_len", datasets=HOW),
    Case("pretrain-mfm-prob-above-1", pre("mfm_prob=1.5"), "mfm_prob", datasets=HOW),
    Case(
        "pretrain-unknown-preset",
        ["pretrain", "--data", "{data}/howto100m", "--out", "{out}", "--preset", "huge"],
        "preset",
        datasets=HOW,
    ),
    Case("run-unknown-task", ["run", "--task", "msrvtt-retreival", "--out", "{out}", "--no-progress"], "--task"),
    Case("run-epochs-negative", run("msrvtt-retrieval", "epochs=-1"), "epochs", datasets=MSR),
    Case("run-beam-0", run("youcook2-caption", "beam=0"), "beam", datasets=YC),
    Case("run-decode-choice", run("youcook2-caption", "decode=sample"), "decode", datasets=YC),
    Case("run-batch-size-word", run("msrvtt-retrieval", "batch_size=many"), "batch_size", datasets=MSR),
    Case("run-unknown-key", run("msrvtt-retrieval", "epoch=1"), "epoch", datasets=MSR),
    Case("run-bool-word", run("youcook2-caption", "skip_meteor=maybe"), "skip_meteor", datasets=YC),
    Case(
        "run-unknown-preset",
        [
            "run",
            "--task",
            "msrvtt-retrieval",
            "--checkpoint",
            "{ckpt}",
            "--out",
            "{out}",
            "--preset",
            "huge",
            "--no-progress",
        ],
        "preset",
    ),
    Case(
        "ablate-value-out-of-range",
        ["ablate", "mmm=0,2", "--tasks", "youcook2-retrieval", "--out", "{out}", *SMOKE],
        "mmm",
    ),
    Case(
        "ablate-unknown-key",
        ["ablate", "masking=0,1", "--tasks", "youcook2-retrieval", "--out", "{out}", *SMOKE],
        "masking",
    ),
    Case(
        "ablate-unknown-task",
        ["ablate", "mmm=0,0.5", "--tasks", "youcook3-retrieval", "--out", "{out}", *SMOKE],
        "youcook3-retrieval",
    ),
    # -- missing or unreadable inputs --------------------------------------------------------------------------
    Case(
        "run-data-folder-missing",
        [
            "run",
            "--task",
            "msrvtt-retrieval",
            "--data",
            "{data}/nowhere",
            "--checkpoint",
            "{ckpt}",
            "--out",
            "{out}",
            *SMOKE,
        ],
        "nowhere",
    ),
    Case(
        "run-checkpoint-missing",
        [
            "run",
            "--task",
            "msrvtt-retrieval",
            "--data",
            "{data}",
            "--checkpoint",
            "{data}/no-ckpt",
            "--out",
            "{out}",
            *SMOKE,
        ],
        "no-ckpt",
        datasets=MSR,
    ),
    Case(
        "run-checkpoint-pickle", run("msrvtt-retrieval"), "model.safetensors", datasets=MSR, setup=lambda d: "pickle"
    ),  # the checkpoint's weights replaced by a pickle (see _corrupt_checkpoint)
    Case(
        "run-checkpoint-config-json", run("msrvtt-retrieval"), "vlm_config.json", datasets=MSR, setup=lambda d: "config"
    ),
    Case("pretrain-data-empty-folder", pre(), "howto100m", setup=lambda d: (d / "howto100m").mkdir() or "howto100m"),
    Case("score-missing-file", ["score", "{data}/predictions.npz"], "predictions.npz"),
    Case(
        "score-not-npz",
        ["score", "{data}/predictions.npz"],
        "predictions.npz",
        setup=write("predictions.npz", "these are not predictions\n"),
    ),
    Case("score-unknown-task", ["score", "{data}/predictions.npz"], "nope", setup=lambda d: _npz(d, "nope")),
    Case(
        "report-nothing-found",
        ["report", "{data}"],
        "no result files",
        setup=lambda d: d.mkdir(parents=True, exist_ok=True) or "x",
    ),
    Case("report-bad-format", ["report", "{data}", "--format", "xml"], "--format", setup=lambda d: _result(d, "r")),
    Case(
        "report-bad-against", ["report", "{data}", "--against", "table9"], "--against", setup=lambda d: _result(d, "r")
    ),
    Case("report-result-not-json", ["report", "{data}"], "result.json", setup=write("r/result.json", "{oops")),
    Case("report-result-json-list", ["report", "{data}"], "result.json", setup=write("r/result.json", "[1, 2]")),
    Case(
        "compare-tol-not-number",
        ["compare", "{data}/r", "{data}/r", "--tol", "R@1=abc"],
        "--tol",
        setup=lambda d: _result(d, "r"),
    ),
    Case(
        "compare-tol-negative",
        ["compare", "{data}/r", "{data}/r", "--tol", "R@1=-1"],
        "--tol",
        setup=lambda d: _result(d, "r"),
    ),
    Case(
        "compare-other-task",
        ["compare", "{data}/a", "{data}/b"],
        "task",
        setup=lambda d: _result(d, "a", task="msrvtt-retrieval") + _result(d, "b", task="youcook2-retrieval"),
    ),
    Case(
        "baseline-unknown-kind",
        ["baseline", "--task", "coin-segmentation", "--kind", "oracle", "--out", "{out}", "--data", "{data}"],
        "oracle",
        datasets=COIN,
    ),
    Case(
        "baseline-background-on-retrieval",
        ["baseline", "--task", "msrvtt-retrieval", "--kind", "all-background", "--out", "{out}", "--data", "{data}"],
        "all-background",
        datasets=MSR,
    ),
    # -- feature files (one rule in the feature store for every task and for pre-training) --------------------
    Case(
        "features-wrong-width",
        run("msrvtt-retrieval"),
        ".npy",
        datasets=MSR,
        setup=edit_feature("msrvtt", lambda a: a[:, :256]),
    ),
    Case(
        "features-nan",
        run("youcook2-retrieval"),
        ".npy",
        datasets=YC,
        setup=edit_feature("youcook2", lambda a: np.where(np.arange(len(a))[:, None] == 1, np.nan, a).astype(a.dtype)),
    ),
    Case(
        "features-inf",
        run("coin-segmentation"),
        ".npy",
        datasets=COIN,
        setup=edit_feature("coin", lambda a: np.where(np.arange(len(a))[:, None] == 0, np.inf, a).astype(a.dtype)),
    ),
    Case(
        "features-zero-rows",
        run("msrvtt-retrieval"),
        ".npy",
        datasets=MSR,
        setup=edit_feature("msrvtt", lambda a: a[:0]),
    ),
    Case(
        "features-one-dimensional",
        run("msrvtt-mcqa"),
        ".npy",
        datasets=MSR,
        setup=edit_feature("msrvtt", lambda a: a[:, 0]),
    ),
    Case(
        "features-integer-dtype",
        run("msrvtt-retrieval"),
        ".npy",
        datasets=MSR,
        setup=edit_feature("msrvtt", lambda a: a.astype(np.int32)),
    ),
    Case(
        "features-not-npy",
        run("youcook2-caption", "skip_meteor=true"),
        ".npy",
        datasets=YC,
        setup=lambda d: first_feature(d, "youcook2").write_bytes(b"\x00garbage" * 10) or "npy",
    ),
    Case(
        "pretrain-features-nan",
        pre(),
        ".npy",
        datasets=HOW,
        setup=edit_feature("howto100m", lambda a: np.full_like(a, np.nan)),
    ),
    Case("pretrain-features-zero-rows", pre(), ".npy", datasets=HOW, setup=edit_feature("howto100m", lambda a: a[:0])),
    # -- HowTo100M captions -------------------------------------------------------------------------------------
    Case("howto-captions-truncated", pre(), "captions.json", datasets=HOW, setup=truncate(HOWCAP)),
    Case("howto-captions-reversed-times", pre(), "captions.json", datasets=HOW, setup=edit_json(HOWCAP, how_reversed)),
    Case("howto-captions-string-time", pre(), "captions.json", datasets=HOW, setup=edit_json(HOWCAP, how_string_start)),
    Case("howto-captions-ragged", pre(), "captions.json", datasets=HOW, setup=edit_json(HOWCAP, how_ragged)),
    Case("howto-captions-id-traversal", pre(), "passwd", datasets=HOW, setup=edit_json(HOWCAP, how_traversal)),
    Case(
        "howto-csv-latin1",
        pre(),
        ".csv",
        datasets=HOW,
        setup=lambda d: _howto_csv(d, "start,end,text\n0,4,caf\xe9 cr\xe8me\n".encode("latin-1")),
    ),
    Case(
        "howto-csv-unterminated-quote",
        pre(),
        ".csv",
        datasets=HOW,
        setup=lambda d: _howto_csv(d, b'start,end,text\n0,4,"chop the onion\n4,8,fry it\n8,12,serve\n'),
    ),
    Case(
        "howto-csv-negative-time",
        pre(),
        ".csv",
        datasets=HOW,
        setup=lambda d: _howto_csv(d, b"start,end,text\n-5,4,chop the onion\n4,8,fry it\n"),
    ),
    # -- MSR-VTT ------------------------------------------------------------------------------------------------
    Case(
        "msrvtt-test-missing-column",
        run("msrvtt-retrieval"),
        "MSRVTT_JSFUSION_test.csv",
        datasets=MSR,
        setup=edit_text(MSRTEST, lambda t: t.replace("sentence", "caption", 1)),
    ),
    Case(
        "msrvtt-test-empty", run("msrvtt-retrieval"), "MSRVTT_JSFUSION_test.csv", datasets=MSR, setup=write(MSRTEST, "")
    ),
    Case(
        "msrvtt-test-unterminated-quote",
        run("msrvtt-retrieval"),
        "MSRVTT_JSFUSION_test.csv",
        datasets=MSR,
        setup=edit_text(MSRTEST, lambda t: t.replace(",a ", ',"a ', 1)),
    ),
    Case(
        "msrvtt-test-id-traversal",
        run("msrvtt-retrieval"),
        "MSRVTT_JSFUSION_test.csv",
        datasets=MSR,
        setup=edit_text(MSRTEST, lambda t: t.replace("video400", "../video400", 1)),
    ),
    Case("msrvtt-data-truncated", run("msrvtt-retrieval"), "MSRVTT_data.json", datasets=MSR, setup=truncate(MSRDATA)),
    Case(
        "msrvtt-data-sentences-type",
        run("msrvtt-retrieval"),
        "MSRVTT_data.json",
        datasets=MSR,
        setup=edit_json(MSRDATA, msr_sentences_type),
    ),
    Case(
        "msrvtt-data-video-id-type",
        run("msrvtt-retrieval"),
        "MSRVTT_data.json",
        datasets=MSR,
        setup=edit_json(MSRDATA, msr_video_type),
    ),
    Case(
        "msrvtt-train-binary",
        run("msrvtt-retrieval"),
        "MSRVTT_train.9k.csv",
        datasets=MSR,
        setup=write(MSRTRAIN, b"\xff\xfe\x00v\x00i\x00d"),
    ),
    Case(
        "mcqa-answer-out-of-range",
        run("msrvtt-mcqa"),
        "MSR_MC_test.csv",
        datasets=MSR,
        setup=edit_text(MCTEST, lambda t: t.replace("\t3\n", "\t7\n", 1)),
    ),
    Case(
        "mcqa-missing-candidate-column",
        run("msrvtt-mcqa"),
        "MSR_MC_test.csv",
        datasets=MSR,
        setup=edit_text(MCTEST, lambda t: t.replace("\ta5", "", 1)),
    ),
    # -- YouCook2 -----------------------------------------------------------------------------------------------
    Case(
        "youcook2-annotations-truncated",
        run("youcook2-retrieval"),
        "youcookii_annotations_trainval.json",
        datasets=YC,
        setup=truncate(YCANN),
    ),
    Case(
        "youcook2-annotations-list",
        run("youcook2-caption", "skip_meteor=true"),
        "youcookii_annotations_trainval.json",
        datasets=YC,
        setup=write(YCANN, "[]"),
    ),
    Case(
        "youcook2-segment-reversed",
        run("youcook2-caption", "skip_meteor=true"),
        "youcookii_annotations_trainval.json",
        datasets=YC,
        setup=edit_json(YCANN, yc_reversed),
    ),
    Case(
        "youcook2-segment-string",
        run("youcook2-caption", "skip_meteor=true"),
        "youcookii_annotations_trainval.json",
        datasets=YC,
        setup=edit_json(YCANN, yc_string_segment),
    ),
    Case(
        "youcook2-validation-csv-bad-number",
        run("youcook2-retrieval"),
        "validation_youcook.csv",
        datasets=YC,
        setup=edit_text(YCVAL, lambda t: t.replace("\n7,2,", "\nseven,2,", 1)),
    ),
    Case(
        "youcook2-train-list-traversal",
        run("youcook2-caption", "skip_meteor=true"),
        "train_list.txt",
        datasets=YC,
        setup=edit_text("youcook2/train_list.txt", lambda t: t.replace("103/yc0000", "103/../../yc0000", 1)),
    ),
    # -- COIN ---------------------------------------------------------------------------------------------------
    Case("coin-json-truncated", run("coin-segmentation"), "COIN.json", datasets=COIN, setup=truncate(COINJSON)),
    Case(
        "coin-unknown-subset",
        run("coin-segmentation"),
        "COIN.json",
        datasets=COIN,
        setup=edit_json(COINJSON, coin_subset),
    ),
    Case(
        "coin-segment-reversed",
        run("coin-segmentation"),
        "COIN.json",
        datasets=COIN,
        setup=edit_json(COINJSON, coin_reversed),
    ),
    Case(
        "coin-segment-negative",
        run("coin-segmentation"),
        "COIN.json",
        datasets=COIN,
        setup=edit_json(COINJSON, coin_negative),
    ),
    Case("coin-no-database", run("coin-segmentation"), "COIN.json", datasets=COIN, setup=write(COINJSON, '{"db": {}}')),
    # -- CrossTask ----------------------------------------------------------------------------------------------
    Case(
        "crosstask-tasks-truncated",
        run("crosstask-zeroshot"),
        "tasks_primary.txt",
        datasets=CT,
        setup=truncate(f"{CTREL}/tasks_primary.txt", 0.3),
    ),
    Case(
        "crosstask-videos-id-traversal",
        run("crosstask-supervised"),
        "videos.csv",
        datasets=CT,
        setup=edit_text(f"{CTREL}/videos.csv", lambda t: t.replace(",ct", ",../ct", 1)),
    ),
    Case(
        "crosstask-annotation-bad-time",
        run("crosstask-supervised"),
        ".csv",
        datasets=CT,
        setup=lambda d: _crosstask_annotation(d),
    ),
    # -- data check: malformed is exit 2 ------------------------------------------------------------------------
    Case(
        "data-check-malformed-coin",
        ["data", "check", "--data", "{data}"],
        "COIN.json",
        datasets=COIN,
        setup=truncate(COINJSON),
    ),
    Case(
        "data-check-nan-feature",
        ["data", "check", "--data", "{data}"],
        ".npy",
        datasets=MSR,
        setup=edit_feature("msrvtt", lambda a: np.full_like(a, np.nan)),
    ),
]


def _npz(data: Path, task: str) -> str:
    data.mkdir(parents=True, exist_ok=True)
    np.savez(data / "predictions.npz", __task__=np.array(task), __config__=np.array("{}"), ranks=np.arange(3))
    return "predictions.npz"


def _result(data: Path, name: str, task: str = "msrvtt-retrieval") -> str:
    from vlmbench.records.result import Result, provenance, save_result

    r = Result(
        task=task,
        family="retrieval",
        split="test",
        metrics={"R@1": 10.0, "MedR": 5.0},
        conventions={},
        counts={"test": 10},
        config={"backbone": "tiny"},
        preset="smoke",
        seed=0,
        toy=True,
        provenance=provenance("fp"),
        timings={},
    )
    save_result(r, data / name / "result.json")
    return name


def _howto_csv(data: Path, raw: bytes) -> str:
    """Switch the toy HowTo100M folder to the per-video CSV layout, one file holding `raw`."""
    how = data / "howto100m"
    caps = json.loads((how / "captions.json").read_text())
    (how / "captions.json").unlink()
    (how / "captions").mkdir()
    vids = sorted(caps)
    for vid in vids[1:]:
        rows = ["start,end,text"] + [
            f"{s},{e},{t}" for s, e, t in zip(caps[vid]["start"], caps[vid]["end"], caps[vid]["text"])
        ]
        (how / "captions" / f"{vid}.csv").write_text("\n".join(rows) + "\n")
    (how / "captions" / f"{vids[0]}.csv").write_bytes(raw)
    return f"{vids[0]}.csv"


def _crosstask_annotation(data: Path) -> str:
    for path in sorted((data / CTREL / "annotations").glob("*.csv")):
        lines = path.read_text().splitlines()
        lines[0] = "1,soon,later"
        path.write_text("\n".join(lines) + "\n")
    return ".csv"


def _corrupt_checkpoint(kind: str, ckpt: Path, tmp: Path) -> Path:
    import pickle

    bad = tmp / "bad-ckpt"
    shutil.copytree(ckpt, bad)
    if kind == "pickle":
        (bad / "model.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    else:
        (bad / "vlm_config.json").write_text('{"hidden": ')
    return bad


def prepare(case: Case, world: dict[str, Path], tmp: Path) -> tuple[list[str], Path]:
    data, out = tmp / "data", tmp / "out"
    data.mkdir()
    for name in case.datasets:
        shutil.copytree(world["root"] / name, data / name)
    ckpt = world["ckpt"]
    marker = case.setup(data) if case.setup else None
    if marker in ("pickle", "config"):
        ckpt = _corrupt_checkpoint(marker, world["ckpt"], tmp)
    fill = {"{data}": str(data), "{out}": str(out), "{ckpt}": str(ckpt)}
    argv = []
    for a in case.argv:
        for k, v in fill.items():
            a = a.replace(k, v)
        argv.append(a)
    return argv, out


def files_in(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


def check(code: int, stderr: str, out: Path, case: Case, stdout: str = "") -> None:
    if case.argv[:2] == ["data", "check"]:
        # data check reports in its table: the malformed row names the file; exit 2
        assert code == case.code, f"exit {code}, stdout:\n{stdout[-2000:]}"
        assert "Traceback" not in stderr + stdout
        rows = [ln for ln in stdout.splitlines() if "malformed" in ln]
        assert rows and case.names in stdout, stdout[-2000:]
        return
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert code == case.code, f"exit {code}, stderr:\n{stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(errors) == 1, f"expected one error line, got:\n{stderr[-2000:]}"
    assert case.names in errors[0], f"{case.names!r} not named in: {errors[0]}"
    assert not files_in(out), f"files left in the output folder: {files_in(out)[:5]}"


def test_there_are_at_least_60_distinct_cases():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.slow
def test_bad_input(case: Case, world, tmp_path, monkeypatch):
    argv, out = prepare(case, world, tmp_path)
    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # an exception escaping the CLI is a traceback for the user
    check(result.exit_code, result.stderr, out, case, result.stdout)


SUBPROCESS_SAMPLE = [
    "pretrain-mmm-above-1",
    "run-unknown-task",
    "features-nan",
    "coin-unknown-subset",
    "howto-csv-latin1",
    "score-not-npz",
]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", SUBPROCESS_SAMPLE)
def test_entry_point_agrees(case_id, world, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    argv, out = prepare(case, world, tmp_path)
    exe = Path(sys.executable).parent / "vlmbench"
    r = subprocess.run(
        [str(exe), *argv], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"}
    )
    check(r.returncode, r.stderr, out, case, r.stdout)
