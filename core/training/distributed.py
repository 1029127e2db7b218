"""Data-parallel training under torch's own launcher (torchrun); one process when not under it.

    torchrun --standalone --nproc_per_node N -m core train ...      # N processes, one machine
    torchrun --nnodes M --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:PORT \\
             --nproc_per_node N -m core train ...                   # M machines

Rules (each lives here, once):
- `--batch-size` is the GLOBAL batch: every step takes one batch of the single-process order
  (same seed, same permutation) and each rank trains on its contiguous slice of it. The loss a
  rank back-propagates is scaled so DDP's gradient average equals the gradient of the global
  batch's mean loss, so a run means the same thing on 1, 2 or 8 processes and can be resumed
  on a different number of them. More GPUs want a larger --batch-size to stay busy.
- Augmentation is seeded per (seed, epoch, rank): each rank draws its own seeded stream.
- Rank 0 alone writes the run folder (config, checkpoints, metrics, status); the other ranks
  read nothing from it either: rank 0 opens (or refuses) the run and broadcasts the resume
  payload, so machines need not share a disk, only the data.
- Epoch loss is summed across ranks; gradient norms are of the already all-reduced gradient.
- Backend: gloo on the CPU, nccl on CUDA (each process takes the GPU of its LOCAL_RANK).
  On CUDA BatchNorm becomes SyncBatchNorm, so statistics cover the global batch as on one
  GPU; on the CPU (gloo has no SyncBatchNorm) each rank normalises its own slice.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from core.runs.folder import Run

T = TypeVar("T")
# Rank 0 validates and writes a checkpoint while the others already wait in the next step's
# all-reduce; nccl's 10-minute default would abort a long validation.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Context:
    """This process's place in the job; the defaults describe a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of one global batch of indices (the batch itself alone)."""
        if not self.active:
            return batch
        if len(batch) < self.world_size:
            raise ValueError(f"a batch of {len(batch)} images cannot be split across {self.world_size} "
                             "processes; use a larger --batch-size, more images or fewer processes")
        return np.array_split(batch, self.world_size)[self.rank]

    def augment_seed(self, seed: int) -> int:
        """Rank 0 keeps the single-process seed; every other rank gets its own stream."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def gradient_loss(self, per_image: torch.Tensor, global_count: int) -> torch.Tensor:
        """The scalar to back-propagate: the batch mean alone; under DDP the local sum scaled so
        that DDP's average over ranks is the global batch's mean, whatever the slice sizes."""
        if not self.active:
            return per_image.mean()
        return per_image.sum() * (self.world_size / global_count)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Averages over ranks the gradients of parameters DDP does not wrap (the segmentation
        network of the discriminative objective), as DDP does for the model's."""
        if not self.active:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= self.world_size

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64); the values themselves alone."""
        if not self.active:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.cpu().tolist()


_CURRENT: Context | None = None


def current() -> Context:
    """The context set by `init`, or the single-process one."""
    return _CURRENT or Context()


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def job_pid() -> int:
    """The pid that stands for the job in status.json: the torchrun launcher when there is one
    (it owns the process group a stop signal goes to and forwards it to every rank)."""
    return os.getppid() if launched_by_torchrun() else os.getpid()


def init(device: torch.device) -> Context:
    """Joins the process group when WORLD_SIZE > 1 (torchrun's variables); idempotent.

    On CUDA each process takes the GPU numbered by its LOCAL_RANK. Raises RuntimeError when a
    machine starts more processes than it has GPUs."""
    global _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=device)
    if _CURRENT is not None and dist.is_initialized():
        return _CURRENT
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise RuntimeError(f"process {local_rank} on this machine has no GPU of its own (torch sees "
                               f"{count}); start at most {count} processes per machine (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    _CURRENT = Context(rank=rank, world_size=world, local_rank=local_rank, device=device)
    return _CURRENT


def shutdown() -> None:
    """Leaves the process group (call once, when the process is done training)."""
    global _CURRENT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """DDP around the model under torchrun (SyncBatchNorm on CUDA); the model itself otherwise.
    Parameters stay the same objects, so an optimizer built on the bare model still applies."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[ctx.device.index])
    return DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DDP (its parameter names and state_dict are the single-process ones)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def on_main(ctx: Context, fn, *args) -> Any:
    """Runs fn on rank 0 only and hands its result (or its error) to every rank, so all ranks
    start from the same checkpoint or stop with the same message."""
    if not ctx.active:
        return fn(*args)
    box: list[Any] = [None]
    error: Exception | None = None
    if ctx.is_main:
        try:
            box[0] = ("ok", fn(*args))
        except (ValueError, OSError, RuntimeError) as err:
            error = err
            box[0] = ("error", f"{type(err).__name__}: {err}")
    dist.broadcast_object_list(box, src=0, device=ctx.device)
    if error is not None:
        raise error
    kind, value = box[0]
    if kind == "error":
        raise RuntimeError(f"rank 0 could not start the run ({value})")
    return value


class FollowerRun(Run):
    """The run as a rank other than 0 sees it: it may read paths, it never writes."""

    def write_status(self, **fields: Any) -> None:
        return None

    def append_metrics(self, record: dict[str, Any]) -> None:
        return None


def run_view(run: Run, ctx: Context) -> Run:
    return run if ctx.is_main else FollowerRun(run.path)
