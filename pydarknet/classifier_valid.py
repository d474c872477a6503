"""Darknet's ``classifier valid`` (``validate_classifier_single``): top-1 and top-k accuracy.

Each picture of the ``valid=`` list is centre-cropped to a square and resized to the network's
size (``center_crop_image``, not the letterbox of ``predict``), run through the network,
``hierarchy_predictions`` applied when it has a tree, and ranked with ``top_k`` over the
first ``classes`` outputs.  Its class is the first label contained in its path; a picture
with none (class -1) counts as a miss, as in Darknet.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch

from .classifier_data import center_crop, match_labels
from .classify import network_tree, top_k
from .data import DataWarning
from .image import ImageError, load_image
from .progress import progress
from .tree import hierarchy_predictions

__all__ = ["ValidResult", "validate_classifier"]


@dataclass
class ValidResult:
    images: int = 0
    top1: float = 0.
    topk: float = 0.
    k: int = 1
    seconds: float = 0.
    unmatched: list = field(default_factory=list)   # paths with no label (counted as misses)
    ambiguous: list = field(default_factory=list)   # paths with several labels (the first is used)
    failed: list = field(default_factory=list)      # unreadable pictures (skipped, not counted)
    rows: list = field(default_factory=list)        # (path, class, top-k indices) per picture

    def summary(self) -> dict:
        return {"images": self.images, "top1": self.top1, f"top{self.k}": self.topk, "k": self.k,
                "seconds": self.seconds, "images_per_second": self.images / self.seconds if self.seconds else 0.,
                "unmatched": self.unmatched, "ambiguous": self.ambiguous, "failed": self.failed}


def _load(path: str, w: int, h: int) -> torch.Tensor | None:
    try:
        return center_crop(load_image(path), w, h)
    except ImageError as e:
        warnings.warn(f"{path}: cannot read the picture, skipped ({e})", DataWarning, stacklevel=3)
        return None


@torch.no_grad()
def validate_classifier(net, paths: list[str], labels: list[str], classes: int, k: int = 1, *,
                        batch: int = 8, show_progress: bool | None = None, on_row=None) -> ValidResult:
    """Top-1 and top-k of ``net`` over ``paths`` as ``validate_classifier_single`` counts them.

    ``on_row(i, path, cls, indices, probs, result)`` is called after each picture (Darknet's lines)."""
    res = ValidResult(k=k)
    device = next(net.parameters()).device
    tree = network_tree(net)
    net.eval()
    hits1 = hitsk = 0
    start = time.perf_counter()
    bar = progress(range(0, len(paths), batch), total=-(-len(paths) // batch), desc="valid",
                   enabled=show_progress, unit="batch")
    for b in bar:
        chunk = paths[b:b + batch]
        crops = [(p, _load(p, net.width, net.height)) for p in chunk]
        crops = [(p, c) for p, c in crops if c is not None]
        res.failed += [p for p in chunk if p not in {q for q, _ in crops}]
        if not crops:
            continue
        out = net(torch.stack([c for _, c in crops]).to(device)).reshape(len(crops), -1).float().cpu()
        if tree is not None:
            out = hierarchy_predictions(out, tree, only_leaves=True)
        for (path, _), probs in zip(crops, out):
            found = match_labels(path, labels, classes)
            cls = found[0] if found else -1
            (res.ambiguous if len(found) > 1 else res.unmatched if not found else []).append(path)
            idx = top_k(probs[:classes], k)
            hits1 += bool(idx) and idx[0] == cls
            hitsk += cls in idx
            res.images += 1
            res.rows.append((path, cls, idx))
            res.top1, res.topk = hits1 / res.images, hitsk / res.images
            if on_row is not None:
                on_row(res.images - 1, path, cls, idx, probs, res)
    res.seconds = time.perf_counter() - start
    return res
