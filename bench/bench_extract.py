"""S3D feature extraction speed: seconds of video per second, and the decoder's share of the time.

    python bench/bench_extract.py [--videos DIR] [--weights s3d_howto100m.pth] [--device cpu|cuda]
                                  [--n 3] [--seconds 4] [--batch 8] [--workers 2]

Videos: --videos, else N generated ones (moving shapes, 320x240, 25 fps, --seconds long, MPEG-4) in a temp folder.
Model: --weights, else a random S3D of the same shapes (speed does not depend on the values). The official
pipeline at 224x224 runs twice: decoding alone (all videos, one thread), then the full extractor with its
decoding threads. Decoder share = decode time / (decode + model time); "model waited" is the time the model sat
idle for the decoder. No timed assertions: the numbers are printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vlmbench.video import decode, s3d  # noqa: E402
from vlmbench.video.extract import extract, list_videos, resolve_device  # noqa: E402
from vlmbench.video.synth import write_video  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.videos
        if folder is None:
            folder = Path(tmp) / "videos"
            for i in range(args.n):
                write_video(folder / f"v{i}.mp4", 25 * args.seconds, 25, 320, 240, seed=i)
        items = list_videos(folder)
        t0 = time.perf_counter()
        frames = sum(len(decode.decode_frames(p)) for _, p in items)
        decode_only = time.perf_counter() - t0
        model = s3d.load_weights(args.weights, say=lambda s: None) if args.weights else s3d.random_model()
        s = extract(
            folder,
            Path(tmp) / "features",
            None,
            model=model,
            batch=args.batch,
            device=str(dev),
            workers=args.workers,
            progress=False,
            say=lambda x: None,
        )
    print(
        f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"{len(items)} videos, {s.video_seconds:.0f} s of video, batch {args.batch}, {args.workers} decoding threads"
    )
    print(f"{'stage':<28}{'seconds':>10}{'video s / s':>14}")
    print(f"{'decode only (1 thread)':<28}{decode_only:>10.2f}{frames / decode.FPS / decode_only:>14.2f}")
    print(f"{'extract (decode + S3D)':<28}{s.wall_s:>10.2f}{s.speed:>14.2f}")
    print(
        f"decoder share of busy time: {100 * s.decode_share:.1f}% (decode {s.decode_s:.2f} s, model {s.model_s:.2f} s); "
        f"model waited for the decoder {s.wait_s:.2f} s ({100 * s.wait_s / max(s.wall_s, 1e-9):.1f}% of wall)"
    )
    if s.failed:
        print(f"failed: {s.failed}")


if __name__ == "__main__":
    main()
