"""Video captioning: BLEU-3/4, METEOR, ROUGE-L, CIDEr, equal to pycocoevalcap's scorers.

The paper's numbers come from nlg-eval, which runs the same coco-caption scorers on whitespace-split
text (no PTB tokenizer); ``tokenize="whitespace"`` reproduces that. BLEU, ROUGE-L and CIDEr-D are computed in
Python (vlmbench.metrics.coco, equal to pycocoevalcap's to the bit), the PTB tokenizer too where it can
(vlmbench.metrics.ptb; other lines go to the Java tokenizer), and METEOR is the Java 1.5 jar in one
persistent process (vlmbench.metrics.meteor), so only METEOR needs Java and it starts once per process.
"""

import hashlib
import json
import os
import re
import shutil
import threading

import numpy as np

from vlmbench.errors import InputError
from vlmbench.metrics import MetricInputError, coco, ptb
from vlmbench.metrics import meteor as meteor_jar

# Empty hypotheses become this word, as MMPT's predictor does ("none"); it only scores where a
# reference itself contains "none".
EMPTY_HYPOTHESIS = "none"

# Characters that end a line for METEOR's stdin protocol or the PTB tokenizer (Java treats \u2028 etc.
# as line breaks, which shifts every later caption), plus '|', METEOR's field separator.
_UNSAFE = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029|]")

TOKENIZERS = ("whitespace", "ptb")

CONVENTIONS: dict[str, str] = {
    "tokenize": "whitespace (default, paper/nlg-eval protocol): lower-case, split on whitespace, rejoin with "
    "single spaces; ptb: pycocoevalcap's PTBTokenizer (lower-cases and drops punctuation). The caller "
    "records which one it used",
    "sanitize": "line breaks and '|' are replaced by spaces in hypotheses and references before tokenizing "
    "(they break METEOR's line protocol)",
    "empty_hypothesis": f"an empty hypothesis is scored as {EMPTY_HYPOTHESIS!r} (as MMPT does)",
    "scale": "BLEU-3/4, METEOR, ROUGE-L in percent (x100); CIDEr raw (paper: 1.3869)",
    "bleu": "coco-caption corpus BLEU, 'closest' reference length, tiny smoothing epsilons",
    "meteor": "METEOR 1.5 jar, -l en -norm (coco-caption / nlg-eval)",
    "rouge_l": "coco-caption ROUGE-L, beta 1.2, max precision and max recall over references, mean over clips",
    "cider": "coco-caption CIDEr-D; IDF computed from the scored set, so a subset or a single clip scores "
    "differently (a single clip scores 0)",
    "per_clip": "per_clip_scores gives each clip's CIDEr-D within the whole scored set",
}


def require_java(needed_for: str = "METEOR") -> None:
    """Raise InputError unless a `java` executable is on PATH (run this before any model work)."""
    if shutil.which("java") is None:
        if needed_for == "METEOR":
            hint = "or pass skip_meteor=true"
        else:
            hint = "or pass tokenize=whitespace"
        raise InputError(
            f"java not found on PATH: {needed_for} needs a Java runtime "
            f"(e.g. apt-get install openjdk-17-jre-headless), {hint}"
        )


def _whitespace(text: str) -> str:
    return " ".join(text.lower().split())


def _ptb_java(lines: list[str]) -> list[str]:
    """The Java PTB tokenizer, for the lines vlmbench.metrics.ptb does not tokenize itself."""
    require_java("the PTB tokenizer")
    # PTBTokenizer writes its temp file next to its jar.
    jar_dir = ptb.java_dir()
    if not os.access(jar_dir, os.W_OK):
        raise InputError(
            f"the PTB tokenizer writes a temp file into {jar_dir}, which is not writable; "
            "use whitespace tokenization or a writable Python environment"
        )
    return ptb._java(lines)


def _ptb(texts: dict[object, list[str]]) -> dict[object, list[str]]:
    """Tokenize {key: [sentence, ...]} as pycocoevalcap's PTBTokenizer does given the same dict (one Java
    run, only for sentences outside the Python tokenizer's verified subset)."""
    keys = [k for k, v in texts.items() for _ in v]
    tokens = ptb.tokenize([s for v in texts.values() for s in v], java=_ptb_java)
    out: dict[object, list[str]] = {k: [] for k in texts}
    for k, t in zip(keys, tokens):
        out[k].append(t)
    return out


def _prepare(
    hypotheses: dict[str, str], references: dict[str, list[str] | str], tokenize: str
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Validate, sanitize and tokenize into pycocoevalcap's (gts, res) format: id -> [sentence, ...]."""
    if tokenize not in TOKENIZERS:
        raise MetricInputError(f"tokenize must be one of {TOKENIZERS}, got {tokenize!r}")
    missing = [k for k in hypotheses if k not in references]
    extra = [k for k in references if k not in hypotheses]
    if missing or extra:
        raise MetricInputError(
            f"hypothesis and reference ids differ: {len(missing)} without references (e.g. {missing[:3]}), "
            f"{len(extra)} without hypotheses (e.g. {extra[:3]})"
        )
    if not hypotheses:
        raise MetricInputError("no captions to score")
    res: dict[str, list[str]] = {}
    gts: dict[str, list[str]] = {}
    for k, hyp in hypotheses.items():
        refs = references[k]
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not isinstance(hyp, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise MetricInputError(f"clip {k!r}: need a string hypothesis and >= 1 string reference")
        res[k] = [_UNSAFE.sub(" ", hyp).strip() or EMPTY_HYPOTHESIS]
        gts[k] = [_UNSAFE.sub(" ", r) for r in refs]

    if tokenize == "whitespace":
        res = {k: [_whitespace(s) for s in v] for k, v in res.items()}
        gts = {k: [_whitespace(s) for s in v] for k, v in gts.items()}
    else:
        out = _ptb({**{("res", k): v for k, v in res.items()}, **{("gts", k): v for k, v in gts.items()}})
        res = {k: out[("res", k)] for k in res}
        gts = {k: out[("gts", k)] for k in gts}
    # Tokenizing can empty a hypothesis (e.g. PTB drops punctuation-only text).
    res = {k: [v[0] or EMPTY_HYPOTHESIS] for k, v in res.items()}
    return gts, res


# The last few METEOR runs by input: scoring and the per-caption statistics of one set ask METEOR once.
_METEOR_CACHE: dict[str, tuple[float, list[float]]] = {}
_METEOR_CACHE_SIZE = 4


def start_meteor() -> None:
    """Start this process's METEOR JVM now (it loads for ~6 s in the background): a run calls this when its data is
    loaded, so the start-up overlaps fine-tuning and decoding instead of delaying the scores."""
    meteor_jar.shared()


def _meteor_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """(corpus METEOR, per-caption METEOR in gts order), memoised on the exact input."""
    # keyed on the command too: another jar or a test double never reads another's result
    cmd, _ = meteor_jar.command()
    key = hashlib.sha256(json.dumps([cmd, list(gts.items()), list(res.items())]).encode()).hexdigest()
    if key not in _METEOR_CACHE:
        while len(_METEOR_CACHE) >= _METEOR_CACHE_SIZE:
            _METEOR_CACHE.pop(next(iter(_METEOR_CACHE)))
        try:
            score, scores = meteor_jar.shared().score(gts, res)
        except meteor_jar.MeteorError as e:
            raise RuntimeError(str(e)) from e
        _METEOR_CACHE[key] = (float(score), [float(x) for x in scores])
    return _METEOR_CACHE[key]


def _in_background(fn, *args):
    """Start fn(*args) in a thread (METEOR: the Java process works while Python scores the rest); the returned
    function waits for its result or raises its exception."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    thread = threading.Thread(target=run, name="meteor", daemon=True)
    thread.start()

    def result():
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    return result


def caption_metrics(
    hypotheses: dict[str, str],
    references: dict[str, list[str]] | dict[str, str],
    tokenize: str = "whitespace",
    meteor: bool = True,
) -> dict:
    """Corpus BLEU-3/4, METEOR, ROUGE-L (percent) and CIDEr (raw) over clip id -> caption dicts.

    With meteor=False (no Java), METEOR is NaN and listed in "not_computed".
    """
    if meteor:
        require_java()
    gts, res = _prepare(hypotheses, references, tokenize)
    meteor_result = _in_background(_meteor_scores, gts, res) if meteor else None
    cooked = coco.Cooked(gts, res)
    bleu, _, _ = coco.bleu(cooked)
    rouge, _ = coco.rouge_l(gts, res)
    cider, _ = coco.cider_d(cooked)
    return {
        "BLEU-3": float(100.0 * bleu[2]),
        "BLEU-4": float(100.0 * bleu[3]),
        "METEOR": 100.0 * meteor_result()[0] if meteor_result else float("nan"),
        "ROUGE-L": float(100.0 * rouge),
        "CIDEr": float(cider),
        "not_computed": [] if meteor else ["METEOR"],
        "n_clips": len(res),
    }


def per_clip_scores(
    hypotheses: dict[str, str], references: dict[str, list[str]] | dict[str, str], tokenize: str = "whitespace"
) -> dict[str, float]:
    """Each clip's CIDEr-D (raw), with IDF from the whole set given, for error analysis."""
    gts, res = _prepare(hypotheses, references, tokenize)
    _, scores = coco.cider_d(coco.Cooked(gts, res))
    return {k: float(s) for k, s in zip(gts, scores)}


def caption_statistics(
    hypotheses: dict[str, str],
    references: dict[str, list[str]] | dict[str, str],
    tokenize: str = "whitespace",
    meteor: bool = True,
) -> dict[str, np.ndarray]:
    """Per-clip statistics the corpus metrics are made of, in hypothesis order, for resampling:

    bleu: (n, 10) [testlen, closest reflen, guess_1..4, correct_1..4] (sums give corpus BLEU exactly);
    rouge_l: (n,) per-clip ROUGE-L (the corpus score is their mean); cider: (n,) per-clip CIDEr-D with IDF
    from the whole set; meteor: (n,) per-caption METEOR and meteor_corpus (1,), NaN without Java."""
    gts, res = _prepare(hypotheses, references, tokenize)
    if meteor:
        require_java()
    meteor_result = _in_background(_meteor_scores, gts, res) if meteor else None
    cooked = coco.Cooked(gts, res)
    _, _, bleu = coco.bleu(cooked)
    _, rouge = coco.rouge_l(gts, res)
    _, cider = coco.cider_d(cooked)
    if meteor_result:
        corpus, per = meteor_result()
    else:
        corpus, per = float("nan"), [float("nan")] * len(gts)
    return {
        "bleu": bleu,
        "rouge_l": 100.0 * np.asarray(rouge, np.float64),
        "cider": np.asarray(cider, np.float64),
        "meteor": 100.0 * np.asarray(per, np.float64),
        "meteor_corpus": np.array([100.0 * corpus]),
    }
