"""Caption decoding over the VLM's text-causal layout: greedy and beam search, with a KV cache.

The sequence is `[CLS] v1..v32 [SEP]` (the prefix, positions 0..33, token type 0) followed by text slots that
start with BOS = [CLS] (positions 34.., token type 1). Under the text-causal mask the prefix never sees text and
text row t sees the valid prefix + text 0..t, so:

* `generate` encodes the prefix once, keeps every layer's keys/values, then runs BERT's layers on the NEW token
  only at each step (position 34 + t, type 1), attending to the cached prefix + earlier text. BOS is step 0.
* `decode_full` is the reference's way (MMPT re-encodes video + prefix every step): one full 96-position
  `VLM.forward(mask="text_causal")` per step. It exists for the tests and the benchmark; both decoders share the
  search code below and must emit identical tokens.

Search = transformers 3.4 `generate` as MMPT calls it (num_beams 5, length_penalty 1.0, early_stopping False,
no n-gram blocking, min_length 0, eos = [SEP]):

* beam scores start at 0 for beam 0 and -1e9 for the others; each step takes the top 2*K of
  (beam score + log-softmax) over K*V candidates of a clip, in rank order: an [SEP] candidate ranked < K closes
  that beam as a finished hypothesis (score = sum logprob / len**length_penalty), an [SEP] ranked >= K is
  ignored, other candidates fill the K live beams;
* finished hypotheses are kept (the best K per clip); a clip is done when it has K of them and
  worst finished score >= best candidate sum logprob / cur_len**length_penalty (3.4's `is_done` heuristic,
  cur_len before the new token). Done clips leave the batch (3.4 pads them; the outputs are the same). The
  search stops when every clip is done or after max_new_tokens steps; the live beams of clips still open are
  then added as hypotheses. The result is the best-scoring hypothesis (ties: the later one added, as 3.4's
  stable sort + pop).
* `len` counts MMPT's prompt `[CLS] [SEP] [BOS]` (3 tokens) plus the generated tokens, without the [SEP]:
  3.4 normalises by the full input_ids length, and max_length 24 includes the prompt (21 new tokens).

Greedy (decode="greedy") is 3.4's no-beam path: argmax each step; a clip ends at its first [SEP].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .layout import MAX_VIDEO_LEN, TEXT_SLOTS, TEXT_START
from .text import CLS_ID, PAD_ID, SEP_ID

BOS_ID = CLS_ID  # MMPT uses [CLS] as the decoder's BOS
EOS_ID = SEP_ID
PROMPT_LEN = 3  # MMPT's decode prompt [CLS] [SEP] [BOS]; counted in the length penalty
PREFIX_LEN = TEXT_START  # [CLS] + 32 video slots + [SEP]


def lm_logits(model, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """BERT's LM head as the generator: transform, tied decoder + bias (the reference's BertOnlyMLMHead).

    (..., H) -> (..., V). Computed vocabulary-major, W @ h.T + bias into a (V, rows) matrix (`out` when given) and
    returned as its transpose (a view): for the few rows of a decoding step that product is ~30% faster on a CPU
    than h @ W.T, whose 30k x H operand is repacked every call. Equal to vocab_logits up to float rounding."""
    head = model.cls.predictions
    h = head.transform(hidden)
    flat = h.reshape(-1, h.shape[-1])
    weight = head.word_embeddings.weight
    if out is not None and torch.is_autocast_enabled(flat.device.type):
        out = None  # autocast picks the product's dtype (bf16): a float32 buffer cannot take it
    z = torch.addmm(head.bias[:, None].to(flat.dtype), weight.to(flat.dtype), flat.T, out=out)
    return z.T if h.dim() == 2 else z.T.reshape(*h.shape[:-1], -1)


# ---- steppers: logits for the token fed at text slot t ----------------------------------------------------------
class CachedStepper:
    """Runs BERT's layers by hand on the new token only, over cached prefix + text keys/values.

    Rows are (clip, beam) pairs, clip-major (row = clip * rows_per_clip + beam). The prefix is encoded once per
    clip and its keys/values are kept once per clip (every beam of a clip reads the same ones); the text keys and
    values are kept per row, and beam reordering gathers only those. Attention of the one new query is two small
    matmuls (prefix keys per clip, text keys per row) and one softmax over both.
    """

    def __init__(self, model, video: torch.Tensor, vmask: torch.Tensor, rows_per_clip: int, max_steps: int):
        self.model, self.bert = model, model.bert
        cfg = self.bert.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.k_rows = rows_per_clip
        b, dev = video.shape[0], video.device
        # Prefix states exactly as the full forward computes them: CLS/video/SEP rows see CLS + valid video + SEP.
        embeds = model.embed(model.video_tokens(video), torch.empty(b, 0, dtype=torch.long, device=dev))
        emb = self.bert.embeddings
        types = torch.zeros(b, PREFIX_LEN, dtype=torch.long, device=dev)
        pos = torch.arange(PREFIX_LEN, device=dev).expand(b, -1)
        x = emb.LayerNorm(embeds + emb.token_type_embeddings(types) + emb.position_embeddings(pos))
        keys_ok = torch.cat(
            [
                torch.ones(b, 1, dtype=torch.bool, device=dev),
                vmask.bool()[:, :MAX_VIDEO_LEN],
                torch.ones(b, 1, dtype=torch.bool, device=dev),
            ],
            dim=1,
        )  # (B, 34)
        bias = torch.zeros(b, 1, 1, PREFIX_LEN, dtype=x.dtype, device=dev)
        bias[:, 0, 0].masked_fill_(~keys_ok, torch.finfo(x.dtype).min)
        self.pk, self.pv = [], []  # per layer (B, heads, 34, head_dim): once per clip
        for layer in self.bert.encoder.layer:
            k, v = self._kv(layer, x)
            att = layer.attention.self
            q = att.query(x).view(b, PREFIX_LEN, self.heads, self.head_dim).transpose(1, 2)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scaling)
            x = self._finish(layer, ctx, x)
            self.pk.append(k.contiguous())
            self.pv.append(v.contiguous())
        self.pbias = bias[:, 0]  # (B, 1, 34), added to every query row of the clip
        n = b * rows_per_clip
        shape = (n, self.heads, max_steps, self.head_dim)
        self.tk = [x.new_zeros(shape) for _ in self.pk]  # per layer, per row: keys/values of text slots 0..t
        self.tv = [x.new_zeros(shape) for _ in self.pk]
        self.spare = [x.new_zeros(shape) for _ in range(2 * len(self.pk))]  # beam reordering writes here, swaps
        self.logits: torch.Tensor | None = None  # (V, rows) buffer of lm_logits, reused every step
        self.t = 0

    def _kv(self, layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att = layer.attention.self
        n, length = x.shape[:2]
        shape = (n, length, self.heads, self.head_dim)
        return att.key(x).view(shape).transpose(1, 2), att.value(x).view(shape).transpose(1, 2)

    @staticmethod
    def _finish(layer, ctx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The rest of one BertLayer (eval mode) after attention: output dense + residual + LN, FFN + LN."""
        n, length = x.shape[:2]
        h = layer.attention.output(ctx.transpose(1, 2).reshape(n, length, -1), x)
        return layer.output(layer.intermediate(h), h)

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        """(N,) tokens fed at text slot t -> (N, V) logits for slot t + 1."""
        if t != self.t:
            raise ValueError(f"cached steps must be consecutive: expected slot {self.t}, got {t}")
        k_rows = self.k_rows
        # Slot 0 feeds BOS to every beam of a clip, over the same prefix: every beam's row is the same, so one
        # row per clip is computed and copied.
        same = t == 0 and k_rows > 1 and bool((tokens.view(-1, k_rows) == tokens.view(-1, k_rows)[:, :1]).all())
        feed = tokens[::k_rows] if same else tokens
        per_clip = 1 if same else k_rows
        rows, dev = feed.shape[0], feed.device
        emb = self.bert.embeddings
        pos = torch.full((rows, 1), TEXT_START + t, dtype=torch.long, device=dev)
        types = torch.ones(rows, 1, dtype=torch.long, device=dev)
        x = emb.LayerNorm(
            emb.word_embeddings(feed[:, None]) + emb.token_type_embeddings(types) + emb.position_embeddings(pos)
        )
        clips, heads, hd = rows // per_clip, self.heads, self.head_dim
        for i, layer in enumerate(self.bert.encoder.layer):
            att = layer.attention.self
            q = att.query(x).view(clips, per_clip, heads, hd).transpose(1, 2)  # (clips, heads, beams, hd)
            k, v = self._kv(layer, x)  # (rows, heads, 1, hd)
            tk, tv = self.tk[i], self.tv[i]
            if same:
                tk[:, :, t : t + 1] = k.repeat_interleave(k_rows, dim=0)
                tv[:, :, t : t + 1] = v.repeat_interleave(k_rows, dim=0)
                tk, tv = tk[::k_rows], tv[::k_rows]
            else:
                tk[:, :, t : t + 1], tv[:, :, t : t + 1] = k, v
            # scores over the clip's prefix (per clip) and the row's own text slots 0..t (per row)
            s_prefix = torch.matmul(q, self.pk[i].transpose(-1, -2))  # (clips, heads, beams, 34)
            q_rows = q.transpose(1, 2).reshape(rows, heads, 1, hd)
            s_text = torch.matmul(q_rows, tk[:, :, : t + 1].transpose(-1, -2))  # (rows, heads, 1, t+1)
            s_text = s_text.view(clips, per_clip, heads, t + 1).transpose(1, 2)
            scores = torch.cat([s_prefix, s_text], dim=-1).mul_(self.scaling)
            scores[..., :PREFIX_LEN] += self.pbias[:, None]
            p = scores.softmax(-1)
            ctx = torch.matmul(p[..., :PREFIX_LEN], self.pv[i])  # (clips, heads, beams, hd)
            p_text = p[..., PREFIX_LEN:].transpose(1, 2).reshape(rows, heads, 1, t + 1)
            ctx_text = torch.matmul(p_text, tv[:, :, : t + 1])  # (rows, heads, 1, hd)
            ctx = ctx.transpose(1, 2).reshape(rows, heads, 1, hd) + ctx_text
            x = self._finish(layer, ctx, x)
        self.t += 1
        if same:
            return lm_logits(self.model, x[:, 0]).repeat_interleave(k_rows, dim=0)
        vocab = self.model.cls.predictions.word_embeddings.weight.shape[0]
        if self.logits is None or self.logits.shape != (vocab, rows):
            self.logits = x.new_empty(vocab, rows)
        return lm_logits(self.model, x[:, 0], out=self.logits)

    def select(self, rows: torch.Tensor, same_clips: bool) -> None:
        """Keep `rows` (in this order). same_clips: a permutation of beams within each clip (prefix unchanged);
        otherwise whole clips leave (the kept rows of a clip stay together, clip-major)."""
        n = len(rows)
        if n < self.tk[0].shape[0]:
            self.spare = [buf[:n] for buf in self.spare]
        old = self.tk + self.tv
        for buf, dst in zip(old, self.spare):
            torch.index_select(buf, 0, rows, out=dst)
        self.tk, self.tv, self.spare = self.spare[: len(self.tk)], self.spare[len(self.tk) :], old
        if n < old[0].shape[0]:
            self.spare = [buf[:n] for buf in self.spare]
        if not same_clips:
            keep = rows[:: self.k_rows] // self.k_rows
            self.pk = [buf[keep] for buf in self.pk]
            self.pv = [buf[keep] for buf in self.pv]
            self.pbias = self.pbias[keep]


class FullStepper:
    """The reference's decoding: every step re-encodes the whole 96-position sequence."""

    def __init__(self, model, video: torch.Tensor, vmask: torch.Tensor, rows_per_clip: int, max_steps: int):
        if max_steps > TEXT_SLOTS:
            raise ValueError(f"at most {TEXT_SLOTS} text slots")
        self.model = model
        self.video = video.repeat_interleave(rows_per_clip, dim=0)
        self.vmask = vmask.repeat_interleave(rows_per_clip, dim=0)
        self.ids = torch.full((self.video.shape[0], TEXT_SLOTS), PAD_ID, dtype=torch.long, device=video.device)
        self.t = 0

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        self.ids[:, t] = tokens
        self.t = t + 1
        text_mask = torch.zeros_like(self.ids, dtype=torch.bool)
        text_mask[:, : t + 1] = True
        hidden = self.model(self.video, self.vmask, self.ids, text_mask, mask="text_causal")
        return lm_logits(self.model, hidden[:, TEXT_START + t])

    def select(self, rows: torch.Tensor, same_clips: bool) -> None:
        self.ids = self.ids[rows]
        if not same_clips:
            self.video, self.vmask = self.video[rows], self.vmask[rows]


# ---- search ---------------------------------------------------------------------------------------------------
@dataclass
class _Hypotheses:
    """transformers 3.4 BeamHypotheses (early_stopping=False)."""

    num_beams: int
    length_penalty: float
    beams: list[tuple[float, list[int]]] = field(default_factory=list)
    worst_score: float = 1e9

    def add(self, tokens: list[int], sum_logprobs: float) -> None:
        score = sum_logprobs / (PROMPT_LEN + len(tokens)) ** self.length_penalty
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, tokens))
            if len(self.beams) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.beams) < self.num_beams:
            return False
        return self.worst_score >= best_sum_logprobs / cur_len**self.length_penalty

    def best(self) -> list[int]:
        return sorted(self.beams, key=lambda x: x[0])[-1][1]


def _greedy(stepper, n_clips: int, max_new_tokens: int, device) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n_clips)]
    active = list(range(n_clips))
    tokens = torch.full((n_clips,), BOS_ID, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        nxt = stepper.step(tokens, t).argmax(-1).tolist()
        keep = []
        for row, (clip, tok) in enumerate(zip(active, nxt)):
            if tok == EOS_ID:
                continue
            out[clip].append(tok)
            keep.append(row)
        if not keep:
            break
        if len(keep) < len(active):
            stepper.select(torch.tensor(keep, device=device), same_clips=False)
            active = [active[r] for r in keep]
        tokens = torch.tensor([nxt[r] for r in keep], dtype=torch.long, device=device)
    return out


class _Scratch:
    """A buffer reused from step to step (no fresh vocabulary-sized allocation per step)."""

    def __init__(self):
        self.buf: torch.Tensor | None = None

    def like(self, x: torch.Tensor) -> torch.Tensor:
        if self.buf is None or self.buf.shape != x.shape or self.buf.dtype != x.dtype:
            self.buf = torch.empty_like(x, memory_format=torch.contiguous_format)
        return self.buf


def _candidates(logits: torch.Tensor, scores: torch.Tensor, n_clips: int, k: int, scratch: _Scratch):
    """Per clip, the 2k best (beam score + log-softmax) over its k beams x V words, best first, as lists of
    scores, beam ids and token ids. Each row's own 2k best are taken first (the clip's 2k best are among them),
    then the clip's 2k best of those k x 2k: the top-2k over all k x V candidates. logits (N, V): row-major, or the
    transposed view lm_logits returns (log-softmax over the vocabulary dimension either way)."""
    width = min(2 * k, logits.shape[-1])
    if logits.T.is_contiguous():  # vocabulary-major: (V, N) in memory
        lp = torch._log_softmax(logits.T.float(), 0, False, out=scratch.like(logits.T.float()))
        lp.add_(scores[None, :])
        row_scores, row_ids = lp.topk(width, dim=0)  # (width, N)
        row_scores, row_ids = row_scores.T, row_ids.T
    else:
        lp = F.log_softmax(logits.float(), dim=-1)
        lp.add_(scores[:, None])
        row_scores, row_ids = lp.topk(width, dim=1)
    cand = row_scores.reshape(n_clips, k * width)
    top_scores, pick = torch.topk(cand, min(2 * k, k * width), dim=1, largest=True, sorted=True)
    beams = torch.div(pick, width, rounding_mode="floor")
    tokens = row_ids.reshape(n_clips, k * width).gather(1, pick)
    return top_scores.tolist(), beams.tolist(), tokens.tolist()


def _beam(stepper, n_clips: int, k: int, max_new_tokens: int, length_penalty: float, device) -> list[list[int]]:
    hyps = [_Hypotheses(k, length_penalty) for _ in range(n_clips)]
    active = list(range(n_clips))  # clips still searching; rows = active x beams
    scores = torch.zeros(n_clips, k, device=device)
    scores[:, 1:] = -1e9  # all beams start equal: expand beam 0 only
    scores = scores.view(-1)
    seqs: list[list[int]] = [[] for _ in range(n_clips * k)]
    tokens = torch.full((n_clips * k,), BOS_ID, dtype=torch.long, device=device)
    t = 0
    scratch = _Scratch()
    while t < max_new_tokens:
        top_scores, top_beams, top_tokens = _candidates(stepper.step(tokens, t), scores, len(active), k, scratch)
        cur_len = PROMPT_LEN + t
        new_scores, new_tokens, new_rows, still = [], [], [], []
        for j, clip in enumerate(active):
            beams = []
            for rank, (beam_id, tok, s) in enumerate(zip(top_beams[j], top_tokens[j], top_scores[j])):
                row = j * k + beam_id
                if tok == EOS_ID:
                    if rank < k:
                        hyps[clip].add(list(seqs[row]), s)
                else:
                    beams.append((s, tok, row))
                if len(beams) == k:
                    break
            if hyps[clip].is_done(max(top_scores[j]), cur_len):
                continue
            still.append(clip)
            for s, tok, row in beams:
                new_scores.append(s)
                new_tokens.append(tok)
                new_rows.append(row)
        if not still:
            return [h.best() for h in hyps]
        rows = torch.tensor(new_rows, device=device)
        stepper.select(rows, same_clips=len(still) == len(active))
        seqs = [seqs[r] + [tok] for r, tok in zip(new_rows, new_tokens)]
        scores = torch.tensor(new_scores, device=device)
        tokens = torch.tensor(new_tokens, dtype=torch.long, device=device)
        active = still
        t += 1
    # max length reached: the live beams of open clips become hypotheses
    final = scores.tolist()
    for j, clip in enumerate(active):
        for b in range(k):
            hyps[clip].add(seqs[j * k + b], final[j * k + b])
    return [h.best() for h in hyps]


def _decode(
    stepper_cls: Callable,
    model,
    video: torch.Tensor,
    vmask: torch.Tensor,
    decode: str,
    beam: int,
    max_new_tokens: int,
    length_penalty: float,
) -> list[list[int]]:
    if decode not in ("beam", "greedy"):
        raise ValueError(f"decode must be 'beam' or 'greedy', got {decode!r}")
    if not 1 <= max_new_tokens <= TEXT_SLOTS - 1:
        raise ValueError(f"max_new_tokens must be in [1, {TEXT_SLOTS - 1}]")
    k = beam if decode == "beam" else 1
    was_training = model.training
    model.eval()  # the hand-run layers apply no dropout; the full forward must not either
    try:
        with torch.no_grad():
            stepper = stepper_cls(model, video, vmask, k, max_new_tokens)
            if k == 1:  # beam 1 is greedy in 3.4 too (num_beams > 1 selects beam search)
                return _greedy(stepper, video.shape[0], max_new_tokens, video.device)
            return _beam(stepper, video.shape[0], k, max_new_tokens, length_penalty, video.device)
    finally:
        model.train(was_training)


def generate(
    model,
    video: torch.Tensor,
    vmask: torch.Tensor,
    *,
    decode: str = "beam",
    beam: int = 5,
    max_new_tokens: int = 21,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """KV-cached decoding of a batch of clips. video (B, 32, 512) zero-padded, vmask (B, 32).
    Returns per clip the generated token ids, without BOS and the closing [SEP]."""
    return _decode(CachedStepper, model, video, vmask, decode, beam, max_new_tokens, length_penalty)


def decode_full(
    model,
    video: torch.Tensor,
    vmask: torch.Tensor,
    *,
    decode: str = "beam",
    beam: int = 5,
    max_new_tokens: int = 21,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """The same search, recomputing the full 96-position text-causal forward every step (reference; slow)."""
    return _decode(FullStepper, model, video, vmask, decode, beam, max_new_tokens, length_penalty)
