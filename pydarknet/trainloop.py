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
  or the new complete one.  
* ``<base>_log.csv`` (one row per iteration; a fresh run keeps an earlier log as
  ``<base>_log.N.csv``) and ``<base>_loss.png`` (the loss curve, redrawn at every ``.backup``).

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

Several processes (``torchrun``, ``--procs``, ``--gpus``): see :mod:`pydarknet.distributed`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import (DataConfig, DataError, DetectionBatchSampler, DetectionDataset, DetectionLoader, MultiScale,
                   detection_options, label_path, read_labels)
from .atomic import remove_dead_temporaries
from .distributed import DataParallelTrainer, Replicas, init_replicas
from .engine import Checkpoints, CsvLog, Engine, Hook, LogLines, LossPlot, ProgressBar
from .network import Darknet
from .train import TrainingError

__all__ = ["TrainConfig", "TrainResult", "train_detector", "scan_samples", "prepare_network", "standard_hooks",
           "run_engine", "start_run", "say_and_err", "describe_loader_failure", "report_skipped", "shutdown_loader"]


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
    on_iteration: object = None           # on_iteration(batch_num, net) after each iteration (may cut max_batches)


@dataclass
class TrainResult:
    """What a training run returns; usable as a path (``os.fspath``) to the weights."""
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


class _Announce(Hook):
    """Darknet's ``Resizing`` lines before the iterations where multi-scale picks a new size."""

    def __init__(self, schedule: MultiScale):
        self.schedule = schedule

    def before_batch(self, engine, k):
        if self.schedule.changes_at(k):
            engine.say("Resizing")
            engine.say(f"{self.schedule.size(k)[0]}")


class _Callback(Hook):
    """``TrainConfig.on_iteration(batch_num, net)`` after each iteration's checkpoints."""

    def __init__(self, fn):
        self.fn = fn

    def after_step(self, engine, s):
        self.fn(s.iteration, engine.net)


def describe_loader_failure(e: BaseException, loading: bool) -> str | None:
    """What an exception met during training means, or None to let it through as it is:
    a worker process of the data loader died, or (while loading a batch) loading failed."""
    if isinstance(e, DataError):
        return None
    if "DataLoader worker" in str(e) or isinstance(e, (ConnectionError, EOFError)):
        return "a data-loading worker process died"
    return "loading the data failed" if loading else None


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
        lpath = label_path(path)
        if not os.path.isfile(path):
            problems.append(f"{at}no such image file {path}")
        elif not os.path.isfile(lpath):
            problems.append(f"{lpath}: no such label file (for image {path})")
        else:
            try:
                read_labels(lpath, dataset.classes, class_only=dataset.class_only)
                continue
            except DataError as e:
                problems.append(str(e))
        dataset.mark_bad(i, problems[-1])    # reported here once, not again when training draws it
    return problems


def _report_unusable(dataset: DetectionDataset, err) -> None:
    problems = scan_samples(dataset)
    if len(problems) == len(dataset):
        raise DataError(f"{dataset.list_path}: none of the {len(dataset)} listed samples can be used: "
                        + "; ".join(problems[:5]))
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        err(f"warning: {len(problems)} of {len(dataset)} listed training samples cannot be used and will be "
            f"skipped: " + "; ".join(problems[:10]) + more)


def prepare_network(cfg: TrainConfig, replicas: Replicas, err) -> Darknet:
    """The network to train: built, its weights loaded (``clear`` resets ``seen``),
    ``max_batches`` overridden, on its device, rank 0's state on every process."""
    net = Darknet(cfg.cfg, exact=cfg.exact)
    if cfg.weights:
        err(f"Loading weights from {cfg.weights}...")
        net.load_weights(cfg.weights, partial=True)   # a backbone (darknet19_448.conv.23) is fine
        err("Done!")
    if cfg.clear:
        net.seen = 0
    if cfg.max_batches is not None:
        net.options.max_batches = int(cfg.max_batches)
    o = net.options
    batch = max(o.batch // o.subdivisions, 1) * o.subdivisions
    if cfg.weights and int(net.seen) // batch >= o.max_batches > 0:
        raise TrainingError(f"{cfg.weights} has already seen {net.seen} images, batch {int(net.seen) // batch}, and "
                            f"max_batches is {o.max_batches}: nothing to train (Darknet would only save "
                            f"_final.weights); use --clear to restart the schedule from these weights, or raise "
                            f"max_batches")
    net.to(torch.device(cfg.device)).train()
    if replicas.world > 1:
        replicas.broadcast_state(net)
    return net


def start_run(cfg: TrainConfig, replicas: Replicas, say, err):
    """(net, trainer, seed): the run's seed agreed by the processes, the network prepared, its
    trainer, and Darknet's ``Learning Rate: ...`` line.  One iteration trains on trainer.batch
    images per process: Darknet's imgs = batch*subdivisions*ngpus."""
    seed = replicas.agree_on_seed(cfg.seed, torch.device(cfg.device)) if replicas.world > 1 else cfg.seed
    if seed is not None:
        torch.manual_seed(seed + replicas.rank)
    net = prepare_network(cfg, replicas, err)
    trainer = DataParallelTrainer(net, replicas.world, quirk_warnings=replicas.main)
    o = net.options
    say(f"Learning Rate: {float(np.float32(o.learning_rate) * np.float32(replicas.world)):g}, "
        f"Momentum: {o.momentum:g}, Decay: {o.decay:g}")
    return net, trainer, seed


def standard_hooks(cfg: TrainConfig, backup: Path, base: str, main: bool) -> tuple[list[Hook], Checkpoints]:
    """Darknet's lines, the CSV log and loss plot (main process), a progress bar, checkpoints."""
    checkpoints = Checkpoints(backup, base, cfg.checkpoint_every, cfg.weights)
    log = backup / f"{base}_log.csv"
    hooks: list[Hook] = [LogLines(cfg.log_every)]
    if main:
        hooks += [CsvLog(log), ProgressBar(cfg.progress)]
    hooks.append(checkpoints)
    if main:
        hooks.append(LossPlot(log, backup / f"{base}_loss.png", cfg.checkpoint_every))
    return hooks, checkpoints


def say_and_err(out, main: bool):
    if out is None:
        def out(line):
            print(line, flush=True)
    say = out if main else (lambda *a, **k: None)

    def err(line):
        if main:
            print(line, file=sys.stderr, flush=True)
    return say, err


def _detection_data(cfg: TrainConfig, net: Darknet, replicas: Replicas, seed, start: int, iterations: int):
    """(loader, multi-scale schedule) of this process's training images."""
    data = DataConfig.from_file(cfg.data)
    opts = detection_options(net)
    dataset = DetectionDataset(data.resolve(data.train), opts["width"], opts["height"], opts["classes"],
                               opts["jitter"], opts["hue"], opts["saturation"], opts["exposure"],
                               opts["max_boxes"], augment=cfg.augment, seed=replicas.data_seed(seed),
                               class_only=opts["class_only"])
    schedule = MultiScale(opts["width"], opts["height"], opts["max_batches"], random=opts["random"],
                          start_batch=start, seed=dataset.seed if seed is None else seed, stride=replicas.world)
    sampler = DetectionBatchSampler(len(dataset), opts["batch_size"], schedule, dataset.seed, iterations)
    # Fork the loader's workers on Linux even in a process that was itself spawned (whose
    # default start method is then "spawn": each worker would import torch again).
    context = "fork" if sys.platform.startswith("linux") and cfg.workers > 0 else None
    return DetectionLoader(dataset, sampler, num_workers=cfg.workers, multiprocessing_context=context), schedule


def shutdown_loader(loader: DetectionLoader) -> None:
    """Stop the loader's worker processes now rather than at garbage collection."""
    it = getattr(loader.loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        try:
            it._shutdown_workers()
        except Exception:  # noqa: BLE001 - best effort at the end of a run
            pass


def report_skipped(loader, replicas: Replicas, device, err) -> None:
    total = replicas.total(loader.skipped, device)
    if total:
        files = sorted(loader.bad_samples)
        more = f" and {len(files) - 10} more" if len(files) > 10 else ""
        # the reasons were reported when each sample was first found unusable: name the files only
        err(f"warning: skipped {total} bad samples" + (" (all processes)" if replicas.world > 1 else "") +
            ": " + ", ".join(files[:10]) + more)


def run_engine(trainer, batches, hooks, checkpoints: Checkpoints, cfg: TrainConfig, replicas: Replicas,
               say, err, describe_failure=None) -> TrainResult:
    """Run the engine and return what it left (used by every training command)."""
    engine = Engine(trainer, iter(batches), hooks, device=cfg.device, replicas=replicas, say=say, err=err,
                    main=replicas.main, describe_failure=describe_failure)
    interrupted = engine.run()
    net = trainer.net
    return TrainResult(checkpoints.final, interrupted, engine.iterations, trainer.batch_num, int(net.seen), 0)


def train_detector(cfg: TrainConfig, out=None) -> TrainResult:
    """Darknet's ``detector train`` (see the module docstring).

    ``out(line)`` receives the log lines (default: print to stdout, flushed).  Runs as one
    of several data-parallel processes when torchrun's ``WORLD_SIZE`` > 1 is set in the
    environment.  Raises ``DataError`` / ``CfgError`` / ``WeightsError`` for bad input,
    :class:`TrainingError` when training has to stop; returns a :class:`TrainResult` when it
    reached ``max_batches`` or was interrupted (Ctrl-C) and saved ``<base>.backup``.
    """
    replicas = init_replicas(cfg.device)
    try:
        return _train(cfg, out, replicas)
    finally:
        replicas.close()


def _train(cfg: TrainConfig, out, replicas: Replicas) -> TrainResult:
    say, err = say_and_err(out, replicas.main)
    data = DataConfig.from_file(cfg.data)
    backup = Path(cfg.backup or data.backup)
    backup.mkdir(parents=True, exist_ok=True)
    if replicas.main:
        remove_dead_temporaries(backup)     # of checkpoint writers killed before they renamed
    base = Path(cfg.cfg).stem
    say(base)
    net, trainer, seed = start_run(cfg, replicas, say, err)
    o = net.options
    iterations = -(-max(o.max_batches - trainer.batch_num, 0) // replicas.world)
    loader, schedule = _detection_data(cfg, net, replicas, seed, trainer.batch_num, iterations)
    if replicas.main:
        _report_unusable(loader.dataset, err)
    hooks, checkpoints = standard_hooks(cfg, backup, base, replicas.main)
    if cfg.on_iteration is not None:
        hooks.append(_Callback(cfg.on_iteration))
    try:
        result = run_engine(trainer, loader, [_Announce(schedule)] + hooks, checkpoints, cfg, replicas, say, err,
                            describe_loader_failure)
    finally:
        shutdown_loader(loader)
    report_skipped(loader, replicas, torch.device(cfg.device), err)
    result.skipped = loader.skipped
    return result
