"""`vlmbench features extract` on videos generated here with PyAV (moving shapes, two frame rates, one odd size).

The main run uses the official 224x224 pipeline through the CLI with a spec-shaped checkpoint; resume,
failure and determinism checks use a 64x64 crop (S3D accepts any even size; weights keep their shapes)
to keep CPU time small."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_s3d import spec_state
from typer.testing import CliRunner

from vlmbench.checks import check_data
from vlmbench.cli import app
from vlmbench.data import marker, toy
from vlmbench.data.features import FeatureStore
from vlmbench.video import decode
from vlmbench.video.extract import extract
from vlmbench.video.synth import write_video

# name: (frames, fps, width, height) -> seconds = frames / fps
VIDEOS = {
    "shapes_20fps": (50, 20, 320, 240),  # 2.5 s: last clip padded
    "portrait_30fps": (40, 30, 240, 320),  # 1.33 s
    "odd_161x121": (36, 24, 161, 121),
}  # 1.5 s, odd width and height


def expected_rows(name: str) -> int:
    frames, fps, _, _ = VIDEOS[name]
    return math.ceil(frames / fps)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for i, (name, (n, fps, w, h)) in enumerate(VIDEOS.items()):
        write_video(folder / f"{name}.mp4", n, fps, w, h, seed=i)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "s3d_howto100m.pth"
    torch.save(spec_state(with_text=True), path)
    return path


def with_bad_files(videos: Path, folder: Path) -> Path:
    shutil.copytree(videos, folder)
    good = (videos / "shapes_20fps.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (folder / "notes.mp4").write_text("this is not a video\n")
    return folder


def run(videos: Path, out: Path, weights: Path, **kw):
    return extract(videos, out, weights, size=64, progress=False, say=lambda s: None, **kw)


def test_decoder_resamples_to_30fps_and_centre_crops(tmp_path):
    path = write_video(tmp_path / "v.mp4", 50, 20, 320, 240)
    frames = decode.decode_frames(path)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (224, 224, 3)
    assert abs(len(frames) - 75) <= 1  # 2.5 s at 30 fps
    clips = decode.to_clips(frames)
    assert clips.shape == (3, 3, 30, 224, 224) and clips.dtype == np.float32
    assert 0.0 <= clips.min() and clips.max() <= 1.0
    assert not clips[-1, :, len(frames) - 60 :].any()  # black padding frames after the last one
    assert decode.scaled_size(320, 240) == (298, 224) and decode.scaled_size(121, 161) == (224, 298)
    # centre crop: a white middle band exactly as wide as the crop, black sides
    import av

    wide = tmp_path / "wide.mp4"
    with av.open(str(wide), "w") as out:
        s = out.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 448, 224, "yuv420p"
        img = np.zeros((224, 448, 3), np.uint8)
        img[:, 112:336] = 255
        for _ in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    f = decode.decode_frames(wide)
    assert f[:, :, 8:-8].mean() > 250 and f.shape[1:] == (224, 224, 3)


@pytest.mark.slow
def test_extract_cli_full_pipeline_resume_and_redo(videos, weights, tmp_path):
    """The README's command, as a user types it (a subprocess of the installed entry point)."""
    out = tmp_path / "features"
    exe = Path(sys.executable).parent / "vlmbench"
    res = subprocess.run(
        [
            str(exe),
            "features",
            "extract",
            "--videos",
            str(videos),
            "--out",
            str(out),
            "--weights",
            str(weights),
            "--batch",
            "2",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "text branch is not loaded" in res.stderr and "done 3, skipped 0" in res.stderr
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(f"{n}.npy" for n in VIDEOS)
    for name in VIDEOS:
        arr = np.load(out / f"{name}.npy")
        assert arr.dtype == np.float16 and arr.shape == (expected_rows(name), 512), name
        assert np.allclose(np.linalg.norm(arr.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert not (out / marker.MARKER).exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    again = CliRunner().invoke(
        app,
        ["features", "extract", "--videos", str(videos), "--out", str(out), "--weights", str(weights), "--no-progress"],
    )
    assert again.exit_code == 0 and "done 0, skipped 3" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == mtimes
    # the readers take the folder as it is
    store = FeatureStore(out)
    assert store.n_seconds("shapes_20fps") == 3 and store.load("odd_161x121").shape == (2, 512)


@pytest.mark.slow
def test_resume_redoes_only_a_deleted_output(videos, weights, tmp_path):
    out = tmp_path / "f"
    first = run(videos, out, weights)
    assert sorted(first.done) == sorted(VIDEOS) and not first.failed
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    (out / "portrait_30fps.npy").unlink()
    second = run(videos, out, weights)
    assert second.done == ["portrait_30fps"] and sorted(second.skipped) == ["odd_161x121", "shapes_20fps"]
    now = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert all(now[n] == kept[n] for n in ("odd_161x121.npy", "shapes_20fps.npy"))
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.slow
def test_bad_videos_are_reported_and_skipped(videos, weights, tmp_path, workers):
    folder = with_bad_files(videos, tmp_path / "v")
    out = tmp_path / "f"
    s = run(folder, out, weights, workers=workers, batch=2)
    assert sorted(s.done) == sorted(VIDEOS)
    assert sorted(vid for vid, _, _ in s.failed) == ["notes", "truncated"]
    with open(out / "failed.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["video_id"] for r in rows) == ["notes", "truncated"] and all(r["reason"] for r in rows)
    assert not (out / "notes.npy").exists() and not (out / "truncated.npy").exists()


@pytest.mark.slow
def test_same_input_gives_identical_features(videos, weights, tmp_path):
    run(videos, tmp_path / "a", weights, workers=0)
    run(videos, tmp_path / "b", weights, workers=0)
    for name in VIDEOS:
        assert (tmp_path / "a" / f"{name}.npy").read_bytes() == (tmp_path / "b" / f"{name}.npy").read_bytes()
    # streamed in groups of one clip by decoding threads: the same rows (batching only regroups the clips)
    run(videos, tmp_path / "c", weights, workers=2, batch=1)
    for name in VIDEOS:
        a, c = (np.load(tmp_path / d / f"{name}.npy").astype(np.float32) for d in ("a", "c"))
        assert a.shape == c.shape and np.abs(a - c).max() <= 1e-3


def test_streamed_groups_equal_the_whole_video(tmp_path):
    path = write_video(tmp_path / "long.mp4", 130, 25, 200, 150)  # 5.2 s -> 6 clips
    whole = decode.decode_clips(path, size=64)
    groups = list(decode.iter_clip_groups(path, size=64, group=4))
    assert [len(g) for g in groups] == [4, 2] and all(g.dtype == np.uint8 for g in groups)
    streamed = torch.cat([decode.clips_to_input(g) for g in groups]).numpy()
    assert np.array_equal(streamed, whole)


@pytest.mark.slow
def test_no_weights_is_refused_and_random_init_marks_the_folder(videos, tmp_path, capsys):
    out = tmp_path / "f"
    res = CliRunner().invoke(app, ["features", "extract", "--videos", str(videos), "--out", str(out)])
    assert res.exit_code == 2 and "--random-init is for testing only" in res.output
    assert not out.exists()
    s = extract(videos, out, random_init=True, size=64, progress=False, say=lambda x: None)
    assert len(s.done) == 3 and (out / marker.MARKER).is_file()
    capsys.readouterr()
    FeatureStore(out)
    assert "RANDOMLY INITIALISED S3D" in capsys.readouterr().err


@pytest.mark.slow
def test_a_folder_is_never_mixed_across_extractions(videos, weights, tmp_path):
    out = tmp_path / "f"
    extract(videos, out, random_init=True, size=64, progress=False, say=lambda x: None)
    with pytest.raises(Exception, match="another extraction"):
        run(videos, out, weights)


def test_mismatching_checkpoint_is_refused_by_the_cli(videos, tmp_path):
    state = spec_state(with_text=False)
    state.pop("fc.bias")
    bad = tmp_path / "other.pth"
    torch.save(state, bad)
    res = CliRunner().invoke(
        app,
        [
            "features",
            "extract",
            "--videos",
            str(videos),
            "--out",
            str(tmp_path / "f"),
            "--weights",
            str(bad),
            "--no-progress",
        ],
    )
    assert res.exit_code == 2 and "1 missing: fc.bias" in res.output
    assert not list((tmp_path / "f").glob("*.npy"))


@pytest.mark.slow
def test_data_check_accepts_an_extracted_feature_folder(weights, tmp_path, capsys):
    root = tmp_path / "data"
    toy.write_dataset("msrvtt", root / "msrvtt")
    shutil.rmtree(root / "msrvtt" / "features")
    vids = tmp_path / "v"
    for i, vid in enumerate(["video0", "video1", "video400", "video401"]):  # toy MSR-VTT train + test ids
        write_video(vids / f"{vid}.mp4", 30, 30, 96, 64, seed=i)
    extract(vids, root / "msrvtt" / "features", random_init=True, size=64, progress=False, say=lambda x: None)
    capsys.readouterr()
    rows = {r.task: r for r in check_data(root)}
    # read as they are: the extracted videos count as present, the rest of the toy ids as missing features
    ret = rows["msrvtt-retrieval"]
    assert ret.status == "missing" and "train_videos=2" in ret.details and "test_clips=2" in ret.details, ret.details
    assert rows["msrvtt-mcqa"].status in ("ok", "missing") and "malformed" not in rows["msrvtt-mcqa"].details
    assert "RANDOMLY INITIALISED S3D" in capsys.readouterr().err


@pytest.mark.slow
def test_an_out_folder_inside_the_video_folder_is_not_read_as_videos(videos, weights, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(videos, folder)
    (folder / "more").mkdir()
    shutil.copy(videos / "portrait_30fps.mp4", folder / "more" / "sub_video.mp4")  # one level down: listed
    out = folder / "features"
    first = run(folder, out, weights)
    assert sorted(first.done) == sorted([*VIDEOS, "sub_video"]) and not first.failed
    second = run(folder, out, weights)
    assert not second.done and not second.failed and len(second.skipped) == 4
