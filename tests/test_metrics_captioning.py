"""Captioning metrics. METEOR runs in one Java process per Python process (vlmbench.metrics.meteor)."""

import math
import shutil
import subprocess
import sys

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from vlmbench.errors import InputError
from vlmbench.metrics import captioning, meteor
from vlmbench.metrics.captioning import CONVENTIONS, caption_metrics, per_clip_scores, require_java

HYPS = {
    "v1_0": "A man slices a tomato on the board",
    "v1_1": "pour the oil into the pan",
    "v2_0": "add  salt and pepper",
    "v2_1": "stir the soup",
}
REFS = {
    "v1_0": ["a man is slicing a tomato on a cutting board"],
    "v1_1": "pour oil in the pan",
    "v2_0": ["add salt and pepper to the bowl", "season with salt and pepper"],
    "v2_1": ["mix the sauce"],
}
KEYS = ["BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")


def tokenized():
    """The whitespace protocol done by hand: lower-case, split on whitespace, single spaces."""
    res = {k: [" ".join(v.lower().split())] for k, v in HYPS.items()}
    gts = {k: [" ".join(r.lower().split()) for r in ([v] if isinstance(v, str) else v)] for k, v in REFS.items()}
    return gts, res


@needs_java
@pytest.mark.slow
def test_matches_pycocoevalcap_called_directly():
    out = caption_metrics(HYPS, REFS)
    gts, res = tokenized()
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    meteor = Meteor()
    try:
        meteor_score, _ = meteor.compute_score(gts, res)
    finally:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.wait(timeout=30)
    assert out["BLEU-3"] == 100 * bleu[2]
    assert out["BLEU-4"] == 100 * bleu[3]
    assert out["ROUGE-L"] == 100 * rouge
    assert out["CIDEr"] == cider
    assert out["METEOR"] == 100 * meteor_score
    assert 10 < out["METEOR"] < 90 and 0 < out["BLEU-4"] < out["BLEU-3"] < 100
    assert out["not_computed"] == [] and out["n_clips"] == 4
    assert all(type(out[k]) is float for k in KEYS)


@pytest.fixture
def no_meteor_cache(monkeypatch):
    monkeypatch.setattr(captioning, "_METEOR_CACHE", {})


@needs_java
def test_newlines_pipes_empty_and_unicode_do_not_break_meteor(no_meteor_cache):
    hyps = {
        "nl": "a man\nslices a tomato",
        "cr": "pour\r\nthe oil\u2028now",
        "pipe": "stir ||| the | soup",
        "empty": "  \n ",
        "uni": "café crème brûlée 漢字 😀",
    }
    refs = {
        "nl": ["a man is slicing a tomato"],
        "cr": ["pour the oil\nnow"],
        "pipe": ["stir the soup"],
        "empty": ["nothing here"],
        "uni": ["crème brûlée au café 😀"],
    }
    out = caption_metrics(hyps, refs)
    assert all(math.isfinite(out[k]) for k in KEYS)
    assert out["METEOR"] > 10
    # One Java process, still running for the next call, which reuses it.
    scorer = meteor.shared()
    assert scorer.alive and not scorer.lock.locked()
    again = caption_metrics(HYPS, REFS)
    assert meteor.shared() is scorer and math.isfinite(again["METEOR"])


@needs_java
def test_meteor_process_is_shared_by_threads():
    import concurrent.futures

    gts, res = tokenized()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: meteor.shared().score(gts, res), range(8)))
    assert all(o == outs[0] for o in outs)
    assert len({id(meteor.shared())}) == 1


def test_meteor_protocol_failure_raises_and_stops_the_process(no_meteor_cache, monkeypatch):
    """A process that echoes its input breaks the protocol the way a crashing METEOR does."""
    if shutil.which("cat") is None:
        pytest.skip("needs cat")
    monkeypatch.setattr(meteor, "_shared", None)  # the real one (if any) is put back afterwards
    monkeypatch.setattr(captioning.shutil, "which", lambda *a: "/usr/bin/java")  # require_java passes
    monkeypatch.setattr(meteor, "command", lambda: (["cat"], None))
    with pytest.raises(RuntimeError, match="METEOR failed"):
        caption_metrics(HYPS, REFS)
    broken = meteor._shared
    assert broken.proc.returncode is not None and not broken.lock.locked()
    # the next call starts a new process
    with pytest.raises(RuntimeError, match="METEOR failed"):
        caption_metrics(HYPS, REFS)
    assert meteor._shared is not broken and not meteor._shared.alive
    meteor._shared.close()


def test_close_shared_stops_the_process(monkeypatch):
    monkeypatch.setattr(meteor, "_shared", None)
    monkeypatch.setattr(meteor, "command", lambda: ([sys.executable, "-c", "import sys; sys.stdin.read()"], None))
    scorer = meteor.shared()
    assert scorer.alive and meteor.shared() is scorer
    meteor.close_shared()
    assert scorer.proc.returncode == 0 and meteor._shared is None


def test_meteor_close_kills_a_process_that_ignores_eof(monkeypatch):
    scorer = meteor.MeteorScorer(cmd=[sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(meteor, "EXIT_TIMEOUT_S", 0.2)
    scorer.close()
    assert scorer.proc.returncode is not None and not scorer.alive


def test_meteor_command_is_pycocoevalcaps(monkeypatch):
    started = []

    class NoProcess:
        def __init__(self, cmd, cwd=None, **kw):
            started.append((cmd, cwd))

    monkeypatch.setattr(subprocess, "Popen", NoProcess)
    monkeypatch.setattr(Meteor, "__del__", lambda self: None)  # it would stop a real process
    theirs = Meteor()
    assert meteor.command() == started[0] and theirs.meteor_cmd == started[0][0]
    del theirs


def test_rouge_l_by_hand_and_tokenization_modes():
    hyp, ref = {"c": "A man slices a tomato."}, {"c": "a man is slicing a tomato"}
    beta2 = 1.2**2

    def f(lcs, n_hyp, n_ref):
        p, r = lcs / n_hyp, lcs / n_ref
        return 100 * (1 + beta2) * p * r / (r + beta2 * p)

    # Whitespace keeps "tomato." as one token: LCS = "a man a" (3 of 5 and 6 tokens).
    assert caption_metrics(hyp, ref, meteor=False)["ROUGE-L"] == pytest.approx(f(3, 5, 6))
    if shutil.which("java"):
        # PTB splits off and drops the period: LCS = "a man a tomato".
        out = caption_metrics(hyp, ref, tokenize="ptb", meteor=False)
        assert out["ROUGE-L"] == pytest.approx(f(4, 5, 6))


def test_skip_meteor_path_and_sanitizing_equivalences():
    out = caption_metrics(HYPS, REFS, meteor=False)
    assert math.isnan(out["METEOR"]) and out["not_computed"] == ["METEOR"]
    gts, res = tokenized()
    assert out["CIDEr"] == Cider().compute_score(gts, res)[0]
    # Line breaks act as spaces; an empty hypothesis is scored as "none".
    assert (
        caption_metrics({**HYPS, "v1_1": "pour the\noil into\r\nthe pan"}, REFS, meteor=False)["BLEU-4"]
        == out["BLEU-4"]
    )
    a = caption_metrics({**HYPS, "v2_1": ""}, REFS, meteor=False)
    b = caption_metrics({**HYPS, "v2_1": "none"}, REFS, meteor=False)
    assert a["BLEU-4"] == b["BLEU-4"] and a["CIDEr"] == b["CIDEr"] and a["ROUGE-L"] == b["ROUGE-L"]
    # Identical captions give perfect BLEU and ROUGE-L.
    same = caption_metrics({k: v[0] for k, v in tokenized()[0].items()}, REFS, meteor=False)
    assert same["BLEU-4"] == pytest.approx(100.0) and same["ROUGE-L"] == pytest.approx(100.0)


def test_per_clip_scores_are_cider_per_clip():
    scores = per_clip_scores(HYPS, REFS)
    gts, res = tokenized()
    _, direct = Cider().compute_score(gts, res)
    assert list(scores) == list(HYPS)
    assert list(scores.values()) == pytest.approx(list(direct))
    assert scores["v2_0"] > scores["v2_1"]  # close paraphrase beats a different action
    assert "CIDEr" in CONVENTIONS["per_clip"]


def test_missing_java(monkeypatch):
    monkeypatch.setenv("PATH", "")
    msg = (
        "java not found on PATH: METEOR needs a Java runtime "
        "(e.g. apt-get install openjdk-17-jre-headless), or pass skip_meteor=true"
    )
    with pytest.raises(InputError) as err:
        require_java()
    assert str(err.value) == msg
    with pytest.raises(InputError, match="skip_meteor=true"):
        caption_metrics(HYPS, REFS)
    assert caption_metrics(HYPS, REFS, meteor=False)["BLEU-4"] > 0  # works without Java
    # PTB tokenization too, unless a sentence needs the Java tokenizer (here: a period)
    assert caption_metrics(HYPS, REFS, tokenize="ptb", meteor=False)["BLEU-4"] > 0
    with pytest.raises(InputError, match="PTB tokenizer"):
        caption_metrics({**HYPS, "v1_1": "pour the oil."}, REFS, tokenize="ptb", meteor=False)


def test_ptb_tokenizer_needs_a_writable_package_dir(monkeypatch):
    monkeypatch.setattr(captioning.os, "access", lambda *a: False)
    monkeypatch.setattr(captioning.shutil, "which", lambda *a: "/usr/bin/java")
    with pytest.raises(InputError, match="not writable"):
        caption_metrics({**HYPS, "v1_1": "pour the oil."}, REFS, tokenize="ptb", meteor=False)
    # only the Java tokenizer writes there
    assert caption_metrics(HYPS, REFS, tokenize="ptb", meteor=False)["n_clips"] == 4


@pytest.mark.parametrize(
    "hyps, refs, msg",
    [
        ({"a": "x"}, {"b": ["x"]}, "ids differ"),
        ({}, {}, "no captions"),
        ({"a": "x"}, {"a": []}, "reference"),
        ({"a": None}, {"a": ["x"]}, "string hypothesis"),
    ],
)
def test_bad_input_is_rejected(hyps, refs, msg):
    with pytest.raises(ValueError, match=msg):
        caption_metrics(hyps, refs, meteor=False)
    with pytest.raises(ValueError, match="tokenize"):
        caption_metrics(HYPS, REFS, tokenize="spacy", meteor=False)


def test_run_no_meteor_flag_is_skip_meteor(monkeypatch):
    from typer.testing import CliRunner

    import vlmbench.runner
    from vlmbench.cli import app

    seen = []

    def fake_run(task, *, pairs, **kw):
        seen.append(pairs)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(vlmbench.runner, "run", fake_run)
    CliRunner().invoke(app, ["run", "--task", "youcook2-caption", "--no-meteor", "beam=2"])
    CliRunner().invoke(app, ["run", "--task", "youcook2-caption"])
    assert seen == [["beam=2", "skip_meteor=true"], []]
