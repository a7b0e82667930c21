"""Each task adapter's model-facing path against a naive pipeline written here, on a random tiny VLM (issue 25: a
gate with power). The adapters batch windows, pack sequences, cache keys/values and share helpers; the naive
pipelines do none of that: every window, step text and decoding step is one full 96-slot forward of its own, and
spans, averages, softmaxes and searches are spelled out by hand.

* CrossTask (LocalizationAdapter.predict): per-video one-frame-per-step assignments against hand-built windows
  at the test stride, each window alone, window means, log-softmax over the task's steps, brute-force search.
* COIN (SegmentationAdapter.predict): per-second labels against a per-window loop at the test stride, plus the
  `test_windows` count.
* YouCook2 captioning (CaptioningAdapter.predict): greedy and beam captions against a decoder that runs the full
  text-causal forward for every generated token (no KV cache) and a per-clip transformers-3.4 beam search.

The datasets are tiny, written in their real formats under tmp_path, with videos longer than one 32-s window.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmbench import registry
from vlmbench.adapters.captioning import CaptioningAdapter
from vlmbench.adapters.localization import LocalizationAdapter
from vlmbench.adapters.segmentation import SegmentationAdapter
from vlmbench.config import run_config
from vlmbench.data import coin
from vlmbench.metrics.captioning import EMPTY_HYPOTHESIS
from vlmbench.model import backbone as bb
from vlmbench.model.text import encode
from vlmbench.model.vlm import VLM
from vlmbench.models.vlm import VLMModel
from vlmbench.records.formats import unpack_matrices, unpack_videos

quiet = lambda s: None  # noqa: E731
WINDOW = 32  # video slots of the 96-slot sequence
CLS, SEP, PAD = 101, 102, 0  # bert-base-uncased ids every backbone here shares
TEXT_START = 34  # [CLS] v1..v32 [SEP] -> the text slots start here
PROMPT = 3  # MMPT's decode prompt [CLS] [SEP] [BOS], counted in the beam's length penalty


@pytest.fixture(scope="module")
def vlm():
    return VLM.from_backbone("tiny", seed=0).eval()


def make_adapter(cls, task: str, root: Path, **pairs):
    spec = registry.get(task)
    cfg = run_config(spec, "smoke", [f"{k}={v}" for k, v in pairs.items()])
    return cls(spec, cfg, root, say=quiet)


# ---- naive building blocks ----------------------------------------------------------------------------------
def naive_spans(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Windows start at 0, stride, 2*stride, ...; the last is the first start with at most `window` seconds left,
    and it runs to the video's end."""
    last = next(s for s in itertools.count(0, stride) if n - s <= window)
    return [(s, s + window) for s in range(0, last, stride)] + [(last, n)]


def naive_frame_states(vlm: VLM, feats: np.ndarray) -> torch.Tensor:
    """(n, H) states of one window's n <= 32 seconds: the full 96-slot forward under the isolated mask, alone,
    with an empty text (the isolated mask hides it from the video rows)."""
    n = len(feats)
    video = torch.zeros(1, WINDOW, feats.shape[1])
    video[0, :n] = torch.from_numpy(feats)
    vmask = torch.zeros(1, WINDOW, dtype=torch.bool)
    vmask[0, :n] = True
    ids, mask = encode(bb.tokenizer("tiny"), [""])
    return vlm.forward(video, vmask, ids, mask, mask="isolated")[0, 1 : 1 + n]


def naive_text_vector(vlm: VLM, text: str) -> torch.Tensor:
    """(H,) one sentence alone: full isolated forward with a single zero video second, mean over its text slots."""
    ids, mask = encode(bb.tokenizer("tiny"), [text])
    one = torch.zeros(1, WINDOW, dtype=torch.bool)
    one[0, 0] = True
    hidden = vlm.forward(torch.zeros(1, WINDOW, 512), one, ids, mask, mask="isolated")[0, TEXT_START:]
    return hidden[mask[0]].mean(0)


def naive_average(n: int, per_window: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Per second, the mean of the scores of every window that covers it."""
    out = []
    for t in range(n):
        covering = [scores[t - s] for (s, e), scores in per_window.items() if s <= t < e]
        assert covering, f"second {t} is covered by no window"
        out.append(np.mean(covering, axis=0))
    return np.array(out)


def brute_force_assignment(logprob: np.ndarray) -> np.ndarray:
    """(T, K) 0/1: the strictly increasing frames f_1 < ... < f_K maximising sum_k logprob[f_k, k], found by trying
    every K-subset of the T frames (the best one must win by more than float rounding)."""
    n, k = logprob.shape
    combos = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), dtype=np.int64)
    combos = combos.reshape(-1, k)
    totals = logprob[combos, np.arange(k)].sum(axis=1)
    order = np.argsort(totals)
    assert totals[order[-1]] - totals[order[-2]] > 1e-6, "a near-tie: the comparison would test float rounding"
    y = np.zeros((n, k), dtype=np.uint8)
    y[combos[order[-1]], np.arange(k)] = 1
    return y


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# ---- CrossTask ------------------------------------------------------------------------------------------------
CT_TASKS = {
    "91001": ("Make Tiny Soup", ["cut the onion", "boil the water", "add the salt"]),
    "91002": ("Bake Tiny Bread", ["mix the flour", "knead the dough", "shape the loaf", "bake the bread"]),
}


def write_crosstask(root: Path, per_task: int = 32, seed: int = 0) -> Path:
    """A crosstask_release/ with two primary tasks (3 and 4 steps) and `per_task` annotated videos each (the
    task's n_train=30 go to train, the rest to test), one related task, one validation video; features of
    33..56 s (2 or 3 windows at stride 16)."""
    rng = np.random.default_rng(seed)
    base = root / "crosstask"
    release, features = base / "crosstask_release", base / "features"
    (release / "annotations").mkdir(parents=True)
    features.mkdir()

    def block(task, title, steps):
        return f"{task}\n{title}\nhttp://example.invalid/{task}\n{len(steps)}\n{','.join(steps)}\n\n"

    (release / "tasks_primary.txt").write_text("".join(block(t, *v) for t, v in CT_TASKS.items()))
    (release / "tasks_related.txt").write_text(block("91101", "Make Tiny Tea", ["heat the water", "pour the tea"]))
    rows = []
    for task, (_, steps) in CT_TASKS.items():
        for i in range(per_task + (task == "91001")):
            vid = f"v{task}x{i:02d}"
            n = int(rng.integers(33, 57))
            np.save(features / f"{vid}.npy", rng.standard_normal((n, 512)).astype(np.float32))
            cuts = np.sort(rng.choice(np.arange(1, n - 1), 2 * len(steps), replace=False))
            spans = [f"{k + 1},{cuts[2 * k]}.5,{cuts[2 * k + 1]}.2" for k in range(len(steps))]
            (release / "annotations" / f"{task}_{vid}.csv").write_text("\n".join(spans) + "\n")
            rows.append(f"{task},{vid},https://example.invalid/{vid}")
    (release / "videos.csv").write_text("\n".join(rows) + "\n")
    (release / "videos_val.csv").write_text(rows[per_task] + "\n")  # the extra 91001 video: left out
    return features


def test_crosstask_predict_equals_naive_windows_softmax_over_steps_and_brute_force(tmp_path, vlm):
    features = write_crosstask(tmp_path)
    adapter = make_adapter(LocalizationAdapter, "crosstask-zeroshot", tmp_path)
    adapter.load()
    assert adapter.cfg.window == 32 and adapter.cfg.stride == 16
    with torch.no_grad():
        preds = adapter.predict(VLMModel(vlm))
    tasks, ids, _, y_pred, primary = unpack_matrices(preds)
    assert len(ids) == 4 and sorted(set(tasks)) == sorted(CT_TASKS) == sorted(primary)

    n_windows, differs_from_raw = 0, 0
    with torch.no_grad():
        step_vectors = {
            task: torch.stack([naive_text_vector(vlm, s) for s in steps]) for task, (_, steps) in CT_TASKS.items()
        }
        for task, vid, got in zip(tasks, ids, y_pred):
            feats = np.load(features / f"{vid}.npy")
            n, k = len(feats), len(CT_TASKS[task][1])
            assert n > 32
            spans = naive_spans(n, 32, 16)
            assert len(spans) >= 2 and spans[-1][1] == n
            n_windows += len(spans)
            per_window = {
                (s, e): (naive_frame_states(vlm, feats[s:e]) @ step_vectors[task].T).numpy() for s, e in spans
            }
            scores = naive_average(n, per_window)
            want = brute_force_assignment(log_softmax(scores, axis=1))  # over the task's steps, per second
            assert got.shape == (n, k)
            np.testing.assert_array_equal(got, want, err_msg=f"video {vid} (task {task}, {n} s)")
            # A softmax over frames shifts each step's column by a constant: the same assignment as raw scores.
            differs_from_raw += not np.array_equal(want, brute_force_assignment(scores))
    assert adapter.loaded.counts["test_windows"] == n_windows > 2 * len(ids)  # some video has 3 windows
    assert differs_from_raw  # the softmax's axis changes an assignment here, so the comparison can see it


def dataset_folder(root: Path, name: str, seed: int) -> tuple[np.random.Generator, Path, Path]:
    """(rng, root/name, its empty features/ folder) for a small hand-made dataset."""
    base = root / name
    (base / "features").mkdir(parents=True)
    return np.random.default_rng(seed), base, base / "features"


# ---- COIN -----------------------------------------------------------------------------------------------------
COIN_TEST = {"ctest0": 40, "ctest1": 50, "ctest2": 57, "ctest3": 70}


def write_coin(root: Path, seed: int = 1) -> Path:
    rng, base, features = dataset_folder(root, "coin", seed)
    database = {}
    for vid, n in {"ctrain0": 45, **COIN_TEST}.items():
        np.save(features / f"{vid}.npy", rng.standard_normal((n, 512)).astype(np.float32))
        annotation = [
            {"id": str(int(rng.integers(1, 779))), "segment": [float(s), float(s + 6)], "label": "a step"}
            for s in (3, 15, n - 10)
        ]
        subset = "training" if vid.startswith("ctrain") else "testing"
        database[vid] = {"annotation": annotation, "subset": subset, "duration": float(n), "recipe_type": 1}
    (base / "COIN.json").write_text(json.dumps({"database": database}))
    return features


def test_coin_predict_equals_naive_per_window_loop_at_test_stride(tmp_path, vlm):
    features = write_coin(tmp_path)
    adapter = make_adapter(SegmentationAdapter, "coin-segmentation", tmp_path)
    adapter.load()
    cfg = adapter.cfg
    assert (cfg.window, cfg.stride, cfg.train_stride) == (32, 16, 8)
    module = adapter.build(VLMModel(vlm)).eval()
    with torch.no_grad():  # a visible classifier, so the labels depend on more than float noise
        module.classifier.weight.copy_(
            torch.randn(module.classifier.weight.shape, generator=torch.Generator().manual_seed(2))
        )
        module.classifier.bias.copy_(torch.randn(coin.NUM_CLASSES, generator=torch.Generator().manual_seed(3)))
        preds = adapter.predict(module)
    ids, pred, _ = unpack_videos(preds)
    assert ids == list(COIN_TEST)

    weight, bias = module.classifier.weight.detach().double().numpy(), module.classifier.bias.detach().double().numpy()
    n_windows, n_train_stride = 0, 0
    labels_at_train_stride_differ = False
    with torch.no_grad():
        for vid, got in zip(ids, pred):
            feats = np.load(features / f"{vid}.npy")
            n = len(feats)
            per_window = {}
            for s, e in sorted(set(naive_spans(n, 32, 16) + naive_spans(n, 32, 8))):
                per_window[s, e] = naive_frame_states(vlm, feats[s:e]).double().numpy() @ weight.T + bias
            spans = naive_spans(n, 32, 16)
            n_windows += len(spans)
            n_train_stride += len(naive_spans(n, 32, 8))
            logits = naive_average(n, {span: per_window[span] for span in spans})
            want = logits.argmax(axis=1)
            top2 = np.sort(logits, axis=1)[:, -2:]
            assert (top2[:, 1] - top2[:, 0]).min() > 1e-4  # labels decided well above float rounding
            np.testing.assert_array_equal(got, want, err_msg=f"video {vid} ({n} s)")
            at_train = naive_average(n, {span: per_window[span] for span in naive_spans(n, 32, 8)}).argmax(axis=1)
            labels_at_train_stride_differ |= not np.array_equal(at_train, want)
    assert adapter.loaded.counts["test_windows"] == n_windows != n_train_stride
    assert labels_at_train_stride_differ  # the labels alone would also see windows at the training stride


# ---- YouCook2 captioning --------------------------------------------------------------------------------------
YC2_VAL = {"yval0": (70, [(0, 12), (10, 55), (40, 70)]), "yval1": (50, [(5, 9), (8, 48)])}


def write_youcook2(root: Path, seed: int = 2) -> Path:
    rng, base, features = dataset_folder(root, "youcook2", seed)
    database = {}
    for vid, (n, segs) in {"ytrain0": (30, [(0, 10), (12, 30)]), **YC2_VAL}.items():
        np.save(features / f"{vid}.npy", rng.standard_normal((n, 512)).astype(np.float32))
        database[vid] = {
            "subset": "training" if vid.startswith("ytrain") else "validation",
            "recipe_type": "113",
            "duration": float(n),
            "annotations": [{"segment": [s, e], "sentence": f"step {i} of the dish"} for i, (s, e) in enumerate(segs)],
        }
    (base / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": database}))
    (base / "train_list.txt").write_text("113/ytrain0\n")
    (base / "val_list.txt").write_text("".join(f"113/{v}\n" for v in YC2_VAL))
    return features


def caption_model(seed: int = 0) -> VLM:
    vlm = VLM.from_backbone("tiny", seed=seed).eval()
    with torch.no_grad():  # [SEP] competitive with random logits (std ~0.2): captions end at various steps
        vlm.cls.predictions.bias[SEP] = 0.45
    return vlm


def naive_next_logprobs(vlm: VLM, feats: np.ndarray, seqs: list[list[int]]) -> torch.Tensor:
    """(len(seqs), V) log-probabilities of the token after each of `seqs` ([BOS] + generated): the full 96-slot
    forward under the text-causal mask, the clip's seconds in the video slots, a sequence in text slots 0.., then
    BERT's LM head at its last slot."""
    n, rows = len(feats), len(seqs)
    video = torch.zeros(rows, WINDOW, 512)
    video[:, :n] = torch.from_numpy(feats)
    vmask = torch.zeros(rows, WINDOW, dtype=torch.bool)
    vmask[:, :n] = True
    ids = torch.full((rows, 62), PAD, dtype=torch.long)
    for r, seq in enumerate(seqs):
        ids[r, : len(seq)] = torch.tensor(seq)
    hidden = vlm.forward(video, vmask, ids, ids != PAD, mask="text_causal")
    last = hidden[torch.arange(rows), torch.tensor([TEXT_START + len(seq) - 1 for seq in seqs])]
    head = vlm.cls.predictions
    return torch.log_softmax(head.vocab_logits(head.transform(last)), dim=-1)


def naive_greedy(vlm: VLM, feats: np.ndarray, max_new: int) -> list[int]:
    out: list[int] = []
    for _ in range(max_new):
        tok = int(naive_next_logprobs(vlm, feats, [[CLS, *out]])[0].argmax())
        if tok == SEP:
            break
        out.append(tok)
    return out


def naive_beam(vlm: VLM, feats: np.ndarray, k: int, max_new: int, length_penalty: float) -> list[int]:
    """transformers 3.4's beam search for one clip (num_beams k, early_stopping False, eos [SEP]), every beam's
    next-token distribution from a full forward of its own."""
    finished: list[tuple[float, list[int]]] = []  # (score, tokens): the best k, in order of addition
    beams = [(0.0, [])] + [(-1e9, [])] * (k - 1)  # all beams start equal: only beam 0 is expanded
    worst = 1e9

    def add(tokens, total):
        nonlocal worst
        score = total / (PROMPT + len(tokens)) ** length_penalty
        if len(finished) < k or score > worst:
            finished.append((score, tokens))
            if len(finished) > k:
                ranked = sorted((s, i) for i, (s, _) in enumerate(finished))
                del finished[ranked[0][1]]
                worst = ranked[1][0]
            else:
                worst = min(score, worst)

    for t in range(max_new):
        totals = torch.tensor([total for total, _ in beams])
        cand = totals[:, None] + naive_next_logprobs(vlm, feats, [[CLS, *seq] for _, seq in beams])
        top, flat = cand.view(-1).topk(2 * k)  # best first
        live = []
        for rank, (total, i) in enumerate(zip(top.tolist(), flat.tolist())):
            beam, tok = divmod(i, cand.shape[1])
            if tok == SEP:
                if rank < k:  # an [SEP] ranked below the k best is ignored
                    add(list(beams[beam][1]), total)
            else:
                live.append((total, beams[beam][1] + [tok]))
            if len(live) == k:
                break
        cur_len = PROMPT + t
        if len(finished) == k and worst >= max(top.tolist()) / cur_len**length_penalty:
            break
        beams = live
    else:  # max length: the live beams become hypotheses too
        for total, seq in beams:
            add(seq, total)
    return sorted(finished, key=lambda x: x[0])[-1][1]  # stable: of equal scores, the later added


@pytest.mark.parametrize("decode", ["greedy", pytest.param("beam", marks=pytest.mark.slow)])  # beam: ~0.6 s
def test_caption_predict_equals_naive_full_forward_decoding(tmp_path, decode):
    features = write_youcook2(tmp_path)
    adapter = make_adapter(CaptioningAdapter, "youcook2-caption", tmp_path, decode=decode, skip_meteor="true")
    adapter.load()
    cfg = adapter.cfg
    assert (cfg.beam, cfg.max_new_tokens, cfg.length_penalty) == (5, 21, 1.0)
    vlm = caption_model()
    with torch.no_grad():
        preds = adapter.predict(VLMModel(vlm))
    clips = adapter.test_clips
    assert list(preds["ids"]) == [f"{v}_{i}" for v, (_, segs) in YC2_VAL.items() for i in range(len(segs))]
    want, lengths = [], set()
    with torch.no_grad():
        for c in clips:
            feats = np.load(features / f"{c.vid}.npy")[c.start : c.end][:WINDOW]  # the clip, cut to 32 s
            if decode == "greedy":
                tokens = naive_greedy(vlm, feats, cfg.max_new_tokens)
            else:
                tokens = naive_beam(vlm, feats, cfg.beam, cfg.max_new_tokens, cfg.length_penalty)
            lengths.add(len(tokens))
            text = bb.tokenizer("tiny").decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=True)
            want.append(text or EMPTY_HYPOTHESIS)
    assert list(preds["hypotheses"]) == want
    # The comparison's own coverage (a changed model may lose it; the equality above still held then): captions
    # ended by [SEP] and captions cut at max_new_tokens, and more than one distinct caption.
    assert min(lengths) < cfg.max_new_tokens == max(lengths), f"caption lengths {sorted(lengths)}: coverage lost"
    assert len(set(want)) >= 2, "every clip got the same caption: coverage lost"
