"""One error type for bad user input: the CLI prints it as one line and exits 2."""


class InputError(Exception):
    """Bad input (file, key or value). The message names the file/key and the problem."""

    def __init__(self, message: str, path: object | None = None):
        self.path = path
        # one line whatever the message quotes (a header with a vertical tab, numpy's three-line errors): every
        # character str.splitlines() breaks at becomes a space; other whitespace (a path's double space) stays
        self.problem = _join_lines(str(message))  # the message without the path
        text = f"{path}: {self.problem}" if path is not None else self.problem
        super().__init__(_join_lines(text))


def _join_lines(text: str) -> str:
    parts = text.splitlines()
    return " ".join(parts) if len(parts) > 1 else (parts[0] if parts else "")


def one_line(text: object) -> str:
    """Another library's message (numpy's spans three lines) or a value from a file, on one line."""
    return " ".join(str(text).split())
