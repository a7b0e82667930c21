"""Caption decoding: the KV-cached decoder against full recomputation, the beam search's transformers-3.4
semantics on a scripted model, and the teacher-forcing loss."""

import math

import pytest
import torch

from vlmbench.model import generate as gen
from vlmbench.model.caption import caption_loss, teacher_forcing
from vlmbench.model.layout import TEXT_START
from vlmbench.model.text import SEP_ID
from vlmbench.model.vlm import VLM

WORDS = [2000 + i for i in range(12)]  # a small "caption vocabulary" for the trained model


def clips(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(n, 32, 512, generator=g)
    lengths = torch.randint(1, 33, (n,), generator=g)
    lengths[0] = 32
    vmask = torch.arange(32)[None] < lengths[:, None]
    return video * vmask[..., None], vmask


def random_model(seed: int) -> VLM:
    model = VLM.from_backbone("tiny", seed=seed).eval()
    with torch.no_grad():  # make [SEP] competitive (random logits have std ~0.2) so beams end at various steps
        model.cls.predictions.bias[SEP_ID] = 0.5
    return model


@pytest.fixture(scope="module")
def trained_model() -> VLM:
    """A tiny VLM taught for a few steps that a video's class picks a 2-4 word caption: non-degenerate output."""
    torch.manual_seed(0)
    model = VLM.from_backbone("tiny", seed=3)
    centres = torch.randn(4, 512) * 3
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(60):
        cls = torch.randint(0, 4, (16,))
        video = centres[cls][:, None, :] + torch.randn(16, 32, 512)
        vmask = torch.ones(16, 32, dtype=torch.bool)
        captions = [[WORDS[c], WORDS[4 + c], WORDS[8 + c]][: 2 + int(c) % 3] for c in cls.tolist()]
        ids, mask, labels = teacher_forcing(captions)
        loss = caption_loss(model, video, vmask, ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1.0
    model.eval()
    model.centres = centres
    return model


def test_cached_step_logits_match_full_forward():
    model = random_model(0)
    video, vmask = clips(4, seed=1)
    tokens = torch.randint(1000, 5000, (4, 15))
    tokens[:, 0] = gen.BOS_ID
    ids = torch.zeros(4, 62, dtype=torch.long)
    ids[:, :15] = tokens
    with torch.no_grad():
        hidden = model(video, vmask, ids, ids != 0, mask="text_causal")
        full = gen.lm_logits(model, hidden[:, TEXT_START : TEXT_START + 15])
        stepper = gen.CachedStepper(model, video, vmask, rows_per_clip=1, max_steps=21)
        for t in range(15):
            step = stepper.step(tokens[:, t], t)
            torch.testing.assert_close(step, full[:, t], atol=1e-4, rtol=0)
    # the video matters: a different video gives different logits at the same slot
    with torch.no_grad():
        other = gen.CachedStepper(model, video.roll(1, dims=0), vmask.roll(1, dims=0), 1, 21).step(tokens[:, 0], 0)
    assert (other - full[:, 0]).abs().max() > 1e-3


def test_cached_steps_must_be_consecutive():
    model = random_model(0)
    video, vmask = clips(1, seed=0)
    stepper = gen.CachedStepper(model, video, vmask, 1, 5)
    with pytest.raises(ValueError, match="consecutive"):
        stepper.step(torch.tensor([gen.BOS_ID]), 1)


@pytest.mark.slow
def test_cached_decoder_equals_full_recomputation_random_init():
    lengths = set()
    for seed in (0, 1, 2):
        model = random_model(seed)
        video, vmask = clips(6, seed=10 + seed)
        for decode in ("greedy", "beam"):
            cached = gen.generate(model, video, vmask, decode=decode, beam=5, max_new_tokens=12)
            full = gen.decode_full(model, video, vmask, decode=decode, beam=5, max_new_tokens=12)
            assert cached == full, (seed, decode)
            assert len(cached) == 6 and SEP_ID not in sum(cached, [])
            lengths |= {len(c) for c in cached}
    # the comparison covers outputs ended by [SEP] at several steps and outputs cut at max_new_tokens
    assert 12 in lengths and min(lengths) < 12 and len(lengths) >= 3


@pytest.mark.parametrize("decode", ["greedy", "beam"])
@pytest.mark.slow
def test_cached_decoder_equals_full_recomputation_trained(trained_model, decode):
    cls = torch.tensor([0, 1, 2, 3, 0, 2, 1, 3])
    torch.manual_seed(5)
    video = trained_model.centres[cls][:, None, :] + torch.randn(8, 32, 512)
    vmask = torch.arange(32)[None] < torch.tensor([32, 20, 9, 32, 3, 32, 16, 25])[:, None]
    video = video * vmask[..., None]
    cached = gen.generate(trained_model, video, vmask, decode=decode, beam=5, max_new_tokens=21)
    full = gen.decode_full(trained_model, video, vmask, decode=decode, beam=5, max_new_tokens=21)
    assert cached == full
    # the model learned the task, so the comparison covers [SEP]-ended, distinct, short outputs
    expected = [[WORDS[c], WORDS[4 + c], WORDS[8 + c]][: 2 + c % 3] for c in cls.tolist()]
    assert sum(c == e for c, e in zip(cached, expected)) >= 6
    assert len({tuple(c) for c in cached}) >= 3


def test_decode_restores_training_mode_and_validates(trained_model):
    video, vmask = clips(2, seed=0)
    trained_model.train()
    try:
        gen.generate(trained_model, video, vmask, decode="greedy", max_new_tokens=3)
        assert trained_model.training
    finally:
        trained_model.eval()
    with pytest.raises(ValueError, match="decode"):
        gen.generate(trained_model, video, vmask, decode="sample")
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate(trained_model, video, vmask, max_new_tokens=62)


# ---- beam search semantics on a scripted language model ---------------------------------------------------------
class ScriptedStepper:
    """Next-token log-probabilities as a function of the tokens generated so far (per row)."""

    V = 120
    A, B, C, D = 5, 6, 7, 8

    def __init__(self, table, rows: int):
        self.table = table
        self.seqs = [[] for _ in range(rows)]
        self.calls = 0

    def step(self, tokens, t):
        self.calls += 1
        if t > 0:
            self.seqs = [s + [tok] for s, tok in zip(self.seqs, tokens.tolist())]
        out = torch.full((len(self.seqs), self.V), -30.0)
        for r, s in enumerate(self.seqs):
            for tok, p in self.table(tuple(s)).items():
                out[r, tok] = math.log(p)
        return out  # log_softmax of a log-distribution (+ ~1e-13 mass elsewhere) is itself

    def select(self, rows, same_clips):
        self.seqs = [self.seqs[r] for r in rows.tolist()]


def table(prefix):
    A, B, C, D = ScriptedStepper.A, ScriptedStepper.B, ScriptedStepper.C, ScriptedStepper.D
    if prefix == ():
        return {A: 0.5, B: 0.4, C: 0.1}
    if prefix == (A,):
        return {C: 0.3, D: 0.3, SEP_ID: 0.2, A: 0.2}
    if prefix == (B,):
        return {SEP_ID: 0.95, C: 0.05}
    return {C: 0.5, SEP_ID: 0.5}


def test_beam_finds_the_better_sequence_greedy_misses():
    greedy = gen._greedy(ScriptedStepper(table, 1), 1, 6, "cpu")
    assert greedy == [
        [
            ScriptedStepper.A,
            ScriptedStepper.C,
            ScriptedStepper.C,
            ScriptedStepper.C,
            ScriptedStepper.C,
            ScriptedStepper.C,
        ]
    ]  # argmax ties go to the lower id
    beam = gen._beam(ScriptedStepper(table, 3), 1, 3, 6, 1.0, "cpu")
    assert beam == [[ScriptedStepper.B]]  # log(.4 * .95) / (3 prompt + 1 token) beats every other hypothesis


def test_beam_stops_when_done_and_scores_with_prompt_length():
    stepper = ScriptedStepper(table, 2)
    gen._beam(stepper, 1, 2, 21, 1.0, "cpu")
    # step 0: A, B live; step 1: "B [SEP]" (rank 0) and "A [SEP]" (rank 3 >= 2: ignored); then "A C [SEP]"-type
    # hypotheses fill the 2 slots and 3.4's is_done heuristic ends the search long before 21 steps
    assert stepper.calls < 6
    hyps = gen._Hypotheses(num_beams=2, length_penalty=1.0)
    hyps.add([5], math.log(0.38))
    assert hyps.beams[0][0] == pytest.approx(math.log(0.38) / (gen.PROMPT_LEN + 1))
    hyps.add([5, 6], -3.0)
    hyps.add([5, 6, 7], -0.5)  # evicts the worst (-3/5)
    assert sorted(len(t) for _, t in hyps.beams) == [1, 3]
    assert hyps.worst_score == pytest.approx(math.log(0.38) / 4)
    assert hyps.best() == [5, 6, 7]
    assert not hyps.is_done(-0.1 * 6, 6) and hyps.is_done(-10.0, 6)


def test_beam_without_eos_returns_max_length():
    stepper = ScriptedStepper(lambda prefix: {ScriptedStepper.C: 0.6, ScriptedStepper.D: 0.4}, 10)
    out = gen._beam(stepper, 2, 5, 7, 1.0, "cpu")
    assert out == [[ScriptedStepper.C] * 7] * 2
    assert stepper.calls == 7


# ---- teacher forcing -----------------------------------------------------------------------------------------
def test_teacher_forcing_layout():
    ids, mask, labels = teacher_forcing([[7, 8, 9], list(range(1000, 1070))])
    assert ids[0, :5].tolist() == [gen.BOS_ID, 7, 8, 9, 0]
    assert labels[0, :5].tolist() == [7, 8, 9, SEP_ID, -100]
    assert mask[0].sum() == 4
    # 61 tokens at most: BOS + 61 inputs, 61 + [SEP] labels fill the 62 slots
    assert ids[1, 0] == gen.BOS_ID and ids[1, -1] == 1060 and labels[1, -1] == SEP_ID and mask[1].all()


def test_teacher_forcing_loss_by_hand():
    model = VLM.from_backbone("tiny", seed=4).eval()
    video, vmask = clips(1, seed=2)
    caption = [2003, 2017, 2154]
    ids, mask, labels = teacher_forcing([caption])
    loss = caption_loss(model, video, vmask, ids, mask, labels)
    with torch.no_grad():
        hidden = model(video, vmask, ids, mask, mask="text_causal")[0, TEXT_START : TEXT_START + 4]
        head = model.cls.predictions
        h = head.transform(hidden)
        logits = h @ model.bert.embeddings.word_embeddings.weight.T + head.bias
        targets = caption + [SEP_ID]
        nll = [torch.logsumexp(logits[i], 0) - logits[i, tok] for i, tok in enumerate(targets)]
        expected = torch.stack(nll).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_teacher_forcing_is_causal():
    """Slot i's prediction must not depend on later tokens (the text-causal mask, not the joint one)."""
    model = VLM.from_backbone("tiny", seed=4).eval()
    video, vmask = clips(2, seed=3)
    ids, mask, _ = teacher_forcing([[2003, 2017, 2154, 2200], [2003, 2017, 3000, 3001]])
    with torch.no_grad():
        h = model(video[:1].expand(2, -1, -1), vmask[:1].expand(2, -1), ids, mask, mask="text_causal")
    text = h[:, TEXT_START:]
    torch.testing.assert_close(text[0, :3], text[1, :3], atol=1e-5, rtol=0)
    assert (text[0, 3] - text[1, 3]).abs().max() > 1e-3


def test_sequence_scores_are_the_search_objective_by_hand():
    """sum logprob of t1..tn [SEP] / (prompt 3 + n)**lp: the score model.generate gives a finished hypothesis."""
    from vlmbench.model.caption import sequence_scores

    model = VLM.from_backbone("tiny", seed=4).eval()
    video, vmask = clips(2, seed=2)
    captions = [[2003, 2017, 2154], [2003]]
    for lp in (1.0, 2.0):
        got = sequence_scores(model, video, vmask, captions, lp)
        for i, cap in enumerate(captions):
            ids, mask, labels = teacher_forcing([cap])
            nll = caption_loss(model, video[i : i + 1], vmask[i : i + 1], ids, mask, labels).item() * (len(cap) + 1)
            assert got[i] == pytest.approx(-nll / (gen.PROMPT_LEN + len(cap)) ** lp, rel=1e-5)


def test_beam_outputs_outscore_greedy_ones_on_the_search_objective():
    """What the caption task's search_gain measures: > 0 for a working beam search, exactly 0 for greedy."""
    from vlmbench.model.caption import sequence_scores

    model = VLM.from_backbone("tiny", seed=5).eval()  # no [SEP] bias: outputs run to max length, paths differ
    video, vmask = clips(12, seed=7)
    beam = gen.generate(model, video, vmask, decode="beam", beam=5, max_new_tokens=6)
    greedy = gen.generate(model, video, vmask, decode="greedy", max_new_tokens=6)
    b, g = sequence_scores(model, video, vmask, beam), sequence_scores(model, video, vmask, greedy)
    assert (b >= g - 1e-6).all() and (b - g).mean() > 1e-2
    assert (sequence_scores(model, video, vmask, greedy) - g == 0).all()
