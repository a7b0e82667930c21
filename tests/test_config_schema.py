"""The one config schema: every key=value (pretrain, run, ablate axes, task files) is typed, bounded and
documented once, bad values fail in one line before any work, and help / docs/keys.md are rendered from it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vlmbench import registry
from vlmbench.config import (
    KEYS_DOC,
    PRESETS,
    PretrainConfig,
    RunConfig,
    key_docs,
    markdown,
    pretrain_config,
    readme_blocks,
    run_config,
)
from vlmbench.errors import InputError
from vlmbench.registry import TaskSpec

ROOT = Path(__file__).resolve().parent.parent
ENTRY = Path(sys.executable).parent / "vlmbench"  # the installed entry point, as a user runs it
SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "reference-implementation.md"


def _vlmbench(*args, columns=None):
    env = {**os.environ, **({"COLUMNS": str(columns)} if columns else {})}
    return subprocess.run([str(ENTRY), *args], capture_output=True, text=True, timeout=300, env=env)


def _one_line_error(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    return lines[0]


# ---- bad values: one line naming key, value and what is allowed; exit 2; nothing written ---------------------


@pytest.mark.parametrize(
    "pair, allowed",
    [
        ("mmm=2", "between 0 and 1"),  # a probability (accepted silently before)
        ("clips_per_video=0", ">= 1"),  # ZeroDivisionError before
        ("lr=-1", "> 0"),  # a traceback, exit 1, before
        ("mlm_prob=-0.1", "between 0 and 1"),
        ("lr=nan", "float > 0"),
        ("colour=red", "unknown key 'colour'"),
        ("steps=ten", "expected int"),
        ("loss=ctc", "one of vlm, mfm-mlm"),
        ("min_text_len=70", "max_text_len"),  # 70 > the default max_text_len 64
    ],
)
@pytest.mark.slow
def test_pretrain_bad_key_value(tmp_path, pair, allowed):
    out = tmp_path / "X"
    line = _one_line_error(_vlmbench("pretrain", "--preset", "smoke", "--no-progress", "--out", str(out), pair))
    key, value = pair.split("=")
    assert f"{key}={value}" in line.replace("'", ""), line
    assert allowed in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "pair, allowed",
    [
        ("ties=optimistic", "one of pessimistic, mmpt"),
        ("select=best", "one of final, best-of-epochs"),
        ("dup=0", ">= 1"),
        ("epochs=-1", "between 0 and 1000000"),
        ("beam=two", "expected int"),
        ("mmm=0.3", "unknown key 'mmm'"),  # a pre-training key is no fine-tune/eval key
    ],
)
def test_run_bad_key_value(tmp_path, pair, allowed):
    out = tmp_path / "X"
    line = _one_line_error(
        _vlmbench("run", "--task", "msrvtt-retrieval", "--preset", "smoke", "--no-progress", "--out", str(out), pair)
    )
    assert pair.split("=")[0] in line and allowed in line, line
    assert not out.exists()


@pytest.mark.slow
def test_ablate_every_axis_value_is_checked_before_any_cell(tmp_path):
    out = tmp_path / "X"
    # the bad value is the last of the second axis: nothing may run for the good combinations first
    line = _one_line_error(
        _vlmbench(
            "ablate",
            "loss=vlm,mfm-mlm",
            "mmm=0,0.5,1.5",
            "--preset",
            "smoke",
            "--tasks",
            "msrvtt-retrieval",
            "--no-progress",
            "--out",
            str(out),
        )
    )
    assert "mmm=1.5" in line and "between 0 and 1" in line, line
    assert not out.exists()
    line = _one_line_error(
        _vlmbench(
            "ablate", "dup=1,0", "--preset", "smoke", "--tasks", "msrvtt-retrieval", "--no-progress", "--out", str(out)
        )
    )
    assert "dup=0" in line and ">= 1" in line and not out.exists()
    # a combination that breaks a cross-key rule is refused before any cell too
    line = _one_line_error(
        _vlmbench(
            "ablate",
            "min_text_len=8,40",
            "max_text_len=32,64",
            "--preset",
            "smoke",
            "--tasks",
            "msrvtt-retrieval",
            "--no-progress",
            "--out",
            str(out),
        )
    )
    assert "min_text_len=40" in line and "max_text_len=32" in line and not out.exists()


def test_unit_errors_name_key_value_and_range():
    cases = {
        ("mmm=2",): "mmm=2: must be between 0 and 1",
        ("lr=-1",): "lr=-1: must be > 0",
        ("beta2=1",): "beta2=1: must be >= 0 and < 1",
        ("seed=-3",): "seed=-3: must be between 0 and 4294967295",
        ("max_text_len=4",): "min_text_len=8, max_text_len=4",
        ("preset=toy",): "--preset",
    }
    for pairs, needle in cases.items():
        with pytest.raises(InputError) as e:
            pretrain_config("paper", pairs)
        assert needle in str(e.value), (pairs, str(e.value))
    with pytest.raises(InputError, match="did you mean 'mmm'"):
        pretrain_config("paper", ["mmn=0.3"])
    with pytest.raises(InputError, match="unknown preset 'huge'"):
        pretrain_config("huge")


def _spec(tmp_path, recipe, presets=None, name="t") -> TaskSpec:
    return TaskSpec(
        name=name,
        family="retrieval",
        dataset="d",
        description="",
        files={},
        features="features",
        metrics=("R@1",),
        split="test",
        recipe=recipe,
        presets=presets or {},
        source=tmp_path / f"{name}.yaml",
    )


@pytest.mark.parametrize(
    "recipe, presets, where, needle",
    [
        ({"lr": -1}, {}, "recipe", "lr=-1: must be > 0"),
        ({"epochs": True}, {}, "recipe", "epochs=True: expected int"),  # YAML `true` is no number
        ({"epochs": 2.5}, {}, "recipe", "epochs=2.5: expected int"),
        ({"windw": 32}, {}, "recipe", "unknown key 'windw'"),
        ({}, {"toy": {"stride": 0}}, "presets.toy", "stride=0: must be >= 1"),
        ({}, {"smoke": {"decode": "sample"}}, "presets.smoke", "decode='sample': expected one of beam, greedy"),
    ],
)
def test_task_file_recipe_and_presets_go_through_the_schema(tmp_path, recipe, presets, where, needle):
    spec = _spec(tmp_path, recipe, presets)
    with pytest.raises(InputError) as e:
        run_config(spec, "paper")  # a broken preset fails whichever preset is asked for
    msg = str(e.value)
    assert str(spec.source) in msg and where in msg and needle in msg, msg


def test_every_shipped_task_file_is_valid_for_every_preset():
    for spec in registry.all_tasks().values():
        for preset in ("paper", *spec.presets):
            assert run_config(spec, preset).preset == preset


# ---- precedence ----------------------------------------------------------------------------------------------


def test_run_precedence_paper_recipe_preset_pairs(tmp_path):
    spec = _spec(tmp_path, {"epochs": 7, "lr": 1e-4, "beam": 3}, {"toy": {"lr": 2e-4, "batch_size": 4}})
    paper = run_config(spec, "paper")
    assert (paper.epochs, paper.lr, paper.beam, paper.batch_size) == (7, 1e-4, 3, 128)  # 128: schema default
    toy = run_config(spec, "toy")
    assert (toy.epochs, toy.lr, toy.beam, toy.batch_size, toy.preset) == (7, 2e-4, 3, 4, "toy")
    user = run_config(spec, "toy", ["lr=3e-4", "beam=1", "warmup=0", "skip-meteor=yes"])
    assert (user.epochs, user.lr, user.beam, user.batch_size, user.warmup, user.skip_meteor) == (7, 3e-4, 1, 4, 0, True)
    with pytest.raises(InputError, match="unknown preset 'smoke'"):
        run_config(spec, "smoke")


def test_pretrain_precedence_paper_preset_pairs():
    paper, smoke = pretrain_config("paper"), pretrain_config("smoke")
    assert paper == PretrainConfig() and paper.lr == 5e-5
    for key, value in PRESETS["smoke"].items():
        assert getattr(smoke, key) == value
    assert smoke.mmm == paper.mmm  # not in the preset: the paper's
    user = pretrain_config("smoke", ["lr=3e-3", "mmm=0"])
    assert (user.lr, user.mmm, user.steps) == (3e-3, 0.0, PRESETS["smoke"]["steps"])


def test_run_schema_has_the_protocol_keys():
    c = RunConfig()
    assert (c.dup, c.ties, c.select) == (1, "pessimistic", "final")
    spec = registry.get("msrvtt-retrieval")
    assert run_config(spec, "smoke", ["dup=20", "ties=mmpt", "select=best-of-epochs"]).dup == 20


# ---- issue 9 item 7: the MFM-MLM baseline's minimum text length -------------------------------------------


def _reference_min_lens() -> tuple[int, int]:
    """(VLM, MFM-MLM) sampled_min_len, read from the reference spec's sampling paragraph."""
    if not SPEC.is_file():
        pytest.skip("reference spec not present")
    m = re.search(r"sampled_min_len=(\d+) \(VLM; (\d+) in mfmmlm\)", SPEC.read_text())
    assert m, "the spec's sampling paragraph moved"
    return int(m[1]), int(m[2])


def test_mfm_mlm_uses_the_authors_min_text_len():
    vlm_len, mfmmlm_len = _reference_min_lens()
    assert pretrain_config("paper").min_text_len == vlm_len
    assert pretrain_config("paper", ["loss=vlm"]).min_text_len == vlm_len
    base = pretrain_config("paper", ["loss=mfm-mlm"])
    assert base.min_text_len == mfmmlm_len and "min_text_len" in base.implied()
    explicit = pretrain_config("paper", ["loss=mfm-mlm", f"min_text_len={vlm_len}"])
    assert explicit.min_text_len == vlm_len and explicit.implied() == {}  # the user's value wins


@pytest.mark.slow
def test_mfm_mlm_ablation_cell_and_pretraining_record_the_min_text_len(tmp_path):
    from vlmbench.ablate import make_cells, parse_grid
    from vlmbench.train.pretrain import pretrain

    vlm_len, mfmmlm_len = _reference_min_lens()
    cells = {
        c.values["loss"]: c for c in make_cells(parse_grid(["loss=vlm,mfm-mlm"]), ["msrvtt-retrieval"], "smoke", None)
    }
    assert cells["vlm"].config["pretrain"]["min_text_len"] == vlm_len and cells["vlm"].label == "loss=vlm"
    base = cells["mfm-mlm"]
    assert base.config["pretrain"]["min_text_len"] == mfmmlm_len
    assert base.label == f"loss=mfm-mlm (min_text_len={mfmmlm_len})"
    cfg = pretrain_config("smoke", ["loss=mfm-mlm", "steps=1"])
    summary = pretrain(cfg, tmp_path / "p", progress=False, say=lambda s: None)
    assert summary["config"]["min_text_len"] == mfmmlm_len
    assert summary["implied"]["min_text_len"].startswith(f"{mfmmlm_len}:")


# ---- help and README from the same schema --------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, schemas", [("pretrain", [PretrainConfig]), ("run", [RunConfig]), ("ablate", [PretrainConfig, RunConfig])]
)
@pytest.mark.slow
def test_help_lists_every_key_with_default_and_range(command, schemas):
    r = _vlmbench(command, "-h", columns=80)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # rich wraps: compare on collapsed whitespace
    for schema in schemas:
        for key, default, allowed, _ in key_docs(schema):
            assert f"{key}={default}, {allowed}:" in text, (command, key)
    hand = {PretrainConfig: "mmm=0.5, float between 0 and 1:", RunConfig: "ties=pessimistic, one of pessimistic, mmpt:"}
    assert all(hand[s] in text for s in schemas)
    assert max(len(line) for line in r.stdout.splitlines()) <= 80


def test_key_tables_of_the_docs_are_the_schema():
    blocks = readme_blocks((ROOT / KEYS_DOC).read_text())
    assert blocks == {"pretrain": markdown(PretrainConfig), "run": markdown(RunConfig)}, (
        f"{KEYS_DOC} key tables are stale: run `python -m vlmbench.config`"
    )
