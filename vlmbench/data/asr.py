"""HowTo100M caption preparation: the authors' rolling-ASR rules, in one module.

HowTo100M's ASR comes in rolling windows: consecutive lines repeat each other's words. Before sampling, the
authors (MMPT) clean every video's lines in three places of their code; vlmbench does all three here:

1. De-duplication, line by line in file order (MMPT's CaptionDedupProcessor._dedup). A line is first
   "\\n" -> " " and stripped; a line that is not a string or is then empty is skipped. Against the previous KEPT
   line `prev`:
   a. `prev` ends with the line (a subset): it merges into `prev`, whose end time becomes max(both ends);
   b. else the line starts with `prev` (a superset): it replaces `prev`'s text, start = min, end = max;
   c. else, if some prefix of the line is a suffix of `prev` (the SHORTEST such prefix, even one character, as
      the reference's loop finds it), that overlap goes to one of the two lines at random, p = 1/2 each:
      - to `prev`: the line keeps only the text after the overlap (stripped), starting at max(prev end,
        its start), ending at max(its end, that start); `prev`'s end becomes max(prev end, line start);
        nothing is added when no text remains;
      - to the line: `prev` loses the overlap from its end (stripped) and ends at min(prev end, line start),
        or is removed when nothing remains; the line is kept whole;
   d. else the line is kept as it is.
   The reference draws with Python's unseeded `random.random() > 0.5`; here each video has its own generator
   seeded from (seed, crc32(video id)), so a preparation is reproducible and independent of video order.
2. Each kept line's text is cut to its first 96 characters (MMPT's pre-tokenisation text processor).
3. Each line's WordPiece tokens are cut to 32 at tokenisation (the 32-column caps_ids rows of their shards);
   the tokeniser is the caller's (data/prepared.py), the limit is MAX_TOKENS here.
"""

from __future__ import annotations

import zlib

import numpy as np

from .howto100m import Captions, _captions

RULES_VERSION = 1  # bump when a rule changes: a prepared corpus made under other rules must be rebuilt
MAX_CHARS = 96
MAX_TOKENS = 32
COUNT_KEYS = (
    "asr_lines_in",
    "asr_lines_skipped_empty",
    "asr_merged_into_previous",
    "asr_replaced_previous",
    "asr_overlap_to_previous",
    "asr_overlap_to_current",
    "asr_previous_emptied",
    "asr_lines_cut_96",
    "asr_lines_out",
)


def video_rng(vid: str | None, seed: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32((vid or "").encode())])


def _clean(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    text = text.replace("\n", " ").strip()
    return text or None


def dedup(
    starts, ends, texts, rng: np.random.Generator, counts: dict[str, int] | None = None
) -> tuple[list[float], list[float], list[str]]:
    """Rules 1a-1d on one video's lines; `counts` (if given) gets the count of each rule applied."""
    c = counts if counts is not None else {}
    bump = lambda k: c.__setitem__(k, c.get(k, 0) + 1)  # noqa: E731
    s_out: list[float] = []
    e_out: list[float] = []
    t_out: list[str] = []
    for start, end, raw in zip(starts, ends, texts):
        start, end = float(start), float(end)
        text = _clean(raw)
        if text is None:
            bump("asr_lines_skipped_empty")
            continue
        if not t_out:
            s_out.append(start), e_out.append(end), t_out.append(text)
            continue
        prev = t_out[-1]
        if prev.endswith(text):  # a: subset of the previous line
            e_out[-1] = max(e_out[-1], end)
            bump("asr_merged_into_previous")
        elif text.startswith(prev):  # b: superset
            t_out[-1] = text
            s_out[-1] = min(s_out[-1], start)
            e_out[-1] = max(e_out[-1], end)
            bump("asr_replaced_previous")
        else:
            k = next((k for k in range(1, len(text) + 1) if prev.endswith(text[:k])), 0)
            if not k:  # d: no overlap
                s_out.append(start), e_out.append(end), t_out.append(text)
            elif rng.random() > 0.5:  # c: the overlap stays with the previous
                bump("asr_overlap_to_previous")
                e_out[-1] = max(e_out[-1], start)
                rest = text[k:].strip()
                if rest:
                    s_out.append(max(e_out[-1], start))
                    e_out.append(max(end, s_out[-1]))
                    t_out.append(rest)
            else:  # c: the overlap goes to the current line
                bump("asr_overlap_to_current")
                left = prev[:-k].strip()
                if left:
                    e_out[-1] = min(e_out[-1], start)
                    t_out[-1] = left
                else:
                    bump("asr_previous_emptied")
                    s_out.pop(), e_out.pop(), t_out.pop()
                s_out.append(start), e_out.append(end), t_out.append(text)
    return s_out, e_out, t_out


def cut_chars(texts: list[str], counts: dict[str, int] | None = None) -> list[str]:
    """Rule 2: each line's text cut to MAX_CHARS characters."""
    if counts is not None:
        counts["asr_lines_cut_96"] = counts.get("asr_lines_cut_96", 0) + sum(len(t) > MAX_CHARS for t in texts)
    return [t[:MAX_CHARS] for t in texts]


def cut_tokens(token_lists):
    """Rule 3: each line's token ids cut to MAX_TOKENS."""
    return [list(t)[:MAX_TOKENS] for t in token_lists]


def prepare_captions(cap: Captions, vid: str | None = None, seed: int = 0) -> tuple[Captions, dict[str, int]]:
    """Rules 1 and 2 on one video's captions, with the counts of lines in/out and of each rule applied."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts["asr_lines_in"] = len(cap)
    starts, ends, texts = dedup(cap.start, cap.end, cap.text, video_rng(vid, seed), counts)
    texts = cut_chars(texts, counts)
    counts["asr_lines_out"] = len(texts)
    return _captions(starts, ends, texts), counts
