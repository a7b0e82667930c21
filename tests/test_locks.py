"""One writer per output folder: `run`, `pretrain`, `data prepare-howto100m` and `features extract` hold a lock on
their --out while they write; a second vlmbench writing into the same folder is refused in one line (exit 2)
while the first finishes, instead of both reporting success with one result lost."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlmbench.errors import InputError
from vlmbench.io import LOCK_FILE, FolderLock

CLI = [sys.executable, "-m", "vlmbench.cli"]


def test_a_second_lock_on_a_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    with FolderLock(out):
        assert (out / LOCK_FILE).is_file()
        with pytest.raises(InputError) as e:
            FolderLock(out).acquire()
        assert str(e.value).startswith(f"{out}: another vlmbench process is writing into this folder")
        assert "\n" not in str(e.value)
    assert not out.exists()  # made by the lock, nothing written: nothing left
    out.mkdir()
    (out / "result.json").write_text("{}")
    with FolderLock(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]  # the lock file goes, the folder stays


def test_a_lock_file_left_by_a_killed_writer_does_not_block(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("")  # kill -9 leaves the file; the kernel dropped its flock
    with FolderLock(out):
        pass


@pytest.fixture
def holder(tmp_path):
    """Another process holding the folder lock (an flock on <out>/.vlmbench.lock) until the test ends."""
    procs = []

    def hold(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        code = (
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(600)"
        )
        p = subprocess.Popen([sys.executable, "-c", code, str(out / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def _one_error(r: subprocess.CompletedProcess, out: Path) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0] == (
        f"error: {out}: another vlmbench process is writing into this folder (wait for it, or use another --out)"
    )


def test_the_lock_is_an_flock_another_process_sees(tmp_path, holder):
    out = tmp_path / "out"
    holder(out)
    with pytest.raises(InputError, match="another vlmbench process"):
        FolderLock(out).acquire()
    fd = os.open(out / LOCK_FILE, os.O_RDWR)
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


@pytest.mark.slow
def test_prepare_howto100m_into_a_folder_another_process_writes_is_refused(tmp_path, holder):
    from vlmbench.data.toy.howto100m import write_howto100m

    data = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=4)
    out = tmp_path / "prep"
    holder(out)
    r = subprocess.run(
        [*CLI, "data", "prepare-howto100m", "--data", str(data), "--out", str(out), "--backbone", "tiny"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _one_error(r, out)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written beside the other's lock


@pytest.mark.slow
def test_features_extract_into_a_folder_another_process_writes_is_refused(tmp_path, holder):
    from vlmbench.video.synth import write_video

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", 12, 12, 64, 64, seed=0)
    out = tmp_path / "feats"
    holder(out)
    r = subprocess.run(
        [*CLI, "features", "extract", "--videos", str(videos), "--out", str(out), "--random-init", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _one_error(r, out)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


@pytest.mark.slow
def test_run_into_a_folder_another_process_writes_is_refused(tmp_path, holder):
    out = tmp_path / "run"
    holder(out)
    r = subprocess.run(
        [*CLI, "run", "--task", "msrvtt-retrieval", "--preset", "smoke", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _one_error(r, out)


@pytest.mark.slow
def test_two_pretrains_into_one_folder_one_is_refused_the_other_finishes(tmp_path):
    """Two real `vlmbench pretrain` processes started together into one --out (both --resume, as a user restarting
    a run twice would): exactly one trains to the end, the other is refused in one line."""
    from vlmbench.data.toy.howto100m import write_howto100m

    data = write_howto100m(tmp_path / "howto100m", seed=0, n_videos=8)
    out = tmp_path / "pre"
    args = [*CLI, "pretrain", "--data", str(data), "--preset", "smoke", "--no-progress", "--out", str(out)]
    args += ["steps=60", "lr_decay_steps=60", "save_every=20", "--resume"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(args, p.returncode, stdout, stderr))
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr[-2000:] for r in results]
    _one_error(next(r for r in results if r.returncode == 2), out)
    winner = next(r for r in results if r.returncode == 0)
    assert "Pre-trained 60 steps" in winner.stderr
    assert (out / "model" / "model.safetensors").is_file()
    logged = [line for line in (out / "log.jsonl").read_text().splitlines() if line]
    assert len(logged) == 60  # one writer's log, not two interleaved
    assert not (out / LOCK_FILE).exists()


def test_pretrain_is_refused_before_any_work(tmp_path, holder):
    """In-process: the lock is taken before the data is read or anything is written."""
    from vlmbench.config import pretrain_config
    from vlmbench.train.pretrain import pretrain

    out = tmp_path / "pre"
    holder(out)
    with pytest.raises(InputError, match="another vlmbench process"):
        pretrain(pretrain_config("smoke", []), out, data=tmp_path / "nothing", say=lambda s: None)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
