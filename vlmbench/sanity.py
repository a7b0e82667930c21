"""Metric sanity (`python -m vlmbench.sanity`, run by .ci/run before the suite): scores of a known random model,
put through the package's real metric functions, must give their analytic expectation within 4 standard errors.

Sample sizes make a planted off-by-one rank (every rank +1: R@1 10% -> 0%, MeanR +1 vs a standard error
~0.01) or a tie-rule change (pessimistic '>=' -> optimistic '>' on integer scores: R@1 moves by > 10 points)
fail by far. Exit 1 on a failure; prints metric, expected, measured, allowed error, verdict.
Also the test-time window averaging of COIN/CrossTask (not a metric, but a mean the tasks rely on), the
model's invariants on a random tiny VLM (padding hidden by every mask and by pooling, text-causal slots blind
to later tokens, the isolated halves equal to the isolated full forward), the 61-token text budget, and the
CrossTask DP on a planted known answer (its recall of a random model has no closed form here), and the
fine-tuning loop's learning-rate schedule read back from the updates it makes, and the bootstrap intervals'
calibration: their width on a known random model against the analytic width, with and without clusters.
"""

from __future__ import annotations

import sys

import numpy as np

SIGMAS = 4.0


def _retrieval(
    ties: str, levels: int | None, n: int = 20, blocks: int = 2000, seed: int = 0, blocked: bool = False
) -> list[tuple]:
    """blocked: through metrics.retrieval_blocks (what the retrieval tasks run: counts, no N x N matrix, both
    directions), else metrics.retrieval on the full matrix (re-scoring, ablation, old prediction files)."""
    from vlmbench.metrics import retrieval, retrieval_blocks

    rng = np.random.default_rng(seed)
    keys = ("R@1", "R@5", "MeanR", "v2t_R@1", "v2t_MeanR") if blocked else ("R@1", "R@5", "MeanR")
    got: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(blocks):
        s = rng.integers(levels, size=(n, n)) if levels else rng.standard_normal((n, n))
        if blocked:
            counts = retrieval_blocks.rank_counts_rows(lambda a, b: s[a:b], n, block=7)  # noqa: B023 (called here)   # 3 uneven blocks
            m = retrieval_blocks.metrics_from_counts(counts, ties=ties)
        else:
            m = retrieval.retrieval_metrics(s, ties=ties)
        for k in got:
            got[k].append(m[k])
    rows = []
    if levels:  # pessimistic ties: rank = 1 + #others >= truth; truth level v uniform on 0..L-1
        v = np.arange(levels)
        p_lt = v / levels
        exp = {
            "R@1": 100 * np.mean(p_lt ** (n - 1)),
            "R@5": 100
            * np.mean(
                [
                    sum(__import__("math").comb(n - 1, j) * (1 - q) ** j * q ** (n - 1 - j) for j in range(5))
                    for q in p_lt
                ]
            ),
            "MeanR": 1 + (n - 1) * np.mean(1 - p_lt),
        }
    else:
        exp = {"R@1": 100 / n, "R@5": 500 / n, "MeanR": (n + 1) / 2}
    exp.update({"v2t_R@1": exp["R@1"], "v2t_MeanR": exp["MeanR"]})  # the matrix is exchangeable
    for k, vals in got.items():
        vals = np.asarray(vals)
        se = vals.std(ddof=1) / np.sqrt(len(vals))
        rows.append(
            (
                f"retrieval {k} ({ties}{', ties L=' + str(levels) if levels else ''}, N={n}"
                f"{', blocked' if blocked else ''})",
                float(exp[k]),
                float(vals.mean()),
                SIGMAS * float(se),
            )
        )
    return rows


def _mcqa(m: int = 200_000, seed: int = 1) -> tuple:
    from vlmbench.metrics.qa import mcqa_accuracy

    rng = np.random.default_rng(seed)
    acc = mcqa_accuracy(rng.standard_normal((m, 5)), rng.integers(5, size=m))["accuracy"]
    return ("MC-QA accuracy (5 choices)", 20.0, float(acc), SIGMAS * 100 * np.sqrt(0.2 * 0.8 / m))


def _coin(k: int = 10, videos: int = 200, frames: int = 500, seed: int = 2) -> tuple:
    from vlmbench.metrics.segmentation import frame_accuracy

    rng = np.random.default_rng(seed)
    t = [rng.integers(k, size=frames) for _ in range(videos)]
    p = [rng.integers(k, size=frames) for _ in range(videos)]
    acc = frame_accuracy(p, t)["frame_acc"]
    n = videos * frames
    return (
        f"COIN frame_acc (uniform labels, {k} classes)",
        100 / k,
        float(acc),
        SIGMAS * 100 * np.sqrt((1 / k) * (1 - 1 / k) / n),
    )


def _windows(lengths=(40, 100, 157, 300), classes: int = 16, repeats: int = 15, seed: int = 3) -> tuple:
    """COIN/CrossTask test-time window averaging (adapters.windows.average, what the tasks run): iid N(0, 1)
    logits per window give each second a mean of c(s) values, so E[out^2] = mean over seconds of 1/c(s), with
    c(s) the number of 32-s windows (stride 16) covering it, counted here from the spans. One window's logits
    standing in for the mean gives 1."""
    import torch

    from vlmbench.adapters.windows import Windows, average
    from vlmbench.metrics.segmentation import sliding_windows

    rng = np.random.default_rng(seed)
    squares, expected = [], []
    for n in lengths:
        spans = sliding_windows(n, 32, 16)
        cover = np.array([sum(a <= t < b for a, b in spans) for t in range(n)], dtype=np.float64)
        for _ in range(repeats):
            values = torch.from_numpy(rng.standard_normal((len(spans), 32, classes)).astype(np.float32))
            out = average(values, Windows(torch.empty(0), torch.empty(0), spans, n))
            squares.append((out**2).ravel())
            expected.append(np.repeat(1.0 / cover, classes))
    sq, ex = np.concatenate(squares), np.concatenate(expected)
    se = float(np.sqrt(np.mean(2 * ex**2) / len(sq)))  # Var[x^2] = 2 sigma^4 for a normal x
    return ("window averaging E[logit^2] (32-s windows, stride 16)", float(ex.mean()), float(sq.mean()), SIGMAS * se)


def _dp(cases: int = 300, seed: int = 4) -> tuple:
    """CrossTask's one-frame-per-step DP on a known answer: step k's log-probability is 0 at a planted frame
    f_k (f_1 < ... < f_K) and in [-10, -5] everywhere else, so the planted frames are the unique optimum and
    must come back in every case (a shifted step column or an order rule change loses them)."""
    from vlmbench.metrics.localization import dp_one_frame_per_step

    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(cases):
        k, t = int(rng.integers(2, 9)), int(rng.integers(10, 60))
        frames = np.sort(rng.choice(t, size=k, replace=False))
        logprob = rng.uniform(-10, -5, size=(t, k))
        logprob[frames, np.arange(k)] = 0.0
        want = np.zeros((t, k), dtype=np.uint8)
        want[frames, np.arange(k)] = 1
        hits += bool(np.array_equal(dp_one_frame_per_step(logprob), want))
    return (f"CrossTask DP recovers a planted optimum ({cases} cases, %)", 100.0, 100.0 * hits / cases, 0.0)


def _model(seed: int = 0, allowed: float = 1e-4) -> list[tuple]:
    """The masks and the isolated halves on a random tiny VLM: what a mask hides must not matter, and the halves
    run alone must equal the isolated full forward. Each row: max |difference| of states that must be equal
    (expected 0). Padding is filled with garbage (random features, random word ids) to make a leak visible."""
    import torch

    from vlmbench.model.layout import MAX_VIDEO_LEN, TEXT_SLOTS, TEXT_START, VIDEO_SEP, VIDEO_START
    from vlmbench.model.text import PAD_ID, SEP_ID
    from vlmbench.model.vlm import VLM

    g = torch.Generator().manual_seed(seed)
    model = VLM.from_backbone("tiny", seed=seed).eval()
    vlen, tlen = torch.tensor([32, 20, 7, 1, 15, 28]), torch.tensor([62, 12, 3, 30, 6, 9])  # text incl. [SEP]
    b = len(vlen)
    vmask = torch.arange(MAX_VIDEO_LEN)[None] < vlen[:, None]
    tmask = torch.arange(TEXT_SLOTS)[None] < tlen[:, None]
    video = torch.randn(b, MAX_VIDEO_LEN, 512, generator=g) * vmask[..., None]
    ids = torch.randint(1000, 20000, (b, TEXT_SLOTS), generator=g)
    ids[torch.arange(b), tlen - 1] = SEP_ID
    ids[~tmask] = PAD_ID
    junk_video = video + torch.randn(video.shape, generator=g) * (~vmask)[..., None]
    junk_ids = torch.where(tmask, ids, torch.randint(1000, 20000, ids.shape, generator=g))
    keys_v = torch.cat([vmask, torch.ones(b, 1, dtype=torch.bool)], 1)  # valid video slots + video-[SEP]
    valid = torch.cat([torch.ones(b, 1, dtype=torch.bool), keys_v, tmask], 1)  # [CLS] video [SEP] text

    def gap(a, c, where):
        return float((a - c).abs()[where].max())

    rows = []
    with torch.no_grad():
        iso = model(video, vmask, ids, tmask, mask="isolated")
        fv, ft = model.forward_video(video, vmask), model.forward_text(ids, tmask)
        rows.append(
            (
                "isolated video half alone = isolated full forward",
                0.0,
                gap(fv, iso[:, VIDEO_START : VIDEO_SEP + 1], keys_v),
                allowed,
            )
        )
        rows.append(
            ("isolated text half alone = isolated full forward", 0.0, gap(ft, iso[:, TEXT_START:], tmask), allowed)
        )
        jv, jt = model.forward_video(junk_video, vmask), model.forward_text(junk_ids, tmask)
        rows.append(
            (
                "pooled video ignores padded seconds",
                0.0,
                float((model.pool_video(fv, vmask) - model.pool_video(jv, vmask)).abs().max()),
                allowed,
            )
        )
        rows.append(
            (
                "pooled text ignores padded slots",
                0.0,
                float((model.pool_text(ft, tmask) - model.pool_text(jt, tmask)).abs().max()),
                allowed,
            )
        )
        joint = model(video, vmask, ids, tmask, mask="joint")
        rows.append(
            (
                "joint mask hides padding",
                0.0,
                gap(joint, model(junk_video, vmask, junk_ids, tmask, mask="joint"), valid),
                allowed,
            )
        )
        cut = 4  # text slots < cut must not see a change at slots >= cut
        later = ids.clone()
        later[:, cut:] = torch.where(
            tmask[:, cut:], torch.randint(1000, 20000, later[:, cut:].shape, generator=g), later[:, cut:]
        )
        causal, changed = (model(video, vmask, x, tmask, mask="text_causal") for x in (ids, later))
        seen = valid.clone()
        seen[:, TEXT_START + cut :] = False
        rows.append(("text-causal slots ignore later tokens", 0.0, gap(causal, changed, seen), allowed))
    return rows


def _text_budget() -> tuple:
    """The fine-tune/eval tokenisation keeps MAX_TEXT_TOKENS (61, the reference's 96 - 32 - 3) tokens."""
    from vlmbench.model.backbone import tokenizer
    from vlmbench.model.layout import MAX_TEXT_TOKENS
    from vlmbench.model.text import tokenize

    long = " ".join(["slowly stir the red onion in the pan"] * 12)  # 96 words, each one word piece
    return (
        "text budget of a long caption (tokens)",
        float(MAX_TEXT_TOKENS),
        float(len(tokenize(tokenizer("tiny"), [long])[0])),
        0.0,
    )


def _schedule(lr: float = 1e-3, warmup: int = 10, decay_steps: int = 400, epochs: int = 4, per_epoch: int = 7) -> tuple:
    """train.finetune on one float64 weight whose loss is the weight itself (gradient 1): Adam's bias-corrected
    step is then exactly lr_t (eps aside), so the weight's per-update moves are the schedule the loop ran. It
    must be linear warm-up by UPDATE (lr * n / warmup, n = 1-based update) then linear decay to 0 at
    decay_steps, over several epochs (a schedule counted in epochs, or restarted per epoch, moves by far)."""
    import torch

    from vlmbench.config import RunConfig
    from vlmbench.train.finetune import finetune

    weight = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    module = torch.nn.Module()
    module.w = weight
    seen: list[float] = []

    class Adapter:
        def train_batches(self, epoch, rng):
            return range(per_epoch)

        def loss(self, module, batch):
            seen.append(float(module.w.detach()))
            return module.w * 1.0

    cfg = RunConfig(lr=lr, warmup=warmup, lr_decay_steps=decay_steps, epochs=epochs)  # Adam (0.9, 0.98), clip 2
    finetune(Adapter(), module, cfg, torch.device("cpu"))
    seen.append(float(weight.detach()))
    moves = -np.diff(seen)
    n = np.arange(1, len(moves) + 1)
    want = np.where(n <= warmup, lr * n / warmup, lr * (1 - (n - warmup) / (decay_steps - warmup)))
    return (
        f"fine-tune lr schedule: max abs(update - analytic lr) / lr ({len(moves)} updates, {epochs} epochs)",
        0.0,
        float(np.abs(moves - want).max() / lr),
        1e-4,
    )


def _calibration(clustered: bool, reps: int = 60, n_clusters: int = 200, size: int = 5, seed: int = 6) -> tuple:
    """The bootstrap intervals' width against the analytic one, on a known random model through the real interval
    code (stats.intervals, the MC-QA family's estimator): per question a hit with probability p = 0.2 (five
    choices), n = 1000 questions, so the 95% interval's width is 2 x 1.96 x 100 sqrt(p (1 - p) / n). Clustered:
    the questions come in 200 videos of 5 whose hit probability is drawn per video from Beta(1, 4) (mean 0.2,
    intra-video correlation rho = 1 / (1 + 4 + 1)), each video's id saved as example:cluster, so the width
    grows by sqrt(1 + (size - 1) rho), the design effect; resampling questions instead of videos misses it by
    far. Measured: the mean width over `reps` test sets; allowed: SIGMAS standard errors of that mean."""
    from statistics import NormalDist

    from vlmbench.records.predictions import CLUSTER_KEY
    from vlmbench.stats import intervals

    rng = np.random.default_rng(seed)
    n, p = n_clusters * size, 0.2
    a, b = 1.0, 4.0
    rho = 1 / (a + b + 1)
    deff = 1 + (size - 1) * rho if clustered else 1.0
    widths = []
    video = np.repeat([f"v{i}" for i in range(n_clusters)], size)
    for _ in range(reps):
        q = np.repeat(rng.beta(a, b, n_clusters), size) if clustered else np.full(n, p)
        correct = (rng.random(n) < q).astype(np.int8)
        arrays = {"example:correct": correct, **({CLUSTER_KEY: video} if clustered else {})}
        preds = {**arrays, "ids": np.array([f"q{i}" for i in range(n)])}
        lo, hi = intervals.result_intervals("mcqa", preds, {"accuracy": 100 * float(correct.mean())})["accuracy"]
        widths.append(hi - lo)
    w = np.asarray(widths)
    z = NormalDist().inv_cdf(0.975)
    expected = 2 * z * 100 * np.sqrt(p * (1 - p) * deff / n)
    return (
        f"95% interval width, random MC-QA model (n={n}"
        + (f", {n_clusters} videos of {size}, rho={rho:.3f}: design effect {deff:.3f}" if clustered else "")
        + ")",
        float(expected),
        float(w.mean()),
        SIGMAS * float(w.std(ddof=1) / np.sqrt(reps)),
    )


def _groups():
    """(label, thunk) per check group; a group that raises is one FAIL row (a crash is a failed check too)."""
    return [
        ("retrieval (pessimistic)", lambda: _retrieval("pessimistic", None)),
        ("retrieval (mmpt)", lambda: _retrieval("mmpt", None)),
        ("retrieval (pessimistic, ties)", lambda: _retrieval("pessimistic", 4)),
        ("retrieval (pessimistic, blocked)", lambda: _retrieval("pessimistic", None, blocked=True)),
        ("retrieval (mmpt, blocked)", lambda: _retrieval("mmpt", None, blocked=True)),
        ("retrieval (pessimistic, ties, blocked)", lambda: _retrieval("pessimistic", 4, blocked=True)),
        ("MC-QA", lambda: [_mcqa()]),
        ("COIN", lambda: [_coin()]),
        ("windows", lambda: [_windows()]),
        ("CrossTask DP", lambda: [_dp()]),
        ("model masks", _model),
        ("text budget", lambda: [_text_budget()]),
        ("fine-tune schedule", lambda: [_schedule()]),
        ("interval calibration", lambda: [_calibration(False), _calibration(True)]),
    ]


def checks(only: tuple[str, ...] | None = None) -> list[tuple[str, float, float, float, str]]:
    """Every group's rows with their verdicts; `only`: the groups whose label starts with one of these."""
    out = []
    for label, run in _groups():
        if only is not None and not label.startswith(only):
            continue
        try:
            rows = run()
        except Exception as e:  # noqa: BLE001 - reported as the failed check it is
            out.append((f"{label}: raised {type(e).__name__}: {e}", float("nan"), float("nan"), 0.0, "FAIL"))
            continue
        out += [(name, e, g, a, "ok" if abs(g - e) <= a else "FAIL") for name, e, g, a in rows]
    return out


def main() -> int:
    rows = checks()
    print("| metric | expected | measured | allowed error | verdict |\n|---|---|---|---|---|")
    for name, e, g, a, v in rows:
        print(f"| {name} | {e:.4f} | {g:.4f} | {a:.4f} | {v} |")
    bad = [r for r in rows if r[4] != "ok"]
    if bad:
        print(f"sanity: {len(bad)} metric check(s) failed: " + "; ".join(r[0] for r in bad), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
