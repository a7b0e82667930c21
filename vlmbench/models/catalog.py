"""Which models vlmbench can evaluate: the built-in ones and plug-ins, found by name.

A plug-in is any installed package that names a `VideoTextModel` subclass in the entry-point group
`vlmbench.models` (docs/plugins.md):

    [project.entry-points."vlmbench.models"]
    meanpool = "my_package.model:MeanPool"

`--model NAME` picks one; `--checkpoint DIR` alone picks the model whose `config_file` the folder holds. A plug-in
that fails to import, or names something that is not a VideoTextModel, is reported in one line when it is used
(and listed with its error by `vlmbench models`); it never breaks the other models.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import InputError
from .interface import VideoTextModel

ENTRY_POINT_GROUP = "vlmbench.models"
DEFAULT = "vlm"
BUILTIN = {
    "vlm": "vlmbench.models.vlm:VLMModel",
    "videoclip": "vlmbench.models.videoclip:VideoCLIPModel",
}


def available() -> dict[str, str]:
    """name -> "module:Class" of every model: the built-ins, then the plug-ins (a plug-in cannot shadow one)."""
    found = dict(BUILTIN)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        found.setdefault(ep.name, ep.value)
    return found


def model_class(name: str) -> type[VideoTextModel]:
    """The class registered as `name`; one InputError line when it is unknown or broken."""
    targets = available()
    if name not in targets:
        raise InputError(f"unknown model {name!r} (known: {', '.join(targets)})", path="--model")
    target = targets[name]
    module, _, attr = target.partition(":")
    try:
        cls = getattr(import_module(module), attr) if attr else import_module(module)
    except Exception as e:  # a plug-in's own import error, whatever it is, is one line naming it
        raise InputError(
            f"model {name!r} ({target}) cannot be imported: {type(e).__name__}: {e}", path="--model"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, VideoTextModel)):
        raise InputError(f"model {name!r} ({target}) is not a vlmbench.models.VideoTextModel", path="--model")
    if getattr(cls, "name", None) != name:
        raise InputError(f"model {name!r} ({target}) calls itself {getattr(cls, 'name', None)!r}", path="--model")
    return cls


def detect(folder: Path) -> str | None:
    """The name of the model whose checkpoint `folder` holds, None when none recognises it."""
    for name in available():
        try:
            cls = model_class(name)
        except InputError:
            continue
        if cls.detect(Path(folder)):
            return name
    return None


def resolve(name: str | None, checkpoint: Path | None) -> type[VideoTextModel]:
    """The model class a command runs: `--model`, else the one `--checkpoint` holds, else VLM. A checkpoint of
    another model than the one named is refused."""
    if checkpoint is not None:
        if not Path(checkpoint).is_dir():
            raise InputError("checkpoint folder not found", path=checkpoint)
        found = detect(Path(checkpoint))
        if found is None:
            raise InputError(
                "not a checkpoint of any known model (no "
                + ", ".join(sorted({c.config_file for c in _loadable()}))
                + ")",
                path=checkpoint,
            )
        if name is not None and name != found:
            raise InputError(f"holds a {found} checkpoint, not a {name} one (--model {name})", path=checkpoint)
        name = found
    return model_class(name or DEFAULT)


def _loadable() -> list[type[VideoTextModel]]:
    out = []
    for name in available():
        try:
            out.append(model_class(name))
        except InputError:
            continue
    return out
