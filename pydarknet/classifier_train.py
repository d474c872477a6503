"""Darknet's ``classifier train`` (examples/classifier.c ``train_classifier``) on the training engine.

The loop, checkpoints, Ctrl-C and resume are :mod:`pydarknet.trainloop`'s (``prepare_network``,
``standard_hooks``, ``run_engine``); what differs from ``detector train`` is the data:

* the ``.data`` file's ``train`` list, ``labels`` (each picture's class is the label contained
  in its path, Darknet's ``fill_truth``; a picture that matches no label or several is
  reported by name and left out), ``classes`` (must equal the network's outputs), ``tree``;
* each batch draws ``batch·subdivisions`` pictures at random with replacement
  (``get_random_paths``) and augments them as ``load_image_augment_paths``
  (:mod:`pydarknet.classifier_augment`); ``augment=False`` letterboxes them instead;
* the truths are ``fill_truth`` (+ ``fill_hierarchy``) rows, (N, classes);
* Darknet's classifier log line ``N, E.EEE: loss, avg avg, rate rate, S seconds, I images``
  (E = epochs = seen / pictures) and ``<base>_<epoch>.weights`` at every new epoch, beside
  the detector's checkpoints (``.backup`` every 100 iterations, ``_final.weights``).

Not reproduced: ``[net] random=1`` for classifiers (Darknet resizes to 128..448 every 40
iterations); the size stays the cfg's.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from .classifier_augment import augment_classification, crop_range
from .classifier_data import ClassifierData, match_labels
from .classify import network_tree
from .data import DataError, DetectionBatchSampler, DetectionDataset, DetectionLoader, MultiScale
from .distributed import init_replicas
from .engine import Hook, LogLines
from .image import letterbox, load_image
from .labels import classifier_truths
from .trainloop import (TrainConfig, TrainResult, describe_loader_failure, report_skipped, say_and_err,
                        shutdown_loader, run_engine, standard_hooks, start_run)

__all__ = ["ClassificationDataset", "train_classifier", "usable_pictures"]


class ClassificationDataset(DetectionDataset):
    """Classification training samples: ``(image (3,h,w), truth row (classes,))``.

    A :class:`~pydarknet.data.DetectionDataset` whose "labels" are the precomputed truth rows,
    so the loader, retries and skip reports are the detection pipeline's."""

    def __init__(self, paths: list[str], truths: torch.Tensor, width: int, height: int, options, *,
                 augment: bool = True, seed: int | None = None):
        super().__init__(paths, width, height, truths.shape[1], hue=options.hue, saturation=options.saturation,
                         exposure=options.exposure, augment=augment, seed=seed)
        self.truths = truths
        self.angle, self.aspect = float(options.angle), float(options.aspect)
        self.low, self.high = crop_range(options, width)

    def load(self, index: int):
        return load_image(self.image_path(index)), self.truths[index]

    def make_sample(self, img, truth, width, height, rng):
        if not self.augment:
            return letterbox(img, width, height), truth
        return augment_classification(img, width, height, rng, low=self.low, high=self.high, angle=self.angle,
                                      aspect=self.aspect, hue=self.hue, saturation=self.saturation,
                                      exposure=self.exposure), truth


def usable_pictures(paths: list[str], labels: list[str], classes: int) -> tuple[list[str], list[str]]:
    """(pictures with exactly one label, one message per picture left out)."""
    kept, problems = [], []
    for p in paths:
        found = match_labels(p, labels, classes)
        if len(found) == 1:
            kept.append(p)
        elif not found:
            problems.append(f"{p}: matches no label")
        else:
            problems.append(f"{p}: matches {len(found)} labels (" + ", ".join(labels[j] for j in found) + ")")
    return kept, problems


def _resolve(path: str, list_file: Path) -> str:
    """A listed picture: as given (from the working directory, as Darknet) or beside the list."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    beside = list_file.parent / path
    return str(beside) if beside.exists() else path


class _ClassifierLines(LogLines):
    """``train_classifier``'s lines: ``Loaded: S seconds`` and
    ``N, E.EEE: loss, avg avg, rate rate, S seconds, seen images``."""

    def __init__(self, every: int, pictures: int):
        super().__init__(every)
        self.pictures = pictures

    def after_step(self, engine, s):
        if s.count % self.every == 0:
            epochs = float(np.float32(s.seen) / np.float32(self.pictures))
            engine.say(f"Loaded: {s.load_seconds:f} seconds")
            engine.say(f"{s.iteration}, {epochs:.3f}: {s.loss:f}, {s.avg_loss:f} avg, {s.rate:f} rate, "
                       f"{s.seconds:f} seconds, {s.seen} images")


class _EpochWeights(Hook):
    """``<base>_<epoch>.weights`` when ``seen / pictures`` reaches a new epoch (Darknet's rule)."""

    def __init__(self, checkpoints, base: str, pictures: int, seen: int):
        self.checkpoints, self.base, self.pictures = checkpoints, base, pictures
        self.epoch = seen // pictures

    def after_step(self, engine, s):
        if s.seen // self.pictures > self.epoch:
            self.epoch = s.seen // self.pictures
            self.checkpoints.save(engine, f"{self.base}_{self.epoch}.weights")


def _training_set(cfg: TrainConfig, data: ClassifierData, net, err):
    """(resolved picture paths, truth rows) of the usable pictures of the train= list."""
    outputs = net.output_shape.numel
    if data.classes != outputs:
        raise DataError(f"{data.config.path}: classes={data.classes} but the last layer of {cfg.cfg} "
                        f"has {outputs} outputs")
    labels = data.labels()
    listed = data.paths("train")
    kept, problems = usable_pictures(listed, labels, data.classes)
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        err(f"warning: {len(problems)} of {len(listed)} pictures left out: " + "; ".join(problems[:10]) + more)
    if not kept:
        raise DataError(f"{data.config.path}: none of the {len(listed)} pictures of the train list matches "
                        f"exactly one label")
    tree = data.tree() or network_tree(net)
    truths = classifier_truths(kept, labels, tree, data.classes, warn=False)
    list_file = data.config.resolve(data.config.options.get("train", "data/train.list"))
    return [_resolve(p, list_file) for p in kept], truths


def train_classifier(cfg: TrainConfig, out=None) -> TrainResult:
    """Darknet's ``classifier train`` (see the module docstring).  ``cfg.extra``:
    ``replacement=False`` draws shuffled passes over the list instead of Darknet's random
    picks; ``iterations=N`` ends this run after N iterations (the rate schedule still runs to
    ``max_batches``)."""
    replicas = init_replicas(cfg.device)
    try:
        say, err = say_and_err(out, replicas.main)
        data = ClassifierData.from_file(cfg.data)
        backup = Path(cfg.backup or data.backup)
        backup.mkdir(parents=True, exist_ok=True)
        base = Path(cfg.cfg).stem
        say(base)
        say(f"{replicas.world}")
        net, trainer, seed = start_run(cfg, replicas, say, err)
        o = net.options
        paths, truths = _training_set(cfg, data, net, err)
        say(f"{len(paths)}")
        dataset = ClassificationDataset(paths, truths, net.width, net.height, o, augment=cfg.augment,
                                        seed=replicas.data_seed(seed))
        say(f"{dataset.low} {dataset.high}")
        iterations = -(-max(o.max_batches - trainer.batch_num, 0) // replicas.world)
        if cfg.extra.get("iterations") is not None:   # stop early without changing the schedule
            iterations = min(iterations, int(cfg.extra["iterations"]))
        schedule = MultiScale(net.width, net.height, o.max_batches, random=False, start_batch=trainer.batch_num,
                              seed=dataset.seed, stride=replicas.world)
        sampler = DetectionBatchSampler(len(dataset), trainer.batch, schedule, dataset.seed, iterations,
                                        replacement=cfg.extra.get("replacement", True))
        context = "fork" if sys.platform.startswith("linux") and cfg.workers > 0 else None
        loader = DetectionLoader(dataset, sampler, num_workers=cfg.workers, multiprocessing_context=context)
        hooks, checkpoints = standard_hooks(cfg, backup, base, replicas.main)
        hooks = [_ClassifierLines(cfg.log_every, len(paths)) if isinstance(h, LogLines) else h for h in hooks]
        hooks.append(_EpochWeights(checkpoints, base, len(paths), int(net.seen)))
        try:
            result = run_engine(trainer, loader, hooks, checkpoints, cfg, replicas, say, err,
                                describe_loader_failure)
        finally:
            shutdown_loader(loader)
        report_skipped(loader, replicas, torch.device(cfg.device), err)
        result.skipped = loader.skipped
        return result
    finally:
        replicas.close()
