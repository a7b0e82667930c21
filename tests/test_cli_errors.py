"""The CLI's own ways out: one `error:` line (exit 2) that prints user text verbatim, usage errors as one line,
SIGINT/SIGTERM as one `interrupted` line (exit 130/143), and the bad inputs that used to give a traceback or be
silently accepted (huge seeds and step counts, `--preset ''`, an --out that is a file or read-only)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmbench import cli
from vlmbench.cli import app

CLI = [sys.executable, "-m", "vlmbench.cli"]


def invoke(*argv: str):
    r = CliRunner().invoke(app, list(argv), env={"COLUMNS": "300"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # what a user would see as a traceback
    return r


def one_error(r, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line, starting `error:`, containing each needle; no traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def files_in(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


# ---- user text is never rich markup -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["[/b]", "segment [start, end] and sentence", "[red]x[/red]", "a[bold]b"])
def test_error_messages_print_user_text_verbatim(name, tmp_path):
    line = one_error(invoke("run", "--task", name, "--out", str(tmp_path / "out")), "--task")
    assert f"unknown task {name!r}" in line
    assert not (tmp_path / "out").exists()


def test_data_check_table_prints_details_verbatim(tmp_path, monkeypatch):
    from vlmbench import checks

    detail = "COIN.json: video v1: expected segment [start, end] and sentence [/b]"

    def fake(data, task, allow_missing):
        from types import SimpleNamespace

        return [SimpleNamespace(task="coin-segmentation", status="malformed", details=detail)]

    monkeypatch.setattr(checks, "check_data", fake)
    from rich.console import Console

    from vlmbench import cli

    monkeypatch.setattr(cli, "console", Console(width=300))  # wide enough that the detail is not wrapped
    r = invoke("data", "check", "--data", str(tmp_path))
    assert r.exit_code == 2
    assert detail in r.stdout, r.stdout


# ---- usage errors: one line, exit 2 -------------------------------------------------------------------------


@pytest.fixture
def main(monkeypatch, capsys):
    """cli.main() in-process with argv; returns (exit code, stderr). Signal handlers are restored after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def call(*argv: str):
        monkeypatch.setattr(sys, "argv", ["vlmbench", *argv])
        monkeypatch.setenv("COLUMNS", "300")
        with pytest.raises(SystemExit) as e:
            cli.main()
        return e.value.code, capsys.readouterr().err

    yield call
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["run"], "error: --task: missing option (see `vlmbench run -h`)"),
        (["data", "toy", "--out", "x", "--seed", "abc"], "error: --seed: "),
        (["run", "--task", "msrvtt-retrieval", "--nope"], "error: --nope: no such option"),
        (["score"], "error: PREDICTIONS: missing argument"),
        (["frobnicate"], "error: No such command 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line(main, argv, says):
    code, err = main(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(says), err
    assert "╭" not in err and "Usage:" not in err


def test_an_environment_missing_a_dependency_is_one_line_before_any_work(main, monkeypatch, tmp_path):
    """A venv set up before tensorboard became a dependency ran `vlmbench run` until the tracker imported it, then
    ended in a traceback. Now the entry point names what is missing and how to install it, before any work."""
    from importlib import metadata

    real = metadata.version

    def version(name):
        if name == "tensorboard":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    assert cli.missing_dependencies() == []  # this environment is complete
    monkeypatch.setattr(metadata, "version", version)
    code, err = main("run", "--task", "youcook2-caption", "--preset", "smoke", "--out", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "lacks tensorboard" in lines[0] and "make install" in lines[0]
    assert not (tmp_path / "out").exists()


def test_help_and_version_still_exit_0(main, capsys):
    assert main("--version")[0] == 0
    assert main("run", "-h")[0] == 0


# ---- values that used to crash after writing files, or to be silently replaced -------------------------------


@pytest.mark.parametrize(
    "pair, says",
    [
        (f"seed={2**32}", "seed=4294967296: must be between 0 and 4294967295"),
        (f"seed={10**30}", "seed="),
        (f"steps={10**30}", "steps="),
        (f"epochs={10**30}", "epochs="),
        (f"save_every={10**30}", "save_every="),
    ],
)
def test_pretrain_huge_integers_are_refused_before_anything_is_written(tmp_path, pair, says):
    out = tmp_path / "out"
    one_error(invoke("pretrain", "--out", str(out), "--preset", "smoke", "--no-progress", pair), says)
    assert not out.exists()


@pytest.mark.parametrize("pair", [f"seed={2**32}", f"epochs={10**30}", f"warmup={10**30}"])
def test_run_huge_integers_are_refused(tmp_path, pair):
    out = tmp_path / "out"
    one_error(invoke("run", "--task", "msrvtt-retrieval", "--out", str(out), pair), pair.split("=")[0] + "=")
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["pretrain", "--data", "{missing}", "--out", "{out}"],
        ["run", "--task", "msrvtt-retrieval", "--data", "{missing}", "--out", "{out}"],
        ["ablate", "mmm=0,0.5", "--data", "{missing}", "--out", "{out}"],
        ["suite", "--data", "{missing}", "--out", "{out}"],
        ["baseline", "--task", "msrvtt-retrieval", "--data", "{missing}", "--out", "{out}"],
        ["tasks", "--show", "msrvtt-retrieval"],
    ],
)
def test_empty_preset_is_refused(tmp_path, argv):
    fill = {"{missing}": str(tmp_path / "no-data"), "{out}": str(tmp_path / "out")}
    argv = [fill.get(a, a) for a in argv]
    one_error(invoke(*argv, "--preset", ""), "--preset: must not be empty")
    assert not (tmp_path / "out").exists()


def test_data_toy_out_naming_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("mine")
    one_error(invoke("data", "toy", "--out", str(f)), str(f), "is a file, not a folder")
    assert f.read_text() == "mine"


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A read-only file system (root writes through chmod 0555, so a read-only tmpfs is mounted)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_data_toy_into_a_read_only_folder(read_only):
    one_error(invoke("data", "toy", "--out", str(read_only / "toy")), "not writable (Read-only file system)")


def test_features_extract_into_a_read_only_folder(read_only, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    from vlmbench.video.synth import write_video

    write_video(videos / "a.mp4", 12, 12, 64, 64, seed=0)
    out = read_only / "feats"
    r = invoke("features", "extract", "--videos", str(videos), "--out", str(out), "--random-init")
    one_error(r, str(out), "Read-only file system")


def test_features_extract_read_only_without_a_mount(tmp_path, monkeypatch):
    """The same without root: the file system refuses every new folder and file (EROFS)."""
    import tempfile

    videos = tmp_path / "videos"
    videos.mkdir()
    from vlmbench.video.synth import write_video

    write_video(videos / "a.mp4", 12, 12, 64, 64, seed=0)
    out = tmp_path / "feats"

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(os, "mkdir", refuse)
    r = invoke("features", "extract", "--videos", str(videos), "--out", str(out), "--random-init")
    one_error(r, str(out), "Read-only file system")
    assert not out.exists()


# ---- interrupts: what each command says (the signals themselves: tests/test_interrupts.py) -------------------


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize(
    "command, target, says",
    [
        (["ablate", "mmm=0,0.5", "--out", "{out}"], "vlmbench.ablate.ablate", "finished cells are kept in {out}"),
        (["suite", "--out", "{out}"], "vlmbench.suite.suite", "finished tasks are kept in {out}"),
        (
            ["data", "prepare-howto100m", "--data", "{out}", "--out", "{out}"],
            "vlmbench.data.prepared.prepare",
            "finished shards are kept in {out}",
        ),
    ],
)
def test_interrupted_commands_say_what_is_kept_and_how_to_resume(
    tmp_path, monkeypatch, signum, code, command, target, says
):
    import importlib

    out = str(tmp_path / "out")
    module, name = target.rsplit(".", 1)

    def interrupted(*a, **k):
        raise cli.Interrupted(signum)

    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    argv = [a.replace("{out}", out) for a in command]
    monkeypatch.setattr(cli, "_ARGV", argv)
    r = invoke(*argv)
    lines = [ln for ln in r.stderr.splitlines() if "interrupted" in ln]
    assert r.exit_code == code and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"interrupted ({signal.Signals(signum).name}): {says.format(out=out)}"), lines[0]
    assert lines[0].endswith("resume with the same command: vlmbench " + " ".join(argv))
