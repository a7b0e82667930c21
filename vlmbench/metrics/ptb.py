"""pycocoevalcap's PTB tokenization in Python, with the Java tokenizer only for lines it does not cover.

pycocoevalcap's ``PTBTokenizer.tokenize`` joins every sentence with newlines, runs Stanford CoreNLP 3.4.1's
``edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` over them (one JVM start, about a second)
and drops the tokens in ``PUNCTUATIONS`` from each output line. ``tokenize`` returns the same strings.

Lines made only of the characters and shapes in ``accepted`` (ASCII letters, digits, space, tab and
- / ' & % = , ; : ? ! ( ) [ ] { } ", less a few risky constructs) are tokenized here by a longest-match
lexer with the CoreNLP rules that can fire on them (``_RULES``). Every other line (any non-ASCII text, a
period, $ # @ + * < > and the other symbols, apostrophes other than the plain contractions) is tokenized by
the Java tokenizer itself, all such lines of one call in one run, so the output is pycocoevalcap's in every
case; ``java_runs`` counts those runs. The rules were learned from CoreNLP's documented tokenizer behaviour
and by differential testing against the jar (tests/test_ptb_tokenizer.py; VLMBENCH_PTB_FUZZ=N for more lines).

Things the rules reproduce, all checked against the jar: -lowerCase lower-cases the bracket escapes, so
pycocoevalcap keeps "-lrb-" etc. (its punctuation list has them upper-case); phone numbers and mixed
fractions may span a space ("1 1/2" -> "1\\xa01/2", one token holding a no-break space, which Python's
str.split() later splits and str.split(" ") does not); cannot/gonna/gotta/lemme/gimme/wanna are split;
"'re", "'ve", "'ll" are only split off before a non-letter, so at the very end of the input (the last line)
they become a quote and a word; 2-4 hyphens become "--".
"""

from __future__ import annotations

import os
import re
import threading

PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Line breaks for the Java tokenizer (it splits lines on all of them; pycocoevalcap only replaces "\n").
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

_ALPHABET = re.compile(r"[A-Za-z0-9 \t\-/'&%=,;:?!()\[\]{}\"]*")
_REJECT = re.compile(
    r"&[A-Za-z0-9#]"  # HTML entities (&amp;) and AT&T-style words
    r"|[:;=][-o*'()DPdpO{}\[\]@|\\/]|[()\[\]{}]['-]?[:;=]|\([^()\s]{0,4}\)"  # emoticons, URLs (http://)
)
_APOS_SUFFIX = re.compile(r"'(?:s|d|m|re|ve|ll)(?![A-Za-z0-9'])")
_NT_END = re.compile(r"t(?![A-Za-z0-9'])")


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def accepted(line: str) -> bool:
    """Whether `line` is tokenized here (else by the Java tokenizer)."""
    if not _ALPHABET.fullmatch(line) or _REJECT.search(line):
        return False
    if "'" not in line:
        return True
    if not line.islower() and any(c.isupper() for c in line):
        return False  # upper-case contractions take other rules (YOU'RE, 'EM, ...)
    i = line.find("'")
    while i >= 0:
        prev = line[i - 1] if i else " "
        nxt = line[i + 1] if i + 1 < len(line) else " "
        ok = (
            (_APOS_SUFFIX.match(line, i) is not None and (prev.islower() or not (_alnum(prev) or prev == "'")))
            or (prev == "n" and _NT_END.match(line, i + 1) is not None)  # don't, n't
            or (not _alnum(prev) and not _alnum(nxt))  # a quote on its own: ' or ''
            or (prev == "s" and not _alnum(nxt) and nxt != "'")  # cooks'
        )
        if not ok:
            return False  # o'clock, y'all, 'em, 'tis, rock'n'roll, '90s, ...
        i = line.find("'", i + 1)
    return True


# -- the lexer --------------------------------------------------------------------------------------------

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_BRACKET = re.compile(r"[()\[\]{}]")


def _text(t: str) -> list[str]:
    # brackets are escaped everywhere (also inside a phone number), spaces inside a token become U+00A0
    if _BRACKET.search(t):
        t = _BRACKET.sub(lambda m: _BRACKETS[m.group()], t)
    return [t.replace(" ", "\xa0")]


def _quote(t: str) -> list[str]:
    return ["''"]  # `` or '' in CoreNLP (by context); pycocoevalcap drops both


def _dashes(t: str) -> list[str]:
    return ["--"] if len(t) <= 4 else [t]


def _assimilation(t: str) -> list[str]:
    k = 3 if t.lower() == "cannot" else 2
    return [t[:-k], t[-k:]]


_L = "A-Za-z"
_REDAUX = "(?:[msdMSD]|[rR][eE]|[vV][eE]|[lL][lL])"
# (regex, action) in CoreNLP's priority order. The longest match wins, the earlier rule on a tie. A group
# `t` marks the token where the rule has trailing context (JFlex r/s): the context counts toward the length.
_RULE_SPECS: list[tuple[str, object]] = [
    (r"(?i:cannot|gonna|gotta|lemme|gimme|wanna)", _assimilation),
    (r"(?P<t>'[tT])(?:[iI][sS]|[wW][aA][sS])", _text),  # 'tis, 'twas
    (rf"(?P<t>[{_L}]+)'{_REDAUX}", _text),  # it|'s
    (rf"(?P<t>[{_L}]*[A-MO-Za-mo-z])[nN]'[tT]", _text),  # do|n't
    (rf"[{_L}][{_L}0-9]*(?:[!?][{_L}][{_L}0-9]*)*", _text),  # words (also a!b)
    (r"'[nN]'?", _text),  # 'n', rock'n'roll
    (rf"(?P<t>'{_REDAUX})[^{_L}]", _text),  # 's before a non-letter
    (r"'[msdMSD]\Z", _text),  # 's, 'd, 'm at the end of the input
    (rf"(?P<t>[nN]'[tT])[^{_L}]", _text),
    (r"[nN]'[tT]\Z", _text),
    (r"(?i:-(?:rrb|lrb|rcb|lcb|rsb|lsb)-)", _text),  # already escaped brackets
    (r"[0-9]{1,2}[-/][0-9]{1,2}[-/][0-9]{2,4}", _text),  # dates
    (r"[-+]?(?:[0-9]*(?:[:,][0-9]+)+|[0-9]+)", _text),  # numbers
    (r"(?:[0-9]{1,4}[- ])?[0-9]{1,4}/[0-9]{1,4}", _text),  # fractions, also "1 1/2"
    (rf"[{_L}0-9]+(?:-[{_L}]+){{0,2}}(?:/[{_L}0-9]+(?:-[{_L}]+){{0,2}}){{1,2}}", _text),  # and/or
    (r"(?:\([0-9]{2,3}\) ?|(?:[0-9]{2,4}[- ])?[0-9]{2,4}[- ])[0-9]{3,4}[- ]?[0-9]{3,5}", _text),  # phones
    (rf"[{_L}0-9][{_L}0-9,]*(?:-[{_L}0-9]+)+", _text),  # hyphenated, first part may hold commas
    (rf"(?:[dDoOlL]'[{_L}0-9])?[{_L}0-9]+(?:-(?:[dDoOlL]'[{_L}0-9])?[{_L}0-9]+)*", _text),  # things
    (r"''|\"", _quote),
    (r"-{2,}", _dashes),
    (r"[?!]+", _text),
    (r"[ \t\n]+", None),
    (r".", _text),
]
_RULES = [(re.compile(rx), "t" in re.compile(rx).groupindex, act) for rx, act in _RULE_SPECS]


def _lex(s: str) -> list[str]:
    """CoreNLP's tokens of `s` (not lower-cased); `s` ends with "\\n" unless it ends the input."""
    pos, n, out = 0, len(s), []
    while pos < n:
        best_len, best_end, best_act = 0, pos, None
        for rx, has_t, act in _RULES:
            m = rx.match(s, pos)
            if m is not None and m.end() - pos > best_len:
                best_len, best_end, best_act = m.end() - pos, (m.end("t") if has_t else m.end()), act
        if best_act is not None:
            out.extend(best_act(s[pos:best_end]))
        pos = best_end
    return out


def _keep(tokens: list[str]) -> list[str]:
    return [w for w in (t.lower() for t in tokens) if w not in PUNCTUATIONS]


# A token spans a space only in a phone number or a mixed fraction, which need these.
_SPANS_SPACE = re.compile(r"[0-9)] [0-9]")
_ASSIMILATIONS = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])
_CHUNKS: dict[tuple[str, bool], list[str]] = {}
_CHUNKS_MAX = 200_000


def _chunk(c: str, at_end: bool) -> list[str]:
    key = (c, at_end)
    kept = _CHUNKS.get(key)
    if kept is None:
        kept = _keep(_lex(c if at_end else c + " "))
        if len(_CHUNKS) >= _CHUNKS_MAX:
            _CHUNKS.clear()
        _CHUNKS[key] = kept
    return kept


def tokenize_line(line: str, at_end: bool = False) -> str | None:
    """pycocoevalcap's tokenized `line` (at_end: it is the last line of the input), or None if not accepted."""
    if not accepted(line):
        return None
    if _SPANS_SPACE.search(line):
        return " ".join(_keep(_lex(line if at_end else line + "\n")))
    chunks = line.split()
    last = len(chunks) - 1
    at_end = at_end and not line[-1:].isspace()
    out: list[str] = []
    for i, c in enumerate(chunks):
        if c.isalnum() and c.isascii():  # one token (a word, a number), unless an assimilation
            low = c.lower()
            if low not in _ASSIMILATIONS:
                out.append(low)
                continue
        out.extend(_chunk(c, at_end and i == last))
    return " ".join(out)


# -- Java for the rest ------------------------------------------------------------------------------------

_lock = threading.Lock()
java_runs = 0  # how many times this process started the Java tokenizer


def _java(lines: list[str]) -> list[str]:
    """The lines through pycocoevalcap's PTBTokenizer (one JVM), as one input in this order."""
    global java_runs
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    with _lock:
        java_runs += 1
    out = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(lines)})
    if len(out) != len(lines):
        raise RuntimeError("the PTB tokenizer returned a different number of sentences than it was given")
    return [out[i][0] for i in range(len(lines))]


def java_dir() -> str:
    """Where pycocoevalcap's PTBTokenizer writes its temporary file (next to its jar)."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    return os.path.dirname(os.path.abspath(ptbtokenizer.__file__))


def tokenize(sentences: list[str], java=None) -> list[str]:
    """Each sentence as pycocoevalcap's PTBTokenizer returns it when given all of them in this order.

    Lines it cannot tokenize itself go to `java` (default: the Java tokenizer, one run for all of them).
    Sentences must not hold line breaks other than "\\n" (pycocoevalcap turns "\\n" into a space; the
    others would shift every later line in Java's output).
    """
    lines = [s.replace("\n", " ") for s in sentences]
    bad = next((s for s in lines if LINE_BREAKS.search(s)), None)
    if bad is not None:
        raise ValueError(f"a sentence holds a line break the PTB tokenizer would split on: {bad!r}")
    n = len(lines)
    out: list[str | None] = [tokenize_line(s, i == n - 1) for i, s in enumerate(lines)]
    todo = {i for i, t in enumerate(out) if t is None}
    if todo:
        # Java sees each such line between its own neighbours (the lexer looks past the end of a line, e.g. at
        # whether the next one starts upper-case after "etc."); only the last input line ends Java's input.
        batch = sorted({j for i in todo for j in (i - 1, i, i + 1) if 0 <= j < n})
        for i, t in zip(batch, (java or _java)([lines[i] for i in batch])):
            if i in todo:
                out[i] = t
    return out  # type: ignore[return-value]
