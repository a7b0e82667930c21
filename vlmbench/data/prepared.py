"""The prepared HowTo100M corpus: captions cleaned and tokenised once, stored as flat arrays read memory-mapped.

`vlmbench data prepare-howto100m --data DIR --out PREP` writes PREP/ (pre-training reads it with --data PREP);
a raw folder given to `vlmbench pretrain` is prepared the same way, once, into the vlmbench cache.

    manifest.json          kind, version, tokenizer, source, counts before/after; written last (= complete)
    video_ids.npy          |S<w> (V,)    sorted video ids (ASCII; HowTo100M ids are 11 characters)
    video_seconds.npy      int32 (V,)    rows of each video's feature file (read once here, never at start-up)
    video_captions.npy     int64 (V+1,)  video v owns captions [c[v], c[v+1])
    video_tokens.npy       int64 (V+1,)  ... and tokens [t[v], t[v+1]), its captions' tokens end to end
    caption_start.npy      float64 (C,)  seconds, as read (float64 keeps floor/ceil of the spans exact)
    caption_end.npy        float64 (C,)
    caption_ntokens.npy    uint8 (C,)    tokens per caption (<= 32), so per-caption offsets are a cumsum away
    tokens.npy             uint16 (T,)   WordPiece ids without special tokens (int32 for a vocabulary > 65535)

Why numpy memmap (not Arrow/Parquet): every field is fixed-width and read at random by offset, so a mapped
`.npy` file is zero-copy and zero-decode; every rank maps the same files, so the corpus lives once in the page
cache and a rank's own resident memory does not grow with it; numpy is already a dependency. Parquet is
compressed in row groups (each random read decodes a group into private memory); Arrow IPC would map as well
but stores the same offsets + values layout and adds a dependency.

Caption rules (vlmbench.data.asr, one implementation: rolling-ASR de-duplication, empty lines dropped, 96
characters), then the feature rules of `howto100m.usable` (videos without features, all-empty, captions past the
features), then tokenisation cut to 32 tokens per line. Preparation is resumable: the videos are cut into shards
(input files in sorted order), each shard is written atomically to PREP/.shards/ by a worker process, a rerun
skips the shards already done for the same input, and a final merge writes the arrays, then the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError

from ..errors import one_line
from . import howto100m
from .features import NPY_ERRORS, FeatureStore
from .howto100m import Captions

VERSION = 1
KIND = "vlmbench-howto100m-prepared"
MANIFEST = "manifest.json"
SHARDS = ".shards"
SHARD_VIDEOS = 2048  # videos per shard: the unit of parallel work and of resume
CACHE_DIR = "howto100m-prepared"
ARRAYS = (
    "video_ids",
    "video_seconds",
    "video_captions",
    "video_tokens",
    "caption_start",
    "caption_end",
    "caption_ntokens",
    "tokens",
)
SKIP_KEYS = ("videos_no_features", "videos_empty_captions", "videos_past_features", "captions_past_features")


# ---- the caption rules (vlmbench.data.asr) ----------------------------------------------------------------------
def _rules():
    from . import asr

    return asr


def max_tokens() -> int:
    return int(getattr(_rules(), "MAX_TOKENS", 32))


def _clean(vid: str, cap: Captions) -> tuple[Captions, dict[str, int]]:
    """De-duplicated rolling ASR, empty lines dropped, 96-character cut: one video, with counts."""
    return _rules().prepare_captions(cap, vid=vid)


# ---- the read side ----------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """A prepared corpus (arrays memory-mapped from PREP/, or in memory for a small caption dict)."""

    arrays: dict[str, np.ndarray]
    manifest: dict
    folder: Path | None = None

    @classmethod
    def open(cls, folder: str | Path) -> Prepared:
        """The corpus in `folder`; a manifest or an array that is damaged, or that disagrees with the others, is
        one InputError naming the file (prepare it again), checked here rather than as an IndexError mid-run."""
        folder = Path(folder)
        manifest = _load_manifest(folder)
        if manifest is None:
            raise InputError(
                f"not a prepared HowTo100M corpus (no {MANIFEST}): run `vlmbench data prepare-howto100m`", path=folder
            )
        arrays = {}
        for name in ARRAYS:
            path = folder / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            except NPY_ERRORS as e:
                raise InputError(
                    f"prepared corpus is incomplete or damaged ({type(e).__name__}: {one_line(e)}): prepare it again",
                    path=path,
                ) from None
        _check_arrays(folder, manifest, arrays)
        return cls(arrays, manifest, folder)

    def __len__(self) -> int:
        return len(self.arrays["video_seconds"])

    def __getstate__(self) -> dict:
        # A worker process maps the files again rather than receiving a copy of every array.
        return {"folder": self.folder, "manifest": self.manifest, "arrays": None if self.folder else self.arrays}

    def __setstate__(self, state: dict) -> None:
        if state["arrays"] is None:
            state = {**state, "arrays": Prepared.open(state["folder"]).arrays}
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def video_id(self, i: int) -> str:
        return bytes(self.arrays["video_ids"][i]).decode()

    @property
    def features(self) -> Path:
        return Path(self.manifest["source"]["features"])

    @property
    def counts(self) -> dict[str, int]:
        return self.manifest["counts"]

    @property
    def skipped(self) -> dict[str, int]:
        return {k: int(self.counts.get(k, 0)) for k in SKIP_KEYS}

    def report(self) -> str | None:
        """One line saying which videos and captions were skipped (the words of `howto100m.Usable`)."""
        return howto100m.Usable({}, self.skipped).report()

    def captions_report(self) -> str:
        c = self.counts
        return (
            f"{c['captions_in']} ASR lines in {c['videos_in']} videos -> {c['captions_out']} captions "
            f"({c['tokens_out']} tokens) in {c['videos_out']} videos"
        )


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a complete prepared corpus in `folder`, or None (none there, another kind of file, or a
    damaged one: a corpus to prepare again)."""
    try:
        return _load_manifest(Path(folder))
    except InputError:
        return None


MANIFEST_COUNTS = ("videos_in", "captions_in", "videos_out", "captions_out", "tokens_out")
ARRAY_KINDS = {  # dtype kinds of each array: bytes, signed int, float, unsigned, int of either sign
    "video_ids": "S",
    "video_seconds": "i",
    "video_captions": "i",
    "video_tokens": "i",
    "caption_start": "f",
    "caption_end": "f",
    "caption_ntokens": "u",
    "tokens": "iu",
}


def _load_manifest(folder: Path) -> dict | None:
    """None when there is no manifest of this kind; an InputError naming the manifest when it is one, damaged."""
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(m, dict) or m.get("kind") != KIND:
        return None

    def bad(what: str) -> InputError:
        return InputError(f"damaged manifest: {what}: prepare the corpus again", path=path)

    def is_int(x: object) -> bool:
        return type(x) is int and x >= 0

    for key in ("tokenizer", "counts", "source"):
        if not isinstance(m.get(key), dict):
            raise bad(f"{key!r} is not an object")
    if not isinstance(m["tokenizer"].get("backbone"), str):
        raise bad("tokenizer.backbone is not a string")
    if not all(isinstance(k, str) and is_int(v) for k, v in m["counts"].items()):
        raise bad("counts are not all non-negative integers")
    absent = [k for k in MANIFEST_COUNTS if k not in m["counts"]]
    if absent:
        raise bad(f"counts lack {', '.join(absent)}")
    source = m["source"]
    if not isinstance(source.get("features"), str) or not source["features"]:
        raise bad("source.features is not a folder name")
    for key in ("captions", "fingerprint", "features_digest"):
        if source.get(key) is not None and not isinstance(source[key], str):
            raise bad(f"source.{key} is not a string")
    if not isinstance(m.get("rules", {}), dict):
        raise bad("'rules' is not an object")
    shapes = m.get("arrays", {})
    if not isinstance(shapes, dict) or not all(
        isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], list)
        for v in shapes.values()
    ):
        raise bad("'arrays' is not {name: [dtype, shape]}")
    return m


def _check_arrays(folder: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Each array as the manifest recorded it, and the offsets consistent with the arrays they index."""
    shapes = manifest.get("arrays", {})

    def bad(name: str, what: str) -> InputError:
        return InputError(f"prepared corpus is damaged ({what}): prepare it again", path=folder / f"{name}.npy")

    for name, arr in arrays.items():
        if arr.ndim != 1 or arr.dtype.kind not in ARRAY_KINDS[name]:
            raise bad(name, f"{arr.dtype} array of shape {arr.shape}")
        if name in shapes and [arr.dtype.str, list(arr.shape)] != [shapes[name][0], list(shapes[name][1])]:
            said = one_line(f"{shapes[name][0]!r} {shapes[name][1]!r}")
            raise bad(name, f"{arr.dtype.str!r} {list(arr.shape)}, the manifest says {said}")
    v, c, t = len(arrays["video_ids"]), len(arrays["caption_start"]), len(arrays["tokens"])
    sizes = {"video_seconds": v, "video_captions": v + 1, "video_tokens": v + 1, "caption_end": c, "caption_ntokens": c}
    for name, n in sizes.items():
        if len(arrays[name]) != n:
            raise bad(name, f"{len(arrays[name])} entries, {n} expected")
    for name, total in (("video_captions", c), ("video_tokens", t)):
        offsets = np.asarray(arrays[name])
        if offsets[0] != 0 or offsets[-1] != total or (np.diff(offsets) < 0).any():
            raise bad(name, f"offsets do not run from 0 to {total}")
    counts = manifest["counts"]
    if (counts["videos_out"], counts["captions_out"], counts["tokens_out"]) != (v, c, t):
        raise InputError(
            f"damaged manifest: counts say {counts['videos_out']} videos, {counts['captions_out']} captions, "
            f"{counts['tokens_out']} tokens; the arrays hold {v}, {c}, {t}: prepare the corpus again",
            path=folder / MANIFEST,
        )


def is_prepared(folder: str | Path) -> bool:
    return read_manifest(Path(folder)) is not None


def prepared_from_toy(folder: str | Path) -> bool:
    """A prepared corpus made from a toy-world folder (so pre-training on it is labelled toy, like the folder)."""
    m = read_manifest(Path(folder))
    return bool(m and m["source"].get("toy"))


# ---- tokenizer identity ----------------------------------------------------------------------------------------
_TOKENIZERS: dict[str, object] = {}


def _tokenizer(backbone: str):
    if backbone not in _TOKENIZERS:
        from ..model.backbone import tokenizer

        _TOKENIZERS[backbone] = tokenizer(backbone)
    return _TOKENIZERS[backbone]


def tokenizer_info(backbone: str) -> dict:
    """What makes two tokenizers give the same ids: the vocabulary file and lower-casing."""
    from ..model.backbone import minilm_dir, resolve

    tok = _tokenizer(backbone)
    vocab = (resolve(backbone) or minilm_dir()) / "vocab.txt"
    return {
        "backbone": backbone,
        "vocab_sha256": hashlib.sha256(vocab.read_bytes()).hexdigest(),
        "lowercase": bool(getattr(tok, "do_lower_case", True)),
        "vocab_size": len(tok),
        "max_tokens": max_tokens(),
    }


def _same_tokenizer(a: dict, b: dict) -> bool:
    keys = ("vocab_sha256", "lowercase", "max_tokens")
    return all(a.get(k) == b.get(k) for k in keys)


# ---- one shard: raw captions -> arrays ----------------------------------------------------------------------------
@dataclass
class Shard:
    ids: list[str] = field(default_factory=list)
    seconds: list[int] = field(default_factory=list)
    n_captions: list[int] = field(default_factory=list)
    start: list[np.ndarray] = field(default_factory=list)
    end: list[np.ndarray] = field(default_factory=list)
    ntokens: list[np.ndarray] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def arrays(self, token_dtype) -> dict[str, np.ndarray]:
        cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        width = max((len(v) for v in self.ids), default=1)
        return {
            "video_ids": np.array([v.encode() for v in self.ids], dtype=f"S{width}"),
            "video_seconds": np.asarray(self.seconds, np.int32),
            "n_captions": np.asarray(self.n_captions, np.int64),
            "caption_start": cat(self.start, np.float64),
            "caption_end": cat(self.end, np.float64),
            "caption_ntokens": cat(self.ntokens, np.uint8),
            "tokens": cat(self.tokens, token_dtype),
        }


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        counts[k] = counts.get(k, 0) + int(v)


def prepare_videos(captions: dict[str, Captions], store: FeatureStore, tokenizer) -> Shard:
    """Caption rules, feature rules, tokens: the videos of one shard, in sorted id order."""
    shard = Shard()
    counts = shard.counts
    _add(counts, {"videos_in": len(captions), "captions_in": sum(len(c) for c in captions.values())})
    clean = {}
    for vid in sorted(captions):
        clean[vid], c = _clean(vid, captions[vid])
        _add(counts, c)
    kept = howto100m.usable(clean, store, allow_empty=True)
    _add(counts, kept.skipped)
    limit = max_tokens()
    vids = sorted(kept.captions)
    texts = [t for vid in vids for t in kept.captions[vid].text]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    _add(counts, {"captions_cut_tokens": sum(len(x) > limit for x in ids)})
    at = 0
    for vid in vids:
        cap = kept.captions[vid]
        toks = _rules().cut_tokens(ids[at : at + len(cap)])
        at += len(cap)
        shard.ids.append(vid)
        shard.seconds.append(store.n_seconds(vid))
        shard.n_captions.append(len(cap))
        shard.start.append(np.asarray(cap.start, np.float64))
        shard.end.append(np.asarray(cap.end, np.float64))
        shard.ntokens.append(np.array([len(t) for t in toks], np.int64))
        shard.tokens.append(np.fromiter((i for t in toks for i in t), np.int64))
    _add(
        counts,
        {
            "videos_out": len(vids),
            "captions_out": sum(shard.n_captions),
            "tokens_out": int(sum(len(t) for t in shard.tokens)),
        },
    )
    return shard


def _token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _assemble(
    parts: Iterable[dict[str, np.ndarray]],
    totals: dict[str, int],
    token_dtype,
    alloc: Callable[[str, object, tuple], np.ndarray],
) -> dict[str, np.ndarray]:
    """Concatenate shard arrays into the final ones (alloc makes each: np.empty or a memmap)."""
    v, c, t = totals["videos_out"], totals["captions_out"], totals["tokens_out"]
    width = max(totals.get("id_width", 1), 1)
    out = {
        "video_ids": alloc("video_ids", f"S{width}", (v,)),
        "video_seconds": alloc("video_seconds", np.int32, (v,)),
        "video_captions": alloc("video_captions", np.int64, (v + 1,)),
        "video_tokens": alloc("video_tokens", np.int64, (v + 1,)),
        "caption_start": alloc("caption_start", np.float64, (c,)),
        "caption_end": alloc("caption_end", np.float64, (c,)),
        "caption_ntokens": alloc("caption_ntokens", np.uint8, (c,)),
        "tokens": alloc("tokens", token_dtype, (t,)),
    }
    out["video_captions"][0] = out["video_tokens"][0] = 0
    iv = ic = it = 0
    for a in parts:
        nv, nc, nt = len(a["video_seconds"]), len(a["caption_start"]), len(a["tokens"])
        out["video_ids"][iv : iv + nv] = a["video_ids"]
        out["video_seconds"][iv : iv + nv] = a["video_seconds"]
        cap_end = np.cumsum(a["n_captions"])  # each video's last caption + 1
        tok_cum = np.r_[0, np.cumsum(a["caption_ntokens"], dtype=np.int64)]
        out["video_captions"][iv + 1 : iv + nv + 1] = ic + cap_end
        out["video_tokens"][iv + 1 : iv + nv + 1] = it + tok_cum[cap_end]
        for name in ("caption_start", "caption_end", "caption_ntokens"):
            out[name][ic : ic + nc] = a[name]
        out["tokens"][it : it + nt] = a["tokens"]
        iv, ic, it = iv + nv, ic + nc, it + nt
    assert (iv, ic, it) == (v, c, t), "shard totals disagree with their arrays"
    return out


def build(captions: dict[str, Captions], store: FeatureStore, tokenizer) -> Prepared:
    """Prepare a caption dict in memory (no files): the same rules and arrays as `prepare`."""
    info = {"vocab_size": len(tokenizer), "max_tokens": max_tokens()}
    shard = prepare_videos(captions, store, tokenizer)
    if not shard.ids:
        _none_usable(shard.counts, store.folder)
    dtype = _token_dtype(info["vocab_size"])
    totals = {**shard.counts, "id_width": max(len(v) for v in shard.ids)}
    arrays = _assemble([shard.arrays(dtype)], totals, dtype, lambda name, dt, shape: np.empty(shape, dt))
    manifest = {
        "kind": KIND,
        "version": VERSION,
        "tokenizer": info,
        "counts": shard.counts,
        "source": {"captions": None, "features": str(store.folder)},
    }
    return Prepared(arrays, manifest)


def _none_usable(counts: dict[str, int], where) -> None:
    report = howto100m.Usable({}, {k: counts.get(k, 0) for k in SKIP_KEYS}).report()
    raise InputError(f"none of the {counts.get('videos_in', 0)} captioned videos is usable ({report})", path=where)


# ---- planning: what the input is, its fingerprint, its shards -------------------------------------------------
@dataclass
class Source:
    captions: Path
    features: Path
    files: list[Path] | None  # per-video CSVs (a folder), or None for one JSON file
    fingerprint: str

    def shards(self, json_vids: Sequence[str] | None = None) -> list[list]:
        items = self.files if self.files is not None else list(json_vids or [])
        return [items[i : i + SHARD_VIDEOS] for i in range(0, len(items), SHARD_VIDEOS)] or [[]]


def source(data: str | Path) -> Source:
    """The caption and feature inputs of a HowTo100M folder, and a fingerprint of their names, sizes and
    modification times (what the cache and resume compare; re-extracted features change it)."""
    cap, feats = howto100m.find(Path(data))
    cap, feats = cap.resolve(), feats.resolve()
    files = None
    # the caption rules' version too: a corpus made under other rules is another corpus (cache key, resume)
    h = hashlib.sha256(f"{VERSION}\n{_rules_version()}\n{cap}\n{feats}\n".encode())
    if cap.is_dir():
        files = sorted(cap.glob("*.csv"), key=lambda p: p.stem)  # video order = sorted ids
        if not files:
            raise InputError("no caption files (<video_id>.csv) in folder", path=cap)
        for f in files:
            st = _stat(f)
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    else:
        st = _stat(cap)
        h.update(f"{cap.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        if cap.suffix == ".csv":
            files = [cap]
    h.update(f"features {feature_digest(feats)}\n".encode())
    return Source(cap, feats, files, h.hexdigest())


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as e:  # a dangling symlink or a symlink loop
        raise InputError(f"cannot read ({e.strerror or e})", path=path) from None


def feature_digest(folder: Path) -> str:
    """Names, sizes and modification times of the feature files: a PREP folder whose features were re-extracted
    since it was prepared no longer matches (its token arrays may still hold, its lengths may not)."""
    h = hashlib.sha256()
    for name, size, mtime in sorted(_feature_stats(folder)):
        h.update(f"{name}:{size}:{mtime}\n".encode())
    return h.hexdigest()


def _rules_version() -> int:
    return int(getattr(_rules(), "RULES_VERSION", 0))


def _feature_stats(folder: Path):
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.name.endswith(".npy")]
    except OSError as e:
        raise InputError(f"cannot list the feature folder ({e.strerror or e})", path=folder) from None
    for e in entries:
        try:
            st = e.stat()
        except OSError as err:  # a dangling symlink or a symlink loop
            raise InputError(f"cannot read the feature file ({err.strerror or err})", path=Path(e.path)) from None
        yield e.name, st.st_size, st.st_mtime_ns


# ---- workers -----------------------------------------------------------------------------------------------------
_STORES: dict[str, FeatureStore] = {}


def _store(folder: str) -> FeatureStore:
    if folder not in _STORES:  # one folder listing per worker process
        _STORES[folder] = FeatureStore(folder)
    return _STORES[folder]


def _shard_path(prep: Path, index: int) -> Path:
    return prep / SHARDS / f"shard-{index:06d}.npz"


def _shard_key(src: Source, info: dict, index: int, n: int) -> str:
    return hashlib.sha256(
        f"{src.fingerprint}:{info['vocab_sha256']}:{info['max_tokens']}:{index}/{n}".encode()
    ).hexdigest()


def _read_shard(path: Path, key: str | None = None) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (*NPY_ERRORS, KeyError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError):
        return None  # damaged (RuntimeError: a flipped bit says the zip is encrypted): the shard is made again
    if key is not None and bytes(arrays.get("key", b"")).decode() != key:
        return None
    return arrays


def _shard_counts(arrays: dict[str, np.ndarray]) -> dict[str, int]:
    return json.loads(bytes(arrays["counts"]).decode())


def _run_shard(job: tuple) -> dict[str, int]:
    """Worker: prepare one shard and write it atomically (or find it done). Returns its counts."""
    from ..io import atomic_write

    prep, index, key, items, features, backbone, token_dtype = job
    path = _shard_path(Path(prep), index)
    done = _read_shard(path, key)
    if done is not None:
        return _shard_counts(done)
    if items and isinstance(items[0], (str, Path)):  # CSV files: read here, in the worker
        captions = {}
        for f in items:
            captions.update(howto100m.load_captions(f))
    else:
        captions = dict(items)
    shard = prepare_videos(captions, _store(features), _tokenizer(backbone))
    counts = {**shard.counts, "id_width": max((len(v) for v in shard.ids), default=0)}
    arrays = shard.arrays(np.dtype(token_dtype))
    arrays["key"] = np.frombuffer(key.encode(), np.uint8)
    arrays["counts"] = np.frombuffer(json.dumps(counts).encode(), np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
    return counts


# ---- prepare: shards in parallel, then one merge --------------------------------------------------------------
def prepare(
    data: str | Path,
    out: str | Path,
    backbone: str = "default",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] = lambda s: None,
    src: Source | None = None,
) -> Prepared:
    """Prepare the HowTo100M folder `data` into `out` (resumable; a complete `out` for the same input and
    tokenizer is kept as it is). `progress(videos_done, videos_total)` is called as shards finish."""
    from ..io import ensure_writable, write_json

    out = ensure_writable(Path(out))
    src = src or source(data)
    info = tokenizer_info(backbone)
    old = read_manifest(out)
    if (
        old
        and old["source"].get("fingerprint") == src.fingerprint
        and _same_tokenizer(old["tokenizer"], info)
        and old.get("version") == VERSION
        and old.get("rules", {}).get("version") == _rules_version()
    ):
        say(f"{out}: already prepared from this input")
        return Prepared.open(out)
    if (
        out.exists()
        and not old
        and any(
            p.name not in (SHARDS, *(f"{a}.npy" for a in ARRAYS)) for p in out.iterdir() if not p.name.startswith(".")
        )
    ):
        raise InputError("output folder exists and is not a prepared corpus: choose a new folder", path=out)
    (out / MANIFEST).unlink(missing_ok=True)  # arrays are about to change: never a manifest over them
    json_vids, json_caps = None, None
    if src.files is None:
        json_caps = howto100m.load_captions(src.captions)
        json_vids = sorted(json_caps)
    shards = src.shards(json_vids)
    total = len(src.files) if src.files is not None else len(json_vids)
    dtype = np.dtype(_token_dtype(info["vocab_size"])).str
    jobs = []
    for i, items in enumerate(shards):
        payload = [str(f) for f in items] if src.files is not None else [(v, json_caps[v]) for v in items]
        jobs.append((str(out), i, _shard_key(src, info, i, len(shards)), payload, str(src.features), backbone, dtype))
    say(f"Preparing {total} videos ({src.captions}) in {len(jobs)} shards with {max(1, workers)} worker(s)")
    results: dict[int, dict[str, int]] = {}
    done = 0
    if progress:
        progress(0, total)
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            results[job[1]] = _run_shard(job)
            done += len(job[3])
            if progress:
                progress(done, total)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init
        ) as pool:
            futures = {pool.submit(_run_shard, job): job for job in jobs}
            for fut in as_completed(futures):
                job = futures[fut]
                results[job[1]] = fut.result()
                done += len(job[3])
                if progress:
                    progress(done, total)
    totals: dict[str, int] = {}
    for i in sorted(results):
        width = results[i].get("id_width", 0)
        _add(totals, {k: v for k, v in results[i].items() if k != "id_width"})
        totals["id_width"] = max(totals.get("id_width", 0), width)
    if not totals.get("videos_out"):
        _none_usable(totals, src.features)
    shapes = _merge(out, [_shard_path(out, i) for i in range(len(jobs))], totals, np.dtype(dtype))
    totals.pop("id_width", None)
    write_json(
        out / MANIFEST,
        {
            "kind": KIND,
            "version": VERSION,
            "tokenizer": info,
            "counts": totals,
            "source": {
                "captions": str(src.captions),
                "features": str(src.features),
                "fingerprint": src.fingerprint,
                "toy": _toy(data),
                "features_digest": feature_digest(src.features),
            },
            "rules": _rules_info(),
            "arrays": shapes,
        },
    )
    shutil.rmtree(out / SHARDS, ignore_errors=True)
    return Prepared.open(out)


def _rules_info() -> dict:
    asr = _rules()
    return {
        "module": asr.__name__,
        "version": _rules_version(),
        "max_chars": getattr(asr, "MAX_CHARS", 96),
        "max_tokens": max_tokens(),
    }


def _toy(data: str | Path) -> bool:
    from .toy import is_toy_dataset

    return is_toy_dataset(data) or is_toy_dataset(Path(data) / "howto100m")


def _worker_init() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _merge(out: Path, shard_files: list[Path], totals: dict[str, int], token_dtype) -> dict[str, list]:
    """Shards -> the final arrays, written in a temp folder and renamed into place one by one."""
    tmp = out / ".merge.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def alloc(name, dtype, shape):
        return np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.dtype(dtype), shape=shape)

    def parts():
        for f in shard_files:
            a = _read_shard(f)
            if a is None:
                raise InputError("a prepared shard vanished or is damaged during the merge: run again", path=f)
            yield a

    arrays = _assemble(parts(), totals, token_dtype, alloc)
    shapes = {name: [arr.dtype.str, list(arr.shape)] for name, arr in arrays.items()}
    for arr in arrays.values():
        arr.flush()
    arrays.clear()
    for name in ARRAYS:
        os.replace(tmp / f"{name}.npy", out / f"{name}.npy")
    shutil.rmtree(tmp, ignore_errors=True)
    return shapes


# ---- pre-training's entry point: a PREP folder, or a raw folder prepared once into the cache -------------------
def for_pretraining(data: str | Path, backbone: str, say: Callable[[str], None] = print, workers: int = 1) -> Prepared:
    data = Path(data)
    info = tokenizer_info(backbone)
    if is_prepared(data):
        prep = Prepared.open(data)
        if not _same_tokenizer(prep.manifest["tokenizer"], info):
            raise InputError(
                f"prepared with the tokenizer of {prep.manifest['tokenizer']['backbone']!r}, not that "
                f"of backbone {backbone!r}: prepare it again with --backbone",
                path=data / MANIFEST,
            )
        if not prep.features.is_dir():
            raise InputError("the feature folder this corpus was prepared from is gone", path=prep.features)
        rules = prep.manifest.get("rules", {}).get("version")
        if rules != _rules_version():
            raise InputError(
                f"prepared under caption rules version {rules}, these are version {_rules_version()}: "
                "prepare it again (vlmbench data prepare-howto100m)",
                path=data / MANIFEST,
            )
        digest = prep.manifest["source"].get("features_digest")
        if digest is not None and digest != feature_digest(prep.features):
            raise InputError(
                "feature files changed since this corpus was prepared (re-extracted?): prepare it "
                "again (vlmbench data prepare-howto100m)",
                path=prep.features,
            )
        return prep
    src = source(data)
    from .toy import default_cache

    root = default_cache() / CACHE_DIR
    key = hashlib.sha256(
        f"{src.fingerprint}:{info['vocab_sha256']}:{info['max_tokens']}:{_rules_version()}".encode()
    ).hexdigest()[:20]
    folder = root / key
    with _locked(root / f"{key}.lock"):
        m = read_manifest(folder)
        if m is None:
            big = len(src.files) > SHARD_VIDEOS if src.files is not None else src.captions.stat().st_size > 64 << 20
            if big:  # a long wait: say why (a small one is silent,
                say(
                    f"Preparing the HowTo100M captions once into {folder} (faster, in parallel: "  # so bad input
                    "`vlmbench data prepare-howto100m --workers N`)"
                )  # is one line)
            prepare(data, folder, backbone=backbone, workers=workers, src=src)
            _prune(root, str(src.captions), keep=key)
    return Prepared.open(folder)


@contextmanager
def _locked(path: Path):
    """An exclusive lock, so ranks (or two runs) preparing the same input wait for one another."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prune(root: Path, captions: str, keep: str) -> None:
    """Older cache entries of the same caption input are stale (the input or tokenizer changed): remove them."""
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep:
            m = read_manifest(entry)
            if m and m["source"].get("captions") == captions:
                shutil.rmtree(entry, ignore_errors=True)
                (root / f"{entry.name}.lock").unlink(missing_ok=True)
