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

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import DataError, read_data_file, read_list
from .voc import label_path, read_labels

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
    "plot_curve",
    "main",
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
def _resolve(value: str, base: Path) -> Path:
    p = Path(value)
    if not p.is_absolute() and not p.exists() and (base / p).exists():
        return base / p
    return p


def load_boxes(source, min_size: float = 0.001, report=None) -> tuple[np.ndarray, dict]:
    """Relative (w, h) of every training box: ``source`` is a ``.data`` file (its ``train=``
    list) or a list of image paths; each image's Darknet label file is read (:func:`label_path`).

    Boxes narrower or lower than ``min_size`` are dropped, as Darknet's trainer drops them.
    Returns the (N, 2) array and counts {"images", "missing_labels", "boxes", "dropped"}.
    """
    report = report or (lambda line: print(line, file=sys.stderr))
    source = Path(source)
    if source.suffix == ".data":
        opts = read_data_file(source)
        if "train" not in opts:
            raise DataError(f"{source}: no train= entry")
        list_path = _resolve(opts["train"], source.parent)
    else:
        list_path = source
    paths = read_list(list_path)
    if not paths:
        raise DataError(f"{list_path}: no images listed")
    chunks, missing, dropped = [], 0, 0
    for p in paths:
        lp = label_path(p)
        if not os.path.isfile(lp):
            missing += 1
            if missing <= 5:
                report(f"warning: {p}: no label file {lp}")
            continue
        rows = read_labels(lp)
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


def plot_curve(curve: Sequence[KMeansResult], path, chosen_k: int | None = None,
               cfg_point: tuple[int, float, str] | None = None, title: str = "") -> None:
    """YOLOv2's Figure 2: avg IoU against k (left) and the chosen k's priors as boxes (right)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise DataError("--plot needs matplotlib: pip install matplotlib") from None
    ks = [len(r.centroids) for r in curve]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax.plot(ks, [r.avg_iou for r in curve], "o-", color="tab:blue", label="k-means (1 - IoU)")
    if cfg_point is not None:
        ax.plot([cfg_point[0]], [cfg_point[1]], "s", color="tab:red", label=f"cfg anchors ({cfg_point[2]})")
    ax.set_xlabel("# clusters (k)")
    ax.set_ylabel("avg IoU with the closest centroid")
    ax.set_xticks(ks)
    ax.grid(alpha=.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Dimension clusters")
    pick = next((r for r in curve if len(r.centroids) == chosen_k), curve[-1])
    for w, h in pick.centroids:
        ax2.add_patch(Rectangle((0.5 - w / 2, 0.5 - h / 2), w, h, fill=False, lw=1.5))
    ax2.set_xlim(0, 1)
    ax2.set_ylim(1, 0)
    ax2.set_aspect("equal")
    ax2.set_title(f"k = {len(pick.centroids)} priors (relative to the image)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="anchors.py",
        description="Anchors for a [region] layer by k-means on the training boxes (d = 1 - IoU), "
                    "as YOLOv2's dimension clusters.")
    ap.add_argument("source", metavar="DATA|LIST", help=".data file (its train= list) or a list of images")
    ap.add_argument("-k", type=int, default=5, help="number of anchors (5)")
    ap.add_argument("--width", type=int, help="network width (default: --cfg's, else 416)")
    ap.add_argument("--height", type=int, help="network height (default: --cfg's, else 416)")
    ap.add_argument("--kmax", type=int, help="avg-IoU table for k = 1..KMAX (default: max(k, 10))")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0); the same seed gives the same anchors")
    ap.add_argument("--n-init", type=int, default=10, help="k-means++ restarts, the best kept (10)")
    ap.add_argument("--cfg", help="compare with this cfg's [region] anchors (Table 1 of the paper)")
    ap.add_argument("--plot", metavar="FILE.png", help="write Figure 2 (avg IoU vs k) here (needs matplotlib)")
    ap.add_argument("--json", action="store_true",
                    help='print only {"anchors": [[w, h], ...], "avg_iou": x} (grid units)')
    args = ap.parse_args(argv)
    try:
        cfg_rel = None
        width, height = args.width, args.height
        if args.cfg:
            cfg_rel, cw, ch = cfg_anchors(args.cfg)
            width, height = width or cw, height or ch
        width, height = width or 416, height or 416
        wh, info = load_boxes(args.source)
        if len(wh) == 0:
            raise DataError(f"{args.source}: no boxes in the label files")
        best = kmeans(wh, args.k, args.seed, args.n_init)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    grid = to_grid(best.centroids, width, height)
    if args.json:
        print(json.dumps({"anchors": grid.tolist(), "avg_iou": best.avg_iou}))
        return 0
    kmax = args.kmax or max(args.k, 10)
    curve = iou_curve(wh, kmax, args.seed, args.n_init)
    curve = [best if len(r.centroids) == args.k else r for r in curve]
    print(f"{info['boxes']} boxes from {info['images']} images ({info['list']})"
          + (f"; {info['missing_labels']} without labels" if info["missing_labels"] else ""))
    print("  k  avg IoU")
    for r in curve:
        print(f"{len(r.centroids):3d}  {100 * r.avg_iou:6.2f}%{'   <-' if len(r.centroids) == args.k else ''}")
    print(f"k-means anchors, k={args.k}, seed {args.seed}, for a {width}x{height} network "
          f"(grid cells of {STRIDE} px), avg IoU {100 * best.avg_iou:.2f}%:")
    print(format_anchors(grid))
    cfg_point = None
    if cfg_rel is not None:
        cfg_iou = avg_iou(wh, cfg_rel)
        n = len(cfg_rel)
        same_k = next((r for r in curve if len(r.centroids) == n), None)
        print("\nTable 1 (avg IoU of the boxes with their closest prior):")
        print(f"  {'prior generation':<38} {'#':>3}  avg IoU")
        print(f"  {'cfg anchors (' + Path(args.cfg).name + ')':<38} {n:3d}  {100 * cfg_iou:6.2f}%")
        print(f"  {'k-means (1 - IoU)':<38} {args.k:3d}  {100 * best.avg_iou:6.2f}%")
        if same_k is not None and n != args.k:
            print(f"  {'k-means (1 - IoU)':<38} {n:3d}  {100 * same_k.avg_iou:6.2f}%")
        cfg_point = (n, cfg_iou, Path(args.cfg).name)
    if args.plot:
        try:
            plot_curve(curve, args.plot, args.k, cfg_point, title=f"{Path(info['list']).name}: avg IoU vs k")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"figure: {args.plot}")
    return 0
