"""One run on several processes: ``torchrun --nproc-per-node N -m vldlib train ...``.

torchrun starts N copies of the command with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their
environment. :func:`init_from_env` joins them into one process group (NCCL when the run trains on
CUDA, gloo on CPU); the trainer then wraps the student in ``DistributedDataParallel`` and each rank
trains on its shard of X_train (:func:`shard`, ``DistributedSampler``'s split of one shuffled pass,
so the global batch keeps ``batch_size`` images). Rank 0 alone writes checkpoints and the record;
the number of processes is the config field ``world_size`` (part of the run's identity: a
2-process run sees batches of ``batch_size / 2`` per rank, so its contrastive terms differ).
Without torchrun (or with one process) nothing here does anything.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist

__all__ = ["env_world_size", "init_from_env", "shutdown", "active", "rank", "local_rank", "world_size",
           "is_main", "barrier", "broadcast_object", "all_gather_object", "mean_over_ranks", "sync_buffers",
           "shard", "shard_batch"]


def env_world_size() -> int:
    """``$WORLD_SIZE`` as set by torchrun (1 when absent)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with "
                         "torchrun --nproc-per-node N") from None


#: How long a rank waits at a collective (rank 0 alone encodes the teacher features of a dataset
#: the cache lacks while the others wait; ViT-L/14 on SUN397 takes a while).
TIMEOUT = timedelta(hours=3)


def init_from_env(device: str = "auto") -> bool:
    """Join torchrun's process group when ``$WORLD_SIZE`` > 1 (NCCL on CUDA, else gloo) and pin
    this process to GPU ``$LOCAL_RANK``; returns whether a group was joined."""
    if env_world_size() < 2 or active():
        return active()
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=TIMEOUT)
    return True


def shutdown() -> None:
    """Leave the process group (if any)."""
    if active():
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one rank of an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or no process group): the one process that writes files."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (identity without a process group)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (every rank sees the same numbers afterwards)."""
    if not active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.cpu().tolist())}


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts them
    before each forward, but the last training forward of an epoch updates each rank's own copy;
    after this every rank evaluates (and would save) rank 0's model."""
    if not active():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def shard(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """This rank's batches of one pass ``order`` (a permutation of the training indices).

    ``DistributedSampler(order, shuffle=False)`` gives rank r the items ``r, r + W, r + 2W, ...``
    (the pass padded by its first items to a multiple of W, so every rank takes the same number of
    steps, which DDP needs); they are cut into batches of ``ceil(batch_size / W)``, so one step of
    all ranks sees about ``batch_size`` images. A last batch of a single image is dropped on every
    rank alike (BatchNorm cannot train on one sample). Without a process group: ``order`` in
    batches of ``batch_size``."""
    w, r = world_size(), rank()
    if w == 1:
        mine, per = order, batch_size
    else:
        sampler = torch.utils.data.DistributedSampler(range(len(order)), num_replicas=w, rank=r, shuffle=False)
        mine = order[torch.as_tensor(list(sampler), dtype=torch.long)]
        per = max(1, -(-batch_size // w))
    out = list(mine.split(per))
    if len(out) > 1 and len(out[-1]) == 1:
        out.pop()
    return out


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. fills a cache), the other ranks after it (reading it)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def shard_batch(index: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """This rank's part ``index[r::W]`` of one global batch (few-shot batches, built jointly)."""
    idx = torch.as_tensor(index, dtype=torch.long)
    return idx[rank()::world_size()] if active() else idx
