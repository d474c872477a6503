"""The training engine: Darknet's iteration loop, with what happens around it as hooks.

:class:`Engine` pulls batches, runs :meth:`Trainer.step <pydarknet.train.Trainer.step>`, keeps
Darknet's running average (``avg = 0.9·avg + 0.1·loss``, started at the first loss) and hands
a :class:`Step` record to its hooks.  Everything else a run does is a hook with one job:
:class:`LogLines` (Darknet's printed lines), :class:`CsvLog` (``<base>_log.csv``),
:class:`Checkpoints` (``<base>.backup``, ``<base>_N.weights``, ``<base>_final.weights``),
:class:`LossPlot` (``<base>_loss.png``), :class:`ProgressBar` (tqdm).  Ctrl-C is
:class:`StopRequest`.  The detector and the classifier loops are the same engine with
different data.
"""
from __future__ import annotations

import csv
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .outputs import keep_aside
from .plots import plot_loss
from .train import Trainer, TrainingError

__all__ = ["Engine", "Hook", "Step", "LogLines", "CsvLog", "Checkpoints", "LossPlot", "ProgressBar",
           "StopRequest", "checkpoint_due", "LOG_FIELDS"]

_F = np.float32
LOG_FIELDS = ["iteration", "loss", "avg_loss", "rate", "seconds", "images", "seen", "width", "height", "time"]


@dataclass
class Step:
    """What one iteration did, as Darknet prints and logs it."""
    iteration: int        # the batch number after the update (seen / batch)
    previous: int         # the batch number before it
    loss: float
    avg_loss: float
    rate: float
    seconds: float        # the step itself
    load_seconds: float   # waiting for the batch
    images: int           # iteration · batch, Darknet's printed image count
    seen: int
    width: int
    height: int
    count: int            # iterations of this run so far, this one included


class Hook:
    """Something done around the loop; every method is optional."""

    def start(self, engine: "Engine") -> None:
        """Before the first batch."""

    def before_batch(self, engine: "Engine", k: int) -> None:
        """Before the k-th batch (0-based) of this run is loaded."""

    def after_step(self, engine: "Engine", step: Step) -> None:
        """After each iteration's update."""

    def close(self, engine: "Engine") -> None:
        """Release what the hook holds (files, bars); runs even when the loop failed."""

    def end(self, engine: "Engine", interrupted: bool) -> None:
        """After a loop that finished (max_batches) or was interrupted (Ctrl-C)."""


class StopRequest:
    """SIGINT handler: the first Ctrl-C asks to stop after the current iteration; another one,
    more than ``grace`` seconds later, aborts (KeyboardInterrupt).  One arriving within
    ``grace`` is the same Ctrl-C seen twice (the terminal's and a launcher's forwarded one)."""

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


class Engine:
    """Runs ``trainer`` on ``batches`` until the schedule's ``max_batches`` or a stop request.

    ``replicas`` (see :mod:`pydarknet.distributed`) agrees on the loss and the stop request
    when several processes train together; ``say``/``err`` print on the main process only.
    """

    def __init__(self, trainer: Trainer, batches: Iterator, hooks: list[Hook], *, device="cpu",
                 replicas=None, say: Callable[[str], None] = print, err: Callable[[str], None] = print,
                 main: bool = True, describe_failure: Callable[[BaseException, bool], str | None] | None = None):
        self.trainer, self.net = trainer, trainer.net
        self.batches, self.hooks = batches, hooks
        self.device = torch.device(device)
        self.replicas = replicas
        self.say, self.err, self.main = say, err, main
        self.stop = StopRequest(announce=main)
        # (exception, while loading a batch) -> what it means, or None to let it through
        self.describe_failure = describe_failure or (lambda e, loading: None)
        self.where = lambda: "no checkpoint saved yet"   # Checkpoints replaces it

    @property
    def world(self) -> int:
        return self.replicas.world if self.replicas else 1

    def run(self) -> bool:
        """The loop; returns whether it was interrupted (Ctrl-C)."""
        for h in self.hooks:
            h.start(self)
        self.stop.install()
        avg = _F(-1)
        k = 0
        interrupted = False
        try:
            while self.trainer.batch_num < self.net.options.max_batches:
                batch = self._next_batch(k)
                if batch is None or (self.stop.requested and self.world == 1):
                    break
                step, stop_all = self._step(*batch, k, avg)
                avg = _F(step.avg_loss)
                for h in self.hooks:
                    h.after_step(self, step)
                k += 1
                if stop_all:
                    self.stop.requested = True
                    break
            interrupted = self.stop.requested
        except RuntimeError as e:
            # A data loader's SIGCHLD handler raises wherever the loop happens to be.
            failure = e if isinstance(e, TrainingError) else self._failure(e, loading=False)
            if failure is e:
                raise
            raise failure from e
        finally:
            self.stop.restore()
            self.iterations = k
            for h in self.hooks:
                h.close(self)
        for h in self.hooks:
            h.end(self, interrupted)
        return interrupted

    def _next_batch(self, k: int):
        """(images, truths, load seconds), or None when the data ran out or a stop came."""
        if self.stop.requested and self.world == 1:
            return None
        t0 = time.perf_counter()
        for h in self.hooks:
            h.before_batch(self, k)
        # Data-loading worker processes start on the first batch: keep SIGINT from them (a
        # Ctrl-C reaches the whole process group) so that only this process handles it.
        masked = k == 0 and hasattr(signal, "pthread_sigmask")
        if masked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            images, truths = next(self.batches)
        except StopIteration:
            return None
        except TrainingError:
            raise
        except Exception as e:  # noqa: BLE001 - turned into a TrainingError naming the iteration
            if self.stop.requested and self.world == 1:
                return None
            failure = self._failure(e, loading=True)
            if failure is e:
                raise
            raise failure from e
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return images, truths, time.perf_counter() - t0

    def _failure(self, e: BaseException, loading: bool) -> BaseException:
        """The exception to raise for ``e``: a TrainingError naming the iteration and the last
        checkpoint when ``describe_failure`` knows what it means, else ``e`` itself."""
        reason = self.describe_failure(e, loading)
        if reason is None:
            return e
        return TrainingError(f"{reason} during iteration {self.trainer.batch_num + self.world} "
                             f"({type(e).__name__}: {str(e).strip()}); training stopped; {self.where()}")

    def _step(self, images, truths, load_seconds, k, avg):
        h, w = images.shape[-2:]
        if (w, h) != (self.net.width, self.net.height):
            self.net.resize(w, h)
        previous = self.trainer.batch_num
        t0 = time.perf_counter()
        try:
            loss = self.trainer.step(images.to(self.device), truths.to(self.device))
        except TrainingError as e:
            raise TrainingError(f"{e}. Training stopped; {self.where()}. A lower learning_rate or a longer "
                                f"burn_in may help, or look for bad labels.") from None
        stop_all = self.stop.requested
        if self.replicas:
            loss, stop_all = self.replicas.agree(loss, self.stop.requested, self.device)
        seconds = time.perf_counter() - t0
        avg = _F(loss) if avg < 0 else avg
        avg = _F(float(avg) * .9 + float(_F(loss)) * .1)
        i = self.trainer.batch_num
        step = Step(i, previous, loss, float(avg), self.trainer.rate(), seconds, load_seconds,
                    i * self.trainer.batch, int(self.net.seen), int(w), int(h), k + 1)
        return step, stop_all


# --- hooks -------------------------------------------------------------------------------------

class LogLines(Hook):
    """Darknet's lines: ``Loaded: S seconds`` and ``N: loss, avg avg, rate rate, S seconds, I images``,
    every ``every``-th iteration (the CSV log has them all)."""

    def __init__(self, every: int = 1):
        self.every = max(int(every), 1)

    def after_step(self, engine, s):
        if s.count % self.every == 0:
            engine.say(f"Loaded: {s.load_seconds:f} seconds")
            engine.say(f"{s.iteration}: {s.loss:f}, {s.avg_loss:f} avg, {s.rate:f} rate, {s.seconds:f} seconds, "
                       f"{s.images} images")


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


class Checkpoints(Hook):
    """Darknet's checkpoint names in ``folder``: ``<base>.backup`` every 100 iterations,
    ``<base>_N.weights`` at Darknet's milestones, ``<base>_final.weights`` at the end (or
    ``<base>.backup`` when interrupted); each written atomically.  Only the main process saves."""

    def __init__(self, folder: Path, base: str, every: int | None = None, start_weights: str | None = None):
        self.folder, self.base, self.every = Path(folder), base, every
        self.start_weights = start_weights
        self.last: Path | None = None
        self.final: Path | None = None
        self.saved: list[str] = []

    def start(self, engine):
        engine.where = self.where

    def where(self) -> str:
        if self.last is not None:
            return f"the last checkpoint is {self.last}"
        return "no checkpoint saved yet" + (f" (the run started from {self.start_weights})"
                                            if self.start_weights else "")

    def save(self, engine, name: str) -> Path:
        path = self.folder / name
        if engine.main:
            engine.err(f"Saving weights to {path}")
            engine.net.save_weights(path)
            self.last = path
        self.saved.append(name)
        return path

    def after_step(self, engine, s):
        backup, numbered = checkpoint_due(s.iteration, s.previous, self.every)
        if backup:
            self.save(engine, f"{self.base}.backup")
        if numbered:
            self.save(engine, f"{self.base}_{s.iteration}.weights")

    def end(self, engine, interrupted):
        if interrupted:
            self.final = self.save(engine, f"{self.base}.backup")
            engine.say(f"Interrupted at iteration {engine.trainer.batch_num}: saved {self.final}; "
                       f"pass it as the weights to continue")
        else:
            self.final = self.save(engine, f"{self.base}_final.weights")


class CsvLog(Hook):
    """``<base>_log.csv``, one row per iteration.  A resumed run keeps the old rows up to the
    batch it resumes from; an earlier log that would lose rows (another run's, or rows past the
    checkpoint this run resumes from) is first kept aside as ``<base>_log.<N>.csv``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = None
        self.writer = None

    def start(self, engine):
        start = engine.trainer.batch_num
        everything = self._rows()
        rows = [r for r in everything or [] if r.get("iteration", "").isdigit() and int(r["iteration"]) <= start] \
            if start > 0 else []
        if self.path.exists() and (everything is None or len(rows) < len(everything)):
            engine.err(f"the earlier log {self.path.name} was kept as {keep_aside(self.path)}")
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)

    def _rows(self) -> list[dict] | None:
        """The earlier log's rows ([] when there is none), None when it is not such a log."""
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            return list(reader) if reader.fieldnames == LOG_FIELDS else None

    def after_step(self, engine, s):
        self.writer.writerow([s.iteration, f"{s.loss:.7g}", f"{s.avg_loss:.7g}", f"{s.rate:.7g}",
                              f"{s.seconds:.4f}", s.images, s.seen, s.width, s.height, f"{time.time():.3f}"])
        self.file.flush()

    def close(self, engine):
        if self.file is not None:
            self.file.close()


class LossPlot(Hook):
    """Redraws ``<base>_loss.png`` from the CSV log at every ``.backup`` and at the end."""

    def __init__(self, csv_path: Path, png_path: Path, every: int | None = None):
        self.csv_path, self.png_path, self.every = Path(csv_path), Path(png_path), every

    def after_step(self, engine, s):
        if checkpoint_due(s.iteration, s.previous, self.every)[0]:
            plot_loss(self.csv_path, self.png_path)

    def end(self, engine, interrupted):
        if self.csv_path.exists():
            plot_loss(self.csv_path, self.png_path)


class ProgressBar(Hook):
    """A tqdm bar over the batch numbers, on stderr when it is a terminal."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def start(self, engine):
        from tqdm import tqdm
        o = engine.net.options
        self.bar = tqdm(total=o.max_batches, initial=engine.trainer.batch_num, unit="batch",
                        disable=not self.enabled or None, leave=False, dynamic_ncols=True)

    def after_step(self, engine, s):
        self.bar.update(s.iteration - s.previous)
        self.bar.set_postfix(avg=f"{s.avg_loss:.3f}", refresh=False)

    def close(self, engine):
        if self.bar is not None:
            self.bar.close()
