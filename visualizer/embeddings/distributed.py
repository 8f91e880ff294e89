"""Several processes (torchrun) share one run: whole batches per rank, rank 0 prepares, merges and reduces.

Batch k goes to rank k % world, so every batch holds the same seeds as in a single-process run and
the activations are the same: bit for bit on the CPU with the same number of intra-op threads
(torchrun sets OMP_NUM_THREADS=1 for its workers unless it is set, and CPU kernels may sum in
another order with another thread count); on GPUs, up to the kernels cuDNN picks.
Only rank 0 touches shared state outside the batches it owns (run.json, store creation, merge).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from visualizer.errors import UserError
from visualizer.models.device import pick_device

T = TypeVar("T")
# A rank that owns fewer batches waits at a barrier for the others; a 256-step teacher batch is long.
TIMEOUT = timedelta(hours=6)


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, batch: int) -> bool:
        return batch % self.world == self.rank

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Runs fn on rank 0 only and hands its result (or its UserError) to every rank, so none hangs."""
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except UserError as e:
                box[0] = ("error", str(e))
            except Exception as e:
                box[0] = ("crash", f"{type(e).__name__}: {e}")
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "ok":
            return value
        if status == "error":
            raise UserError(value)
        raise RuntimeError(f"rank 0 failed: {value}")

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def init_ranks(requested_device: str | None) -> tuple[Ranks, torch.device]:
    """Joins the torchrun group when WORLD_SIZE > 1 (env:// rendezvous); each rank takes its local GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), pick_device(requested_device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        kw = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT, **kw)
    return Ranks(rank=rank, world=world, local_rank=local_rank, owns_group=owns), device
