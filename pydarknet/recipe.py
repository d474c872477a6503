"""Fine-tuning choices for a small detection dataset, decided from its training data alone.

Given the training boxes and the number of training pictures, :func:`decide` fixes what a
Darknet user would otherwise tune by hand for each dataset, each with a one-line reason
(:attr:`Recipe.reasons`):

* a held-out part of the training list (:func:`holdout_split`): the checkpoint kept is the
  one with the best mAP on it, so when to stop is read off data the network was not trained on,
  and the dataset's own validation split stays untouched for the final score;
* the input size: the backbone's own input size (224 for ImageNet classifiers: its filters
  were learnt on objects seen at that scale; on raccoon the same run reached mAP 0.49 at 128
  and 0.81 at 224), more when the small boxes need it (the smallest multiple of 32 at which
  most boxes span at least one 32-pixel cell), at most 416;
* the anchors: YOLOv2's k-means (1 - IoU) of the training boxes, in cells of that size;
* the schedule: a number of epochs over the training pictures (``max_batches``) at batch 8
  (twice the updates of 16 for the same pictures, which a short run needs), Darknet's
  ``burn_in`` (a twentieth of the run: the head starts from scratch, the backbone does not) and ``steps`` at 80 % and 90 % (scales .1, .1);
  :func:`fit_to_time` shortens it when the measured speed cannot finish it in the time given;
* augmentation: Darknet's (jitter .2, hue .1, saturation and exposure 1.5, flips), single scale
  (``random=0``: multi-scale's 320..608 pictures cost 4-14 times a small input);
* which layers learn: the backbone's full-resolution stem (stride <= 4) is frozen with
  Darknet's ``stopbackward``: its ImageNet edge and colour filters suit any photos, it is the
  most expensive part to back-propagate, and a small dataset cannot retrain it.

:func:`write_cfg` turns a base detection cfg (``cfg/tinydarknet-yolov2.cfg``) into the
dataset's cfg with these values.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .anchors import kmeans, to_grid
from .cfg import parse as parse_cfg

__all__ = ["Recipe", "decide", "holdout_split", "input_size", "schedule", "fit_to_time", "write_cfg",
           "frozen_layer"]

SIZES = (224, 416)         # input size range (multiples of 32); the least is an ImageNet classifier's
MIN_CELLS = 1.0            # a box should span at least this many 32-px cells (10th percentile)
EPOCHS = 60                # passes over the training pictures in a full run
BATCH = 8                  # small sets: more updates per picture seen; batch norm still sees 8


@dataclass
class Recipe:
    """What :func:`decide` chose; ``reasons`` says why, one line per choice."""
    classes: int
    size: int
    anchors: np.ndarray             # (num, 2) in grid cells of ``size``
    anchor_iou: float
    batch: int
    max_batches: int
    burn_in: int
    steps: tuple[int, int]
    learning_rate: float
    freeze: int                     # index of the layer given stopbackward=1 (-1: none)
    planned: int = 0                # max_batches as decided, before any cut to the time budget
    train: list[str] = field(default_factory=list)
    holdout: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"classes": self.classes, "size": self.size, "anchors": np.round(self.anchors, 4).tolist(),
                "anchor_avg_iou": round(self.anchor_iou, 4), "batch": self.batch,
                "max_batches": self.max_batches, "burn_in": self.burn_in, "steps": list(self.steps),
                "learning_rate": self.learning_rate, "frozen_through_layer": self.freeze,
                "train_images": len(self.train),
                "holdout_images": len(self.holdout), "reasons": list(self.reasons)}


def holdout_split(paths: Sequence[str], fraction: float = 0.1, minimum: int = 8, maximum: int = 50,
                  seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held out): a seeded random ``fraction`` of ``paths`` (at least ``minimum``, at
    most ``maximum`` and never more than a fifth) held out, both in the list's order."""
    n = len(paths)
    k = int(min(max(round(fraction * n), minimum), maximum, n // 5))
    held = set(np.random.default_rng(seed).permutation(n)[:k].tolist()) if k > 0 else set()
    return [p for i, p in enumerate(paths) if i not in held], [p for i, p in enumerate(paths) if i in held]


def input_size(wh: np.ndarray, lo: int = SIZES[0], hi: int = SIZES[1], cells: float = MIN_CELLS) -> int:
    """The smallest multiple of 32 in lo..hi at which the 10th-percentile box (sqrt(w*h),
    relative) spans ``cells`` 32-px cells."""
    if len(wh) == 0:
        return lo
    small = float(np.percentile(np.sqrt(wh[:, 0] * wh[:, 1]), 10))
    need = 32 * cells / max(small, 1e-6)
    return int(min(max(32 * math.ceil(need / 32), lo), hi))


def schedule(n_train: int, batch: int = BATCH, epochs: float = EPOCHS) -> tuple[int, int, tuple[int, int]]:
    """(max_batches, burn_in, steps) for ``epochs`` passes over ``n_train`` pictures."""
    max_batches = max(int(math.ceil(epochs * n_train / batch)), 20)
    return max_batches, *_burn_and_steps(max_batches)


def _burn_and_steps(max_batches: int) -> tuple[int, tuple[int, int]]:
    return min(100, max(max_batches // 20, 5)), (int(max_batches * .8), int(max_batches * .9))


def fit_to_time(recipe: Recipe, done: int, seconds_per_batch: float, seconds_left: float) -> Recipe:
    """The recipe with ``max_batches`` set (and ``steps`` moved with it) to what the rest of the
    run can do in ``seconds_left`` at the measured speed, at most the planned length
    (``planned``) and never below ``done``.  Before the first rate step the length may grow
    back when the speed improves; after it, it can only be cut."""
    affordable = done + int(max(seconds_left, 0) / max(seconds_per_batch, 1e-9))
    ceiling = recipe.planned if done < recipe.steps[0] else recipe.max_batches
    max_batches = max(min(affordable, ceiling), done)
    if max_batches == recipe.max_batches:
        return recipe
    burn_in, steps = _burn_and_steps(max_batches)
    recipe.max_batches, recipe.steps = max_batches, steps
    if done < recipe.burn_in:
        recipe.burn_in = min(recipe.burn_in, burn_in)
    return recipe


def frozen_layer(cfg_text: str, max_stride: int = 4) -> int:
    """Index of the last layer that still works at stride <= ``max_stride`` (the stem frozen
    with stopbackward), or -1: counted from the ``[maxpool]`` / strided layers of the cfg."""
    stride, last = 1, -1
    for i, s in enumerate(parse_cfg(cfg_text)[1:]):
        if s.kind in ("maxpool", "convolutional"):
            stride *= s.get_int("stride", 1)
        if s.kind in ("route", "reorg", "region", "yolo", "upsample", "shortcut"):
            break
        if stride > max_stride:
            break
        last = i
    return last


def decide(train_paths: Sequence[str], wh: np.ndarray, classes: int, base_cfg_text: str,
           num: int = 5, seed: int = 0, learning_rate: float = 0.001, min_size: int = SIZES[0]) -> Recipe:
    """The recipe for a dataset: ``train_paths`` (the training list), ``wh`` its boxes' relative
    (w, h), ``classes``, the base detection cfg's text, ``min_size`` the backbone's own input
    size.  See the module docstring."""
    train, held = holdout_split(train_paths, seed=seed)
    reasons = [f"held out {len(held)} of {len(train_paths)} training pictures to pick the best checkpoint "
               f"(the validation set stays unseen until the end)"]
    lo = min(max(32 * math.ceil(min_size / 32), 32), SIZES[1])
    size = input_size(wh, lo=lo)
    small = float(np.percentile(np.sqrt(wh[:, 0] * wh[:, 1]), 10)) if len(wh) else float("nan")
    reasons.append(f"input {size}x{size}: at least the backbone's {lo} (the scale its filters were learnt at); "
                   f"10% of the boxes are smaller than {small:.3f} of the picture ({small * size:.0f} px at this "
                   f"size; >= {32 * MIN_CELLS:.0f} px wanted), at most {SIZES[1]}")
    k = min(num, max(len(wh), 1))
    if len(wh) >= k:
        km = kmeans(wh, k, seed=seed)
        anchors, iou = to_grid(km.centroids, size, size), float(km.avg_iou)
    else:
        anchors, iou = to_grid(np.full((k, 2), .3), size, size), float("nan")
    reasons.append(f"{k} anchors by k-means (1 - IoU) of the {len(wh)} training boxes, avg IoU {iou:.3f}")
    max_batches, burn_in, steps = schedule(len(train))
    reasons.append(f"{max_batches} iterations of {BATCH} = {EPOCHS} epochs of {len(train)} pictures, burn_in "
                   f"{burn_in}, rate x.1 at {steps[0]} and {steps[1]} (cut to the time budget if needed)")
    freeze = frozen_layer(base_cfg_text)
    if freeze >= 0:
        reasons.append(f"layers 0-{freeze} (the stem, stride <= 4) frozen with stopbackward: generic ImageNet "
                       f"filters, the costliest to train, and too few pictures to retrain them")
    return Recipe(classes, size, anchors, iou, BATCH, max_batches, burn_in, steps, learning_rate, freeze,
                  max_batches, train, held, reasons)


# --- cfg text --------------------------------------------------------------------------
def _set_keys(block: str, values: dict) -> str:
    """``key=value`` lines of one cfg section replaced (or appended after its header)."""
    for key, value in values.items():
        pattern = re.compile(rf"(?m)^[ \t]*{re.escape(key)}[ \t]*=.*$")
        line = f"{key}={value}"
        if pattern.search(block):
            block = pattern.sub(line, block, count=1)
        else:
            head, _, rest = block.partition("\n")
            block = f"{head}\n{line}\n{rest}"
    return block


def _sections(text: str) -> list[str]:
    """The cfg text cut before every ``[section]`` header (comments stay with the text above)."""
    return re.split(r"(?m)^(?=[ \t]*\[)", text)


def write_cfg(base_text: str, recipe: Recipe, *, batch: int | None = None) -> str:
    """The base detection cfg with the recipe's [net] values, stopbackward on the frozen layer,
    the last convolution's filters and the [region] anchors/classes/num."""
    parts = _sections(base_text)
    headers = [i for i, p in enumerate(parts) if p.lstrip().startswith("[")]
    net, layers = headers[0], headers[1:]
    region = [i for i in layers if parts[i].lstrip().startswith("[region]")]
    if not region:
        raise ValueError("the base cfg has no [region] layer")
    region = region[-1]
    last_conv = [i for i in layers if i < region and parts[i].lstrip().startswith("[convolutional]")][-1]
    num = len(recipe.anchors)
    parts[net] = _set_keys(parts[net], {
        "batch": batch or recipe.batch, "subdivisions": 1, "width": recipe.size, "height": recipe.size,
        "learning_rate": recipe.learning_rate, "burn_in": recipe.burn_in, "max_batches": recipe.max_batches,
        "policy": "steps", "steps": f"{recipe.steps[0]},{recipe.steps[1]}", "scales": ".1,.1",
        "angle": 0, "hue": .1, "saturation": 1.5, "exposure": 1.5})
    if recipe.freeze >= 0:
        parts[layers[recipe.freeze]] = _set_keys(parts[layers[recipe.freeze]], {"stopbackward": 1})
    parts[last_conv] = _set_keys(parts[last_conv], {"filters": num * (5 + recipe.classes)})
    anchors = ", ".join(f"{w:.4f},{h:.4f}" for w, h in recipe.anchors)
    parts[region] = _set_keys(parts[region], {"anchors": anchors, "classes": recipe.classes, "num": num,
                                              "jitter": .2, "random": 0})
    return "".join(parts)
