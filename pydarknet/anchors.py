"""Anchor boxes (priors) by k-means on the training boxes, as in YOLOv2's "Dimension Clusters".

The distance is ``d(box, centroid) = 1 - IoU(box, centroid)`` with both boxes placed at a
common centre, so only their widths and heights matter (:func:`wh_iou`).  Seeding is
k-means++ (the next seed drawn with probability proportional to ``d**2``), the centroid update
is the mean (w, h) of the boxes assigned to it, and the best of ``n_init`` runs (highest
average IoU) is kept.  Everything is vectorised over boxes and centroids with numpy.

Boxes are relative to the image (Darknet label files); :func:`to_grid` turns them into
Darknet's ``[region] anchors=`` units, grid cells of 32 network pixels
(``w * width / 32``, ``h * height / 32``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, read_data_file, read_list
from .data import class_only_mask, label_path, read_labels
from .paths import resolve_beside

__all__ = [
    "wh_iou",
    "avg_iou",
    "kmeans_pp_init",
    "kmeans",
    "KMeansResult",
    "iou_curve",
    "load_boxes",
    "to_grid",
    "from_grid",
    "cfg_anchors",
    "format_anchors",
]

STRIDE = 32


def wh_iou(boxes: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU of (N, 2) and (K, 2) width/height pairs aligned at a common centre: (N, K)."""
    b = np.asarray(boxes, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    inter = np.minimum(b[:, None, 0], c[None, :, 0]) * np.minimum(b[:, None, 1], c[None, :, 1])
    union = (b[:, 0] * b[:, 1])[:, None] + (c[:, 0] * c[:, 1])[None, :] - inter
    return inter / union


def avg_iou(boxes: np.ndarray, centroids: np.ndarray) -> float:
    """Mean over boxes of the IoU with the closest (highest-IoU) centroid."""
    return float(wh_iou(boxes, centroids).max(axis=1).mean())


def kmeans_pp_init(boxes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds with d = 1 - IoU: the first uniformly, each next one with probability
    proportional to d(box, nearest seed)**2."""
    n = len(boxes)
    first = int(rng.integers(n))
    seeds = [first]
    best = wh_iou(boxes, boxes[first:first + 1])[:, 0]
    for _ in range(1, k):
        weight = np.clip(1.0 - best, 0.0, None) ** 2
        total = weight.sum()
        idx = int(rng.integers(n)) if total <= 0 else int(rng.choice(n, p=weight / total))
        seeds.append(idx)
        best = np.maximum(best, wh_iou(boxes, boxes[idx:idx + 1])[:, 0])
    return boxes[seeds].astype(np.float64).copy()


@dataclass
class KMeansResult:
    centroids: np.ndarray  # (k, 2), relative (w, h), sorted by area
    avg_iou: float
    assignment: np.ndarray  # (N,) index into centroids
    iterations: int


def _sorted(centroids: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((centroids[:, 0], centroids[:, 0] * centroids[:, 1]))
    c = centroids[order]
    return c, wh_iou(boxes, c).argmax(axis=1)


def kmeans(boxes, k: int, seed: int | None = 0, n_init: int = 10, max_iter: int = 300) -> KMeansResult:
    """k-means with d = 1 - IoU on (N, 2) relative box sizes; the best of ``n_init`` k-means++
    starts.  Same ``seed`` -> same result."""
    wh = np.asarray(boxes, dtype=np.float64).reshape(-1, 2)
    if k < 1:
        raise ValueError("k must be at least 1")
    if len(wh) == 0:
        raise ValueError("no boxes to cluster")
    if not np.all(wh > 0):
        raise ValueError("box widths and heights must be positive")
    distinct = len(np.unique(wh, axis=0))
    if k > distinct:
        raise ValueError(f"k={k} clusters but only {distinct} distinct box sizes")
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    for _ in range(max(1, n_init)):
        c = kmeans_pp_init(wh, k, rng)
        assign = None
        it = 0
        for it in range(1, max_iter + 1):
            iou = wh_iou(wh, c)
            new = iou.argmax(axis=1)
            if assign is not None and np.array_equal(new, assign):
                break
            assign = new
            counts = np.bincount(assign, minlength=k)
            sums = np.stack([np.bincount(assign, wh[:, 0], k), np.bincount(assign, wh[:, 1], k)], axis=1)
            filled = counts > 0
            c[filled] = sums[filled] / counts[filled, None]
            empty = np.flatnonzero(~filled)
            if empty.size:  # an empty cluster restarts at the worst-fitting boxes
                worst = np.argsort(iou.max(axis=1), kind="stable")[:empty.size]
                c[empty] = wh[worst]
                assign = None
        score = avg_iou(wh, c)
        if best is None or score > best.avg_iou + 1e-12:
            cs, a = _sorted(c, wh)
            best = KMeansResult(cs, score, a, it)
    assert best is not None
    return best


def iou_curve(boxes, kmax: int, seed: int | None = 0, n_init: int = 10) -> list[KMeansResult]:
    """k-means for k = 1..kmax (YOLOv2's Figure 2); stops early when k exceeds the distinct sizes."""
    wh = np.asarray(boxes, dtype=np.float64).reshape(-1, 2)
    distinct = len(np.unique(wh, axis=0))
    return [kmeans(wh, k, seed, n_init) for k in range(1, min(kmax, distinct) + 1)]


# --------------------------------------------------------------------------- data
def load_boxes(source, min_size: float = 0.001, report=None) -> tuple[np.ndarray, dict]:
    """Relative (w, h) of every training box: ``source`` is a ``.data`` file (its ``train=``
    list) or a list of image paths; each image's Darknet label file is read (:func:`label_path`).

    Boxes narrower or lower than ``min_size`` are dropped, as Darknet's trainer drops them;
    YOLO9000 class-only rows (no box) are left out.
    Returns the (N, 2) array and counts {"images", "missing_labels", "boxes", "dropped"}.
    """
    report = report or (lambda line: print(line, file=sys.stderr))
    source = Path(source)
    if source.suffix == ".data":
        opts = read_data_file(source)
        if "train" not in opts:
            raise DataError(f"{source}: no train= entry")
        list_path = resolve_beside(opts["train"], source)
    else:
        list_path = source
    paths = read_list(list_path)
    if not paths:
        raise DataError(f"{list_path}: no images listed")
    chunks, missing, dropped = [], 0, 0
    for p in paths:
        lp = label_path(p, darknet_exact=True)
        if not os.path.isfile(lp):
            missing += 1
            if missing <= 5:
                report(f"warning: {p}: no label file {lp}")
            continue
        rows = read_labels(lp, class_only=True)
        rows = rows[~class_only_mask(rows)].astype(np.float64)   # YOLO9000 class-only rows have no box
        ok = (rows[:, 3] >= min_size) & (rows[:, 4] >= min_size)
        dropped += int((~ok).sum())
        chunks.append(rows[ok, 3:5])
    if missing > 5:
        report(f"warning: {missing} images without a label file in all")
    wh = np.concatenate(chunks) if chunks else np.zeros((0, 2))
    return wh, {"images": len(paths), "missing_labels": missing, "boxes": len(wh), "dropped": dropped,
                "list": str(list_path)}


def to_grid(rel: np.ndarray, width: int, height: int) -> np.ndarray:
    """Relative (w, h) -> Darknet ``[region]`` anchor units (cells of 32 network pixels)."""
    rel = np.asarray(rel, dtype=np.float64).reshape(-1, 2)
    return rel * np.array([width / STRIDE, height / STRIDE])


def from_grid(grid, width: int, height: int) -> np.ndarray:
    """Darknet ``[region]`` anchors (cells of 32 network pixels) -> relative (w, h)."""
    grid = np.asarray(grid, dtype=np.float64).reshape(-1, 2)
    return grid / np.array([width / STRIDE, height / STRIDE])


def cfg_anchors(cfg_path) -> tuple[np.ndarray, int, int]:
    """The anchors of a cfg's last detection layer, relative to the image, and the [net] size.

    ``[region]`` anchors are in grid cells (``/ (width/32)``); ``[yolo]`` anchors are in
    network pixels (``/ width``).
    """
    from .cfg import parse_file

    sections = parse_file(cfg_path)
    net = next((s for s in sections if s.kind == "net"), None)
    if net is None:
        raise DataError(f"{cfg_path}: no [net] section")
    width, height = net.get_int("width", 0), net.get_int("height", 0)
    if width <= 0 or height <= 0:
        raise DataError(f"{cfg_path}: [net] needs width= and height=")
    det = [s for s in sections if s.kind in ("region", "yolo")]
    if not det:
        raise DataError(f"{cfg_path}: no [region] layer, so no anchors")
    layer = det[-1]
    values = layer.get_list("anchors", float, None)
    if not values or len(values) % 2:
        raise DataError(f"{layer.where('anchors')}: [{layer.header}] needs anchors= as w,h pairs")
    grid = np.array(values, dtype=np.float64).reshape(-1, 2)
    if layer.kind == "yolo":
        return grid / np.array([width, height]), width, height
    return from_grid(grid, width, height), width, height


def format_anchors(grid: np.ndarray, digits: int = 6) -> str:
    """``anchors = w1,h1,  w2,h2, ...`` ready to paste into a cfg's [region] section."""
    pairs = [f"{w:.{digits}g},{h:.{digits}g}" for w, h in np.asarray(grid).reshape(-1, 2)]
    return "anchors = " + ",  ".join(pairs)
