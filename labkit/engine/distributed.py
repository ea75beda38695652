"""Training on several GPUs (or CPU processes) at once with PyTorch's DistributedDataParallel.

``torchrun --nproc_per_node 2 -m labkit train MODEL`` starts one process per GPU; ``fit`` gives each
its own shard of the resident data, DDP averages the gradients, and only rank 0 writes files.
Without ``torchrun`` every function here is a no-op; ``python -m labkit train --help`` shows the command.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def launched() -> bool:
    """True in a process started by ``torchrun`` with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device | str) -> torch.device:
    """Join the job ``torchrun`` started (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)
    and return this process's device: ``cuda:LOCAL_RANK`` with the NCCL backend on GPUs, the CPU
    with gloo otherwise. Outside ``torchrun`` (or when already joined) it returns ``device`` as is."""
    device = torch.device(device)
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(shutdown)
    return device


def shutdown() -> None:
    """Leave the job (nothing to do outside ``torchrun``)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's number in the job: 0 (the one that writes files) to ``world_size() - 1``."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without ``torchrun``, and inside ``alone()``)."""
    return dist.get_world_size() if dist.is_initialized() and not _alone else 1


_alone = False


@contextmanager
def alone():
    """Within the block this process trains by itself, even under ``torchrun``: no sharding, no
    DistributedDataParallel, no averaging over the ranks. For what rank 0 does while the others have
    finished, such as training the digit classifier that measures a run's samples."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def is_main() -> bool:
    """True in the process that logs and writes files: rank 0, or the only process."""
    return rank() == 0


@contextmanager
def quiet_unless_main():
    """Send ``print`` output to nowhere on ranks other than 0, so the job logs once; errors
    (stderr) still show from every rank. Reads RANK from the environment: it works before joining."""
    if int(os.environ.get("RANK", "0")) == 0:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def shard(tensor: torch.Tensor | None, rank_: int | None = None, world: int | None = None) -> torch.Tensor | None:
    """This rank's share of ``tensor`` (along dim 0): every ``world``-th row from row ``rank_``,
    cut to ``len(tensor) // world`` rows so that every rank takes the same number of steps (DDP
    waits for all ranks at every backward, so one extra step on one rank would hang the job).
    Interleaving keeps the shards alike even when the data is sorted (e.g. by class)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if tensor is None or world == 1:
        return tensor
    if len(tensor) < world:
        raise ValueError(
            f"{len(tensor)} training images cannot be shared among {world} processes: "
            "use more images or fewer processes"
        )
    return tensor[rank_::world][: len(tensor) // world].contiguous()


def seed_per_rank() -> None:
    """Give each rank its own random stream (from the shared one), so that ranks draw different
    noise (GAN latents, VAE samples) and batch orders; rank 0 keeps the shared stream, so its
    draws, and what its checkpoints store, are those of the shared seed."""
    if world_size() > 1:
        seed = int(torch.randint(2**62, ()))  # the same on every rank: they share the seed
        if rank() > 0:
            torch.manual_seed(seed + rank())


@contextmanager
def wrap(training):
    """While the block runs, the training calls its modules through DistributedDataParallel,
    which averages their gradients over the ranks in the backward pass; ``training.modules``
    keeps the raw modules throughout (checkpoints and figures see plain state dicts) and the
    attributes are put back afterwards. A no-op in a single process.

    Every attribute of the training that holds one of ``training.modules`` (``model``;
    ``generator`` and ``discriminator``) is replaced for the duration, without buffer sync at each
    forward (``broadcast_buffers=False``). By default DDP copies rank 0's buffers (batch-norm
    running statistics) over every rank's at each forward call, in place. The GAN calls D twice
    (real, fake) before D's backward and once more, through G's output, before G's backward; on GPUs
    cuDNN's batch norm keeps the running statistics for its backward, so that overwrite between a
    forward and its backward stops training ("modified by an inplace operation", pytorch/pytorch
    issues 22095 and 110363). It buys nothing either: in training mode batch norm normalises with
    the batch's own statistics. Running statistics only matter in evaluation, so ``average_buffers``
    makes them equal across ranks (the mean over all shards) once per epoch instead. Two forward
    calls before one backward are fine for DDP: autograd accumulates each parameter's gradient once,
    and DDP's hook fires then.
    """
    if world_size() == 1:
        yield training
        return
    modules = list(training.modules.values())
    attributes = {attr: value for attr, value in vars(training).items() if any(value is m for m in modules)}
    missing = [name for name, m in training.modules.items() if not any(v is m for v in attributes.values())]
    if missing:
        raise TypeError(
            f"{type(training).__name__} keeps no attribute for module(s) {', '.join(missing)}; "
            "distributed training wraps the attributes train_step calls (e.g. self.model)"
        )
    parallel = {id(m): _ddp(m) for m in modules}
    for attr, module in attributes.items():
        setattr(training, attr, parallel[id(module)])
    try:
        yield training
    finally:
        for attr, module in attributes.items():
            setattr(training, attr, module)
        parallel.clear()  # drops DDP's gradient hooks with the wrappers


def _ddp(module: nn.Module) -> DistributedDataParallel:
    device = next(module.parameters()).device
    # newer PyTorch names the switch forward_sync_buffers (buffers are still copied from rank 0 once, at the start)
    no_buffer_sync = (
        {"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_OPTIONS else {"broadcast_buffers": False}
    )
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync
    )


_DDP_OPTIONS = inspect.signature(DistributedDataParallel.__init__).parameters


def average_buffers(modules) -> None:
    """Replace every floating-point buffer (batch-norm running mean and variance) by its mean over
    the ranks, so all ranks hold the same state and statistics of all shards (see ``wrap``)."""
    if world_size() == 1:
        return
    for module in modules:
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(world_size())


def average_record(record: dict, device: torch.device) -> dict:
    """The epoch record averaged over the ranks (the slowest rank's ``seconds``), so that every
    rank keeps the same history. Every rank must pass records with the same keys."""
    if world_size() == 1:
        return record
    keys = sorted(k for k, v in record.items() if isinstance(v, (int, float)) and k not in ("epoch", "seconds"))
    values = torch.tensor([float(record[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    seconds = torch.tensor([float(record["seconds"])], dtype=torch.float64, device=device)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    averaged = dict(record)
    averaged.update({k: float(v) / world_size() for k, v in zip(keys, values.tolist())})
    averaged["seconds"] = float(seconds)
    return averaged


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if world_size() > 1:
        dist.barrier()
