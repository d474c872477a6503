"""Data-parallel training over several processes, initialised from torchrun's environment.

One process per device (``torch.distributed``: gloo on CPU, NCCL on GPU), ``world`` of them,
started by ``torchrun`` (``torchrun --nnodes 2 --nproc-per-node 4 ... tools/train.py ...``
works across machines) or by ``--procs N`` / ``--gpus 0,1``, which launch torchrun for you.

* Every process builds the same network; rank 0's parameters and batch-norm statistics are
  broadcast at the start, so all start from the same weights even without a weights file
  (Darknet seeds every GPU's network alike).
* Every iteration each process loads its own ``batch`` images (the cfg's batch, in
  ``subdivisions`` mini-batches), so one iteration trains on ``imgs = batch · world`` images,
  Darknet's ``batch·subdivisions·ngpus``.  The image picks and augmentation are drawn per
  process; the multi-scale sizes (``random=1``) from one stream shared by all, so every
  process resizes to the same size at the same iteration.
* Batch norm normalises with each process's own images (per-device statistics, as
  Darknet's GPUs do).  The rolling mean/variance also stay per process, as in Darknet, whose
  ``sync_nets`` averages only weights, biases and scales; the checkpoints hold rank 0's, as
  Darknet saves ``nets[0]``'s.
* Before every update (every ``subdivisions`` mini-batches) the gradients are averaged over
  the processes (all-reduce sum / world; :meth:`DataParallelTrainer.average`), then every
  process applies Darknet's update (``pydarknet.train``) with the rate multiplied by
  ``world`` (Darknet's ``learning_rate *= ngpus``), its own identical momentum buffers and
  decay.  The replicas therefore stay identical.
* ``seen`` counts the images of all processes (``batch · world`` an iteration), as Darknet's
  ``sync_nets`` makes it, so the batch number (``seen / batch``), the rate schedule and
  ``max_batches`` are measured in images as in a one-process run: N processes reach
  ``max_batches`` in 1/N of the iterations.  The logged iteration number is that batch
  number (it moves by ``world``), and a checkpoint is due when it reaches or passes a
  multiple of 100 (Darknet's ``i % 100 == 0`` can be stepped over).
* The loss printed is the mean of the processes' losses (Darknet's ``sum / n``); rank 0
  prints, logs and writes the checkpoints.

How this differs from Darknet: Darknet trains one network per GPU, each updating itself
with its own gradient (rate × ngpus) and momentum, and every 4 iterations (``sync_nets``)
replaces every GPU's weights by their average.  Darknet's update is linear in the
gradient, so averaging the weights right after every update equals averaging the
gradients before it; our scheme is Darknet's with a sync after every update.  Darknet's
4-iteration interval lets the replicas drift apart in between (each with its own momentum
and decay), and its ``seen`` lags between syncs; neither is reproduced.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .train import Trainer

__all__ = ["Replicas", "DataParallelTrainer", "init_replicas", "launched_world"]

_F = np.float32


def launched_world() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclass
class Replicas:
    """This process's place among the data-parallel processes."""
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast_state(self, net) -> None:
        """Rank 0's parameters, buffers and ``seen`` on every process."""
        import torch.distributed as dist
        with torch.no_grad():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, 0)
        seen = torch.tensor([int(net.seen)], dtype=torch.int64, device=next(net.parameters()).device)
        dist.broadcast(seen, 0)
        net.seen = int(seen.item())

    def agree_on_seed(self, seed: int | None, device) -> int:
        """The run's seed, the same on every process (rank 0 draws one when none is given)."""
        import torch.distributed as dist
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) % 2**62
        t = torch.tensor([int(seed)], dtype=torch.int64, device=device)
        dist.broadcast(t, 0)
        return int(t.item())

    def data_seed(self, seed: int | None) -> int | None:
        """This process's seed for picking and augmenting images (rank 0 keeps the run's)."""
        if seed is None or self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1, np.uint64)[0] % 2**62)

    def agree(self, loss: float, stop: bool, device) -> tuple[float, bool]:
        """(the mean loss over the processes, whether any asked to stop)."""
        if self.world == 1:
            return loss, stop
        import torch.distributed as dist
        t = torch.tensor([loss, float(stop)], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(_F(t[0].item()) / _F(self.world)), t[1].item() > 0

    def total(self, count: int, device) -> int:
        """A count summed over the processes."""
        if self.world == 1:
            return count
        import torch.distributed as dist
        t = torch.tensor([count], dtype=torch.int64, device=device)
        dist.all_reduce(t)
        return int(t.item())

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist
            dist.destroy_process_group()


def init_replicas(device: str) -> Replicas:
    """Join the process group torchrun describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``...); a single process when there is none."""
    if launched_world() <= 1:
        return Replicas()
    import torch.distributed as dist
    if dist.is_initialized():
        return Replicas(dist.get_rank(), dist.get_world_size(), False)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Replicas(dist.get_rank(), dist.get_world_size(), True)


class DataParallelTrainer(Trainer):
    """A :class:`~pydarknet.train.Trainer` for one of ``world_size`` data-parallel replicas.

    Before each update the gradients are averaged over the replicas (``average``, an
    all-reduce by default; override it to simulate the scheme in one process), the rate is
    Darknet's multi-GPU one (× ``world_size``) and ``seen`` grows by the images of every
    replica.  With ``world_size=1`` it is the plain Trainer.  See the module docstring.
    """

    def __init__(self, net, world_size: int = 1, **kw):
        super().__init__(net, **kw)
        self.world_size = int(world_size)

    def rate(self) -> float:
        return super().rate() * self.world_size

    def shared_tensors(self) -> list[torch.Tensor]:
        """What the replicas average before each update: the gradients, in slot order."""
        for s in self.slots:
            if s.param.grad is None:
                s.param.grad = torch.zeros_like(s.param)
        return [s.param.grad for s in self.slots]

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the replicas: one all-reduce (sum) of a flat
        buffer, then ÷ world_size."""
        import torch.distributed as dist
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world_size)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def update(self) -> None:
        if self.world_size > 1:
            self.average(self.shared_tensors())
        super().update()

    def step(self, images: torch.Tensor, truths: torch.Tensor) -> float:
        # The other replicas' images count too: seen grows by batch·world an iteration, and the
        # update's rate is taken at the batch number after all of them, as in a single process.
        self.net.seen += (self.world_size - 1) * images.shape[0]
        return super().step(images, truths)
