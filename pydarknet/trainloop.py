"""Darknet's ``detector train`` loop: data, iterations, log lines, checkpoints, several processes.

What a run prints, as ``train_detector`` in Darknet's ``examples/detector.c`` prints it: the
cfg's base name, ``Learning Rate: %g, Momentum: %g, Decay: %g``, then per iteration
``Resizing`` and the new size (every 10th iteration of the run when the detection layer has
``random=1``), ``Loaded: %f seconds`` and ``N: loss, avg avg, rate rate, S seconds, I images``
(``avg`` = 0.9·avg + 0.1·loss, started at the first loss).  ``Saving weights to ...`` goes to
stderr with every checkpoint, as Darknet's ``save_weights`` writes it.

What a run leaves in the backup folder, as Darknet names it (``base`` = the cfg's file name
without extension):

* ``<base>.backup`` every 100 iterations, ``<base>_<N>.weights`` at every 100th iteration
  below 1000 and every 10000th after, ``<base>_final.weights`` at the end; each written to a
  temporary file in the same folder, flushed to disk and renamed over the old one, so a crash
  (even ``kill -9``) never leaves half a checkpoint: the file is the previous complete one
  or the new complete one.  (A killed write can leave its ``<name>.<random>.tmp`` behind.)
* ``<base>_log.csv`` (one row per iteration) and ``<base>_loss.png`` (the loss curve, redrawn
  at every ``.backup``).

Stopping and resuming.  Ctrl-C (SIGINT) lets the current iteration finish, saves
``<base>.backup`` and returns; the command line then exits with status 130 (the shell's code
for "stopped by SIGINT"; 0 means the run reached ``max_batches``).  A second Ctrl-C more than
a second later aborts at once without saving.  Starting again with that file as the weights
continues where it stopped: ``seen`` travels in the weights header, so the iteration numbers
(the first is ``seen / imgs + 1``), the learning-rate schedule, ``burn_in`` and
``max_batches`` carry on; ``clear`` (``--clear``) resets ``seen`` to 0 and starts the schedule
over.  Momentum is not in the file (nor in Darknet's), so it restarts from zero.

A non-finite loss or gradient stops the run with :class:`TrainingError` *before* the update
that would spoil the weights, naming the iteration and the last checkpoint; bad samples
(missing image or label file, a class out of range, coordinates outside 0..1) are skipped
with a warning naming the file and line, counted, and summarised at the end.

Several processes: the data-parallel scheme
-------------------------------------------
One process per device (``torch.distributed``: gloo on CPU, NCCL on GPU), ``world`` of them.

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
  multiple of 100 (Darknet's ``i % 100 == 0`` can be stepped over).  The logged image count
  is ``batch_num · batch``, the images actually seen; Darknet prints ``ngpus`` times that.
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

import csv
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import remove_dead_temporaries
from .data import (DataConfig, DataError, DetectionBatchSampler, DetectionDataset, DetectionLoader, MultiScale,
                   detection_options, label_path, multiscale_size, read_labels)
from .network import Darknet
from .outputs import keep_aside
from .train import Trainer

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "train_detector", "checkpoint_due", "Progress",
           "DataParallelTrainer", "scan_samples"]

_F = np.float32


class TrainingError(RuntimeError):
    """Training had to stop (a non-finite loss or gradient); the message says where and why."""


def checkpoint_due(i: int, previous: int | None = None, every: int | None = None) -> tuple[bool, bool]:
    """(save <base>.backup, save <base>_<i>.weights) after the iteration that took the batch
    number from ``previous`` (default ``i - 1``) to ``i``.

    With one process this is Darknet's rule: ``i % 100 == 0``, and ``i % 10000 == 0 or
    (i < 1000 and i % 100 == 0)``.  When the batch number moves by more than one (several
    processes), a multiple stepped over counts as reached.  ``every`` replaces both periods.
    """
    prev = i - 1 if previous is None else previous

    def crossed(period: int) -> bool:
        return i // period > prev // period

    if every:
        return crossed(every), crossed(every)
    backup = crossed(100)
    return backup, crossed(10000) or (i < 1000 and backup)


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
    log_every: int = 1                    # print every N-th iteration's lines (the CSV has all)
    exact: bool = False                   # Darknet-order batch-norm sums (slower, loss within 1e-6)
    augment: bool = True                  # Darknet's jitter/colour/flip; False: letterboxed as is
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train_detector` returns; usable as a path (``os.fspath``) to the weights."""
    weights: Path            # <base>_final.weights, or <base>.backup when interrupted
    interrupted: bool
    iterations: int          # iterations of this run
    batch_num: int           # seen / batch at the end
    seen: int
    skipped: int             # bad samples skipped (this process's)

    def __fspath__(self) -> str:
        return os.fspath(self.weights)

    def __str__(self) -> str:
        return str(self.weights)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or forced)."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, stream=sys.stderr):
        self.total, self.start, self.stream = total, start, stream
        self.enabled = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, i: int, avg_loss: float) -> None:
        if not self.enabled or self.total <= 0:
            return
        done = min(max((i - self.start) / max(self.total - self.start, 1), 0.), 1.)
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
    """The loss curve as a PNG (matplotlib, if installed); written atomically."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    it = [int(r["iteration"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(it, [float(r["loss"]) for r in rows], lw=.6, alpha=.4, label="loss")
    ax.plot(it, [float(r["avg_loss"]) for r in rows], lw=1.5, label="avg loss (0.9 decay)")
    ax.set_xlabel("iteration (batches)")
    ax.set_ylabel("loss")
    if all(float(r["loss"]) > 0 for r in rows):
        ax.set_yscale("log")
    ax.grid(alpha=.3)
    ax.legend()
    ax.set_title(csv_path.stem.replace("_log", ""))
    fig.tight_layout()
    tmp = png_path.with_name(png_path.stem + f".{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, png_path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


# --- several processes -----------------------------------------------------------------------

def _init_distributed(device: str) -> tuple[int, int, bool]:
    """(rank, world size, whether we initialised the process group); one process per device,
    launched by torchrun or by ``pydarknet.cli`` (``MASTER_ADDR``, ``RANK``, ... set)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1, False
    import torch.distributed as dist
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _broadcast_state(net: Darknet) -> None:
    """Rank 0's parameters, buffers and ``seen`` on every process."""
    import torch.distributed as dist
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            dist.broadcast(t.data, 0)
    seen = torch.tensor([int(net.seen)], dtype=torch.int64, device=next(net.parameters()).device)
    dist.broadcast(seen, 0)
    net.seen = int(seen.item())


def _agree_on_seed(seed: int | None, device: torch.device) -> int:
    """The run's seed, the same on every process (rank 0 draws one when none is given)."""
    import torch.distributed as dist
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % 2**62
    t = torch.tensor([int(seed)], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return int(t.item())


class DataParallelTrainer(Trainer):
    """A :class:`~pydarknet.train.Trainer` for one of ``world_size`` data-parallel replicas.

    Before each update the gradients are averaged over the replicas (``average``, an
    all-reduce by default; override it to simulate the scheme in one process), the rate is
    Darknet's multi-GPU one (× ``world_size``) and ``seen`` grows by the images of every
    replica.  With ``world_size=1`` it is the plain Trainer, plus the checks that stop on a
    non-finite loss or gradient before the update.  See the module docstring.
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

    def forward_backward(self, images: torch.Tensor, truths: torch.Tensor) -> float:
        cost = super().forward_backward(images, truths)
        if not math.isfinite(cost):
            raise TrainingError(f"the loss is {cost} at iteration {self.batch_num} (seen {self.net.seen}); "
                                f"the update was not applied")
        return cost

    def update(self) -> None:
        if self.world_size > 1:
            self.average(self.shared_tensors())
        grads = [s.param.grad for s in self.slots if s.param.grad is not None]
        if grads:
            total = torch.stack([g.sum(dtype=torch.float64) for g in grads]).sum()
            if not torch.isfinite(total):
                raise TrainingError(f"a gradient is not finite at iteration {self.batch_num} "
                                    f"(seen {self.net.seen}); the update was not applied")
        super().update()

    def step(self, images: torch.Tensor, truths: torch.Tensor) -> float:
        # The other replicas' images count too: seen grows by batch·world an iteration, and the
        # update's rate is taken at the batch number after all of them, as in a single process.
        self.net.seen += (self.world_size - 1) * images.shape[0]
        return super().step(images, truths)


class _SharedScale(MultiScale):
    """Darknet's ``random=1`` sizes with the batch number moving by ``stride`` an iteration
    (several processes), drawn from a seed every process shares."""

    def __init__(self, *a, stride: int = 1, **kw):
        super().__init__(*a, **kw)
        self.stride = int(stride)

    def size(self, iteration: int) -> tuple[int, int]:
        if not self.random:
            return self.width, self.height
        first = iteration - iteration % self.every
        batch = self.start_batch + first * self.stride
        return multiscale_size(batch, self.max_batches, np.random.default_rng([self.seed, 3, batch]))

    __call__ = size


class _StopRequest:
    """SIGINT handler: the first Ctrl-C asks to stop after the current iteration; another one,
    more than ``grace`` seconds later, aborts (KeyboardInterrupt).  One arriving within
    ``grace`` is the same Ctrl-C seen twice (the terminal's and the launcher's forwarded one)."""

    def __init__(self, announce: bool, grace: float = 1.0):
        self.requested = False
        self.first: float | None = None
        self.announce, self.grace = announce, grace
        self.previous = None
        self.installed = False

    def __call__(self, signum, frame):
        now = time.monotonic()
        if self.first is None:
            self.first, self.requested = now, True
            if self.announce:
                os.write(2, b"\nInterrupt: stopping after this iteration and saving the backup "
                            b"(Ctrl-C again to abort without saving)\n")
        elif now - self.first > self.grace:
            raise KeyboardInterrupt

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self)
            self.installed = True

    def restore(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.SIG_DFL)
            self.installed = False


_LOG_FIELDS = ["iteration", "loss", "avg_loss", "rate", "seconds", "images", "seen", "width", "height", "time"]


def _open_log(path: Path, start: int):
    """The CSV log: a new one for a run from batch 0; else the old one's rows up to ``start``
    (a resumed run continues it).  An earlier log that would lose rows (another run's, or rows
    past the checkpoint this run resumes from) is kept aside as ``<base>_log.<N>.csv`` first."""
    rows, everything = [], None
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            everything = list(reader) if reader.fieldnames == _LOG_FIELDS else None
        if start > 0 and everything is not None:
            rows = [r for r in everything if r.get("iteration", "").isdigit() and int(r["iteration"]) <= start]
        if everything is None or len(rows) < len(everything):
            kept = keep_aside(path)
            print(f"the earlier log {path.name} was kept as {kept}", file=sys.stderr, flush=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, _LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    f = path.open("a", newline="")
    return f, csv.writer(f)


def _worker_died(e: BaseException) -> bool:
    """Whether an exception from the loader means one of its worker processes died."""
    return "DataLoader worker" in str(e) or isinstance(e, (ConnectionError, EOFError))


def _shutdown(loader: DetectionLoader) -> None:
    """Stop the loader's worker processes now rather than at garbage collection."""
    it = getattr(loader.loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        try:
            it._shutdown_workers()
        except Exception:  # noqa: BLE001 - best effort at the end of a run
            pass


def scan_samples(dataset: DetectionDataset) -> list[str]:
    """Check every listed sample once, before training: the image exists, its label file
    exists and its lines are valid (``read_labels``).  Returns one message per unusable
    sample, naming the list file and line for a missing image and the label file and line
    for a bad label.  (Unreadable image contents are only found when the image is loaded.)"""
    lines: list[int] = []
    if dataset.list_path is not None:
        try:
            text = dataset.list_path.read_text(encoding="utf-8-sig")
            lines = [n for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        except OSError:
            lines = []
    problems = []
    for i in range(len(dataset)):
        path = dataset.image_path(i)
        at = f"{dataset.list_path}:{lines[i]}: " if i < len(lines) else ""
        if not os.path.isfile(path):
            problems.append(f"{at}no such image file {path}")
        elif not os.path.isfile(label_path(path)):
            problems.append(f"{label_path(path)}: no such label file (for image {path})")
        else:
            try:
                read_labels(label_path(path), dataset.classes)
                continue
            except DataError as e:
                problems.append(str(e))
        dataset.mark_bad(i, problems[-1])    # reported here once, not again when training draws it
    return problems


def train_detector(cfg: TrainConfig, out=None) -> TrainResult:
    """Darknet's ``detector train`` (see the module docstring).

    ``out(line)`` receives the log lines (default: print to stdout, flushed).  Runs as one
    of several data-parallel processes when ``WORLD_SIZE`` > 1 is set in the environment
    (``torchrun``, or ``pydarknet.cli``'s ``--procs``/``--gpus``).  Raises ``DataError`` /
    ``CfgError`` / ``WeightsError`` for bad input, :class:`TrainingError` when training has
    to stop; returns a :class:`TrainResult` when it reached ``max_batches`` or was
    interrupted (Ctrl-C) and saved ``<base>.backup``.
    """
    rank, world, owns_group = _init_distributed(cfg.device)
    try:
        return _train(cfg, out, rank, world)
    finally:
        if owns_group:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train(cfg: TrainConfig, out, rank: int, world: int) -> TrainResult:
    main = rank == 0
    if out is None:
        def out(line):
            print(line, flush=True)
    say = out if main else (lambda *a, **k: None)

    def err(line):
        if main:
            print(line, file=sys.stderr, flush=True)

    data = DataConfig.from_file(cfg.data)
    backup = Path(cfg.backup or data.backup)
    backup.mkdir(parents=True, exist_ok=True)
    if main:
        remove_dead_temporaries(backup)     # of checkpoint writers killed before they renamed
    base = Path(cfg.cfg).stem
    device = torch.device(cfg.device)
    say(base)

    seed = _agree_on_seed(cfg.seed, device) if world > 1 else cfg.seed
    if seed is not None:
        torch.manual_seed(seed + rank)
    net = Darknet(cfg.cfg, exact=cfg.exact)
    if cfg.weights:
        err(f"Loading weights from {cfg.weights}...")
        net.load_weights(cfg.weights, partial=True)   # a backbone (darknet19_448.conv.23) is fine
        err("Done!")
    if cfg.clear:
        net.seen = 0
    o = net.options
    if cfg.max_batches is not None:
        o.max_batches = int(cfg.max_batches)
    net.to(device).train()
    if world > 1:
        _broadcast_state(net)
    # One iteration trains on trainer.batch images per process: Darknet's imgs = batch*subdivisions*ngpus.
    trainer = DataParallelTrainer(net, world, quirk_warnings=main)
    say(f"Learning Rate: {float(_F(o.learning_rate) * _F(world)):g}, Momentum: {o.momentum:g}, "
        f"Decay: {o.decay:g}")

    # --- data: this process's images, sizes shared by all processes -------------------------
    opts = detection_options(net)
    start = trainer.batch_num
    if start >= o.max_batches > 0 and cfg.weights:
        raise TrainingError(f"{cfg.weights} has already seen {net.seen} images, batch {start}, and max_batches is "
                            f"{o.max_batches}: nothing to train (Darknet would only save _final.weights); use "
                            f"--clear to restart the schedule from these weights, or raise max_batches")
    remaining = max(o.max_batches - start, 0)
    iterations = -(-remaining // world)
    if seed is None:
        data_seed = None
    elif rank == 0:
        data_seed = seed
    else:
        data_seed = int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] % 2**62)
    dataset = DetectionDataset(data.resolve(data.train), opts["width"], opts["height"], opts["classes"],
                               opts["jitter"], opts["hue"], opts["saturation"], opts["exposure"],
                               opts["max_boxes"], augment=cfg.augment, seed=data_seed)
    schedule = _SharedScale(opts["width"], opts["height"], opts["max_batches"], random=opts["random"],
                            start_batch=start, seed=dataset.seed if seed is None else seed, stride=world)
    sampler = DetectionBatchSampler(len(dataset), opts["batch_size"], schedule, dataset.seed, iterations)
    # Fork the loader's workers on Linux even in a process that was itself spawned (whose
    # default start method is then "spawn": each worker would import torch again).
    context = "fork" if sys.platform.startswith("linux") and cfg.workers > 0 else None
    loader = DetectionLoader(dataset, sampler, num_workers=cfg.workers, multiprocessing_context=context)
    if main:
        problems = scan_samples(dataset)
        if len(problems) == len(dataset):
            raise DataError(f"{dataset.list_path}: none of the {len(dataset)} listed samples can be used: "
                            + "; ".join(problems[:5]))
        if problems:
            more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
            err(f"warning: {len(problems)} of {len(dataset)} listed training samples cannot be used and will be "
                f"skipped: " + "; ".join(problems[:10]) + more)

    log_file, log = _open_log(backup / f"{base}_log.csv", start) if main else (None, None)
    log_path = backup / f"{base}_log.csv"
    last_checkpoint: Path | None = None

    def where() -> str:
        if last_checkpoint is not None:
            return f"the last checkpoint is {last_checkpoint}"
        return "no checkpoint saved yet" + (f" (the run started from {cfg.weights})" if cfg.weights else "")

    def save(name: str) -> None:
        nonlocal last_checkpoint
        if main:
            path = backup / name
            err(f"Saving weights to {path}")
            net.save_weights(path)
            last_checkpoint = path

    progress = Progress(o.max_batches, start, enabled=cfg.progress and main)
    avg_loss = _F(-1)
    stop = _StopRequest(announce=main)
    stop.install()
    k = 0           # iterations of this run (Darknet's count)
    batches = iter(loader)
    try:
        while trainer.batch_num < o.max_batches:
            if stop.requested and world == 1:
                break
            t_load = time.perf_counter()
            if schedule.changes_at(k):
                say("Resizing")
                say(f"{schedule.size(k)[0]}")
            # The loader's worker processes start on the first batch: keep SIGINT from them
            # (a Ctrl-C reaches the whole process group), so that only this process handles it.
            masked = k == 0 and hasattr(signal, "pthread_sigmask")
            if masked:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                images, truths = next(batches)
            except StopIteration:
                break
            except DataError:
                raise
            except Exception as e:
                if stop.requested and world == 1:
                    break
                if _worker_died(e):
                    raise TrainingError(f"a data-loading worker process died during iteration "
                                        f"{trainer.batch_num + world} ({type(e).__name__}: {str(e).strip()}); "
                                        f"training stopped; {where()}") from e
                raise TrainingError(f"loading the data of iteration {trainer.batch_num + world} failed "
                                    f"({type(e).__name__}: {e}); training stopped; {where()}") from e
            finally:
                if masked:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            if stop.requested and world == 1:
                break
            h, w = images.shape[-2:]
            if (w, h) != (net.width, net.height):
                net.resize(w, h)
            show = (k + 1) % max(cfg.log_every, 1) == 0
            if show:
                say(f"Loaded: {time.perf_counter() - t_load:f} seconds")

            previous = trainer.batch_num
            t0 = time.perf_counter()
            try:
                loss = trainer.step(images.to(device), truths.to(device))
            except TrainingError as e:
                raise TrainingError(f"{e}. Training stopped; {where()}. A lower learning_rate or a longer "
                                    f"burn_in may help, or look for bad labels.") from None
            stop_all = stop.requested
            if world > 1:
                import torch.distributed as dist
                t = torch.tensor([loss, float(stop.requested)], dtype=torch.float64, device=device)
                dist.all_reduce(t)
                loss = float(_F(t[0].item()) / _F(world))
                stop_all = t[1].item() > 0
            seconds = time.perf_counter() - t0
            avg_loss = _F(loss) if avg_loss < 0 else avg_loss
            avg_loss = _F(float(avg_loss) * .9 + float(_F(loss)) * .1)
            i = trainer.batch_num
            rate = trainer.rate()
            if show:
                say(f"{i}: {loss:f}, {float(avg_loss):f} avg, {rate:f} rate, {seconds:f} seconds, "
                    f"{i * trainer.batch} images")
            if main:
                log.writerow([i, f"{loss:.7g}", f"{float(avg_loss):.7g}", f"{rate:.7g}", f"{seconds:.4f}",
                              i * trainer.batch, int(net.seen), int(w), int(h), f"{time.time():.3f}"])
                log_file.flush()
            progress.update(i, float(avg_loss))
            backup_due, numbered_due = checkpoint_due(i, previous, cfg.checkpoint_every)
            if backup_due:
                save(f"{base}.backup")
                if main:
                    _plot_loss(log_path, backup / f"{base}_loss.png")
            if numbered_due:
                save(f"{base}_{i}.weights")
            k += 1
            if stop_all:
                stop.requested = True
                break
    except RuntimeError as e:
        # The loader's SIGCHLD handler raises this wherever the loop happens to be.
        if isinstance(e, TrainingError) or not _worker_died(e):
            raise
        raise TrainingError(f"a data-loading worker process died during iteration {trainer.batch_num + world} "
                            f"({type(e).__name__}: {str(e).strip()}); training stopped; {where()}") from e
    finally:
        progress.close()
        stop.restore()
        if log_file is not None:
            log_file.close()
        _shutdown(loader)

    skipped = loader.skipped
    if world > 1:
        import torch.distributed as dist
        t = torch.tensor([skipped], dtype=torch.int64, device=device)
        dist.all_reduce(t)
        skipped_all = int(t.item())
    else:
        skipped_all = skipped
    if skipped_all:
        files = sorted(loader.bad_samples)
        more = f" and {len(files) - 10} more" if len(files) > 10 else ""
        # the reasons were reported when each sample was first found unusable: name the files only
        err(f"warning: skipped {skipped_all} bad samples" + (" (all processes)" if world > 1 else "") +
            ": " + ", ".join(files[:10]) + more)
    if stop.requested:
        final = backup / f"{base}.backup"
        save(final.name)
        say(f"Interrupted at iteration {trainer.batch_num}: saved {final}; pass it as the weights to continue")
    else:
        final = backup / f"{base}_final.weights"
        save(final.name)
    if main and log_path.exists():
        _plot_loss(log_path, backup / f"{base}_loss.png")
    return TrainResult(final, stop.requested, k, trainer.batch_num, int(net.seen), skipped)
