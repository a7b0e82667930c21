"""The `vlmbench` command line. Thin: each verb parses its arguments and calls one library function.

Bad input (an InputError anywhere below) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from .config import PRESETS, PretrainConfig, RunConfig, help_text
from .errors import InputError

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=HELP,
    help="vlmbench: pre-train, fine-tune and evaluate VLM (Xu et al., 2021) the paper's way.",
)
data_app = typer.Typer(
    add_completion=False, no_args_is_help=True, context_settings=HELP, help="Toy data and data checks."
)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"vlmbench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """vlmbench: pre-train, fine-tune and evaluate VLM (Xu et al., 2021) the paper's way."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread by main()'s handler so that every `finally` runs (locks
    released, logs closed, a half-run cleaned up) before the one line saying what was kept."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# argv of this process (main() sets it; the in-process test runner leaves it None): what a rerun repeats.
_ARGV: list[str] | None = None


def command_line(add: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> str:
    """The command this process is running, as a user types it (`vlmbench ...`), with flags added or dropped."""
    args = [a for a in (_ARGV if _ARGV is not None else sys.argv[1:]) if a not in drop]
    args += [a for a in add if a not in args]
    return shlex.join(["vlmbench", *args])


def error_line(message: str) -> None:
    """'error: <message>' as one line on stderr. The message is user data (paths, keys, video ids): printed
    verbatim, never read as rich markup, so `[/b]` or 'segment [start, end]' come out as written."""
    one = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err.print(Text.assemble(("error:", "red"), " ", one), highlight=False, soft_wrap=True)


def guarded(fn=None, *, interrupted: Callable[[dict], str] | None = None):
    """InputError -> 'error: <file/key>: <problem>' on stderr, exit 2. A write the disk refused (full, quota,
    read-only) anywhere below is the same one line. SIGINT / SIGTERM -> one line 'interrupted (SIGINT): <what
    was kept and the command that resumes>' (interrupted(kwargs) says it), exit 128 + the signal."""
    if fn is None:
        return lambda f: guarded(f, interrupted=interrupted)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .io import is_write_error, write_error

        try:
            return fn(*args, **kwargs)
        except InputError as e:
            error_line(str(e))
            raise typer.Exit(2) from None
        except OSError as e:
            if not is_write_error(e):
                raise
            error_line(str(write_error(e.filename or "output", e)))
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            try:
                what = interrupted(kwargs) if interrupted else f"rerun with: {command_line()}"
            except Exception:  # noqa: BLE001  (the message must not fail: say at least how to rerun)
                what = f"rerun with: {command_line()}"
            err.print(Text(f"interrupted ({signal.Signals(signum).name}): {what}"), highlight=False, soft_wrap=True)
            raise typer.Exit(128 + signum) from None

    return wrapper


def say(line: str) -> None:
    err.print(line, highlight=False, markup=False, soft_wrap=True)


def _pretrain_interrupted(kw: dict) -> str:
    from .train import checkpoint as ckpt

    out = Path(kw["out"])
    resume = command_line(add=("--resume",), drop=("--overwrite", "--no-resume"))
    last = ckpt.latest(out / "checkpoints")
    if last is None:
        return f"no checkpoint saved yet in {out / 'checkpoints'}; start again with: {resume}"
    return f"checkpoint step {int(last.name.rpartition('_')[2])} saved in {last}; resume with: {resume}"


def _run_interrupted(kw: dict) -> str:
    return f"nothing saved (a run is atomic); rerun with: {command_line()}"


def _kept(what: str) -> Callable[[dict], str]:
    """Commands that skip or resume what is done: say what is kept, and that the same command resumes."""
    return lambda kw: f"{what.format(out=kw['out'])}; resume with the same command: {command_line()}"


MODEL_OPTION = typer.Option(
    None, "--model", help="model name (`vlmbench models`; default: what --checkpoint holds, else vlm)"
)
LIMIT_OPTION = typer.Option(None, "--limit", help="score only the first N test examples (marked in the result)")
DEVICE_OPTION = typer.Option(None, "--device", help="cpu | cuda | cuda:N (default: cuda when available)")

# Each command's key list comes from vlmbench.config, the schema that also validates the keys.
PRETRAIN_KEYS_HELP = help_text(PretrainConfig, "Pre-training keys")
RUN_KEYS_HELP = help_text(RunConfig, "Fine-tune/eval keys")


@app.command(epilog=PRETRAIN_KEYS_HELP)
@guarded(interrupted=_pretrain_interrupted)
def pretrain(
    pairs: list[str] = typer.Argument(None, help="key=value overrides, e.g. mmm=0.3 loss=mfm-mlm steps=100"),
    data: Path | None = typer.Option(
        None, help="HowTo100M folder (captions.json or captions/ + features/); default: the toy world"
    ),
    out: Path = typer.Option(Path("runs/pretrain"), help="output folder (log.jsonl, checkpoints/, model/)"),
    backbone: str | None = typer.Option(None, help="'default' (MiniLM-L6), 'tiny', or a local HF BERT folder"),
    preset: str | None = typer.Option(
        None, help=f"{' | '.join(PRESETS)} (default: toy on the toy world, paper on real data)"
    ),
    resume: bool = typer.Option(False, help="continue from the last checkpoint in --out"),
    overwrite: bool = typer.Option(
        False, help="replace the pre-training run already in --out (without this or --resume such a folder is refused)"
    ),
    progress: bool = typer.Option(True, help="show a progress bar"),
    workers: int | None = typer.Option(
        None,
        min=0,
        help="data loader worker processes per rank (default: 0 on "
        "CPU, up to 4 on a GPU); the batches are the same for any number",
    ),
    exclude_test_videos: bool = typer.Option(
        False,
        "--exclude-test-videos",
        help="leave out of pre-training every video that is a task's test video under the data root beside the "
        "HowTo100M folder (the authors did not; see README)",
    ),
):
    """Pre-train VLM (MFM-MLM / MMM masking, masked token loss) on HowTo100M-format data."""
    from .config import pretrain_config
    from .data.prepared import prepared_from_toy
    from .data.toy import is_toy_dataset

    pairs = list(pairs or []) + ([f"backbone={backbone}"] if backbone else [])
    toy_data = (
        data is None or is_toy_dataset(data) or is_toy_dataset(Path(data) / "howto100m") or prepared_from_toy(data)
    )
    cfg = pretrain_config(
        ("toy" if toy_data else "paper") if preset is None else preset, pairs
    )  # bad keys: refused before torch loads
    from .train.pretrain import pretrain as run_pretrain

    summary = run_pretrain(
        cfg,
        out,
        data=data,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        say=say,
        workers=workers,
        exclude_test_videos=exclude_test_videos,
    )
    say(f"Pre-trained {summary['final_step']} steps (preset {cfg.preset}); model in {out / 'model'}")
    if summary.get("world_size", 1) > 1:
        from .train.distributed import exit_now

        exit_now(0)  # a torchrun worker: nothing left to do, and the teardown can hang (see shutdown)


@app.command(epilog=RUN_KEYS_HELP)
@guarded(interrupted=_run_interrupted)
def run(
    task: str = typer.Option(..., "--task", help="task name (see `vlmbench tasks`)"),
    pairs: list[str] = typer.Argument(None, help="key=value overrides of the fine-tune/eval config, e.g. epochs=3"),
    data: Path | None = typer.Option(None, help="data root (see README); default: the toy world"),
    checkpoint: Path | None = typer.Option(None, help="VLM checkpoint folder (vlm_config.json + model.safetensors)"),
    backbone: str | None = typer.Option(None, help="backbone when no --checkpoint: default | tiny | folder"),
    out: Path | None = typer.Option(None, help="run folder (default runs/<task>-<time>)"),
    preset: str | None = typer.Option(
        None,
        help="paper | toy | smoke | ci: the task file's presets (default: toy on the toy world, paper on real data)",
    ),
    allow_missing: bool = typer.Option(False, help="skip examples whose features are missing (counted in the result)"),
    overwrite: bool = typer.Option(
        False, help="replace the run already in --out (without it such a folder is refused)"
    ),
    progress: bool = typer.Option(True, help="show progress bars"),
    model: str | None = MODEL_OPTION,
    limit: int | None = LIMIT_OPTION,
    device: str | None = DEVICE_OPTION,
    no_meteor: bool = typer.Option(False, "--no-meteor", help="captioning: skip METEOR, no Java (= skip_meteor=true)"),
):
    """Fine-tune (unless zero-shot), predict, save predictions, score, write result.json."""
    from .runner import run as run_task

    pairs = (
        list(pairs or []) + ([f"backbone={backbone}"] if backbone else []) + (["skip_meteor=true"] if no_meteor else [])
    )
    common = dict(model=model, limit=limit, device_name=device)
    seeds = [p.partition("=")[2] for p in pairs if p.partition("=")[0].strip() == "seed" and "," in p]
    if seeds:  # seed=0,1,2: one run per seed, then mean ± std across them
        from datetime import datetime

        from .reporting import render
        from .reporting.tables import seed_table

        base = out or Path("runs") / f"{task}-seeds-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        rest = [p for p in pairs if p.partition("=")[0].strip() != "seed"]
        results = []
        for s in dict.fromkeys(v.strip() for v in seeds[0].split(",")):
            result, _ = run_task(
                task,
                data=data,
                checkpoint=checkpoint,
                out=base / f"seed-{s}",
                preset=preset,
                pairs=rest + [f"seed={s}"],
                allow_missing=allow_missing,
                progress=progress,
                say=say,
                overwrite=overwrite,
                **common,
            )
            _print_metrics(result)
            results.append(result)
        out_console_write(render.terminal([seed_table(results)]))
        for sig in dict.fromkeys(r.signature_string for r in results if r.signature_string):
            out_console_write(f"signature: {sig}\n")
        say(f"Results: {base}/seed-*/result.json")
        return
    result, extra = run_task(
        task,
        data=data,
        checkpoint=checkpoint,
        out=out,
        preset=preset,
        pairs=pairs,
        allow_missing=allow_missing,
        progress=progress,
        say=say,
        overwrite=overwrite,
        **common,
    )
    _print_metrics(result)
    for title, rows in extra.get("examples", {}).items():
        console.print(Text(title, "bold"))
        for row in rows:
            console.print("  " + "  |  ".join(str(v) for v in row), highlight=False, markup=False)
    say(f"Result: {result.path}")


def _print_metrics(result) -> None:
    """A run's metrics, one per row with its 95% interval (whole at any terminal width); the toy world or the
    smoke preset named in the title, and a smoke run's meaning said once below it."""
    from .reporting import render
    from .reporting.tables import run_table

    table, note = run_table(result)
    out_console_write(render.terminal([table]) + (render.terminal([], heading=note) if note else ""))
    if result.signature_string:
        out_console_write(f"signature: {result.signature_string}\n")


@app.command()
@guarded
def score(predictions: Path = typer.Argument(..., help="a predictions.npz written by `vlmbench run`")):
    """Re-score a predictions file offline (no model needed)."""
    from .runner import score_file

    task, metrics, _, cis = score_file(predictions)
    console.print(Text(task, "bold"))
    for k, v in metrics.items():
        ci = f"  95% CI [{cis[k][0]:.4f}, {cis[k][1]:.4f}]" if k in cis else ""
        console.print(f"  {k}: {v:.4f}{ci}" if isinstance(v, float) else f"  {k}: {v}", highlight=False, markup=False)


@app.command()
@guarded
def tasks(
    data: Path | None = typer.Option(None, help="data root to check for the files each task needs"),
    show: str | None = typer.Option(None, "--show", help="print one task's resolved recipe and protocol"),
    preset: str = typer.Option("paper", help="preset resolved by --show"),
):
    """The task registry: task, dataset, metrics, files it needs, and whether they are present."""
    from rich.table import Table

    from . import registry

    if show:
        from .adapters.protocol import describe
        from .config import run_config

        spec = registry.get(show)
        for key, value in describe(spec, run_config(spec, preset)):
            console.print(f"{key}: {value}", markup=False, highlight=False, soft_wrap=True)
        return

    table = Table(title=Text("vlmbench tasks" + (f" (data: {data})" if data else "")))
    for col in ("task", "family", "dataset", "metrics", "needs"):
        table.add_column(col, overflow="fold")  # long paths wrap, never cut
    if data:
        table.add_column("present", overflow="fold")
    for spec in registry.all_tasks().values():
        needs = [f"{spec.dataset}/{p}" for p in spec.files.values()] + [f"{spec.dataset}/{spec.features}/"]
        row = [Text(v) for v in (spec.name, spec.family, spec.dataset, ", ".join(spec.metrics), "\n".join(needs))]
        if data:
            paths = list(spec.paths(data).values()) + [spec.feature_dir(data)]
            missing = [str(p.relative_to(data)) for p in paths if not p.exists()]
            row.append(
                Text("yes", "green") if not missing else Text.assemble(("missing", "red"), " ", ", ".join(missing))
            )
        table.add_row(*row)
    broken = registry.broken_tasks()
    for name in broken:  # listed, not fatal: the other tasks work
        table.add_row(Text(name), Text("broken task file", "red"), *[Text("-")] * (len(table.columns) - 2))
    console.print(table)
    for problem in broken.values():
        error_line(str(problem))
    if broken:
        raise typer.Exit(2)


@app.command()
@guarded
def models():
    """Every model vlmbench can evaluate (built-in and plug-ins), its capabilities and the tasks it can run."""
    from rich.table import Table

    from . import registry
    from .adapters import adapter_class
    from .models import catalog
    from .models.interface import missing

    table = Table(title="vlmbench models (--model NAME; plug-ins: entry-point group vlmbench.models)")
    for col in ("model", "class", "capabilities", "tasks it can run"):
        table.add_column(col, overflow="fold")
    for name, target in catalog.available().items():
        try:
            cls = catalog.model_class(name)
        except InputError as e:
            table.add_row(Text(name), Text(target), Text("cannot be loaded", "red"), Text(e.problem))
            continue
        runs = [
            t
            for t, spec in registry.all_tasks().items()
            if not missing(adapter_class(spec.family).needs, cls.capabilities)
        ]
        table.add_row(
            *map(
                Text,
                (
                    name,
                    f"{cls.__module__}.{cls.__qualname__}",
                    ", ".join(sorted(cls.capabilities)),
                    ", ".join(runs) or "none",
                ),
            )
        )
    console.print(table)


@data_app.command("toy")
@guarded
def data_toy(
    out: Path = typer.Option(..., help="folder to write the toy world into"),
    seed: int = typer.Option(0, help="seed (same seed, same bytes)"),
):
    """Write the toy world (HowTo100M + every task dataset) in the real formats."""
    from .data import toy
    from .io import ensure_writable

    ensure_writable(out)  # a file in the way, a read-only or full disk: one line before anything is written
    for name in toy.WRITERS:
        path = toy.write_dataset(name, out / name, seed=seed)
        say(f"wrote {path}")


@data_app.command("prepare-howto100m")
@guarded(interrupted=_kept("finished shards are kept in {out}"))
def data_prepare_howto100m(
    data: Path = typer.Option(
        ..., help="HowTo100M folder (captions.json / raw_caption.json or captions/ of <vid>.csv, and features/)"
    ),
    out: Path = typer.Option(..., help="folder for the prepared corpus (then: vlmbench pretrain --data OUT)"),
    backbone: str = typer.Option(
        "default",
        help="whose tokenizer: 'default' (MiniLM-L6 = bert-base-uncased vocabulary), 'tiny', or a local HF BERT folder",
    ),
    workers: int = typer.Option(1, min=1, help="processes, each preparing one shard of videos at a time"),
):
    """Clean, tokenise and index the HowTo100M captions once: flat memory-mapped arrays that pre-training reads.

    Resumable: a killed run continues with the shards it had not finished. The summary gives the counts before and after (rolling-ASR lines merged, empty lines, cuts, skipped videos).
    """  # noqa: E501
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .data.prepared import prepare
    from .io import FolderLock, ensure_writable

    ensure_writable(out)
    with (
        FolderLock(out),
        Progress(
            TextColumn("prepare"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("videos"),
            TimeRemainingColumn(),
            console=err,
        ) as bar,
    ):
        task = bar.add_task("prepare", total=None)
        prep = prepare(
            data,
            out,
            backbone=backbone,
            workers=workers,
            say=say,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table(title=Text(f"prepared HowTo100M: {out}"))
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in prep.counts.items():
        table.add_row(key.replace("_", " "), f"{value:,}")
    console.print(table)
    say(prep.captions_report())


@data_app.command("check")
@guarded
def data_check(
    data: Path = typer.Option(..., help="data root"),
    task: list[str] | None = typer.Option(
        None, help="check only this task (repeatable; howto100m-pretrain is the pre-training folder)"
    ),
    allow_missing: bool = typer.Option(
        False, help="a task lacking some feature files is usable, as for `run --allow-missing`"
    ),
):
    """Per task and for the HowTo100M pre-training folder: files present, parsed as a run reads them, and every feature file read whole (NaN/inf by file and row).

    Exit code 0 when every task checked is usable, 2 when any file is malformed, 3 when none is malformed but files or features are missing.
    """  # noqa: E501  (one paragraph per line: the help renders it wrapped to the terminal)
    from rich.table import Table

    from .checks import check_data, exit_code

    table = Table(title=Text(f"data check: {data}"))
    for col in ("task", "status", "details"):
        table.add_column(col, overflow="fold")  # long paths wrap, never cut
    rows = check_data(data, task, allow_missing)
    for row in rows:
        colour = {"ok": "green", "missing": "yellow", "malformed": "red"}[row.status]
        table.add_row(Text(row.task), Text(row.status, colour), Text(row.details))  # user data: never markup
    console.print(table)
    code = exit_code(rows)
    if code:
        raise typer.Exit(code)


# ---- ablations, suites, reports, regression checks, floor baselines ------------------------------------------


@app.command(
    epilog=f"Every value of every axis is checked against these keys before any cell runs.\n\n"
    f"{PRETRAIN_KEYS_HELP}\n\n{RUN_KEYS_HELP}"
)
@guarded(interrupted=_kept("finished cells are kept in {out}, an interrupted one resumes from its checkpoint"))
def ablate(
    pairs: list[str] = typer.Argument(
        None,
        help="key=v1,v2,... per varied key (any pre-training or fine-tune/eval "
        "config key; seed/backbone/... apply to both), e.g. mmm=0,0.3,0.5 loss=vlm,mfm-mlm",
    ),
    tasks: str = typer.Option("youcook2-retrieval,youcook2-caption", help="comma-separated tasks run in every cell"),
    data: Path | None = typer.Option(None, help="data root (HowTo100M + the tasks' datasets); default: the toy world"),
    out: Path = typer.Option(Path("runs/ablate"), help="grid folder: cells/<hash>/, grid.md, grid.csv, plots/"),
    jobs: int | None = typer.Option(
        None, help="cells run in parallel processes (default: one per CPU core, 1 on a GPU)"
    ),
    preset: str | None = typer.Option(
        None,
        help="paper | toy | ci | smoke, for pre-training and every task "
        "(default: ci on the toy world, paper on real data)",
    ),
    progress: bool = typer.Option(True, help="show the cells done / running / left"),
):
    """Pre-train and evaluate every combination of the given values (an ablation grid).

    Done cells are skipped, interrupted ones resume, several processes share one folder safely; the grid is
    printed beside the paper's Tables 8/9, written as grid.md / grid.csv, and plotted."""
    from .ablate import ablate as run_ablate
    from .reporting.grid import summarise

    run = run_ablate(
        list(pairs or []),
        tasks=[t.strip() for t in tasks.split(",") if t.strip()],
        data=data,
        out=out,
        jobs=jobs,
        preset=preset,
        progress=progress,
        say=say,
    )
    summary = summarise(run)
    out_console_write(summary.terminal)
    say(f"Grid: {summary.files['grid.md']}, {summary.files['grid.csv']}; {len(summary.plots)} plots in {out / 'plots'}")


@app.command()
@guarded(interrupted=_kept("finished tasks are kept in {out}"))
def suite(
    preset: str = typer.Option("smoke", help="paper | toy | ci | smoke (smoke: a plumbing check in seconds)"),
    out: Path = typer.Option(Path("runs/suite"), help="run folder: pretrain/, <task>/result.json, suite.json"),
    data: Path | None = typer.Option(None, help="data root; default: the toy world"),
    checkpoint: Path | None = typer.Option(
        None, help="evaluate this checkpoint (any model's) on every task it can run; no pre-training"
    ),
    model: str | None = MODEL_OPTION,
    tasks: str | None = typer.Option(None, "--tasks", help="comma-separated tasks (default: every task)"),
    limit: int | None = LIMIT_OPTION,
    device: str | None = DEVICE_OPTION,
    no_meteor: bool = typer.Option(False, "--no-meteor", help="skip METEOR (no Java needed)"),
    save_reference: Path | None = typer.Option(
        None, help="also replace this folder with the results (what `make update-reference` does)"
    ),
    seed: int | None = typer.Option(
        None, help="seed of pre-training, every task and the floors (default: the preset's)"
    ),
    progress: bool = typer.Option(True, help="show progress bars"),
):
    """Every task from one model, ending in one table beside the paper's rows: pre-train once (VLM) and run every
    task from that checkpoint, or evaluate --checkpoint / --model on every task it can run (resumable per task).
    Also the floor baselines the tasks' `learned:` rules are measured over (OUT/<task>/floor-<kind>/)."""
    from .reporting.tables import report
    from .suite import save_reference as save_ref
    from .suite import suite as run_suite

    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    results = run_suite(
        out,
        preset=preset,
        data=data,
        tasks=names,
        run_pairs=["skip_meteor=true"] if no_meteor else [],
        seed=seed,
        checkpoint=checkpoint,
        model=model,
        limit=limit,
        device_name=device,
        progress=progress,
        say=say,
    )
    from .reporting.render import format_value

    for r in results:  # one line per task, then the table beside the paper's
        say(f"  {r.task}: " + ", ".join(f"{k} {format_value(k, v)}" for k, v in r.metrics.items() if "/" not in k))
    out_console_write(report(results, against="paper", fmt="terminal", ci=True))
    say(f"Results: {out}/<task>/result.json (`vlmbench report {out}` renders them again)")
    if save_reference is not None:
        say(f"Reference results written to {save_ref(out, save_reference)}")


@app.command()
@guarded
def report(
    results: list[Path] = typer.Argument(..., help="result.json files or folders (searched recursively)"),
    against: str = typer.Option("paper", help="paper: the paper's Tables 2-7 rows beside ours | none"),
    format: str = typer.Option("terminal", "--format", help="terminal | markdown | csv | json | html"),
    ci: bool = typer.Option(
        False,
        "--ci",
        help="show each metric as value [lo, hi], its 95% bootstrap "
        "interval (CSV and JSON always carry both bounds; html always shows them)",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="write the report to this file instead of stdout (html: one self-contained page)"
    ),
):
    """Our results per task beside the paper's rows and any floor baselines; toy-world and smoke results in tables
    of their own below them, labelled in every row."""
    from .io import write_text
    from .records.result import load_results
    from .reporting.tables import report as render

    if against not in ("paper", "none"):
        raise InputError(f"--against must be paper or none, got {against!r}", path="--against")
    loaded = load_results(results)
    if not loaded:
        raise InputError("no result files found", path=", ".join(map(str, results)))
    if format == "html":
        from .reporting.html import html_report

        text = html_report(loaded, results, against=None if against == "none" else "paper")
    else:
        text = render(loaded, against=None if against == "none" else "paper", fmt=format, ci=ci)
    if out is None:
        out_console_write(text)
    else:
        say(f"Report: {write_text(out, text)}")


def _compare_help() -> str:
    from .reporting.compare import DEFAULT_TOLERANCE, DEFAULT_TOLERANCES

    special = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TOLERANCES.items())
    return (
        f"metric=value absolute tolerance, repeatable; '*' sets the fallback. Defaults: {DEFAULT_TOLERANCE:g} "
        f"(percent metrics: R@k, accuracy, frame_acc, recall, BLEU, METEOR, ROUGE-L, in points), {special}"
    )


@app.command()
@guarded
def compare(
    new: Path = typer.Argument(..., help="new results (file or folder)"),
    ref: Path = typer.Argument(..., help="reference results (file or folder), e.g. results/reference/smoke"),
    tol: list[str] = typer.Option(None, "--tol", help=_compare_help()),
    force: bool = typer.Option(
        False,
        "--force",
        help="compare even when preset, toy/real, backbone, split, "
        "data fingerprint or a protocol signature field differ (refused otherwise, exit 2)",
    ),
    require_floors: bool = typer.Option(
        False, help="a floor absent from the new results fails its rule (the CI gate; without it: a note, not checked)"
    ),
    floors: bool = typer.Option(
        True,
        help="check each task's `learned:` rule against the floors among the new "
        "results (--no-floors: only the comparison with the reference)",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="an inconclusive metric (beyond tolerance but not significant, or underpowered) fails"
    ),
):
    """Regression check: new results against reference results, as a markdown table.

    Exit 1 when any reference metric regressed (worse by more than its tolerance, in the metric's direction:
    ranks are lower-is-better, and significant where statistics exist), changed beyond noise (better by more
    than its tolerance, and significant), is missing from the new results, or a task's `learned:` rule
    (tasks/*.yaml) is not met over the floors among the new results (below floor). Inconclusive (beyond
    tolerance but not significant, or a minimum detectable effect above the tolerance) is listed, and fails only
    with --strict. Tolerances: max(3 sqrt(2) std, 3 bootstrap SE, one test example, minimum) with
    REF/noise.json, else the defaults.
    Exit 2 when the two measure different things (preset, toy/real, backbone, split, data fingerprint, a
    protocol signature field) unless --force; exit 0 otherwise. The seed is not part of a result's identity."""
    from .reporting.compare import compare_paths, to_markdown

    tolerances = {}
    for pair in tol or []:
        metric, _, raw = pair.partition("=")
        try:
            tolerances[metric.strip()] = float(raw)
        except ValueError:
            raise InputError(f"{pair!r}: expected metric=number", path="--tol") from None
        if not metric.strip() or tolerances[metric.strip()] < 0:
            raise InputError(f"{pair!r}: expected metric=non-negative number", path="--tol")
    from .reporting.compare import failure_lines

    df, failed = compare_paths(
        new, ref, tolerances, force=force, floors=floors, require_floors=require_floors, strict=strict
    )
    out_console_write(to_markdown(df))
    for note in df.attrs.get("notes", []):
        say(f"compare: note: {note}")
    for line in failure_lines(df):
        say(f"compare: FAILED {line}")
    raise typer.Exit(1 if failed else 0)


@app.command()
@guarded
def baseline(
    task: str = typer.Option(..., "--task", help="task name (see `vlmbench tasks`)"),
    kind: str = typer.Option("random", help="random (every task) | all-background (coin-segmentation)"),
    data: Path | None = typer.Option(None, help="data root; default: the toy world"),
    out: Path | None = typer.Option(None, help="run folder (default runs/baseline-<task>-<kind>-<time>)"),
    seed: int = typer.Option(0, help="seed of the random guesses"),
    preset: str | None = typer.Option(None, help="which test examples, as for `run` (presets cap them)"),
):
    """A model-free floor on the task's own test examples, saved and scored like a run."""
    from .floors import floor_baseline

    result = floor_baseline(task, kind, data=data, out=out, seed=seed, preset=preset, say=say)
    _print_metrics(result)
    say(f"Result: {result.path}")


def out_console_write(text: str) -> None:
    """Rendered text as is: no rich markup or wrapping (tables, markdown, csv, json go to stdout verbatim)."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


# ---- raw videos -> features; the authors' released checkpoint -> a vlmbench checkpoint ----------------------

features_app = typer.Typer(
    add_completion=False, no_args_is_help=True, context_settings=HELP, help="S3D video features from raw videos."
)
convert_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP,
    help="Convert released checkpoints into vlmbench checkpoint folders.",
)
app.add_typer(features_app, name="features")
app.add_typer(convert_app, name="convert")


@features_app.command("extract")
@guarded(interrupted=_kept("extracted videos are kept in {out}"))
def features_extract(
    videos: Path = typer.Option(
        ..., help="folder of videos (and one level of subfolders); id = file name without extension"
    ),
    out: Path = typer.Option(..., help="feature folder: <video_id>.npy (seconds x 512), extraction.json, failed.csv"),
    weights: Path | None = typer.Option(None, help="the HowTo100M S3D checkpoint s3d_howto100m.pth"),
    batch: int = typer.Option(32, help="30-frame clips per forward pass"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    workers: int = typer.Option(2, help="decoding threads (0: decode in the main thread)"),
    fp32: bool = typer.Option(False, "--fp32", help="write float32 instead of float16"),
    no_l2: bool = typer.Option(False, "--no-l2", help="do not L2-normalise the rows"),
    random_init: bool = typer.Option(False, "--random-init", help="TESTING ONLY: a random S3D; the folder is marked"),
    progress: bool = typer.Option(True, help="show a progress bar"),
):
    """Decode (30 fps, short side 224, centre crop), run S3D on 30-frame clips: one 512-d row per second.

    Resumable: videos already extracted are skipped. Unreadable videos are reported and listed in failed.csv."""
    from .video.extract import extract, summary_lines

    summary = extract(
        videos,
        out,
        weights,
        random_init=random_init,
        batch=batch,
        device=device,
        workers=workers,
        l2=not no_l2,
        half=not fp32,
        progress=progress,
        say=say,
    )
    for line in summary_lines(summary, out):
        say(line)


@convert_app.command("mmpt")
@guarded
def convert_mmpt(
    checkpoint: Path = typer.Argument(
        ..., help="the authors' VLM checkpoint (fairseq examples/MMPT checkpoint_best.pt)"
    ),
    out: Path = typer.Option(..., help="vlmbench checkpoint folder to write (vlm_config.json + model.safetensors)"),
    bert: Path | None = typer.Option(
        None, help="a local bert-base-uncased folder: captioning starts from its MLM vocabulary bias, as the reference"
    ),
):
    """Safely load (weights only, no code run), check every key and shape, write a vlmbench checkpoint."""
    from .convert.mmpt import convert

    folder = convert(checkpoint, out, say=say, bert=bert)
    say(f"Converted {checkpoint.name} -> {folder} (use it with `vlmbench run --checkpoint {folder}`)")


@convert_app.command("videoclip")
@guarded
def convert_videoclip(
    checkpoint: Path = typer.Argument(
        ..., help="the authors' VideoCLIP checkpoint (fairseq examples/MMPT runs/retri/videoclip/checkpoint_best.pt)"
    ),
    out: Path = typer.Option(..., help="folder to write (videoclip_config.json + model.safetensors)"),
):
    """Safely load (weights only, no code run), check every key and shape, write a vlmbench VideoCLIP folder."""
    from .convert.videoclip import convert

    folder = convert(checkpoint, out, say=say)
    say(f"Converted {checkpoint.name} -> {folder} (a VideoCLIP folder: vlmbench.model.videoclip.VideoCLIP.load)")


# ---- pictures of a model (the paper's 5.5) -------------------------------------------------------------------

viz_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP,
    help="Attention maps and the joint token space of a checkpoint.",
)
app.add_typer(viz_app, name="viz")


def _viz_model(checkpoint: Path | None, backbone: str, model: str | None = None):
    """The VLM inside the model to draw: pictures of attention and of the joint token space need a model with the
    `attention` capability (joint encoding); any other is refused in one line."""
    from .models import catalog
    from .models.interface import ATTENTION
    from .runner import toy_checkpoint

    cls = catalog.resolve(model, checkpoint)
    if ATTENTION not in cls.capabilities:
        raise InputError(
            f"model {cls.name} has no joint encoding to draw (viz needs the {ATTENTION} capability; "
            f"it has: {', '.join(sorted(cls.capabilities))})",
            path="--model",
        )
    folder = checkpoint if checkpoint is not None else toy_checkpoint(backbone, say=say, progress=False)
    return cls.load(folder).vlm


@viz_app.command("attention")
@guarded
def viz_attention(
    task: str = typer.Option(..., "--task", help="a retrieval or captioning task (a clip and its sentence)"),
    checkpoint: Path | None = typer.Option(None, help="VLM checkpoint folder; default: the toy checkpoint"),
    model: str | None = MODEL_OPTION,
    example: str | None = typer.Option(None, help="test example id (default: the first)"),
    layer: int = typer.Option(-1, help="layer, 1-based; -1 = the last"),
    head: int | None = typer.Option(None, help="head, 1-based; default: a grid of every head of the layer"),
    mask: str | None = typer.Option(None, help="joint | isolated | text_causal (default: the task's own)"),
    data: Path | None = typer.Option(None, help="data root; default: the toy world"),
    backbone: str = typer.Option("tiny", help="backbone of the toy checkpoint when no --checkpoint"),
    out: Path = typer.Option(Path("runs/viz"), help="folder for attention-<example>.png/.svg"),
):
    """Heatmaps of self-attention over [CLS] video... [SEP] text... [SEP] (seconds and word pieces labelled)."""
    from . import registry
    from .adapters.pairs import batch_videos
    from .model import backbone as bb
    from .model import text as textmod
    from .viz.attention import MASK_OF_FAMILY, attention_maps, plot_attention
    from .viz.examples import pick, task_examples

    spec = registry.get(task)
    vlm = _viz_model(checkpoint, backbone, model)
    ex_id, feats, sentence = pick(task_examples(task, data, say=say), example)
    if layer == 0 or abs(layer) > vlm.bert.config.num_hidden_layers:
        raise InputError(f"layer must be 1..{vlm.bert.config.num_hidden_layers} or -1, got {layer}", path="--layer")
    if head is not None and not 1 <= head <= vlm.bert.config.num_attention_heads:
        raise InputError(f"head must be 1..{vlm.bert.config.num_attention_heads}, got {head}", path="--head")
    tok = bb.tokenizer(vlm.config.backbone)
    video, vmask = batch_videos([feats])
    ids, tmask = textmod.encode(tok, [sentence])
    maps = attention_maps(vlm, video, vmask, ids, tmask, tok, mask=mask or MASK_OF_FAMILY[spec.family])
    png = plot_attention(
        maps,
        out / f"attention-{ex_id}.png",
        layer=layer - 1 if layer > 0 else -1,
        head=head - 1 if head else None,
        title=f"{task} {ex_id}",
    )
    say(f"Attention map: {png} (and .svg)")


@viz_app.command("embeddings")
@guarded
def viz_embeddings(
    task: str = typer.Option(..., "--task", help="a retrieval or captioning task"),
    checkpoint: Path | None = typer.Option(None, help="VLM checkpoint folder; default: the toy checkpoint"),
    model: str | None = MODEL_OPTION,
    n: int = typer.Option(32, help="test examples whose tokens are projected"),
    data: Path | None = typer.Option(None, help="data root; default: the toy world"),
    backbone: str = typer.Option("tiny", help="backbone of the toy checkpoint when no --checkpoint"),
    out: Path = typer.Option(Path("runs/viz"), help="folder for embeddings-<task>.png/.svg"),
):
    """Video and text tokens at the transformer's input and output, in 2-D (t-SNE; PCA for many tokens)."""
    from .adapters.pairs import batch_videos
    from .model import backbone as bb
    from .model import text as textmod
    from .viz.embeddings import plot_projection, project, token_states
    from .viz.examples import task_examples

    if n < 1:
        raise InputError(f"n must be >= 1, got {n}", path="--n")
    vlm = _viz_model(checkpoint, backbone, model)
    examples = task_examples(task, data, say=say)[:n]
    video, vmask = batch_videos([e[1] for e in examples])
    ids, tmask = textmod.encode(bb.tokenizer(vlm.config.backbone), [e[2] for e in examples])
    proj = project(*token_states(vlm, video, vmask, ids, tmask))
    png = plot_projection(proj, out / f"embeddings-{task}.png", title=f"{task}, {len(examples)} examples")
    say(f"Embeddings: {png} (and .svg), {proj.method}")


def _on_signal(signum: int, frame) -> None:
    # a second signal while the first is handled ends the process at once (still no traceback)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda n, f: os._exit(128 + n))
    raise Interrupted(signum)


def _kinds(e: BaseException) -> set[str]:
    """Class names up e's hierarchy (typer carries its own copy of click's exceptions: matched by name)."""
    return {c.__name__ for c in type(e).__mro__}


def _param_name(param) -> str | None:
    if param is None:
        return None
    if getattr(param, "param_type_name", "") == "option" and getattr(param, "opts", None):
        return "/".join(param.opts)
    return (getattr(param, "human_readable_name", None) or param.name or "").upper() or None


def usage_line(e: Exception) -> str:
    """A usage error (typer/click) as one line: `--task: missing option (see `vlmbench run -h`)`."""
    ctx = getattr(e, "ctx", None)
    where = f" (see `{ctx.command_path} -h`)" if ctx is not None else ""
    kinds, param = _kinds(e), getattr(e, "param", None)
    name: str | None = None
    if "MissingParameter" in kinds:
        name = _param_name(param)
        problem = f"missing {getattr(e, 'param_type', None) or getattr(param, 'param_type_name', 'parameter')}"
    elif "BadParameter" in kinds:
        hint = getattr(e, "param_hint", None)
        name = _param_name(param) or (str(hint) if hint else None)
        problem = e.message
    elif "NoSuchOption" in kinds:
        name, possible = e.option_name, getattr(e, "possibilities", None)
        problem = "no such option" + (f" (did you mean {', '.join(possible)}?)" if possible else "")
    elif "BadOptionUsage" in kinds:
        name, problem = e.option_name, e.message
    else:
        problem = e.format_message()
    problem = " ".join(problem.split()).rstrip(".")
    return f"{name}: {problem}{where}" if name else f"{problem}{where}"


def missing_dependencies() -> list[str]:
    """The packages vlmbench requires (its installed metadata, extras aside) that this environment lacks: an
    environment set up before a release added one (a `git pull` without `make install`)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        declared = metadata.requires("vlmbench") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return []
    missing = []
    for line in declared:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra (dev) or another platform's
        try:
            metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(req.name)
    return missing


def main(argv: list[str] | None = None) -> None:
    """The entry point. Every way out is one line at most: bad input and usage errors `error: ...` (exit 2),
    SIGINT/SIGTERM `interrupted (...)` (exit 130/143), never a traceback or a usage box."""
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    lacking = missing_dependencies()
    if lacking:  # before any work: not a traceback halfway through a run
        error_line(
            f"this environment lacks {', '.join(lacking)}, which this version of vlmbench requires (installed "
            "before they were added?): run `make install`, or `pip install -c constraints.txt -e .`"
        )
        sys.exit(2)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        rv = app(args=_ARGV, prog_name="vlmbench", standalone_mode=False)
    except typer.TyperException as e:  # click's exceptions, as typer carries them
        if "NoArgsIsHelpError" in _kinds(e):  # `vlmbench data`: the group's help, as before
            e.show()
            sys.exit(e.exit_code)
        error_line(usage_line(e) if "UsageError" in _kinds(e) else e.format_message())
        sys.exit(2 if "UsageError" in _kinds(e) else e.exit_code)
    except typer.Abort:  # end of input at a prompt
        error_line("aborted")
        sys.exit(1)
    except KeyboardInterrupt as e:  # before a command started (while parsing or importing)
        signum = getattr(e, "signum", signal.SIGINT)
        err.print(Text(f"interrupted ({signal.Signals(signum).name}): nothing was started"), highlight=False)
        sys.exit(128 + signum)
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


if __name__ == "__main__":
    main()
