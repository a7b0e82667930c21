"""The Python PTB tokenizer (vlmbench.metrics.ptb) against pycocoevalcap's Java PTBTokenizer.

Hand cases state CoreNLP 3.4.1's rules as pycocoevalcap's output (after its punctuation removal); with Java
present every case and a few thousand generated lines are also run through the jar itself, each line both
inside the input and at its very end (some rules look at the next character). The long version of the
generated comparison: VLMBENCH_PTB_FUZZ=20000 (lines per generator).
"""

import json
import os
import random
import shutil
import subprocess

import pytest

from vlmbench.metrics import ptb

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the Java tokenizer needs java")

# (input, pycocoevalcap's output mid-input, at the end of the input when it differs)
HAND = [
    ("A man slices a Tomato", "a man slices a tomato", None),
    ("it's don't can't won't i'm you're they've we'd", "it 's do n't ca n't wo n't i 'm you 're they 've we 'd", None),
    ("we're", "we 're", "we re"),  # 're/'ve/'ll split off only before a non-letter: not at the end of input
    ("he'll go", "he 'll go", None),
    ("the cooks' knives", "the cooks knives", None),  # the quote is dropped as punctuation
    ("cannot gonna gotta wanna lemme gimme", "can not gon na got ta wan na lem me gim me", None),
    ("cannott wannabe", "cannott wannabe", None),
    ("add (sliced) peppers [diced] {x y}", "add -lrb- sliced -rrb- peppers -lsb- diced -rsb- -lcb- x y -rcb-", None),
    ("add 1 1/2 cups", "add 1\xa01/2 cups", None),  # a mixed fraction is one token across the space
    ("1-1/2 cups 11/2 1/2/3 1/2/34", "1-1/2 cups 11/2 1/2/3 1/2/34", None),
    ("call 800 555 1234 or 555 1234", "call 800\xa0555\xa01234 or 555 1234", None),
    ("cook 5-10 minutes 10 15 min", "cook 5-10 minutes 10 15 min", None),
    ("stir-fry a--b a---b a-----b -5 5- --5", "stir-fry a b a b a ----- b -5 5 5", None),
    ("it's 50% 1,000 ,5 5, 1:30", "it 's 50 % 1,000 ,5 5 1:30", None),
    ("what?! a!b \"quoted\" ' x ' ?? !", "what ?! a!b quoted x ??", None),
    ("a & b a=b x/y and/or long/ channas/chole", "a & b a = b x/y and/or long / channas/chole", None),
    ("a,b-c 1,000-2,000", "a,b-c 1,000-2 ,000", None),
    ("-lrb- -RSB-", "-lrb- -rsb-", None),
    ("", "", None),
    ("  \t ", "", None),
]

# Lines the Python tokenizer leaves to Java (each for a reason in its comment).
JAVA_ONLY = [
    "Dr. Smith",  # periods: abbreviations keep theirs
    "the end.",
    "café crème",  # non-ASCII
    "o'clock y'all 'em 'tis rock'n'roll '90s",  # apostrophes other than contractions
    "IT'S",  # upper-case contractions
    "AT&T &amp;",  # letters after &
    ":-) ;) =D",  # emoticons
    "see http://x",
    "(x-) (ab)",  # short parenthesised groups (emoticons like (x-))
    "$5 #1 a@b 2+2 a*b <b> a_b",
]


def test_hand_cases_in_python():
    for text, mid, end in HAND:
        assert ptb.accepted(text), text
        assert ptb.tokenize_line(text, at_end=False) == mid, text
        assert ptb.tokenize_line(text, at_end=True) == (mid if end is None else end), text


def test_java_only_lines_are_not_accepted():
    for text in JAVA_ONLY:
        assert not ptb.accepted(text), text
        assert ptb.tokenize_line(text) is None


def test_tokenize_sends_only_unaccepted_lines_to_java_between_their_neighbours():
    calls = []

    def fake_java(lines):
        calls.append(list(lines))
        return [f"<{s}>" for s in lines]

    # Java gets each line it must tokenize with the lines around it (the lexer looks past the end of a line)
    out = ptb.tokenize(["a", "b", "Dr. Smith", "it's", "c", "d", "café", "we're"], java=fake_java)
    assert calls == [["b", "Dr. Smith", "it's", "d", "café", "we're"]]
    assert out == ["a", "b", "<Dr. Smith>", "it 's", "c", "d", "<café>", "we re"]
    # the last line goes to Java: it ends Java's input too
    calls.clear()
    assert ptb.tokenize(["we're", "x", "café"], java=fake_java) == ["we 're", "x", "<café>"]
    assert calls == [["x", "café"]]
    # nothing for Java: no call
    calls.clear()
    assert ptb.tokenize(["a b", "c"], java=fake_java) == ["a b", "c"] and calls == []
    # pycocoevalcap turns "\n" into a space; other line breaks would shift Java's lines
    assert ptb.tokenize(["a\nb"], java=fake_java) == ["a b"]
    with pytest.raises(ValueError, match="line break"):
        ptb.tokenize(["a\rb"], java=fake_java)


@needs_java
def test_java_lines_keep_their_next_line():
    """CoreNLP looks past the end of a line: "No." keeps its period when the next line starts with a digit."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sents = ["see No.", "5 cups", "see No.", "cups", "pp.", "12", "U.S.", "The end", "etc.", "the end", "Ok."]
    want = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sents)})
    want = [want[i][0] for i in range(len(sents))]
    assert want[0] == "see no." and want[2] == "see no"
    assert ptb.tokenize(sents) == want


def test_fast_paths_agree_with_the_lexer():
    """Words and numbers skip the lexer, and lines without a digit-space-digit are lexed chunk by chunk."""
    rng = random.Random(0)
    for _ in range(3000):
        line = " ".join(
            "".join(rng.choice("ab1N-'/,(") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 5))
        )
        for at_end in (False, True):
            if ptb.accepted(line):
                whole = " ".join(ptb._keep(ptb._lex(line if at_end else line + "\n")))
                assert ptb.tokenize_line(line, at_end) == whole, line


# -- against the Java tokenizer ---------------------------------------------------------------------------


def java_documents(docs: list[list[str]], tmp_path) -> list[list[str]]:
    """Each document (a list of lines) through pycocoevalcap's jar and options in one Java run, each in its own
    file (so its last line ends an input), then pycocoevalcap's punctuation removal."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = os.path.join(ptb.java_dir(), ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    listing = tmp_path / "files.txt"
    with open(listing, "w") as f:
        for i, doc in enumerate(docs):
            (tmp_path / f"{i}.txt").write_bytes("\n".join(doc).encode())
            f.write(f"{tmp_path / f'{i}.txt'} {tmp_path / f'{i}.tok'}\n")
    cmd = ["java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    subprocess.run([*cmd, "-ioFileList", str(listing)], check=True, capture_output=True)
    out = []
    for i, doc in enumerate(docs):
        lines = (tmp_path / f"{i}.tok").read_bytes().decode().split("\n")
        assert len(lines) == len(doc)
        out.append([" ".join(w for w in x.rstrip().split(" ") if w not in ptb.PUNCTUATIONS) for x in lines])
    return out


WORDS = (
    "cannot gonna Gotta WANNA lemme gimme it's don't can't won't i'm you're they've we'd he'll n't 's 're "
    "doesn't isn't ain't shepard's snails' cooks' 1/2 11/2 2-3 10-15 all-purpose stir-fry channas/chole long/ "
    "dressing- 6- s=and pand] 70% 2% & - ' -- ... ?! x/y/z 1,000 1:30 ,5 -lrb- o'clock y'all Dr. café 漢字 😀"
).split()


def _line(rng: random.Random, alphabet: str) -> str:
    parts = []
    for _ in range(rng.randint(0, 8)):
        x = rng.random()
        if x < 0.3:
            w = "".join(rng.choice("aeioustnrlmdhyx") for _ in range(rng.randint(1, 7)))
            parts.append(w.upper() if rng.random() < 0.1 else w)
        elif x < 0.5:
            parts.append(rng.choice(WORDS))
        elif x < 0.7:
            parts.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 5))))
        else:
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))))
        parts.append(rng.choice(["", " ", " ", " ", "  ", "\t"]))
    return "".join(parts)


GENERATORS = {
    "mixed": "-/'&%=,;:?!()[]{}\"",
    "digits": "0123456789 -/,:(",
    "punct": "abs'n-t!?.,;:()\"&% ",
    "unicode": "aé漢😀\u00a0’“-. ",
}


@needs_java
@pytest.mark.slow
def test_generated_lines_match_the_java_tokenizer(tmp_path):
    n = int(os.environ.get("VLMBENCH_PTB_FUZZ", "400"))
    rng = random.Random(1)
    docs = [
        [_line(rng, alpha) for _ in range(rng.choice([1, 2, 3]))] for alpha in GENERATORS.values() for _ in range(n)
    ]
    docs += [[text] for text, _, _ in HAND] + [[text, "x"] for text, _, _ in HAND] + [[t] for t in JAVA_ONLY]
    expected = java_documents(docs, tmp_path)
    native = 0
    for doc, want in zip(docs, expected):
        for i, (line, w) in enumerate(zip(doc, want)):
            got = ptb.tokenize_line(line, at_end=i == len(doc) - 1)
            if got is not None:
                native += 1
                assert got == w, (line, i == len(doc) - 1)
    assert native > len(docs)  # most lines are tokenized in Python


@needs_java
def test_tokenize_matches_pycocoevalcap_in_one_call():
    """The whole path, Java fallback included, against pycocoevalcap's PTBTokenizer given the same sentences."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    rng = random.Random(2)
    sentences = [_line(rng, alpha) for alpha in GENERATORS.values() for _ in range(150)]
    sentences += [t for t, _, _ in HAND] + JAVA_ONLY
    rng.shuffle(sentences)
    want = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sentences)})
    before = ptb.java_runs
    assert ptb.tokenize(sentences) == [want[i][0] for i in range(len(sentences))]
    assert ptb.java_runs == before + 1  # one Java run for all the lines it needed


def real_sentences(real_data) -> list[str]:
    import csv

    with open(real_data / "youcook2" / "youcookii_annotations_trainval.json") as f:
        db = json.load(f)["database"]
    sents = [a["sentence"] for v in db.values() for a in v["annotations"]]
    with open(real_data / "youcook2" / "validation_youcook.csv", newline="") as f:
        sents += [r["text"] for r in csv.DictReader(f)]
    return sents


def test_real_references_need_no_java(real_data):
    sents = real_sentences(real_data)
    assert all(ptb.accepted(s) for s in sents)


@needs_java
@pytest.mark.slow
def test_real_references_match_the_java_tokenizer(real_data, tmp_path):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sents = real_sentences(real_data)
    want = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sents)})
    before = ptb.java_runs
    assert ptb.tokenize(sents) == [want[i][0] for i in range(len(sents))]
    assert ptb.java_runs == before
    # and each distinct sentence at the very end of an input
    distinct = sorted(set(sents))
    ends = java_documents([[s] for s in distinct], tmp_path)
    assert [ptb.tokenize_line(s, at_end=True) for s in distinct] == [e[0] for e in ends]
