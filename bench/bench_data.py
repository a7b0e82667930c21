"""Pre-training data path at HowTo100M scale: the prepared corpus + DataLoader beside the old in-process loader.

    python bench/bench_data.py                      # 10k videos (what `make bench` runs)
    python bench/bench_data.py --quick              # 2k videos, fewer batches: a minute
    python bench/bench_data.py --sizes 10k,100k,1.2M --workers 0,1,2,4 --retrieval 100k --json out.json

For each size a synthetic HowTo100M-shaped corpus is written with the real caption density (videos of
120-660 s, mean 390 s; one rolling ASR line per 2-5 s, ~113 per video as in HowTo100M's 136 M lines over 1.2 M
videos; 2-8 words a line, some repeating the previous line's tail). Features are sparse .npy files (a header,
then a hole: real sizes, no disk), so reading them costs what a page-cache hit costs. 1.2M is index only: its
prepared arrays are generated directly (136 M captions, not tokenised through files) and every video shares one
feature file; the old loader is not run there (it would need the whole corpus as Python objects per rank).

Reported per size: prepare time (new; workers as given by --prepare-workers), start-up (open the corpus, build
the sampler of rank 0 of 8, first batch; Python imports excluded) and resident memory of that rank (VmRSS from
/proc, split into private RssAnon and shared, page-cache RssFile), measured in a fresh process each; and
clips/s at the paper's batch (8 videos x 32 clips) with 0/1/2/4 DataLoader workers, beside the old loader.
--retrieval N ranks N random 768-d pairs in row blocks (metrics.retrieval_blocks): seconds and peak memory, beside
the size the N x N float32 matrix would have.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

BATCH, CLIPS, WORLD = 256, 32, 8
DIM = 512


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "km" else s) * mult)


# ---- synthetic corpora ---------------------------------------------------------------------------------------------
def _words() -> list[str]:
    from vlmbench.model.backbone import minilm_dir

    vocab = (minilm_dir() / "vocab.txt").read_text().split("\n")
    return [w for w in vocab[2000:12000] if w.isalpha() and len(w) >= 3]


def _sparse_npy(path: Path, rows: int) -> None:
    """A valid (rows, 512) float16 .npy whose data is a hole: its real size, no blocks written."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": False, "shape": (rows, DIM)})
        f.truncate(f.tell() + rows * DIM * 2)


def video_lines(rng: np.random.Generator, words: list[str]):
    """(seconds, starts, ends, texts) of one video: rolling ASR lines (draws made per video, not per line)."""
    seconds = int(rng.integers(120, 661))
    starts = np.cumsum(rng.uniform(2.0, 5.0, size=int(seconds / 2.0) + 2))
    starts = starts[starts < seconds - 1] - starts[0]
    n = len(starts)
    ends = np.minimum(np.r_[starts[2:], starts[-1:] + 4.0, starts[-1:] + 4.0][:n], seconds)
    lengths = rng.integers(2, 9, size=n)
    picks = rng.integers(len(words), size=int(lengths.sum()))
    u, tail = rng.random(n), rng.integers(1, 3, size=n)
    texts, prev, at = [], [], 0
    for i in range(n):
        line = [words[j] for j in picks[at : at + lengths[i]]]
        at += lengths[i]
        if prev and u[i] < 0.25:
            line = prev[-tail[i] :] + line  # repeats the previous tail (rolling)
        elif prev and u[i] < 0.30:
            line = prev[-2:]  # a subset of the previous line
        texts.append(" ".join(line))
        prev = line
    return seconds, np.round(starts, 2), np.round(ends, 2), texts


def write_corpus(root: Path, n: int, seed: int = 0) -> Path:
    """captions/<vid>.csv + sparse features/<vid>.npy for n videos."""
    words = _words()
    rng = np.random.default_rng(seed)
    (root / "captions").mkdir(parents=True)
    (root / "features").mkdir()
    for i in range(n):
        vid = f"v{i:010d}"
        seconds, starts, ends, texts = video_lines(rng, words)
        with open(root / "captions" / f"{vid}.csv", "w") as f:
            f.write("start,end,text\n")
            f.writelines(f"{s:.2f},{e:.2f},{t}\n" for s, e, t in zip(starts, ends, texts))
        _sparse_npy(root / "features" / f"{vid}.npy", seconds + 1)
    return root


def write_index(prep: Path, n: int, seed: int = 0, chunk: int = 50_000) -> Path:
    """A prepared corpus of n videos written directly (index only): ~113 captions a video, ~5 tokens a line.
    Every video's features are one shared sparse file (see SharedStore)."""
    from vlmbench.data import prepared as P
    from vlmbench.io import write_json

    rng = np.random.default_rng(seed)
    prep.mkdir(parents=True)
    feats = prep / "shared-features"
    feats.mkdir()
    _sparse_npy(feats / "shared.npy", 661)
    seconds = rng.integers(120, 661, size=n).astype(np.int32)
    n_caps = np.maximum(1, (seconds / 3.45).astype(np.int64))
    cap_off = np.r_[0, np.cumsum(n_caps)]
    c = int(cap_off[-1])
    mm = lambda name, dt, shape: np.lib.format.open_memmap(prep / f"{name}.npy", mode="w+", dtype=dt, shape=shape)  # noqa: E731
    start, end, ntok = (
        mm("caption_start", np.float64, (c,)),
        mm("caption_end", np.float64, (c,)),
        mm("caption_ntokens", np.uint8, (c,)),
    )
    tok_off = np.zeros(n + 1, np.int64)
    for a in range(0, n, chunk):  # captions, chunk by chunk of videos
        b = min(n, a + chunk)
        lo, hi = cap_off[a], cap_off[b]
        video = np.repeat(np.arange(a, b), n_caps[a:b])
        gaps = rng.uniform(2.0, 5.0, size=hi - lo)
        t = np.cumsum(gaps)
        t -= np.repeat(t[cap_off[a:b] - lo], n_caps[a:b])  # each video starts at 0
        start[lo:hi] = np.minimum(np.round(t, 2), seconds[video] - 1)
        end[lo:hi] = np.minimum(start[lo:hi] + 6.0, seconds[video])
        k = rng.integers(2, 12, size=hi - lo).astype(np.uint8)
        ntok[lo:hi] = k
        per_video = np.add.reduceat(k.astype(np.int64), cap_off[a:b] - lo)
        tok_off[a + 1 : b + 1] = tok_off[a] + np.cumsum(per_video)
    tokens = mm("tokens", np.uint16, (int(tok_off[-1]),))
    for a in range(0, len(tokens), 100_000_000):
        b = min(len(tokens), a + 100_000_000)
        tokens[a:b] = rng.integers(1996, 29612, size=b - a, dtype=np.uint16)
    ids = mm("video_ids", "S11", (n,))
    ids[:] = np.char.encode(np.char.add("v", np.char.zfill(np.arange(n).astype(str), 10)))
    mm("video_seconds", np.int32, (n,))[:] = seconds
    mm("video_captions", np.int64, (n + 1,))[:] = cap_off
    mm("video_tokens", np.int64, (n + 1,))[:] = tok_off
    info = P.tokenizer_info("default")
    counts = {"videos_in": n, "captions_in": c, "videos_out": n, "captions_out": c, "tokens_out": int(tok_off[-1])}
    write_json(
        prep / "manifest.json",
        {
            "kind": P.KIND,
            "version": P.VERSION,
            "tokenizer": info,
            "counts": counts,
            "source": {"captions": None, "features": str(feats), "index_only": True},
        },
    )
    return prep


def shared_store(folder: str):
    """A FeatureStore where every video id reads the one shared file (the 1.2M index-only corpus)."""
    from vlmbench.data.features import FeatureStore

    class SharedStore(FeatureStore):
        def path(self, vid: str) -> Path:
            return self.folder / "shared.npy"

        def __contains__(self, vid: object) -> bool:
            return True

    return SharedStore(folder)


# ---- measurements (each in a fresh child process) ------------------------------------------------------------------
def memory() -> dict:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = lambda k: round(int(status.get(k, "0 kB").split()[0]) / 1024, 1)  # noqa: E731
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the (larger) parent process.
    return {
        "rss_mb": mb("VmRSS"),
        "rss_anon_mb": mb("RssAnon"),
        "rss_file_mb": mb("RssFile"),
        "max_rss_mb": mb("VmHWM"),
        "children_max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def child(job: dict) -> dict:
    if job.get("retrieval"):
        return retrieval_child(job["retrieval"], job["dim"], job["block"])
    import torch

    torch.set_num_threads(1)
    from vlmbench.model.backbone import tokenizer

    imported = time.perf_counter()
    kw = dict(clips_per_video=CLIPS, batch_size=BATCH, rank=0, world_size=WORLD)
    if job["loader"] == "old":
        from legacy_loader import old_loader

        sampler = old_loader(job["data"], tokenizer("default"), **kw)
        first = sampler.batch(0)
    else:
        from vlmbench.data import prepared as P
        from vlmbench.data.features import FeatureStore
        from vlmbench.train.sampler import ClipSampler

        corpus = P.Prepared.open(job["prep"])
        store = (
            shared_store(str(corpus.features))
            if corpus.manifest["source"].get("index_only")
            else FeatureStore(corpus.features)
        )
        sampler = ClipSampler(corpus, store, **kw)
        first = sampler.batch(0)
    out = {"startup_s": round(time.perf_counter() - imported, 3), "import_s": round(imported - T_START, 2), **memory()}
    assert first.video.shape == (BATCH, 32, DIM)
    if job.get("batches"):
        out["clips_per_s"] = throughput(sampler, job["loader"], job.get("workers", 0), job["batches"])
        out["after"] = memory()
    return out


def throughput(sampler, loader: str, workers: int, n: int, warm: int = 2) -> float:
    if loader == "old":
        for step in range(1, 1 + warm):
            sampler.batch(step)
        t = time.perf_counter()
        for step in range(1 + warm, 1 + warm + n):
            sampler.batch(step)
        return round(n * BATCH / (time.perf_counter() - t), 1)
    from vlmbench.train.loader import batches

    it = batches(sampler, 1, 1 + warm + n, workers=workers, prefetch=2)
    for _ in range(warm):  # starts the workers, fills their queues
        next(it)
    t = time.perf_counter()
    for _ in it:
        pass
    return round(n * BATCH / (time.perf_counter() - t), 1)


def retrieval_child(n: int, dim: int, block: int) -> dict:
    """Blocked retrieval ranking of n random (text, video) pairs: time and peak resident memory."""
    import torch

    from vlmbench.metrics.retrieval_blocks import metrics_from_counts, rank_counts

    torch.set_num_threads(os.cpu_count() or 1)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(n, dim, generator=g)
    video = text + 4 * torch.randn(n, dim, generator=g)  # noisy pairs: R@1 well below 100
    t = time.perf_counter()
    counts = rank_counts(text, video, block=block)
    m = metrics_from_counts(counts, "pessimistic")
    return {
        "n": n,
        "dim": dim,
        "block": block,
        "seconds": round(time.perf_counter() - t, 1),
        "R@1": round(m["R@1"], 2),
        "full_matrix_mb": round(n * n * 4 / 2**20),
        **memory(),
    }


def run_child(job: dict, timeout: float = 3600) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, timeout=timeout, env=env
    )
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- the table ---------------------------------------------------------------------------------------------------------
def bench_size(n: int, work: Path, workers: list[int], batches: int, prepare_workers: int, index_only: bool) -> dict:
    from vlmbench.data import prepared as P

    row: dict = {"videos": n}
    prep = work / f"prep-{n}"
    t = time.perf_counter()
    if index_only:
        write_index(prep, n)
        row["generate_s"] = round(time.perf_counter() - t, 1)
    else:
        data = write_corpus(work / f"raw-{n}", n)
        row["generate_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        P.prepare(data, prep, backbone="default", workers=prepare_workers)
        row["prepare_s"] = round(time.perf_counter() - t, 1)
        row["prepare_workers"] = prepare_workers
    manifest = json.loads((prep / "manifest.json").read_text())
    row["captions_in"], row["captions"] = manifest["counts"]["captions_in"], manifest["counts"]["captions_out"]
    row["index_mb"] = round(sum(f.stat().st_size for f in prep.glob("*.npy")) / 2**20, 1)
    row["new"] = {w: run_child({"loader": "new", "prep": str(prep), "workers": w, "batches": batches}) for w in workers}
    row["old"] = (
        None if index_only else run_child({"loader": "old", "data": str(work / f"raw-{n}"), "batches": batches})
    )
    return row


def fmt(rows: list[dict], workers: list[int]) -> str:
    head = ["videos", "captions", "prepare s", "loader", "start-up s", "RSS MB (anon+file)", "max RSS MB"] + [
        f"clips/s {w}w" for w in workers
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        new0 = r["new"][workers[0]]
        cells_new = [
            f"{r['videos']:,}",
            f"{r['captions']:,}",
            str(r.get("prepare_s", "index only")),
            "prepared",
            _s(new0, "startup_s"),
            _mem(new0),
            _s(new0, "max_rss_mb"),
        ] + [_s(r["new"][w], "clips_per_s") for w in workers]
        lines.append("| " + " | ".join(cells_new) + " |")
        o = r["old"]
        if o is None:
            cells = ["", "", "", "old", "not run", "not run", "not run"] + ["" for _ in workers]
        else:
            cells = [
                "",
                f"{r['captions_in']:,} raw",
                "-",
                "old",
                _s(o, "startup_s"),
                _mem(o),
                _s(o, "max_rss_mb"),
                _s(o, "clips_per_s"),
            ] + ["-" for _ in workers[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _s(r: dict, k: str) -> str:
    return r.get("error", "?")[:40] if k not in r else f"{r[k]:,}"


def _mem(r: dict) -> str:
    return _s(r, "rss_mb") if "rss_mb" not in r else f"{r['rss_anon_mb']:,.0f} + {r['rss_file_mb']:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k", help="comma-separated video counts, e.g. 10k,100k,1.2M")
    ap.add_argument("--workers", default="0,1,2,4", help="DataLoader worker counts to measure")
    ap.add_argument("--batches", type=int, default=20, help="batches timed per measurement (after 2 warm-up)")
    ap.add_argument("--prepare-workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--index-only-from", default="1M", help="sizes from here on are index only")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder, removed)")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument("--quick", action="store_true", help="2k videos, 5 batches, workers 0,2")
    ap.add_argument("--retrieval", default="", help="also rank N random pairs in row blocks, e.g. 100k (0: skip)")
    ap.add_argument("--retrieval-dim", type=int, default=768)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.sizes, args.batches, args.workers = "2k", 5, "0,2"
    sizes, workers = [parse_size(s) for s in args.sizes.split(",")], [int(w) for w in args.workers.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-data-"))
    os.environ.setdefault("VLMBENCH_CACHE", str(work / "cache"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {os.cpu_count()} cores, load average {load:.1f} at start; batch {BATCH} = {BATCH // CLIPS} videos"
        f" x {CLIPS} clips; memory of rank 0 of {WORLD}",
        flush=True,
    )
    rows = []
    try:
        for n in sizes:
            row = bench_size(
                n, work, workers, args.batches, args.prepare_workers, index_only=n >= parse_size(args.index_only_from)
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(fmt(rows, workers))
    ret = None
    if args.retrieval and parse_size(args.retrieval):
        ret = run_child({"retrieval": parse_size(args.retrieval), "dim": args.retrieval_dim, "block": 1024})
        print(f"retrieval, blocked ranking (block 1024): {json.dumps(ret)}")
    if args.json:
        args.json.write_text(
            json.dumps({"load_average": load, "cores": os.cpu_count(), "rows": rows, "retrieval": ret}, indent=2)
        )


if __name__ == "__main__":
    main()
