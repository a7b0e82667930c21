"""`make mutants`: apply each committed mutant patch to a copy of HEAD and run the CI gate on it.

Per mutant (mutants/manifest.yaml): export HEAD (git archive) to a temp folder, `git apply` the patch, then with
PYTHONPATH at that copy: the metric sanity check (`python -m vlmbench.sanity`, when HEAD has it), pre-training
if the mutant's code runs there (else the unmutated checkpoint, built once into runs/mutants/baseline-<preset>),
then per task `vlmbench run` + the floors its `learned:` block names (`vlmbench baseline`), and `vlmbench compare`
against a copy of results/reference/<preset> holding only the tasks run so far (+ its top-level files, e.g.
noise.json). The first failed check catches the mutant (the rest is skipped unless --all-tasks); a crash or a
time-out is caught too (CI would fail). Table: stdout and runs/mutants/table.md; exit 1 if a mutant escapes or
the control (00, no patch) fails. Uses no vlmbench import: what runs is only ever the copy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MANIFEST = HERE / "manifest.yaml"
PY = sys.executable
# The editable install's meta-path finder maps vlmbench to the working tree ahead of PYTHONPATH: drop it, so the
# copy on PYTHONPATH is what runs. The package has no __main__, hence -c.
PRELUDE = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if not getattr(f, '__module__', '').startswith('__editable__')]; "
)
CLI = PRELUDE + "from vlmbench.cli import main; sys.argv[0] = 'vlmbench'; main()"
SANITY = PRELUDE + "import runpy; runpy.run_module('vlmbench.sanity', run_name='__main__', alter_sys=True)"
TIMEOUT_S = 1800  # one step; a hang fails CI, so it catches
# compare output word -> the check it names, most specific first
VERDICTS = [
    ("differs", "count/recipe differs"),
    ("below floor", "below floor"),
    ("beyond noise", "changed beyond noise"),
    ("regressed", "regressed"),
    ("missing", "missing metric"),
    ("interval collapsed", "interval collapsed"),  # last: a broken model's intervals collapse too
]


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    return yaml.safe_load(path.read_text())["mutants"]


def task_files(root: Path = REPO) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((root / "tasks").glob("*.yaml"))}


def floor_dir(task_dir: Path, kind: str) -> Path:
    """Where a task's floor baseline goes (beside its result, as `vlmbench suite` lays them out)."""
    return task_dir / f"floor-{kind}"


def needs(task: str, specs: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(floor kinds, other tasks) that the task's `learned:` margins are measured over."""
    overs = [str(x["over"]) for x in specs[task].get("learned") or [] if "over" in x]
    return sorted({o for o in overs if o not in specs}), [o for o in overs if o in specs]


def plan(tasks: list[str], specs: dict[str, dict]) -> list[str]:
    """The mutant's tasks in order, each preceded by any task its margin is measured over."""
    out: list[str] = []
    for t in tasks:
        for dep in needs(t, specs)[1]:
            if dep not in out:
                out.append(dep)
        if t not in out:
            out.append(t)
    return out


def head_sha() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def export_head(dest: Path, patch: Path | None, commit: str = "HEAD") -> None:
    """HEAD's package + tasks + baselines laid out as an installed package (vlmbench/tasks, vlmbench/baselines:
    the editable install would otherwise map those two to the working tree), then the patch applied."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "vlmbench", "tasks", "baselines"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    if patch is not None:  # before the move: a patch names repository paths (vlmbench/..., tasks/...)
        subprocess.run(
            ["git", "apply", str(Path(patch).resolve())], cwd=dest, check=True, capture_output=True, text=True
        )
    for sub in ("tasks", "baselines"):
        shutil.rmtree(dest / "vlmbench" / sub, ignore_errors=True)
        os.replace(dest / sub, dest / "vlmbench" / sub)


class Step:
    """Runs commands against one source copy, logging each to log_dir/<name>.log."""

    def __init__(self, src: Path, log_dir: Path):
        self.env = {**os.environ, "PYTHONPATH": str(src)}
        self.src = src  # also the cwd: `python -c` puts the cwd first on sys.path
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, args: list[str], timeout: int = TIMEOUT_S) -> tuple[int, str]:
        log = self.log_dir / f"{name}.log"
        try:
            r = subprocess.run([PY, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.src)
            rc, text = r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired as e:
            rc, text = 124, f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}"
        log.write_text(text)
        return rc, text

    def vlmbench(self, name: str, *args: str) -> tuple[int, str]:
        return self(name, ["-c", CLI, *args])


def touched(patch: Path) -> list[str]:
    """The files a patch changes (its `+++ b/<path>` lines)."""
    return [ln[6:].strip() for ln in patch.read_text().splitlines() if ln.startswith("+++ b/")]


# What vlmbench.sanity runs: the metric functions, the test-time window averaging, the model's masks, halves,
# pooling and tokenisation, and itself.
SANITY_COVERS = (
    "vlmbench/metrics/",
    "vlmbench/adapters/windows.py",
    "vlmbench/model/",
    "vlmbench/sanity",
    "vlmbench/train/finetune.py",
    "vlmbench/train/optim.py",
)


def reaches_metrics(patch: Path | None) -> bool:
    """The metric sanity check only sees SANITY_COVERS; the control (no patch) runs it."""
    return patch is None or any(f.startswith(SANITY_COVERS) for f in touched(patch))


def verdict(output: str) -> str:
    """The check a failing compare names: read from the table rows' status (last) cells, else anywhere."""
    cells = [line.strip().strip("|").split("|")[-1] for line in output.splitlines() if line.strip().startswith("|")]
    for text in ("\n".join(cells).lower(), output.lower()):
        for word, check in VERDICTS:
            if word in text:
                return check
    return "gate failed"


def refused_as_other_experiment(rc: int, output: str) -> bool:
    """compare's exit 2 naming an identity or protocol field that differs (the data the run read, its split, its
    signature): CI fails on it as on a regression (.ci/run exits with compare's status), so the gate caught it. Any
    other exit 2 (a broken reference copy, a crash) is the harness's error."""
    return rc == 2 and " differs (new " in output


def refusal(output: str) -> str:
    """'refused: data_fingerprint differs' from compare's one-line refusal."""
    m = re.search(r"(signature field \S+|\S+) differs \(new ", output)
    return f"refused: {m.group(1)} differs" if m else "refused"


def reference_subset(ref: Path, tasks: list[str], dest: Path) -> Path:
    """A copy of the reference holding only `tasks` (+ every top-level file, e.g. noise.json)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in ref.iterdir():
        if p.is_file():
            shutil.copy2(p, dest / p.name)
    for t in tasks:
        shutil.copytree(ref / t, dest / t)
    return dest


# What the unmutated pre-training's checkpoint depends on (git trees/blobs of HEAD): a commit that changes none
# of them (a task adapter, a metric, the gate) reuses the baseline checkpoint.
PRETRAIN_INPUTS = ("vlmbench/model", "vlmbench/train", "vlmbench/data", "vlmbench/config.py")


def pretrain_inputs(commit: str) -> dict[str, str]:
    out = {}
    for path in PRETRAIN_INPUTS:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", f"{commit}:{path}"], capture_output=True, text=True)
        out[path] = r.stdout.strip() if r.returncode == 0 else "absent"
    return out


def gate_seeds(preset: str) -> list[int]:
    """The seeds CI's gate runs (Makefile GATE_SEEDS: eight for ci, whose tolerances are for their mean; else 0)."""
    return list(range(8)) if preset == "ci" else [0]


# What a single seed's run fails on its own, whatever the other seeds give: compare checks every seed's counts,
# recipe and intervals, and a metric or result one seed lacks is missing from the mean. Such a failure on the
# first seed is CI's failure too; the tolerance checks (regressed, beyond noise, below floor) need every seed.
PER_SEED = ("count/recipe differs", "missing metric", "interval collapsed")


def build_baseline(preset: str, out: Path, say, head: str, seed: int = 0) -> Path:
    """The unmutated pre-training of one gate seed, reused while its inputs (PRETRAIN_INPUTS at the commit), the
    preset and the seed are unchanged (stamp.json)."""
    stamp = {"pretrain_inputs": pretrain_inputs(head), "preset": preset, "seed": seed}
    model = out / "pretrain" / "model"
    if (out / "stamp.json").is_file() and json.loads((out / "stamp.json").read_text()) == stamp and model.is_dir():
        say(f"baseline: reusing {model}")
        return model
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="vlmbench-mutant-base-") as tmp:
        src = Path(tmp) / "src"
        export_head(src, None, head)
        t0 = time.perf_counter()
        say(f"baseline: pre-training (preset {preset}) into {out / 'pretrain'}")
        rc, text = Step(src, out / "logs").vlmbench(
            "pretrain",
            "pretrain",
            "--preset",
            preset,
            "--out",
            str(out / "pretrain"),
            "--overwrite",
            "--no-progress",
            f"seed={seed}",
        )
        if rc != 0:
            raise SystemExit(
                f"baseline pre-training failed (exit {rc}); see {out / 'logs' / 'pretrain.log'}:\n" + text[-2000:]
            )
        say(f"baseline: {time.perf_counter() - t0:.0f} s")
    (out / "stamp.json").write_text(json.dumps(stamp))
    return model


def per_seed_verdict(output: str) -> str | None:
    """The first PER_SEED check among a failing compare's rows (one seed's run), else None."""
    cells = "\n".join(
        line.strip().strip("|").split("|")[-1].lower() for line in output.splitlines() if line.strip().startswith("|")
    )
    return next((check for word, check in VERDICTS if check in PER_SEED and word in cells), None)


class _Broken(Exception):
    """The harness, not the mutant, failed (a compare exit other than 0, 1 or an identity refusal)."""


def run_mutant(
    m: dict,
    *,
    preset: str,
    ref: Path,
    base_models: dict[int, Path],
    out: Path,
    all_tasks: bool,
    say,
    head: str = "HEAD",
) -> dict:
    """Applies and gates one mutant as CI does: every gate seed (base_models' keys) runs each task from its own
    seed's pre-training, and compare judges their mean. A per-seed check (PER_SEED, an identity refusal, a crash)
    failing on the first seed already fails CI, so the other seeds are then not run. Returns its table row."""
    t0 = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    row = {"mutant": m["id"], "description": m["description"], "tasks": [], "check": "none", "caught": False}
    failed: list[str] = []
    seeds = list(base_models)
    new = out / "new"

    def fail(check: str) -> bool:
        failed.append(check)
        return not all_tasks  # True: stop here

    with tempfile.TemporaryDirectory(prefix=f"vlmbench-mutant-{m['id']}-") as tmp:
        src = Path(tmp) / "src"
        patch = HERE / m["patch"] if m.get("patch") else None
        try:
            export_head(src, patch, head)
        except subprocess.CalledProcessError as e:
            row.update(check=f"patch does not apply: {(e.stderr or '').strip()[:200]}", error=True)
            return row
        step = Step(src, out / "logs")
        specs = task_files(src / "vlmbench")  # the copy's own task files (HEAD's)

        def gate(name: str, folder: Path, done: list[str], first: bool) -> str | None:
            """compare folder with the reference's `done` tasks: the check that fails, or None. first: one seed's
            run, of which only the PER_SEED checks and refusals count."""
            rc, text = step.vlmbench(
                name, "compare", "--require-floors", str(folder), str(reference_subset(ref, done, out / "ref"))
            )
            if refused_as_other_experiment(rc, text):
                return refusal(text)
            if rc not in (0, 1):
                raise _Broken(f"compare refused (exit {rc}): {text.strip().splitlines()[-1][:200]}")
            if rc == 0:
                return None
            return per_seed_verdict(text) if first else verdict(text)

        def gated(done: list[str], label: str, first: bool) -> bool:
            """Runs the gate after a step; True when the mutant is caught and the run should stop."""
            folder = new / f"seed{seeds[0]}" if first else new
            check = gate(f"compare-{label}{'-first' if first else ''}", folder, done, first)
            return check is not None and fail(check)

        stop = False
        has_sanity = (src / "vlmbench" / "sanity.py").is_file() or (src / "vlmbench" / "sanity").is_dir()
        if has_sanity and reaches_metrics(patch):
            rc, _ = step("sanity", ["-c", SANITY])
            if rc != 0:
                stop = fail("sanity" if rc != 124 else "timed out")
        checkpoints = dict(base_models)
        done: list[str] = []
        try:
            if not stop and m.get("pretrain"):
                for i, s in enumerate(seeds):
                    rc, _ = step.vlmbench(
                        f"pretrain-seed{s}",
                        "pretrain",
                        "--preset",
                        preset,
                        "--out",
                        str(out / f"pretrain-seed{s}"),
                        "--overwrite",
                        "--no-progress",
                        f"seed={s}",
                    )
                    checkpoints[s] = out / f"pretrain-seed{s}" / "model"
                    if rc != 0:
                        stop = fail("crashed (pretrain)" if rc != 124 else "timed out")
                        break
                    own = out / f"pretrain-seed{s}" / "result.json"  # its loss, when it has one
                    if own.is_file() and (ref / "pretrain").is_dir():
                        (new / f"seed{s}" / "pretrain").mkdir(parents=True, exist_ok=True)
                        shutil.copy2(own, new / f"seed{s}" / "pretrain" / "result.json")
                        if i == 0 and len(seeds) > 1 and (stop := gated(["pretrain"], "pretrain", first=True)):
                            break
                if not stop and (new / f"seed{seeds[0]}" / "pretrain").is_dir():
                    row["tasks"].append("pretrain")
                    done.append("pretrain")
                    stop = gated(done, "pretrain", first=False)
            for task in [] if stop else plan(m["tasks"], specs):
                if not (ref / task).is_dir():
                    raise SystemExit(f"{ref} has no {task}/ (build the reference first)")
                row["tasks"].append(task)
                crashed = False
                for i, s in enumerate(seeds):
                    task_dir = new / f"seed{s}" / task
                    rc, _ = step.vlmbench(
                        f"run-{task}-seed{s}",
                        "run",
                        "--task",
                        task,
                        "--preset",
                        preset,
                        "--checkpoint",
                        str(checkpoints[s]),
                        "--out",
                        str(task_dir),
                        "--overwrite",
                        "--no-progress",
                        f"seed={s}",
                    )
                    if rc != 0:
                        crashed = True
                        stop = fail(f"crashed ({task})" if rc != 124 else "timed out")
                        break
                    for kind in needs(task, specs)[0]:
                        rc, _ = step.vlmbench(
                            f"floor-{task}-{kind}-seed{s}",
                            "baseline",
                            "--task",
                            task,
                            "--kind",
                            kind,
                            "--preset",
                            preset,
                            "--seed",
                            str(s),
                            "--out",
                            str(floor_dir(task_dir, kind)),
                        )
                        if rc != 0:
                            crashed = True
                            stop = fail(f"crashed (floor {kind})")
                    if crashed:
                        break
                    if i == 0 and len(seeds) > 1 and (stop := gated([*done, task], task, first=True)):
                        break
                if stop:
                    break
                if crashed:
                    continue
                done.append(task)
                if gated(done, task, first=False):
                    break
        except _Broken as e:
            row.update(check=str(e), error=True)
    if failed:
        row["check"] = failed[0] if len(set(failed)) == 1 else ", ".join(dict.fromkeys(failed))
        row["caught"] = True
    row["minutes"] = round((time.perf_counter() - t0) / 60, 1)
    return row


def table(rows: list[dict]) -> str:
    head = "| mutant | description | tasks run | check failed | caught | minutes |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['mutant']} | {r['description']} | {', '.join(r['tasks']) or '-'} | {r['check']} | "
        f"{'yes' if r['caught'] else 'no'}{' (control: must be no)' if r['mutant'] == '00' else ''} | "
        f"{r.get('minutes', 0):.1f} |\n"
        for r in rows
    )
    return head + body


def escaped(rows: list[dict]) -> list[str]:
    """Ids that make the run fail: an escaped mutant, a caught control, or a machinery error."""
    return [r["mutant"] for r in rows if r.get("error") or (r["caught"] == (r["mutant"] == "00"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated mutant ids, e.g. 03,07 (default: all)")
    ap.add_argument("--preset", default="ci", help="pre-training/run preset (default ci; smoke for a dry run)")
    ap.add_argument("--ref", type=Path, help="reference folder (default results/reference/<preset>)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "mutants")
    ap.add_argument("--all-tasks", action="store_true", help="run every listed task even after a failed check")
    ap.add_argument("--seeds", default="", help="comma-separated gate seeds (default: CI's, gate_seeds)")
    a = ap.parse_args(argv)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    mutants = load_manifest()
    if a.only:
        want = [x.strip().zfill(2) for x in a.only.split(",") if x.strip()]
        unknown = sorted(set(want) - {m["id"] for m in mutants})
        if unknown:
            say(f"error: unknown mutant ids {', '.join(unknown)} (known: {', '.join(m['id'] for m in mutants)})")
            return 2
        mutants = [m for m in mutants if m["id"] in want]
    ref = (a.ref or REPO / "results" / "reference" / a.preset).resolve()
    a.out = a.out.resolve()
    if not ref.is_dir():
        say(f"error: no reference folder {ref} (build it first, e.g. the gate's update-reference)")
        return 2
    head = head_sha()  # pinned: commits landing during the run do not mix into it
    t0 = time.perf_counter()
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()] or gate_seeds(a.preset)
    bases = {s: build_baseline(a.preset, a.out / f"baseline-{a.preset}-seed{s}", say, head, s) for s in seeds}
    rows = []
    for m in mutants:
        say(f"mutant {m['id']}: {m['description']}")
        row = run_mutant(
            m,
            preset=a.preset,
            ref=ref,
            base_models=bases,
            out=a.out / a.preset / m["id"],
            all_tasks=a.all_tasks,
            say=say,
            head=head,
        )
        say(f"mutant {m['id']}: {row['check']} ({'caught' if row['caught'] else 'not caught'}, {row['minutes']} min)")
        rows.append(row)
    text = table(rows) + (
        f"\nPreset {a.preset}, gate seeds {', '.join(map(str, seeds))}, reference {ref}, commit {head[:10]}; "
        f"{(time.perf_counter() - t0) / 60:.1f} min in all.\n"
    )
    a.out.mkdir(parents=True, exist_ok=True)
    tmp = a.out / ".table.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, a.out / "table.md")
    (a.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(text)
    bad = escaped(rows)
    if bad:
        say(f"mutants: FAILED for {', '.join(bad)} (escaped, control caught, or error)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
