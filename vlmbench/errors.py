"""One error type for bad user input: the CLI prints it as one line and exits 2."""


class InputError(Exception):
    """Bad input (file, key or value). The message names the file/key and the problem."""

    def __init__(self, message: str, path: object | None = None):
        self.path = path
        self.problem = message  # the message without the path
        super().__init__(f"{path}: {message}" if path is not None else message)


def one_line(text: object) -> str:
    """Another library's message (numpy's spans three lines) or a value from a file, on one line."""
    return " ".join(str(text).split())
