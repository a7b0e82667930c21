"""METEOR 1.5 in one persistent Java process per Python process.

pycocoevalcap's ``Meteor`` starts ``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm`` for every scorer
(several seconds, most of it loading the paraphrase table) and sends one SCORE line per clip, waiting for
each answer. ``MeteorScorer`` runs the same jar with the same options and the same -stdio protocol (one
"SCORE ||| ref ||| ... ||| hyp" line per clip, then one "EVAL ||| stats ||| ..." line), so the values are
pycocoevalcap's; it writes the SCORE lines from a second thread while it reads the answers, and
``shared()`` keeps one process for the life of the Python process: started at the first call, reused by
every later one (one call at a time: a lock), stopped at exit or by ``close_shared()``. A child process
(fork) starts its own. The process holds up to 2 GB (-Xmx2G) while it lives.
"""

from __future__ import annotations

import atexit
import collections
import os
import subprocess
import threading

# METEOR exits on EOF within a second; past this it is killed.
EXIT_TIMEOUT_S = 10.0


def command() -> tuple[list[str], str]:
    """pycocoevalcap's METEOR command line and working directory (its jar's folder)."""
    from pycocoevalcap.meteor import meteor as coco_meteor

    cmd = ["java", "-jar", "-Xmx2G", coco_meteor.METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
    return cmd, os.path.dirname(os.path.abspath(coco_meteor.__file__))


def _stats_line(line: str) -> str:
    """A SCORE answer: METEOR's sufficient statistics, numbers separated by spaces."""
    try:
        [float(x) for x in line.split(" ")]
    except ValueError:
        raise ValueError(f"not a METEOR statistics line: {line[:80]!r}") from None
    return line


class MeteorError(RuntimeError):
    """The METEOR process broke the protocol or died."""


class MeteorScorer:
    """One METEOR process; ``score`` is pycocoevalcap ``Meteor.compute_score``."""

    def __init__(self, cmd: list[str] | None = None, cwd: str | None = None):
        if cmd is None:
            cmd, cwd = command()
        self.cmd = list(cmd)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Drained all the time, so a chatty process never blocks on a full stderr pipe; the tail is kept for errors.
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=200)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line)

    def stderr_tail(self, n: int = 500) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-n:]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def score(self, gts: dict[object, list[str]], res: dict[object, list[str]]) -> tuple[float, list[float]]:
        """(corpus METEOR, per-clip METEOR in gts order), as pycocoevalcap's Meteor computes them."""
        if gts.keys() != res.keys():
            raise ValueError("gts and res have different ids")
        lines = []
        for k in gts:
            if len(res[k]) != 1:
                raise ValueError(f"clip {k!r}: need exactly one hypothesis")
            hyp = res[k][0].replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(gts[k]), hyp)))
        with self.lock:
            try:
                stats = self._exchange(lines, _stats_line)
                scores = self._exchange(["EVAL" + "".join(f" ||| {x}" for x in stats)], float, len(stats) + 1)
            except (ValueError, OSError) as e:  # unparsable output or a dead process
                self.close()
                raise MeteorError(f"METEOR failed ({e!r}); its stderr ends with: {self.stderr_tail()!r}") from e
        return scores[-1], scores[:-1]

    def _exchange(self, lines: list[str], parse, n_answers: int | None = None) -> list:
        """Send the lines (from a thread, so neither pipe can fill up and block) and read the answers, each
        parsed as it comes (so a process that breaks the protocol fails at its first wrong answer)."""
        if not self.alive:
            raise OSError(f"METEOR is not running (exit status {self.proc.returncode})")
        payload = "".join(f"{line}\n" for line in lines).encode()
        failure: list[BaseException] = []

        def write() -> None:
            try:
                self.proc.stdin.write(payload)
                self.proc.stdin.flush()
            except OSError as e:
                failure.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        answers = []
        try:
            for _ in range(len(lines) if n_answers is None else n_answers):
                line = self.proc.stdout.readline()
                if not line:
                    raise OSError("METEOR closed its output")
                answers.append(parse(line.decode().strip()))
        finally:
            if len(answers) < (len(lines) if n_answers is None else n_answers) and self.alive:
                self.proc.kill()  # a broken exchange: a dead process also ends a blocked writer
                self.proc.wait()
            writer.join()
        if failure:
            raise failure[0]
        return answers

    def close(self) -> None:
        """End the process (EOF on stdin ends METEOR's loop; killed if it has not exited in time)."""
        proc = self.proc
        if proc.returncode is None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._drain.join(timeout=EXIT_TIMEOUT_S)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass


_shared: MeteorScorer | None = None
_shared_lock = threading.Lock()


def shared() -> MeteorScorer:
    """This process's METEOR scorer, started on first use (and again if it died or this is a forked child)."""
    global _shared
    with _shared_lock:
        s = _shared
        if s is None or s.pid != os.getpid() or not s.alive:
            if s is not None and s.pid == os.getpid():
                s.close()
            _shared = s = MeteorScorer()
        return s


def close_shared() -> None:
    """Stop this process's METEOR scorer, if one runs (the next call starts a new one)."""
    global _shared
    with _shared_lock:
        s, _shared = _shared, None
    if s is not None and s.pid == os.getpid():
        s.close()


atexit.register(close_shared)
