"""Task files are validated by their schema when the registry loads them: a broken one is reported by name, in one
line, while every other task still works (`vlmbench tasks` lists both; running the broken task is exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmbench import registry
from vlmbench.cli import app
from vlmbench.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.name[: -len(".yaml")] for p in (REPO / "tasks").glob("*.yaml"))


def _copy_tasks(tmp_path: Path) -> Path:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for p in (REPO / "tasks").glob("*.yaml"):
        shutil.copy(p, tasks / p.name)
    return tasks


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


# (file, text replaced, replacement, what the one line must say)
BROKEN = [
    ("msrvtt-mcqa", "metrics: [", "metrics: 5 #[", "metrics: input should be a valid list"),
    (
        "coin-segmentation",
        "files:\n  coin_json: COIN.json",
        "files: [COIN.json]",
        "files: input should be a valid dict",
    ),
    ("coin-segmentation", "num_classes: 779", "num_classes: many", "options.num_classes"),
    ("coin-segmentation", "name: coin-segmentation", "name: 7", "name: input should be a valid string"),
    ("youcook2-caption", "recipe: {", "recipe: 3 #{", "recipe: input should be a valid dict"),
    ("youcook2-caption", "toy: {epochs: 3,", "toy: 3\n  other: {epochs: 3,", "presets.toy"),
    ("youcook2-caption", "recipe: {epochs: 10,", "recipe: {epochs: ten,", "recipe: epochs='ten': expected int"),
    ("youcook2-caption", "split: validation", "split: [validation]", "split: input should be a valid string"),
    ("youcook2-caption", "split: validation", "spilt: validation", "spilt: unknown key (did you mean 'split'?)"),
    ("youcook2-caption", "description:", "dataset_: x\ndescription:", "dataset_: unknown key"),
    ("youcook2-caption", "family: captioning", "family: 3", "family"),
    ("msrvtt-retrieval", "dataset: msrvtt", "dataset: ''", "dataset"),
    ("msrvtt-retrieval", "learned:\n", "learned: 5\nold_learned:\n", "learned"),
]


@pytest.mark.parametrize("task, old, new, says", BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)])
def test_a_broken_task_file_is_set_aside_with_its_problem(tmp_path, task, old, new, says):
    tasks = _copy_tasks(tmp_path)
    _replace(tasks / f"{task}.yaml", old, new)
    assert sorted(registry.all_tasks(tasks)) == [t for t in SHIPPED if t != task]  # the others still load
    broken = registry.broken_tasks(tasks)
    assert list(broken) == [task]
    line = str(broken[task])
    assert "\n" not in line and f"{task}.yaml" in line and says in line, line
    with pytest.raises(InputError) as e:
        registry.get(task, tasks)
    assert str(e.value) == line
    assert registry.get("youcook2-retrieval", tasks).name == "youcook2-retrieval"


def test_a_task_file_that_is_not_yaml_or_not_a_mapping(tmp_path):
    tasks = _copy_tasks(tmp_path)
    (tasks / "msrvtt-mcqa.yaml").write_text("name: [unclosed\n")
    (tasks / "extra.yaml").write_text("- just\n- a list\n")
    broken = registry.broken_tasks(tasks)
    assert set(broken) == {"msrvtt-mcqa", "extra"}
    assert "malformed YAML" in str(broken["msrvtt-mcqa"]) and "expected a mapping" in str(broken["extra"])
    assert len(registry.all_tasks(tasks)) == len(SHIPPED) - 1


def test_a_task_defined_twice_names_the_second_file(tmp_path):
    tasks = _copy_tasks(tmp_path)
    shutil.copy(tasks / "msrvtt-mcqa.yaml", tasks / "zz-copy.yaml")
    assert "msrvtt-mcqa" in registry.all_tasks(tasks)
    problem = str(registry.broken_tasks(tasks)["msrvtt-mcqa"])
    assert "zz-copy.yaml" in problem and "defined twice" in problem


def test_shipped_task_files_are_all_valid():
    assert sorted(registry.all_tasks()) == SHIPPED and registry.broken_tasks() == {}


@pytest.fixture
def broken_registry(tmp_path, monkeypatch) -> Path:
    """The registry pointed at a copy of tasks/ whose msrvtt-mcqa.yaml has a wrong type."""
    tasks = _copy_tasks(tmp_path)
    _replace(tasks / "msrvtt-mcqa.yaml", "metrics: [", "metrics: 5 #[")
    monkeypatch.setattr(registry, "TASKS_DIR", tasks)
    return tasks


def _errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def test_tasks_lists_the_good_tasks_and_the_broken_file(broken_registry, monkeypatch):
    from rich.console import Console

    from vlmbench import cli

    monkeypatch.setattr(cli, "console", Console(width=300))  # rows unwrapped: each task name whole
    r = CliRunner().invoke(app, ["tasks"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 2
    for task in SHIPPED:
        assert task in r.stdout
    assert "broken task file" in r.stdout
    lines = _errors(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "msrvtt-mcqa.yaml" in lines[0], r.stderr
    assert "metrics" in lines[0] and "Traceback" not in r.stderr


def test_other_commands_work_and_the_broken_task_is_one_line(broken_registry, tmp_path):
    ok = CliRunner().invoke(app, ["tasks", "--show", "msrvtt-retrieval", "--preset", "smoke"])
    assert ok.exit_code == 0, ok.stderr
    assert "msrvtt-retrieval" in ok.stdout
    out = tmp_path / "out"
    bad = CliRunner().invoke(app, ["run", "--task", "msrvtt-mcqa", "--preset", "smoke", "--out", str(out)])
    assert bad.exit_code == 2
    lines = _errors(bad.stderr)
    assert len(lines) == 1 and "msrvtt-mcqa.yaml" in lines[0] and "metrics" in lines[0], bad.stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_good_task_runs_beside_a_broken_file(broken_registry, tmp_path):
    from vlmbench.data import toy
    from vlmbench.model.vlm import VLM

    data = tmp_path / "data"
    toy.write_dataset("youcook2", data / "youcook2", seed=0)
    ckpt = VLM.from_backbone("tiny", seed=0).save(tmp_path / "ckpt")
    out = tmp_path / "out"
    argv = ["run", "--task", "youcook2-retrieval", "--preset", "smoke", "--no-progress"]
    r = CliRunner().invoke(app, [*argv, "--data", str(data), "--checkpoint", str(ckpt), "--out", str(out)])
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert (out / "result.json").is_file()
