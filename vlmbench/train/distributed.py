"""torchrun support: gloo on CPU, NCCL on GPU; rank 0 alone writes."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Dist(rank, world, device)


SHUTDOWN_WAIT_S = 60.0


def shutdown(d: Dist, wait_s: float = SHUTDOWN_WAIT_S) -> None:
    """Destroy the process group, waiting at most wait_s: destroy_process_group can hang now and then once the
    work is done (pytorch/pytorch#75097; seen here with gloo on a loaded 2-core machine), and a run whose results
    are all written must not hang its launcher. Callers leave with `exit_now` after their last line."""
    if not (d.enabled and dist.is_initialized()):
        return
    t = threading.Thread(target=dist.destroy_process_group, name="destroy_process_group", daemon=True)
    t.start()
    t.join(wait_s)
    if t.is_alive():
        print(
            f"warning: rank {d.rank}: destroy_process_group did not return in {wait_s:.0f} s; leaving without it",
            file=sys.stderr,
            flush=True,
        )


def exit_now(code: int = 0) -> None:
    """End a torchrun worker at once, without the interpreter's teardown (which can block on gloo's threads when the
    group was not destroyed). Everything the run writes is closed by now; only the standard streams need flushing."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
