"""Output files: atomic writes, a writable-folder check before any work, temp-file clean-up after a kill,
and reading tensors without ever unpickling.

Every file goes through a temp file in the same folder, then rename, so readers never see half a file;
the final file gets the user's normal permissions (0666 & ~umask), as if written by open().
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError

TEMP_SUFFIX = ".tmp"
# Every temp name a vlmbench writer can leave behind when killed: atomic_write's `.<name>.<random>.tmp`,
# the checkpoint and suite folders' `.<name>.tmp` / `.<name>.tmp<pid>`, and tempfile's `.tmp` + 8 random
# characters. torch and safetensors write straight to the temp path they are given. Only ever removed inside
# a run's own output folder, and narrow enough to spare a user's own `.tmp_notes`.
TEMP_PATTERNS = (".*.tmp", ".*.tmp[0-9]*", ".tmp????????")


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A write that fails for one of these reasons is the user's disk, not a bug: one line naming the file, exit 2.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO, errno.ENOTDIR}
)
# How Rust's io::Error shows its errno inside a library's own exception (safetensors): Display
# "... (os error 28)", Debug "Os { code: 28, ... }". The errno is read, never the wording around it.
_RUST_ERRNO = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")


def write_errno(e: BaseException) -> int | None:
    """The errno behind a failed write: an OSError's own, or the one a library's exception carries in its text
    (safetensors raises SafetensorError with the Rust io::Error inside). None when there is none."""
    if isinstance(e, OSError):
        return e.errno
    m = _RUST_ERRNO.search(str(e))
    return int(m[1] or m[2]) if m else None


def is_write_error(e: BaseException) -> bool:
    """A full disk, a quota, a read-only file system, no permission...: recognised by errno, not by message."""
    return write_errno(e) in WRITE_ERRNOS


def write_error(path: Path | str, e: BaseException) -> InputError:
    """The one-line InputError for a failed write of `path`."""
    code = write_errno(e)
    reason = os.strerror(code) if code is not None else (getattr(e, "strerror", None) or str(e))
    return InputError(f"cannot write ({reason})", path=path)


def _cannot_write(path: Path, e: OSError) -> InputError:
    return InputError(f"cannot write ({e.strerror or e})", path=path)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path) then rename tmp_path onto path. A failed write (read-only folder, full disk)
    is an InputError naming the file, and leaves neither the temp file nor a partial `path`."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        mode = 0o666 & ~umask()  # mkstemp makes 0600; a result is for the user's group too
        os.chmod(tmp_path, mode)
        write(tmp_path)
        os.chmod(tmp_path, mode)  # again: a writer may replace the file (safetensors writes its own 0600 file)
        os.replace(tmp_path, path)
    except OSError as e:
        raise _cannot_write(path, e) from None
    except Exception as e:
        if is_write_error(e):  # safetensors reports a full disk as its own error type, with the errno inside
            raise write_error(path, e) from None
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_csv(path: str | Path, header: list[str], rows: list[list]) -> Path:
    """A CSV file (header + rows), atomically."""
    import csv

    def write(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    return atomic_write(path, write)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_default) + "\n")


def ensure_writable(out: str | Path, probe_bytes: int = 1 << 16) -> Path:
    """Before any work: can files be written under `out`? Creates nothing that stays: a probe file is written
    (and fsynced, so a full disk shows) in `out` or, if `out` does not exist yet, its nearest existing parent."""
    out = Path(out)
    where = out
    while not where.exists():
        if where.parent == where:
            break
        where = where.parent
    if where.exists() and not where.is_dir():
        raise InputError(f"output folder: {where} is a file, not a folder", path=out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vlmbench-probe.", suffix=TEMP_SUFFIX, dir=where)
    except OSError as e:
        raise InputError(f"output folder is not writable ({e.strerror or e})", path=out) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * probe_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise InputError(f"output folder is not writable ({e.strerror or e})", path=out) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


LOCK_FILE = ".vlmbench.lock"


class FolderLock:
    """A writer's exclusive, non-blocking hold on an output folder, for as long as it writes there: a second vlmbench
    writing into the same folder is refused in one line (InputError) instead of both reporting success with one
    result lost. An flock on `<out>/.vlmbench.lock`: the kernel drops it when the holder dies (kill -9 included),
    so a stale file never blocks. Releasing removes the lock file, and the folder too when this lock created it
    and nothing was written there, so a refused or failed command leaves nothing behind."""

    def __init__(self, out: Path | str, what: str = "--out"):
        self.out, self.what = Path(out), what
        self.path = self.out / LOCK_FILE
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> FolderLock:
        import fcntl

        try:
            self.created = not self.out.exists()
            while True:
                self.out.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
                except FileNotFoundError:  # the last holder removed the empty folder it had made: again
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    self._remove_folder()
                    raise InputError(
                        f"another vlmbench process is writing into this folder (wait for it, or use another {self.what})",
                        path=self.out,
                    ) from None
                try:  # the holder we waited on may have removed the file as it let go: lock the current one
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    self.fd = fd
                    return self
                os.close(fd)
        except OSError as e:
            if not is_write_error(e):
                raise
            raise write_error(self.out, e) from None

    def release(self) -> None:
        import fcntl

        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still held: no one can take the old file meanwhile
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
        self._remove_folder()

    def _remove_folder(self) -> None:
        if self.created:
            try:
                self.out.rmdir()  # only when empty
            except OSError:
                pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_temp_files(folder: str | Path, recursive: bool = True) -> int:
    """Delete the temp files/folders killed writers left in a run's output folder; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    found: set[Path] = set()
    for pattern in TEMP_PATTERNS:
        found.update(folder.rglob(pattern) if recursive else folder.glob(pattern))
    n = 0
    for path in sorted(found, key=lambda p: len(p.parts)):  # parents first; their contents go with them
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        n += 1
    return n


def load_exactly(model, state: dict, weights: Path) -> None:
    """Load `state` into the torch module `model`: every key of one in the other, every shape equal, or one
    InputError naming the weights file."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise InputError(
            f"checkpoint does not fit its config ({str(e).splitlines()[-1].strip()})", path=weights
        ) from None
    if missing or unexpected:
        raise InputError(
            f"checkpoint keys do not match: missing {missing[:3]}, unexpected {unexpected[:3]}", path=weights
        )


def read_safetensors(path: str | Path) -> dict:
    """Tensors of a safetensors file; anything else (a pickle such as torch.save output, a truncated file)
    is refused with one line and is never unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        try:
            with open(path, "rb") as f:
                head = f.read(2)
        except OSError:
            head = b""
        kind = (
            "a pickle or torch.save file, which vlmbench never loads"
            if head[:1] == b"\x80" or head == b"PK"
            else f"{e}"
        )
        raise InputError(f"not a safetensors file ({kind})", path=path) from None


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (feature files, checkpoints and weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# What np.load raises on a damaged .npy: a header numpy cannot parse reaches Python's tokenizer (SyntaxError,
# TokenError), a shape larger than the file fails the memory map (OverflowError, ValueError), a short file EOFError.
NPY_ERRORS = (OSError, ValueError, EOFError, OverflowError, SyntaxError, tokenize.TokenError)


MB = 1 << 20
TEXT_LIMIT = 256 * MB  # CSV and text lists: validation_youcook.csv 0.2 MB, CrossTask's videos.csv 0.3 MB
JSON_LIMIT = 512 * MB  # any other JSON annotation file


def human(n: int) -> str:
    """1536 -> '1.5 KB', 2147483648 -> '2.0 GB'."""
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.0f} {unit}" if size.is_integer() else f"{size:.1f} {unit}"


def open_checked(path: Path, limit: int | None, what: str):
    """The file opened for binary reading, after its size was checked against `limit` (no byte read yet)."""
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by the caller)
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("expected a file, found a folder", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})", path=path) from None
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise InputError("expected a file, found a folder", path=path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError("not a regular file (a pipe or a device?)", path=path)
        if limit is not None and st.st_size > limit:
            raise InputError(
                f"file is {human(st.st_size)}, over the {human(limit)} limit for {what}: not the file meant?",
                path=path,
            )
    except BaseException:
        f.close()
        raise
    return f


def read_text(path: str | Path, limit: int | None = TEXT_LIMIT, what: str = "an annotation text file") -> str:
    """The file as UTF-8 text; a leading byte-order mark (Excel writes one) is dropped. A file over `limit`
    bytes is refused before it is read."""
    path = Path(path)
    with open_checked(path, limit, what) as f:
        try:
            data = f.read()
        except OSError as e:
            raise InputError(f"cannot read ({e.strerror or e})", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise not_utf8(path, data.count(b"\n", 0, e.start) + 1, data[e.start]) from None


def not_utf8(path: Path, line: int, byte: int) -> InputError:
    return InputError(
        f"line {line}: not UTF-8 text (byte 0x{byte:02x}; Latin-1 or another encoding?): save it as UTF-8",
        path=path,
    )


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKey(twice)
    return out


class DuplicateKey(ValueError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(key)


def duplicate_key(path: Path, key: str) -> InputError:
    return InputError(
        f"key {key!r} appears twice in one JSON object (the second would silently replace the first)", path=path
    )


def read_json(path: str | Path, limit: int | None = JSON_LIMIT, what: str = "a JSON annotation file") -> Any:
    """The file's JSON value; the file is refused before parsing when over `limit` bytes. Keys must be unique
    within each object; numbers with thousands of digits and nesting deeper than Python's recursion limit are
    one-line errors, like any other invalid JSON."""
    path = Path(path)
    text = read_text(path, limit, what)
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except DuplicateKey as e:
        raise duplicate_key(path, e.key) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e})", path=path) from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise InputError(f"not valid JSON ({e})", path=path) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", path=path) from None
