"""Training curves as TensorBoard event files (`tensorboard --logdir RUN/tb`), beside the JSONL logs.

Pre-training writes loss, lr, grad norm, data wait and clips/s per update; fine-tuning writes loss, lr and grad
norm per update and, with select=best-of-epochs, each epoch's selection value; the runner adds the run's final
metrics. A resumed pre-training purges the events from its restart step on, so a curve never holds two values for
one step. TensorBoard is imported only when a writer is opened."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TB_DIR = "tb"


class Tracker:
    """Scalars into RUN/tb; a no-op when disabled (e.g. on ranks other than 0).

    staged: write into a temp folder and put it in place of RUN/tb only at publish() (a task run: the previous
    run's curves stay until the new run has finished; a kill leaves a temp folder the next run removes)."""

    def __init__(self, run_dir: Path | None, purge_step: int | None = None, staged: bool = False):
        self.writer = None
        self.final = self.folder = None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.final = Path(run_dir) / TB_DIR
            self.folder = Path(run_dir) / f".{TB_DIR}.tmp{os.getpid()}" if staged else self.final
            if staged:
                shutil.rmtree(self.folder, ignore_errors=True)
            self.writer = SummaryWriter(str(self.folder), purge_step=purge_step)

    def scalars(self, step: int, **values: float | None) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def publish(self) -> None:
        """Close, and (staged) replace RUN/tb with what this run wrote."""
        self.close()
        if self.folder is not None and self.folder != self.final:
            shutil.rmtree(self.final, ignore_errors=True)
            os.replace(self.folder, self.final)
            self.folder = self.final
