"""Darknet's ``detector train`` loop: data, iterations, log lines, checkpoints, several processes.

What a run leaves in the backup folder, as Darknet names it (``base`` = the cfg's file name
without extension):

* ``<base>.backup`` every 100 iterations, ``<base>_<N>.weights`` at every 100th iteration
  below 1000 and every 10000th after, ``<base>_final.weights`` at the end; each written to a
  temporary file and renamed, so a crash never leaves half a checkpoint;
* ``<base>_log.csv`` (one row per iteration) and ``<base>_loss.png`` (the loss curve).

Ctrl-C saves ``<base>.backup`` and stops; starting again from that file continues the
schedule, since ``seen`` travels in the weights header.

Several processes (``torch.distributed``, one per device; gloo on CPU, NCCL on GPU) train
data-parallel.  Darknet trains one network per GPU, each on its own share of the images with
the learning rate multiplied by the number of GPUs, and averages the weights every 4
iterations (``sync_nets``).  We keep Darknet's per-device batch norm (each process normalises
with its own images' statistics) and its rate scaling, but combine the *updates* at every
iteration instead: the gradients are averaged across processes before Darknet's update is
applied, so the replicas never drift apart.  With one update per sync this equals Darknet's
averaging of weights after each device took its own step (the update is linear in the
gradient); Darknet's 4-iteration sync lets momentum and decay run separately in between.
"""
from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import DataConfig, detection_loader, detection_options
from .network import Darknet
from .train import Trainer

__all__ = ["TrainConfig", "train_detector", "checkpoint_due", "Progress"]


def checkpoint_due(i: int) -> tuple[bool, bool]:
    """(save <base>.backup, save <base>_<i>.weights) after iteration ``i``, as Darknet decides."""
    return i % 100 == 0, i % 10000 == 0 or (i < 1000 and i % 100 == 0)


@dataclass
class TrainConfig:
    data: str
    cfg: str
    weights: str | None = None
    clear: bool = False
    max_batches: int | None = None
    backup: str | None = None
    workers: int = 2
    seed: int | None = None
    device: str = "cpu"
    progress: bool = True
    checkpoint_every: int | None = None   # override Darknet's 100 (tests, tiny runs)
    log_every: int = 1
    extra: dict = field(default_factory=dict)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or forced)."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, stream=sys.stderr):
        self.total, self.start, self.stream = total, start, stream
        self.enabled = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, i: int, avg_loss: float) -> None:
        if not self.enabled or self.total <= 0:
            return
        done = (i - self.start) / max(self.total - self.start, 1)
        width = 30
        bar = "#" * int(done * width) + "-" * (width - int(done * width))
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(done, 1e-9) * (1 - done)
        self.stream.write(f"\r[{bar}] {i}/{self.total} avg {avg_loss:.3f} eta {eta / 60:.1f} min ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _plot_loss(csv_path: Path, png_path: Path) -> None:
    """The loss curve as a PNG (matplotlib, if installed)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = list(csv.DictReader(csv_path.open()))
    if not rows:
        return
    it = [int(r["iteration"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(it, [float(r["loss"]) for r in rows], lw=.6, alpha=.4, label="loss")
    ax.plot(it, [float(r["avg_loss"]) for r in rows], lw=1.5, label="avg loss (0.9 decay)")
    ax.set_xlabel("iteration (batches)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=.3)
    ax.legend()
    ax.set_title(csv_path.stem.replace("_log", ""))
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def _init_distributed(device: str):
    """rank, world size; one process per device, launched by torchrun or our own spawner."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


class DataParallelTrainer(Trainer):
    """A Trainer for one of several data-parallel replicas: before each update the gradients
    and the batch-norm rolling statistics are averaged across the replicas (Darknet's sync_nets
    averages the rolling statistics too), and the rate is Darknet's multi-GPU one (× replicas)."""

    def __init__(self, net, world_size: int, **kw):
        super().__init__(net, **kw)
        self.world_size = world_size

    def rate(self) -> float:
        return super().rate() * self.world_size

    def shared_tensors(self) -> list[torch.Tensor]:
        """What the replicas average before each update: gradients, then rolling statistics."""
        for s in self.slots:
            if s.param.grad is None:
                s.param.grad = torch.zeros_like(s.param)
        stats = [b for layer in self.net.layers for name, b in layer.named_buffers(recurse=False)
                 if name.startswith("rolling_")]
        return [s.param.grad for s in self.slots] + stats

    def average(self, tensors: list[torch.Tensor]) -> None:
        import torch.distributed as dist
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(self.world_size)

    def update(self) -> None:
        if self.world_size > 1:
            self.average(self.shared_tensors())
        super().update()


def train_detector(cfg: TrainConfig, out=print) -> Path:
    """Darknet's ``detector train``; returns the path of the final weights."""
    rank, world = _init_distributed(cfg.device)
    main = rank == 0
    say = out if main else (lambda *a, **k: None)
    data = DataConfig.from_file(cfg.data)
    backup = Path(cfg.backup or data.backup)
    backup.mkdir(parents=True, exist_ok=True)
    base = Path(cfg.cfg).stem
    say(base)

    if cfg.seed is not None:
        torch.manual_seed(cfg.seed + rank)
    net = Darknet(cfg.cfg, exact=False)
    if cfg.weights:
        net.load_weights(cfg.weights)
    if cfg.clear:
        net.seen = 0
    if cfg.max_batches is not None:
        net.options.max_batches = int(cfg.max_batches)
    device = torch.device(cfg.device)
    net.to(device).train()
    trainer = DataParallelTrainer(net, world)
    o = net.options
    imgs = trainer.batch * world
    say(f"Learning Rate: {o.learning_rate * world:g}, Momentum: {o.momentum:g}, Decay: {o.decay:g}")

    opts = detection_options(net)
    start = trainer.batch_num
    remaining = max(o.max_batches - start, 0)
    loader = detection_loader(data.train_list(), num_workers=cfg.workers,
                              seed=None if cfg.seed is None else cfg.seed * 1000 + rank,
                              iterations=remaining, **opts)

    log_path = backup / f"{base}_log.csv"
    new_log = not log_path.exists() or start == 0
    log_file = log_path.open("w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(["iteration", "loss", "avg_loss", "rate", "seconds", "images", "width", "height"])

    def save(name: str) -> None:
        if main:
            net.save_weights(backup / name)

    every = cfg.checkpoint_every
    progress = Progress(o.max_batches, start, enabled=cfg.progress and main)
    avg_loss = -1.
    interrupted = False
    previous_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        nonlocal interrupted
        interrupted = True

    if main and threading_main():
        signal.signal(signal.SIGINT, on_sigint)
    try:
        t_load = time.perf_counter()
        for images, truths in loader:
            if trainer.batch_num >= o.max_batches or interrupted:
                break
            h, w = images.shape[-2:]
            if (w, h) != (net.width, net.height):
                say("Resizing")
                say(f"{w}")
                net.resize(w, h)
            say(f"Loaded: {time.perf_counter() - t_load:f} seconds")
            t0 = time.perf_counter()
            loss = trainer.step(images.to(device), truths.to(device))
            if world > 1:
                import torch.distributed as dist
                t = torch.tensor([loss], dtype=torch.float64, device=device)
                dist.all_reduce(t)
                loss = float(t) / world
            avg_loss = loss if avg_loss < 0 else avg_loss * .9 + loss * .1
            i = trainer.batch_num
            seconds = time.perf_counter() - t0
            say(f"{i}: {loss:f}, {avg_loss:f} avg, {trainer.rate():f} rate, {seconds:f} seconds, {i * imgs} images")
            if main:
                log.writerow([i, f"{loss:.6g}", f"{avg_loss:.6g}", f"{trainer.last_rate:.6g}", f"{seconds:.4f}",
                              i * imgs, w, h])
                log_file.flush()
            progress.update(i, avg_loss)
            if every:
                backup_due, numbered_due = i % every == 0, i % every == 0
            else:
                backup_due, numbered_due = checkpoint_due(i)
            if backup_due:
                save(f"{base}.backup")
                _plot_loss(log_path, backup / f"{base}_loss.png") if main else None
            if numbered_due:
                save(f"{base}_{i}.weights")
            if not math.isfinite(loss):
                say(f"loss is {loss} at iteration {i}: stopping; the last good checkpoint is {base}.backup")
                raise FloatingPointError(f"non-finite loss at iteration {i}")
            t_load = time.perf_counter()
    finally:
        progress.close()
        if main and threading_main():
            signal.signal(signal.SIGINT, previous_handler)
        log_file.close()
    if loader.skipped:
        say(f"skipped {loader.skipped} bad samples: " + ", ".join(sorted(loader.bad_samples)[:10]))
    if interrupted:
        save(f"{base}.backup")
        say(f"Interrupted at iteration {trainer.batch_num}: saved {backup / (base + '.backup')}; "
            f"restart from it to continue")
        final = backup / f"{base}.backup"
    else:
        final = backup / f"{base}_final.weights"
        save(final.name)
    if main:
        _plot_loss(log_path, backup / f"{base}_loss.png")
    return final


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
