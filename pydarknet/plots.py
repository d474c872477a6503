"""Figures people would rather look at than read: the training loss, precision/recall curves,
the k-means anchor curve (the paper's Figure 2).

matplotlib is an optional dependency (``pip install pydarknet[plots]``): without it each
plot is skipped with a one-line note on stderr, once per process.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["pyplot", "plot_loss", "plot_pr", "plot_anchor_curve"]

_noted = False


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a note) when it is not installed."""
    global _noted
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not _noted:
            print("note: matplotlib is not installed, plots are skipped (pip install matplotlib)", file=sys.stderr)
            _noted = True
        return None
    return plt


def _save(fig, path) -> None:
    """Write the figure through a temporary file, so a reader never sees half a PNG."""
    plt = pyplot()
    path = Path(path)
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.png")
    try:
        fig.tight_layout()
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def plot_loss(csv_path, png_path) -> None:
    """The loss curve of a training CSV log (``iteration``, ``loss``, ``avg_loss`` columns)."""
    plt = pyplot()
    if plt is None:
        return
    with Path(csv_path).open(newline="") as f:
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
    ax.set_title(Path(csv_path).stem.replace("_log", ""))
    _save(fig, png_path)


def plot_pr(result, name: str, path, thresh: float | None = None) -> None:
    """Precision/recall curve of one class (raw and the VOC envelope); ``result`` is a
    :class:`pydarknet.metrics.ClassResult`."""
    plt = pyplot()
    if plt is None:
        return
    rec, prec = result.recall, result.precision
    fig, ax = plt.subplots(figsize=(5, 4.2))
    if len(rec):
        env = np.maximum.accumulate(prec[::-1])[::-1]
        ax.plot(rec, prec, color="tab:blue", lw=1, alpha=.6, label="precision")
        ax.step(rec, env, where="post", color="tab:orange", lw=1.5, label="interpolated (envelope)")
        if thresh is not None:
            at = result.at_threshold(thresh)
            ax.plot([at["recall"]], [at["precision"]], "o", color="tab:red", label=f"score > {thresh:g}")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=.3)
    ax.set_title(f"{name}: AP07 {result.ap(True):.4f}, AP area {result.ap(False):.4f}\n"
                 f"{result.npos} ground truths, {len(result.scores)} detections", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_anchor_curve(curve: Sequence, path, chosen_k: int | None = None,
                      cfg_point: tuple[int, float, str] | None = None, title: str = "") -> None:
    """YOLOv2's Figure 2: avg IoU against k (left) and the chosen k's priors as boxes (right);
    ``curve`` is a list of :class:`pydarknet.anchors.KMeansResult`."""
    plt = pyplot()
    if plt is None:
        return
    from matplotlib.patches import Rectangle
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
    _save(fig, path)
