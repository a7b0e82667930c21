"""Output files: the user's permissions, write errors as one InputError, the writable-folder check that runs
before any work, temp-file clean-up after a kill, and safetensors-only reads that never unpickle."""

from __future__ import annotations

import errno
import os
import pickle
import stat

import pytest
import torch

from vlmbench import io
from vlmbench.errors import InputError


@pytest.fixture
def umask():
    """Set a known umask for one test, restoring the old one after."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_users_normal_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    for path in (
        io.write_text(tmp_path / "r.txt", "x"),
        io.write_json(tmp_path / "r.json", {"a": 1}),
        io.atomic_write(tmp_path / "b.bin", lambda p: p.write_bytes(b"\0")),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    (tmp_path / "plain").write_text("x")  # what open() gives is what "normal permissions" means
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode
    assert io.umask() == mask and os.umask(mask) == mask  # read without changing it


def _fail_with(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_write_errors_are_one_input_error_naming_the_file(tmp_path, monkeypatch, code):
    target = tmp_path / "out" / "result.json"
    # the rename fails (read-only or full disk): nothing is left behind, neither target nor temp file
    monkeypatch.setattr(io.os, "replace", _fail_with(code))
    with pytest.raises(InputError) as e:
        io.write_json(target, {"a": 1})
    assert str(e.value) == f"{target}: cannot write ({os.strerror(code)})"
    assert list((tmp_path / "out").iterdir()) == []


def test_write_error_inside_the_writer_and_under_a_file(tmp_path):
    def full(p):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(InputError, match=r"a\.npz: cannot write \(No space left on device\)"):
        io.atomic_write(tmp_path / "a.npz", full)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("a file, not a folder")
    with pytest.raises(InputError, match="cannot write"):
        io.write_text(tmp_path / "f" / "x.txt", "x")


def test_ensure_writable_checks_without_creating(tmp_path, monkeypatch):
    out = tmp_path / "runs" / "deep" / "run1"
    assert io.ensure_writable(out) == out
    assert list(tmp_path.iterdir()) == []  # probe removed, no folder made
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        io.ensure_writable(tmp_path / "f" / "run")
    monkeypatch.setattr(io.os, "fsync", _fail_with(errno.ENOSPC))
    with pytest.raises(InputError) as e:
        io.ensure_writable(out)
    assert str(e.value) == f"{out}: output folder is not writable (No space left on device)"
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_ensure_writable_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match="not writable"):
            io.ensure_writable(ro / "run")
    finally:
        ro.chmod(0o755)


def test_remove_temp_files_every_name_a_kill_leaves(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "checkpoints" / ".step_0000004.tmp").mkdir(parents=True)
    (run / "checkpoints" / ".step_0000004.tmp" / "model.safetensors").write_bytes(b"")
    leftovers = [
        run / "model" / ".model.safetensors.k2j4h1.tmp",  # atomic_write, killed mid-write
        run / "model" / ".tmpa8f3k2_x",  # tempfile's own names
        run / ".log.jsonl.x1.tmp",
        run / "checkpoints" / ".latest.q9.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"")
    keep = [
        run / "model" / "model.safetensors",
        run / "log.jsonl",
        run / "checkpoints" / "latest",
        run / "notes.tmp.txt",
        run / ".tmp_notes",
        run / ".tmpfile-notes.txt",
    ]
    for p in keep:
        p.write_text("data")
    from vlmbench.train.checkpoint import remove_orphans  # what pretrain calls on its out folder

    assert remove_orphans(run) == 5
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in leftovers) and not (run / "checkpoints" / ".step_0000004.tmp").exists()
    assert io.remove_temp_files(tmp_path / "absent") == 0


class _Trap:
    """Unpickling this creates a marker file: proof that a loader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_read_safetensors_refuses_pickles_without_unpickling(tmp_path):
    marker = tmp_path / "UNPICKLED"
    torch.save({"w": torch.zeros(2), "trap": _Trap(marker)}, tmp_path / "torch_zip.safetensors")
    (tmp_path / "raw.safetensors").write_bytes(pickle.dumps(_Trap(marker)))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name in ("torch_zip", "raw"):
        with pytest.raises(InputError) as e:
            io.read_safetensors(tmp_path / f"{name}.safetensors")
        assert "not a safetensors file (a pickle or torch.save file" in str(e.value)
    with pytest.raises(InputError, match="not a safetensors file"):
        io.read_safetensors(tmp_path / "empty.safetensors")
    with pytest.raises(InputError, match="file not found"):
        io.read_safetensors(tmp_path / "absent.safetensors")
    assert not marker.exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from vlmbench.model.vlm import VLM
    from vlmbench.train import checkpoint as ckpt
    from vlmbench.train.optim import adam

    model = VLM.from_backbone("tiny", seed=0)
    opt = adam(model.parameters(), 1e-4, 0.9, 0.98, 1e-6, 0.0)
    model(
        torch.zeros(1, 32, 512),
        torch.ones(1, 32, dtype=torch.bool),
        torch.zeros(1, 62, dtype=torch.long),
        torch.ones(1, 62, dtype=torch.bool),
    ).sum().backward()
    opt.step()
    root = tmp_path_factory.mktemp("ckpt")
    return ckpt.save(root, 1, model, opt, {}), model, opt


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.safetensors"])
def test_checkpoint_files_that_are_pickles_are_refused(tiny_checkpoint, tmp_path, victim):
    from vlmbench.train import checkpoint as ckpt

    path, model, opt = tiny_checkpoint
    bad = _copy(path, tmp_path / "step")
    marker = tmp_path / "UNPICKLED"
    torch.save({"state": _Trap(marker)}, bad / victim)
    with pytest.raises(InputError) as e:
        ckpt.restore(bad, model, opt)
    assert str(e.value).startswith(f"{bad / victim}: not a safetensors file (a pickle")
    assert not marker.exists()
    assert ckpt.restore(path, model, opt)["step"] == 1  # the intact checkpoint still loads


def test_vlm_load_refuses_a_truncated_weights_file(tiny_checkpoint, tmp_path):
    from vlmbench.model.vlm import VLM

    bad = _copy(tiny_checkpoint[0], tmp_path / "m")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="model.safetensors: not a safetensors file"):
        VLM.load(bad)


def test_backbone_folder_with_pickled_weights_is_refused(tmp_path):
    from vlmbench.model import backbone as bb

    folder = _copy(bb.minilm_dir(), tmp_path / "bert")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "UNPICKLED"
    torch.save({"trap": _Trap(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(InputError) as e:
        bb.load_bert(str(folder))
    assert str(e.value).startswith(f"{folder}: weights are a pickle (pytorch_model.bin)")
    assert not marker.exists()
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="model.safetensors: not a safetensors file"):
        bb.load_bert(str(folder))


# ------------------------------------------- the commands check their out folder before any work
@pytest.fixture
def out_under_a_file(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "run"


def _no_work(monkeypatch):
    from vlmbench.model.vlm import VLM

    def work(*a, **k):
        raise AssertionError("work started before the out folder was checked")

    monkeypatch.setattr(VLM, "from_backbone", work)
    monkeypatch.setattr(VLM, "load", work)


def test_run_checks_out_first(out_under_a_file, tmp_path, monkeypatch):
    from vlmbench.runner import run

    _no_work(monkeypatch)
    with pytest.raises(InputError, match="is a file, not a folder"):
        run("msrvtt-retrieval", data=tmp_path / "no-data-here", out=out_under_a_file, say=lambda s: None)


def test_pretrain_suite_ablate_check_out_first(out_under_a_file, tmp_path, monkeypatch):
    from vlmbench.ablate import ablate
    from vlmbench.config import pretrain_config
    from vlmbench.suite import suite
    from vlmbench.train.pretrain import pretrain

    _no_work(monkeypatch)
    nowhere = tmp_path / "no-data-here"
    calls = [
        lambda: pretrain(pretrain_config("smoke", []), out_under_a_file, data=nowhere, say=lambda s: None),
        lambda: suite(out_under_a_file, data=nowhere, say=lambda s: None),
        lambda: ablate(
            ["mmm=0,0.5"],
            tasks=["youcook2-retrieval"],
            data=nowhere,
            out=out_under_a_file,
            progress=False,
            say=lambda s: None,
        ),
    ]
    for call in calls:
        with pytest.raises(InputError, match="is a file, not a folder"):
            call()


def test_resume_clears_temp_files_a_kill_left_in_model(tmp_path):
    from vlmbench.config import pretrain_config
    from vlmbench.data.toy.howto100m import write_howto100m
    from vlmbench.train.pretrain import pretrain

    data = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=4)
    out = tmp_path / "out"
    cfg = pretrain_config("smoke", ["steps=1", "batch_size=4", "clips_per_video=2"])
    pretrain(cfg, out, data=data, progress=False, say=lambda s: None)
    left = [
        out / "model" / ".model.safetensors.x81kq.tmp",
        out / "model" / ".tmpq1w2e3r4",
        out / "checkpoints" / ".step_0000002.tmp",
    ]
    for p in left:
        p.write_bytes(b"")
    pretrain(cfg, out, data=data, resume=True, progress=False, say=lambda s: None)
    assert not any(p.exists() for p in left)
    assert (out / "model" / "model.safetensors").stat().st_size > 0


# ---- a full disk, a quota, a read-only file system: recognised by errno, whatever the writer's wording ----------


def _safetensor_error(code: int, style: str):
    """What safetensors raises when the OS refuses a write: its own type, the Rust io::Error inside, worded one
    way (Display, "I/O error: ... (os error 28)") or the other (Debug, "IoError(Os { code: 28, ... })")."""
    from safetensors import SafetensorError

    if style == "display":
        return SafetensorError(f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})")
    return SafetensorError(
        f'Error while serializing: IoError(Os {{ code: {code}, kind: Other, message: "{os.strerror(code)}" }})'
    )


@pytest.mark.parametrize("style", ["display", "debug"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_safetensors_write_errors_are_recognised_by_errno(tmp_path, code, style):
    target = tmp_path / "model.safetensors"

    def full(p):
        raise _safetensor_error(code, style)

    with pytest.raises(InputError) as e:
        io.atomic_write(target, full)
    assert str(e.value) == f"{target}: cannot write ({os.strerror(code)})"
    assert list(tmp_path.iterdir()) == []  # no temp file, no partial target


def test_other_safetensors_errors_are_not_taken_for_a_full_disk(tmp_path):
    from safetensors import SafetensorError

    def bug(p):
        raise SafetensorError("You are trying to save a non contiguous tensor")

    with pytest.raises(SafetensorError):
        io.atomic_write(tmp_path / "m.safetensors", bug)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_at_a_checkpoint_is_one_line_and_leaves_the_last_checkpoint(tmp_path, monkeypatch):
    """pretrain's checkpoint writer (model + Adam state through safetensors) on a full disk: one InputError naming
    the checkpoint, no half-written folder, `latest` still the previous complete checkpoint."""
    from vlmbench.model import vlm as vlm_module
    from vlmbench.model.vlm import VLM
    from vlmbench.train import checkpoint as ckpt
    from vlmbench.train.optim import adam

    model = VLM.from_backbone("tiny", seed=0)
    opt = adam(model.parameters(), 1e-3, 0.9, 0.98, 1e-8, 0.0)
    root = tmp_path / "checkpoints"
    ckpt.save(root, 2, model, opt, {})
    monkeypatch.setattr(
        vlm_module, "save_file", lambda *a, **k: (_ for _ in ()).throw(_safetensor_error(errno.ENOSPC, "display"))
    )
    with pytest.raises(InputError) as e:
        ckpt.save(root, 4, model, opt, {})
    assert str(e.value) == (
        f"{root / 'step_0000004'}: cannot write checkpoint (No space left on device); "
        "the last complete one is step_0000002"
    )
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000002"]
    assert ckpt.latest(root) == root / "step_0000002"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_safetensors_files_follow_the_umask_like_every_other_output(tmp_path, umask, mask, mode):
    from vlmbench.model.vlm import VLM
    from vlmbench.train import checkpoint as ckpt
    from vlmbench.train.optim import adam

    umask(mask)
    model = VLM.from_backbone("tiny", seed=0)
    opt = adam(model.parameters(), 1e-3, 0.9, 0.98, 1e-8, 0.0)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # Adam state exists, so optimizer.safetensors holds tensors
    folder = ckpt.save(tmp_path / "checkpoints", 1, model, opt, {})
    saved = [
        folder / "model.safetensors",
        folder / "optimizer.safetensors",
        model.save(tmp_path / "m") / "model.safetensors",
    ]
    for path in saved + [folder / "trainer.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system: room for the run's first files, not for a checkpoint (the tiny VLM is 8 MiB)."""
    import subprocess

    folder = tmp_path / "small"
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def _pretrain_argv(tmp_path, out) -> list[str]:
    from vlmbench.data.toy.howto100m import write_howto100m

    data = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=4)
    return ["pretrain", "--data", str(data), "--preset", "smoke", "--no-progress", "--out", str(out)] + [
        "steps=4",
        "save_every=2",
    ]


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.slow
def test_full_disk_during_pretraining_is_one_line_exit_2(small_disk, tmp_path):
    """A real full disk: `vlmbench pretrain` stops at its first checkpoint with one line, exit 2."""
    import subprocess
    import sys

    out = small_disk / "pre"
    r = subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *_pretrain_argv(tmp_path, out)], capture_output=True, text=True
    )
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r.stderr)
    assert line == (
        f"error: {out / 'checkpoints' / 'step_0000002'}: cannot write checkpoint (No space left on device); "
        "no checkpoint was saved"
    )
    assert not list(out.rglob("*.tmp*")) and not (out / "checkpoints" / "step_0000002").exists()


@pytest.mark.slow
def test_full_disk_reported_by_safetensors_during_pretraining_is_one_line(tmp_path, monkeypatch):
    """The same without root: safetensors' own error for a full disk (it says 'I/O error', not 'IoError')."""
    from typer.testing import CliRunner

    from vlmbench.cli import app
    from vlmbench.model import vlm as vlm_module

    def full(*a, **k):
        raise _safetensor_error(errno.ENOSPC, "display")

    monkeypatch.setattr(vlm_module, "save_file", full)
    out = tmp_path / "pre"
    r = CliRunner().invoke(app, _pretrain_argv(tmp_path, out))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # the user's traceback
    assert r.exit_code == 2, r.stderr
    assert _one_error_line(r.stderr) == (
        f"error: {out / 'checkpoints' / 'step_0000002'}: cannot write checkpoint (No space left on device); "
        "no checkpoint was saved"
    )
    assert not list(out.rglob("*.tmp*"))
