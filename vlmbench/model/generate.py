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


def lm_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """BERT's LM head as the generator: transform, tied decoder + bias (the reference's BertOnlyMLMHead)."""
    head = model.cls.predictions
    return head.vocab_logits(head.transform(hidden), with_bias=True)


# ---- steppers: logits for the token fed at text slot t ----------------------------------------------------------
class CachedStepper:
    """Runs BERT's layers by hand on the new token only, over cached prefix + text keys/values.

    Rows are (clip, beam) pairs: the prefix is encoded once per clip and copied to its rows. One buffer per layer
    holds keys (and one values) for prefix + text slots; beam reordering gathers only the text part, because the
    rows of one clip share the same prefix.
    """

    def __init__(self, model, video: torch.Tensor, vmask: torch.Tensor, rows_per_clip: int, max_steps: int):
        self.model, self.bert = model, model.bert
        cfg = self.bert.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scaling = self.head_dim**-0.5
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
        bias = torch.zeros(b, 1, 1, PREFIX_LEN + max_steps, dtype=x.dtype, device=dev)
        bias[:, 0, 0, :PREFIX_LEN].masked_fill_(~keys_ok, torch.finfo(x.dtype).min)
        total = PREFIX_LEN + max_steps
        self.k, self.v = [], []
        for layer in self.bert.encoder.layer:
            k, v = self._kv(layer, x)
            x = self._layer(layer, x, k, v, bias[:, :, :, :PREFIX_LEN])
            kb = k.new_zeros(b, self.heads, total, self.head_dim)
            vb = v.new_zeros(b, self.heads, total, self.head_dim)
            kb[:, :, :PREFIX_LEN], vb[:, :, :PREFIX_LEN] = k, v
            self.k.append(kb.repeat_interleave(rows_per_clip, dim=0))
            self.v.append(vb.repeat_interleave(rows_per_clip, dim=0))
        self.bias = bias.repeat_interleave(rows_per_clip, dim=0)
        self.t = 0

    def _kv(self, layer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att = layer.attention.self
        n, length = x.shape[:2]
        shape = (n, length, self.heads, self.head_dim)
        return att.key(x).view(shape).transpose(1, 2), att.value(x).view(shape).transpose(1, 2)

    def _layer(self, layer, x, keys, values, bias) -> torch.Tensor:
        """One BertLayer (eval mode) with the given keys/values: attention, residual+LN, FFN, residual+LN."""
        att = layer.attention.self
        n, length = x.shape[:2]
        q = att.query(x).view(n, length, self.heads, self.head_dim).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=self.scaling)
        ctx = ctx.transpose(1, 2).reshape(n, length, -1)
        h = layer.attention.output(ctx, x)
        return layer.output(layer.intermediate(h), h)

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        """(N,) tokens fed at text slot t -> (N, V) logits for slot t + 1."""
        if t != self.t:
            raise ValueError(f"cached steps must be consecutive: expected slot {self.t}, got {t}")
        emb = self.bert.embeddings
        n, dev = tokens.shape[0], tokens.device
        pos = torch.full((n, 1), TEXT_START + t, dtype=torch.long, device=dev)
        types = torch.ones(n, 1, dtype=torch.long, device=dev)
        x = emb.LayerNorm(
            emb.word_embeddings(tokens[:, None]) + emb.token_type_embeddings(types) + emb.position_embeddings(pos)
        )
        slot, end = PREFIX_LEN + t, PREFIX_LEN + t + 1
        bias = self.bias[:, :, :, :end]
        for i, layer in enumerate(self.bert.encoder.layer):
            k, v = self._kv(layer, x)
            self.k[i][:, :, slot:end], self.v[i][:, :, slot:end] = k, v
            x = self._layer(layer, x, self.k[i][:, :, :end], self.v[i][:, :, :end], bias)
        self.t += 1
        return lm_logits(self.model, x[:, 0])

    def select(self, rows: torch.Tensor, same_clips: bool) -> None:
        """Keep `rows` (in this order). same_clips: a permutation of beams within each clip (prefix unchanged)."""
        if same_clips:
            end = PREFIX_LEN + self.t
            for buf in (*self.k, *self.v):
                buf[:, :, PREFIX_LEN:end] = buf[rows, :, PREFIX_LEN:end]
        else:
            self.k = [buf[rows] for buf in self.k]
            self.v = [buf[rows] for buf in self.v]
            self.bias = self.bias[rows]


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


def _beam(stepper, n_clips: int, k: int, max_new_tokens: int, length_penalty: float, device) -> list[list[int]]:
    hyps = [_Hypotheses(k, length_penalty) for _ in range(n_clips)]
    active = list(range(n_clips))  # clips still searching; rows = active x beams
    scores = torch.zeros(n_clips, k, device=device)
    scores[:, 1:] = -1e9  # all beams start equal: expand beam 0 only
    scores = scores.view(-1)
    seqs: list[list[int]] = [[] for _ in range(n_clips * k)]
    tokens = torch.full((n_clips * k,), BOS_ID, dtype=torch.long, device=device)
    t = 0
    while t < max_new_tokens:
        logprobs = F.log_softmax(stepper.step(tokens, t).float(), dim=-1)
        vocab = logprobs.shape[-1]
        cand = (logprobs + scores[:, None]).view(len(active), k * vocab)
        top_scores, top_ids = torch.topk(cand, 2 * k, dim=1, largest=True, sorted=True)
        top_scores, top_ids = top_scores.tolist(), top_ids.tolist()
        cur_len = PROMPT_LEN + t
        new_scores, new_tokens, new_rows, still = [], [], [], []
        for j, clip in enumerate(active):
            beams = []
            for rank, (idx, s) in enumerate(zip(top_ids[j], top_scores[j])):
                beam_id, tok = divmod(idx, vocab)
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
