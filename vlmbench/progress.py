"""One progress display per command: the stage running now (its own bar, step counts and info), and one bar for the
whole job with its ETA.

A command declares its stages up front with a weight each, the seconds a stage is expected to take on 2 CPU cores
(measured; only their ratios matter); the whole-job bar advances by a stage's weight in proportion to that stage's
progress, so rich's time-remaining estimate covers the whole job from the first seconds on. A stage that turns out
not to be needed (e.g. the toy checkpoint is cached) is skipped: its weight is taken off the job's total.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Tick = Callable[..., None]


class JobProgress:
    def __init__(self, enabled: bool, title: str, stages: Sequence[tuple[str, float]]):
        self.enabled, self.title = enabled, title
        self.weights = dict(stages)
        self.names = [n for n, _ in stages]
        self.p = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TextColumn("{task.fields[count]}", markup=False),
                TextColumn("{task.fields[info]}", markup=False),
                TimeRemainingColumn(),
                transient=False,
            )
            total = max(sum(self.weights.values()), 1e-9)
            self.job = self.p.add_task(f"{title} [0/{len(self.names)}]", total=total, info="", count="0%")
            self.p.start()
        self.current: int | None = None
        self.done_weight = 0.0

    def stage(self, name: str, total: int | None) -> Tick:
        """Start stage `name` (one of the declared ones) with `total` steps (None: unknown); returns
        tick(n, info="", total=None): n steps more, or (with total) n steps done of a new total."""
        if not self.enabled:
            return lambda *a, **k: None
        self._finish_current()
        i = self.names.index(name)
        self.p.update(self.job, description=f"{self.title} [{i + 1}/{len(self.names)}] {name}")
        self.current = self.p.add_task(f"  {name}", total=total, info="", count="")
        self.stage_weight, self.stage_done = self.weights[name], 0.0

        def tick(n: int, info: str = "", total: int | None = None) -> None:
            if total is not None:
                self.p.update(self.current, completed=n, total=total, info=info)
            else:
                self.p.update(self.current, advance=n, info=info)
            task = self._task(self.current)
            self.p.update(
                self.current, count=f"{task.completed:g}/{task.total:g}" if task.total else f"{task.completed:g}"
            )
            if task.total:
                frac = min(1.0, task.completed / task.total)
                self._job_at(self.done_weight + frac * self.stage_weight)

        return tick

    def skip(self, name: str) -> None:
        """A declared stage this run does not need: the job's total shrinks by its weight."""
        if self.enabled:
            total = self._task(self.job).total - self.weights[name]
            self.p.update(self.job, total=max(total, 1e-9))

    def _job_at(self, completed: float) -> None:
        job = self._task(self.job)
        self.p.update(self.job, completed=completed, count=f"{100 * completed / job.total:.0f}%" if job.total else "")

    def _task(self, task_id):
        return next(t for t in self.p.tasks if t.id == task_id)

    def _finish_current(self) -> None:
        if self.current is not None:
            self.done_weight += self.stage_weight
            self._job_at(self.done_weight)
            self.p.remove_task(self.current)
            self.current = None

    def close(self) -> None:
        if self.enabled and self.p is not None:
            self._finish_current()
            self.p.update(self.job, description=f"{self.title} done", completed=self._task(self.job).total)
            self.p.stop()
            self.p = None
            self.enabled = False
