"""Detection from an ImageNet backbone, the whole workflow in one call (:func:`finetune`).

partial of the classifier's weights -> a detection cfg for the dataset (:mod:`pydarknet.recipe`:
input size, k-means anchors, schedule, frozen stem) -> ``train_detector`` in segments, each
followed by the mAP on a held-out part of the training list, within a time budget -> the best
checkpoint -> Darknet's ``detector valid`` on the dataset's ``valid=`` list -> VOC mAP.

Training is one ``train_detector`` run with a per-iteration hook (``TrainConfig.on_iteration``):
from the measured speed it re-plans the rest of the run (:func:`pydarknet.recipe.fit_to_time`:
``max_batches`` and the rate ``steps`` move earlier) so that it ends within the budget with its
rate steps still ahead of it, and in the second half of the run it scores the network on the
held-out pictures every tenth of the run and at the end, keeping the best as ``best.weights``.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .anchors import load_boxes
from .cfg import parse as parse_cfg, read_cfg_text
from .convert import partial
from .data import DataConfig, DataError, DetectionDataset
from .comp4 import read_comp4
from .metrics import evaluate, map_summary
from .truths import load_truth
from .validate import run_valid, validation_set
from .network import Darknet
from .precise_bn import precise_batchnorm
from .recipe import Recipe, decide, fit_to_time, schedule, write_cfg
from .trainloop import TrainConfig, train_detector

__all__ = ["FinetuneConfig", "finetune", "matching_layers"]

ROOT = Path(__file__).resolve().parents[1]
BASE_CFG = ROOT / "cfg" / "tinydarknet-yolov2.cfg"
CALIBRATION_PICTURES = 96   # training pictures whose batch statistics set the rolling ones


@dataclass
class FinetuneConfig:
    data: str                         # .data file (train=, valid=, names=, classes=)
    backbone: str                     # classifier .weights (with backbone_cfg) or a partial file
    work: str                         # folder for everything the run writes
    backbone_cfg: str | None = None   # the classifier's cfg: partial is taken with it
    cfg: str = str(BASE_CFG)          # base detection cfg (its first layers = the backbone's)
    minutes: float = 25.              # budget for training and held-out evaluation
    seed: int = 1
    learning_rate: float = 0.001
    size: int | None = None           # override the decided input size
    epochs: float | None = None       # override the decided length
    workers: int = 2


def _layer_key(section) -> tuple:
    return section.kind, tuple(sorted((k, o.value.replace(" ", "")) for k, o in section.options.items()
                                      if k not in ("stopbackward", "learning_rate", "dontload")))


def matching_layers(classifier_cfg, detector_cfg_text: str) -> int:
    """How many leading layers the detection cfg shares with the classifier cfg (same kind and
    options): the N of ``partial`` that fills them exactly."""
    a = parse_cfg(read_cfg_text(classifier_cfg), str(classifier_cfg))[1:]
    b = parse_cfg(detector_cfg_text)[1:]
    n = 0
    while n < min(len(a), len(b)) and _layer_key(a[n]) == _layer_key(b[n]):
        n += 1
    return n


def _backbone_size(backbone_cfg: str | None) -> int:
    """The classifier's own input size (the larger of its [net] width and height), or 224, the
    ImageNet classifiers' size, when its cfg is not given."""
    if not backbone_cfg:
        return 224
    net = parse_cfg(read_cfg_text(backbone_cfg), str(backbone_cfg))[0]
    return max(net.get_int("width", 224), net.get_int("height", 224))


def _write_list(path: Path, paths: list[str]) -> Path:
    path.write_text("".join(f"{p}\n" for p in paths))
    return path


def _prepare(cfg: FinetuneConfig, work: Path, say) -> tuple[DataConfig, Recipe, Path, Path, list[str]]:
    """Backbone file, recipe, the dataset's cfg and the .data file of the held-in training part."""
    data = DataConfig.from_file(cfg.data)
    names = data.class_names()
    base_text = read_cfg_text(cfg.cfg)
    train_paths = [str(data.resolve(p)) if not Path(p).is_absolute() else p for p in data.train_list()]
    if not train_paths:
        raise DataError(f"{cfg.data}: the train= list is empty")
    wh, _ = load_boxes(_write_list(work / "all_train.txt", train_paths), report=say)
    recipe = decide(train_paths, wh, data.classes, base_text, seed=cfg.seed, learning_rate=cfg.learning_rate,
                    min_size=_backbone_size(cfg.backbone_cfg))
    if cfg.size:
        recipe.anchors = recipe.anchors * cfg.size / recipe.size
        recipe.size = int(cfg.size)
        recipe.reasons.append(f"input {cfg.size} as asked (--size)")
    if cfg.epochs:
        recipe.max_batches, recipe.burn_in, recipe.steps = schedule(len(recipe.train), recipe.batch, cfg.epochs)
        recipe.planned = recipe.max_batches
        recipe.reasons.append(f"{cfg.epochs} epochs as asked (--epochs): {recipe.max_batches} iterations")
    backbone = Path(cfg.backbone)
    if cfg.backbone_cfg:
        n = matching_layers(cfg.backbone_cfg, base_text)
        if n == 0:
            raise DataError(f"{cfg.cfg} shares no leading layer with {cfg.backbone_cfg}")
        backbone = work / f"{Path(cfg.backbone).stem}.conv.{n}"
        partial(cfg.backbone_cfg, cfg.backbone, backbone, n)
        say(f"partial: layers 0-{n - 1} of {cfg.backbone} -> {backbone}")
        recipe.reasons.append(f"backbone: the first {n} layers of {Path(cfg.backbone).name} (partial)")
    cfg_path = work / f"{Path(cfg.data).stem}-{Path(cfg.cfg).stem}.cfg"
    cfg_path.write_text(write_cfg(base_text, recipe))
    fdata = work / "finetune.data"
    fdata.write_text(f"classes = {data.classes}\ntrain = {_write_list(work / 'train.txt', recipe.train)}\n"
                     f"valid = {_write_list(work / 'holdout.txt', recipe.holdout)}\n"
                     f"names = {data.resolve(data.names)}\nbackup = {work / 'backup'}\n")
    return data, recipe, backbone, cfg_path, names


class _Monitor:
    """``train_detector``'s per-iteration hook: re-plans the schedule to the time budget at the
    measured speed, and scores the network on the held-out pictures in the second half of the
    run (every tenth of it and at the end), saving the best as ``best.weights``.  Before each
    score the batch-norm statistics are measured on training pictures (:mod:`pydarknet.precise_bn`):
    after a few hundred steps Darknet's running averages still hold much of their initial values."""

    def __init__(self, recipe: Recipe, holdout: list[str], names: list[str], work: Path, cfg_path: Path,
                 base_text: str, deadline: float, say):
        self.recipe, self.holdout, self.names, self.work = recipe, holdout, names, work
        self.cfg_path, self.base_text, self.deadline, self.say = cfg_path, base_text, deadline, say
        self.best = {"map": -1.0, "iteration": 0}
        self.best_path = work / "best.weights"
        self.history: list[dict] = []
        self.eval_seconds, self.last_eval, self.evals = 0.0, 0, 0
        self.t0 = self.i0 = None
        self.t_start = time.perf_counter()
        self._calibration: list | None = None

    def calibration(self, net) -> list:
        """Batches of held-in training pictures, letterboxed as at inference, for precise BN."""
        if self._calibration is None:
            r = self.recipe
            ds = DetectionDataset(r.train[:CALIBRATION_PICTURES], net.width, net.height, r.classes, augment=False)
            images = [ds[i][0] for i in range(len(ds))]
            self._calibration = [torch.stack(images[k:k + 16]) for k in range(0, len(images), 16)]
        return self._calibration

    def _replan(self, i: int, net) -> None:
        now = time.perf_counter()
        if self.t0 is None:            # time from the second iteration on (the first starts workers)
            self.t0, self.i0 = now - self.eval_seconds, i
            return
        if i - self.i0 < 3:
            return
        r = self.recipe
        per_batch = (now - self.t0 - self.eval_seconds) / (i - self.i0)
        # the evaluations still to come (at 50, 60, ..., 100 % of the run): measured, else guessed
        # as a forward pass (a third of a training step) over the held-out pictures
        per_eval = self.eval_seconds / self.evals if self.evals else \
            per_batch * max(len(self.holdout) / r.batch, 1) / 3
        left = self.deadline - time.monotonic()
        before = r.max_batches
        fit_to_time(r, i, per_batch, left - min(max(6 - self.evals, 1) * per_eval, left / 4))
        if r.max_batches != before:
            net.options.max_batches, net.options.steps, net.options.burn_in = r.max_batches, list(r.steps), r.burn_in
            self.cfg_path.write_text(write_cfg(self.base_text, r))
            if abs(before - r.max_batches) >= max(before // 20, 1) or r.max_batches <= i:
                self.say(f"time budget: {r.max_batches} iterations instead of {before} ({per_batch:.2f} s an "
                         f"iteration), rate steps at {r.steps[0]}, {r.steps[1]}")

    def __call__(self, i: int, net) -> None:
        self._replan(i, net)
        r = self.recipe
        every = max(5, r.max_batches // 10)
        if not self.holdout or (i < r.max_batches and (2 * i < r.max_batches or i - self.last_eval < every)):
            return
        t = time.perf_counter()
        precise_batchnorm(net, self.calibration(net))
        net.eval()
        run_valid(net, self.holdout, self.work / "holdout_results", self.names, recall=False,
                  show_progress=False, report=lambda line: None)
        net.train()
        score = _score(self.work / "holdout_results", self.holdout, self.names)
        if score >= self.best["map"]:
            self.best = {"map": score, "iteration": i}
            net.save_weights(self.best_path)
        self.eval_seconds += time.perf_counter() - t
        self.evals, self.last_eval = self.evals + 1, i
        self.history.append({"iteration": i, "heldout_map50_voc07": round(score, 4),
                             "seconds": round(time.perf_counter() - self.t_start, 1)})
        self.say(f"iteration {i}/{r.max_batches}: held-out mAP@0.5 (VOC07) {score:.4f} ({len(self.holdout)} "
                 f"pictures), {time.perf_counter() - self.t_start:.0f} s")


def _scores(results: Path, paths: list[str], names: list[str]) -> dict:
    """VOC mAP@0.5 (:func:`pydarknet.metrics.map_summary`) of valid's result files."""
    truth = load_truth(paths, names, None, lambda line: None)
    res = evaluate(read_comp4(results, names, report=lambda line: None), truth.rows, 0.5,
                   classes=range(len(names)))
    return {**map_summary(res, names, 0.5, 0.25), "images": len(truth.images)}


def _score(results: Path, paths: list[str], names: list[str]) -> float:
    score = _scores(results, paths, names)["map_voc07"]
    return 0.0 if np.isnan(score) else float(score)


def _train(cfg: FinetuneConfig, recipe: Recipe, cfg_path: Path, fdata: Path, backbone: Path,
           names: list[str], base_text: str, work: Path, deadline: float, say) -> dict:
    """One ``train_detector`` run with the monitor; returns the history and the timings."""
    monitor = _Monitor(recipe, recipe.holdout, names, work, cfg_path, base_text, deadline, say)
    t0 = time.perf_counter()
    result = train_detector(TrainConfig(
        data=str(fdata), cfg=str(cfg_path), weights=str(backbone), backup=str(work / "backup"), seed=cfg.seed,
        progress=False, log_every=10, workers=cfg.workers, on_iteration=monitor), out=say)
    seconds = time.perf_counter() - t0
    if result.interrupted:
        raise KeyboardInterrupt
    if not recipe.holdout:
        shutil.copyfile(result.weights, monitor.best_path)
        monitor.best = {"map": float("nan"), "iteration": result.batch_num}
    train_s = seconds - monitor.eval_seconds
    return {"history": monitor.history, "best": monitor.best, "best_weights": str(monitor.best_path),
            "iterations": result.batch_num, "train_seconds": round(seconds, 1),
            "heldout_seconds": round(monitor.eval_seconds, 1),
            "images_per_second": round(result.batch_num * recipe.batch / train_s, 3) if train_s > 0 else 0.0}


def _final_scores(data_file: str, cfg_path: Path, weights: Path, names: list[str], out_dir: Path) -> dict:
    """``detector valid`` then the VOC mAP on the dataset's valid= list."""
    data, names, paths = validation_set(Path(data_file))
    net = Darknet(cfg_path, exact=False)
    net.load_weights(weights)
    net.names = names
    run_valid(net.eval(), paths, out_dir, names, show_progress=False, report=lambda line: None)
    return _scores(out_dir, paths, names)


def finetune(cfg: FinetuneConfig, say: Callable[[str], None] = print) -> dict:
    """The whole workflow (see the module docstring); returns and writes ``WORK/finetune.json``."""
    start = time.monotonic()
    deadline = start + 60 * cfg.minutes
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    data, recipe, backbone, cfg_path, names = _prepare(cfg, work, say)
    for line in recipe.reasons:
        say(f"recipe: {line}")
    base_text = read_cfg_text(cfg.cfg)
    run = _train(cfg, recipe, cfg_path, work / "finetune.data", backbone, names, base_text, work, deadline, say)
    say(f"best held-out checkpoint: iteration {run['best']['iteration']} "
        f"(mAP {run['best']['map']:.4f}) -> {run['best_weights']}")
    summary = {"data": str(cfg.data), "cfg": str(cfg_path), "weights": run["best_weights"],
               "recipe": recipe.as_dict(), **{k: v for k, v in run.items() if k != "best_weights"},
               "wall_seconds": round(time.monotonic() - start, 1)}
    if "valid" in data.options:
        scores = _final_scores(cfg.data, cfg_path, Path(run["best_weights"]), names, work / "results")
        summary["map50_voc07"], summary["map50_area"] = scores["map50_voc07"], scores["map50_area"]
        summary["valid"] = scores
        say(f"validation ({scores['images']} pictures): mAP@0.5 VOC07 {scores['map50_voc07']:.4f}, "
            f"area {scores['map50_area']:.4f}")
    (work / "finetune.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    return summary
