"""InputError: whatever it quotes, one line (the CLI prints it as `error: <it>`)."""

import pytest

from vlmbench.errors import InputError, one_line


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
def test_a_message_quoting_a_line_break_is_one_line(brk):
    """A header holding a vertical tab made a two-line error (found by make fuzz on HowTo100M captions)."""
    e = InputError(f"expected header start,end,text, got {brk}.02,4.92,roll", path="/data/a  b/v.csv")
    assert len(str(e).splitlines()) == 1 and len(e.problem.splitlines()) == 1
    assert str(e).startswith("/data/a  b/v.csv: expected header")  # other whitespace (a path's) kept


def test_one_line_collapses_every_whitespace_run():
    assert one_line("a\n  b\tc") == "a b c"
