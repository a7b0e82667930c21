"""Every suggestion the package prints names something that exists: a `--flag` of some vlmbench command, or a
`key=value` of the config schema. (A Java error once suggested a `--skip-meteor` no command had.)

The package's messages are read with `ast` (f-string parts included): what InputError, say/print and
warnings carry, CLI help strings, and variables named hint/msg/message.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

import vlmbench
from vlmbench.cli import app
from vlmbench.config import PretrainConfig, RunConfig

PACKAGE = Path(vlmbench.__file__).parent
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]+)")
KEY = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*)=(?:true|false|\d)")


def cli_options() -> set[str]:
    names: set[str] = set()

    def walk(cmd) -> None:
        for param in getattr(cmd, "params", []):
            names.update(o for o in list(param.opts) + list(param.secondary_opts) if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return names


MESSAGE_CALLS = {"InputError", "say", "print", "echo", "warn", "warning", "Option", "Argument", "Exit"}
MESSAGE_NAMES = {"hint", "msg", "message", "help", "why"}


def _texts(node: ast.AST) -> list[str]:
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.append(sub.value)
    return out


def strings(tree: ast.AST) -> list[str]:
    """The text of what a user reads: messages (InputError, say, print, warnings), CLI help strings and
    variables named like messages (hint, msg, ...). Docstrings, CSS and argv for other programs are not."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in MESSAGE_CALLS:
                for arg in node.args:
                    if not isinstance(arg, (ast.List, ast.Tuple)):
                        found += _texts(arg)
                found += [t for kw in node.keywords if kw.arg in MESSAGE_NAMES | {None} for t in _texts(kw.value)]
            else:
                found += [t for kw in node.keywords if kw.arg in MESSAGE_NAMES for t in _texts(kw.value)]
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") in MESSAGE_NAMES for t in node.targets):
            found += _texts(node.value)
    return found


def suggestions(source: str) -> tuple[set[str], set[str]]:
    flags, keys = set(), set()
    for text in strings(ast.parse(source)):
        flags.update("--" + m for m in FLAG.findall(text))
        keys.update(KEY.findall(text))
    return flags, keys


def test_every_flag_and_key_named_in_a_message_exists():
    options = cli_options() | {"--help"}
    known_keys = set(RunConfig.model_fields) | set(PretrainConfig.model_fields) | {"seeds"}  # seeds: an ablate axis
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        flags, keys = suggestions(path.read_text())
        bad += [f"{path.relative_to(PACKAGE)}: {f}" for f in sorted(flags - options)]
        bad += [f"{path.relative_to(PACKAGE)}: {k}=" for k in sorted(keys - known_keys)]
    assert not bad, "messages name flags/keys that do not exist:\n" + "\n".join(bad)


def test_the_check_sees_a_planted_wrong_hint():
    flags, keys = suggestions(
        'hint = "or pass --skip-meteor"\nraise InputError(f"{x}: try skip-it=true or beam=5")\n'
        'argv = ["git", "status", "--porcelain"]\n"""A docstring: --porcelain n=3"""\n'
    )
    assert flags == {"--skip-meteor"}
    assert keys == {"beam"}  # skip-it= is not a key shape; beam is
    assert "--skip-meteor" not in cli_options() and "--overwrite" in cli_options()
