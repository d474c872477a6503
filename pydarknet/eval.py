"""PASCAL VOC detection metrics: AP per class (VOC2007 11-point and all-point area), mAP,
precision/recall at a score threshold, and Darknet's ``detector recall``.

The semantics are those of the VOC devkit's Python port, ``voc_eval.py`` (py-faster-rcnn):

* boxes are VOC pixel boxes ``(x1, y1, x2, y2)``, 1-based and inclusive, so a box spans
  ``x2 - x1 + 1`` pixels: IoU adds 1 to every width and height (:func:`iou_voc`);
* per class, detections are sorted by score, highest first (ties keep their input order);
  each one is matched to the ground truth of the same image and class with the highest IoU
  (the first on a tie); with IoU ``> iou_thresh`` it is a true positive if that ground truth is
  not ``difficult`` and not matched yet, a false positive (duplicate) if it was matched
  already, and neither if it is ``difficult``; otherwise it is a false positive;
* recall is over the non-difficult ground truths; precision is ``tp / max(tp + fp, eps)``;
* AP: VOC2007's 11-point metric (mean over t = 0, .1, ..., 1 of the highest precision at
  recall >= t, 0 if none), or the all-point area under the monotone precision envelope
  (VOC2010+), :func:`voc_ap`.

Classes without a non-difficult ground truth have no AP (the devkit would divide by zero)
and are left out of the mAP.

File formats: Darknet's ``detector valid`` writes ``comp4_det_test_<class>.txt`` files of
``image_id score x1 y1 x2 y2`` lines (:func:`read_comp4`); ground truth comes from the
``<set>_truth.json`` files of :mod:`pydarknet.voc`, from VOC XML or from Darknet label files
(:func:`load_truth`).
"""
from __future__ import annotations

import json
import math
import os
import time
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .data import DataConfig, DataError
from .voc import VocError, convert_box, image_id, label_path, parse_annotation, read_labels, \
    read_truth_json, unconvert_box

__all__ = [
    "iou_voc",
    "voc_ap",
    "ClassResult",
    "evaluate",
    "voc_eval",
    "proposal_recall",
    "read_comp4",
    "format_comp4",
    "read_proposals",
    "Truth",
    "load_truth",
    "plot_pr",
    "run_valid",
    "nms_obj",
    "map_main",
    "valid_main",
]

EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- core
def iou_voc(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of pixel boxes (x1, y1, x2, y2) with VOC's +1 on widths and heights, broadcast:
    ``box`` (..., 4) against ``boxes`` (..., 4)."""
    a, b = np.asarray(box, dtype=np.float64), np.asarray(boxes, dtype=np.float64)
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1.0, 0.0)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0] + 1.0) * (a[..., 3] - a[..., 1] + 1.0)
             + (b[..., 2] - b[..., 0] + 1.0) * (b[..., 3] - b[..., 1] + 1.0) - inter)
    return inter / union


def voc_ap(rec, prec, use_07_metric: bool = True) -> float:
    """AP from a recall/precision curve (detections in score order), as voc_eval.py's voc_ap."""
    rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
    # sums are exact (math.fsum), so that a perfect curve gives exactly 1.0
    if use_07_metric:
        points = []
        for t in np.arange(0.0, 1.1, 0.1):  # t = k * 0.1, as the devkit's 0:0.1:1
            above = rec >= t
            points.append(float(np.max(prec[above])) if above.any() else 0.0)
        return math.fsum(points) / 11.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, right to left
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return math.fsum(((mrec[i + 1] - mrec[i]) * mpre[i + 1]).tolist())


def _index(values: Sequence) -> tuple[np.ndarray, dict]:
    ids: dict = {}
    return np.array([ids.setdefault(v, len(ids)) for v in values], dtype=np.int64), ids


def _columns(rows, width: int, what: str):
    """Rows of ``width`` fields -> (image ids list, float64 (N, width-1) array)."""
    if hasattr(rows, "detach") and hasattr(rows, "cpu"):  # a torch tensor
        rows = rows.detach().cpu().numpy()
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        arr = rows.reshape(-1, width) if rows.size else np.zeros((0, width))
        return list(arr[:, 0].tolist()), arr[:, 1:].astype(np.float64)
    rows = list(rows)
    for r in rows[:1]:
        if len(r) != width:
            raise ValueError(f"{what} rows need {width} fields, got {len(r)}: {tuple(r)!r}")
    ids = [r[0] for r in rows]
    vals = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64).reshape(-1, width - 1)
    return ids, vals


@dataclass
class ClassResult:
    """One class: the detections in score order with their outcome, and the curve."""
    class_id: int
    npos: int  # non-difficult ground truths
    scores: np.ndarray  # (D,) sorted, highest first
    tp: np.ndarray  # (D,) 1 for a true positive
    fp: np.ndarray  # (D,) 1 for a false positive (both 0: matched a difficult GT, ignored)
    image: np.ndarray = field(repr=False, default=None)  # (D,) image index of each detection
    order: np.ndarray = field(repr=False, default=None)  # (D,) index into the input detections

    @property
    def recall(self) -> np.ndarray:
        return np.cumsum(self.tp) / float(self.npos) if self.npos else np.full(len(self.tp), np.nan)

    @property
    def precision(self) -> np.ndarray:
        tp, fp = np.cumsum(self.tp), np.cumsum(self.fp)
        return tp / np.maximum(tp + fp, EPS)

    def ap(self, use_07_metric: bool = True) -> float:
        return voc_ap(self.recall, self.precision, use_07_metric) if self.npos else float("nan")

    def at_threshold(self, thresh: float) -> dict:
        """Counts and precision/recall of the detections with score > ``thresh``."""
        keep = self.scores > thresh
        tp, fp = int(self.tp[keep].sum()), int(self.fp[keep].sum())
        return {"tp": tp, "fp": fp, "fn": self.npos - tp,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "recall": tp / self.npos if self.npos else float("nan")}


def evaluate(detections, truths, iou_thresh: float = 0.5, classes: Iterable[int] | None = None
             ) -> dict[int, ClassResult]:
    """Match detections to ground truth per class (VOC rules, see the module docstring).

    ``detections``: rows ``(image_id, class_id, score, x1, y1, x2, y2)``; ``truths``: rows
    ``(image_id, class_id, x1, y1, x2, y2, difficult)``; pixels, VOC convention.  Returns a
    :class:`ClassResult` per class: ``classes`` if given, else every class in either input.
    """
    d_ids, d = _columns(detections, 7, "detection")
    g_ids, g = _columns(truths, 7, "truth")
    img, id_map = _index(list(d_ids) + list(g_ids))
    d_img, g_img = img[:len(d_ids)], img[len(d_ids):]
    d_cls, d_score, d_box = d[:, 0].astype(np.int64), d[:, 1], d[:, 2:6]
    g_cls, g_box, g_diff = g[:, 0].astype(np.int64), g[:, 1:5], g[:, 5] != 0
    if classes is None:
        classes = sorted(set(d_cls.tolist()) | set(g_cls.tolist()))
    out: dict[int, ClassResult] = {}
    for c in classes:
        c = int(c)
        di = np.flatnonzero(d_cls == c)
        di = di[np.argsort(-d_score[di], kind="stable")]
        gi = np.flatnonzero(g_cls == c)
        nd = len(di)
        ovmax = np.full(nd, -np.inf)
        jmax = np.full(nd, -1, dtype=np.int64)
        # the best ground truth of each detection, one image at a time
        gs = gi[np.argsort(g_img[gi], kind="stable")]
        gimg = g_img[gs]
        starts = np.searchsorted(gimg, d_img[di], side="left")
        ends = np.searchsorted(gimg, d_img[di], side="right")
        has = ends > starts
        if has.any():
            pos_d = np.flatnonzero(has)
            order = np.argsort(d_img[di][pos_d], kind="stable")
            pos_d = pos_d[order]
            bounds = np.flatnonzero(np.diff(d_img[di][pos_d])) + 1
            for grp in np.split(pos_d, bounds):
                s, e = starts[grp[0]], ends[grp[0]]
                ov = iou_voc(d_box[di[grp]][:, None, :], g_box[gs[s:e]][None, :, :])
                jmax[grp] = gs[s:e][np.argmax(ov, axis=1)]
                ovmax[grp] = ov.max(axis=1)
        tp = np.zeros(nd)
        fp = np.zeros(nd)
        used = np.zeros(len(g_box), dtype=bool)
        hit = ovmax > iou_thresh
        for k in range(nd):
            if hit[k]:
                j = jmax[k]
                if not g_diff[j]:
                    if not used[j]:
                        tp[k] = 1.0
                        used[j] = True
                    else:
                        fp[k] = 1.0
            else:
                fp[k] = 1.0
        npos = int((~g_diff[gi]).sum())
        out[c] = ClassResult(c, npos, d_score[di], tp, fp, d_img[di], di)
    return out


def voc_eval(detections, truths, iou_thresh: float = 0.5, use_07_metric: bool = True) -> dict:
    """VOC AP per class and their mean: ``{"ap": {class_id: ap}, "map": m}``.

    ``detections``: rows ``(image_id, class_id, score, x1, y1, x2, y2)``; ``truths``: rows
    ``(image_id, class_id, x1, y1, x2, y2, difficult)``, pixel boxes in VOC's convention (IoU
    with +1 on widths/heights, as the devkit's voc_eval.py).  ``use_07_metric``: VOC2007's
    11-point AP, else the all-point area.  ``ap`` has every class with at least one
    non-difficult ground truth (a class with none has no AP); ``map`` is their mean (nan if
    there is none).
    """
    res = evaluate(detections, truths, iou_thresh)
    ap = {c: r.ap(use_07_metric) for c, r in res.items() if r.npos > 0}
    return {"ap": ap, "map": float(np.mean(list(ap.values()))) if ap else float("nan")}


def proposal_recall(proposals, truths, iou_thresh: float = 0.5, n_images: int | None = None) -> dict:
    """Darknet's ``detector recall``: a ground truth is found when some proposal of its image
    overlaps it with IoU > ``iou_thresh`` (classes ignored, plain continuous IoU).

    ``proposals``: rows ``(image_id, objectness, x1, y1, x2, y2)``; ``truths``: rows
    ``(image_id, x1, y1, x2, y2)`` in the same coordinates (difficult ones already removed,
    as Darknet's label files leave them out).  Returns total, correct, recall, avg_iou (mean best
    IoU), proposals and proposals per image.
    """
    p_ids, p = _columns(proposals, 6, "proposal")
    t_ids, t = _columns(truths, 5, "truth")
    by_img: dict = {}
    for i, pid in enumerate(p_ids):
        by_img.setdefault(pid, []).append(i)
    best = np.zeros(len(t_ids))
    for pid, rows in _group(t_ids).items():
        cand = by_img.get(pid)
        if not cand:
            continue
        a, b = t[rows][:, None, :], p[cand][None, :, 1:5]
        iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
        ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
        inter = iw * ih
        union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
        best[rows] = (inter / union).max(axis=1)
    total = len(t_ids)
    correct = int((best > iou_thresh).sum())
    n_images = n_images if n_images is not None else len(set(p_ids) | set(t_ids))
    return {"total": total, "correct": correct, "recall": correct / total if total else float("nan"),
            "avg_iou": float(best.mean()) if total else float("nan"), "proposals": len(p_ids),
            "images": n_images, "proposals_per_image": len(p_ids) / n_images if n_images else 0.0,
            "iou_thresh": iou_thresh}


def _group(ids: Sequence) -> dict:
    out: dict = {}
    for i, v in enumerate(ids):
        out.setdefault(v, []).append(i)
    return out


# --------------------------------------------------------------------------- files
def format_comp4(image: str, prob: float, x1: float, y1: float, x2: float, y2: float) -> str:
    """One line of a comp4 results file, as Darknet's fprintf("%s %f %f %f %f %f\\n")."""
    return "%s %f %f %f %f %f\n" % (image, prob, x1, y1, x2, y2)


def read_comp4(results_dir, names: Sequence[str], prefix: str = "comp4_det_test_",
               report=None) -> list[tuple]:
    """Detection rows ``(image_id, class_id, score, x1, y1, x2, y2)`` from per-class files
    ``<results_dir>/<prefix><name>.txt`` (a missing file: no detections of that class)."""
    report = report or (lambda line: print(line, file=sys.stderr))
    rows = []
    for cid, name in enumerate(names):
        path = Path(results_dir) / f"{prefix}{name}.txt"
        try:
            text = path.read_text()
        except FileNotFoundError:
            report(f"warning: {path}: missing, no detections of {name!r}")
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataError(f"{path}:{lineno}: expected 'image score x1 y1 x2 y2', got {line.strip()!r}")
            try:
                rows.append((parts[0], cid, *(float(v) for v in parts[1:])))
            except ValueError:
                raise DataError(f"{path}:{lineno}: not numbers: {line.strip()!r}") from None
    return rows


def read_proposals(path) -> list[tuple]:
    """``recall_proposals.txt`` of tools/valid.py: ``image_id objectness x y w h`` lines, the box
    relative to the image (centre and size) -> rows ``(image_id, objectness, x1, y1, x2, y2)``
    relative."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise DataError(f"{path}:{lineno}: expected 'image objectness x y w h'")
        o, x, y, w, h = (float(v) for v in parts[1:])
        rows.append((parts[0], o, x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return rows


@dataclass
class Truth:
    """Ground truth of an image list: ``rows`` (image_id, class_id, x1, y1, x2, y2, difficult)
    in VOC pixels, image sizes, and where it came from."""
    rows: list[tuple]
    sizes: dict  # image_id -> (width, height)
    images: list[str]  # image ids, list order
    source: str
    has_difficult: bool = True

    def relative_rows(self, keep_difficult: bool = False) -> list[tuple]:
        """(image_id, x1, y1, x2, y2) relative to the image, as Darknet's label files give them
        (voc_label.py's conversion, -1 included); difficult ones left out."""
        out = []
        for iid, _c, x1, y1, x2, y2, diff in self.rows:
            if diff and not keep_difficult:
                continue
            x, y, w, h = convert_box(self.sizes[iid], (x1, x2, y1, y2))
            out.append((iid, x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        return out


def _truth_from_json(path, paths: Sequence[str], names: Sequence[str], report) -> Truth:
    doc = read_truth_json(path)
    remap = _class_remap(doc.get("classes", []), names, str(path), report)
    by_id = {}
    for entry in doc["images"]:
        by_id.setdefault(entry["id"], entry)
        by_id.setdefault(image_id(entry["path"]), entry)
    rows, sizes, images, missing = [], {}, [], 0
    for p in paths:
        iid = image_id(p)
        images.append(iid)
        entry = by_id.get(iid)
        if entry is None:
            missing += 1
            continue
        sizes[iid] = (entry["width"], entry["height"])
        for c, x1, y1, x2, y2, diff in entry["objects"]:
            if remap[c] is not None:
                rows.append((iid, remap[c], x1, y1, x2, y2, int(diff)))
    if missing:
        report(f"warning: {path}: {missing} listed images have no ground truth entry (taken as empty)")
    return Truth(rows, sizes, images, f"{path}")


def _class_remap(file_names, names, where, report) -> list:
    index = {n: i for i, n in enumerate(names)}
    remap = [index.get(n) for n in file_names]
    lost = [n for n, r in zip(file_names, remap) if r is None]
    if lost:
        report(f"warning: {where}: classes {lost} are not in the names list; their objects are ignored")
    return remap


def _truth_from_xml(paths: Sequence[str], names: Sequence[str], report) -> Truth | None:
    """VOC XML beside the images: <root>/Annotations/<stem>.xml for <root>/JPEGImages/<file>
    (symlinks resolved, so a --labels-root folder leads back to the dataset)."""
    index = {n: i for i, n in enumerate(names)}
    rows, sizes, images = [], {}, []
    unknown: set = set()
    for p in paths:
        iid = image_id(p)
        images.append(iid)
        xml = None
        for cand in (Path(p), Path(os.path.realpath(p))):
            if cand.parent.name == "JPEGImages":
                x = cand.parent.parent / "Annotations" / (cand.stem + ".xml")
                if x.is_file():
                    xml = x
                    break
        if xml is None:
            return None
        try:
            ann = parse_annotation(xml)
        except VocError as e:
            report(f"warning: {e}; taken as an image without objects")
            continue
        sizes[iid] = (ann.width, ann.height)
        for o in ann.objects:
            if o.name not in index:
                unknown.add(o.name)
                continue
            rows.append((iid, index[o.name], o.xmin, o.ymin, o.xmax, o.ymax, int(o.difficult)))
    if unknown:
        report(f"warning: classes {sorted(unknown)} in the annotations are not in the names list; ignored")
    return Truth(rows, sizes, images, "VOC XML annotations")


def _truth_from_labels(paths: Sequence[str], report) -> Truth:
    """Darknet label files (no difficult flags); pixel boxes recovered with the image sizes."""
    import cv2

    rows, sizes, images = [], {}, []
    for p in paths:
        iid = image_id(p)
        images.append(iid)
        img = cv2.imread(p, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            report(f"warning: {p}: cannot read the image for its size; its labels are ignored")
            continue
        size = (int(img.shape[1]), int(img.shape[0]))
        sizes[iid] = size
        for c, x, y, w, h in read_labels(label_path(p)):
            rows.append((iid, int(c), *unconvert_box(size, (x, y, w, h)), 0))
    return Truth(rows, sizes, images, "Darknet label files (no difficult flags)", has_difficult=False)


def load_truth(paths: Sequence[str], names: Sequence[str], truth_file=None, report=None) -> Truth:
    """Ground truth of the listed images: ``truth_file`` (a ``<set>_truth.json``) if given, else
    VOC XML found beside the images, else the Darknet label files."""
    report = report or (lambda line: print(line, file=sys.stderr))
    if truth_file is not None:
        return _truth_from_json(truth_file, paths, names, report)
    t = _truth_from_xml(paths, names, report)
    if t is not None:
        return t
    report("note: no truth file and no VOC XML beside the images: ground truth from the label files, "
           "without difficult flags")
    return _truth_from_labels(paths, report)


# --------------------------------------------------------------------------- plots
def plot_pr(result: ClassResult, name: str, path, thresh: float | None = None) -> None:
    """Precision/recall curve of one class (raw and the VOC envelope) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


# --------------------------------------------------------------------------- detector valid
def nms_obj(dets, nms_thresh: float):
    """Darknet's ``do_nms_obj`` survivors: a boolean mask over ``dets`` (a
    :class:`pydarknet.boxes.Detections`).  Live detections (objectness != 0) by objectness,
    highest first; each survivor removes every later one overlapping it by more than
    ``nms_thresh`` (Darknet's float IoU)."""
    import torch

    from .boxes import box_iou

    live = torch.nonzero(dets.objectness != 0).flatten()
    keep = torch.zeros(len(dets), dtype=torch.bool)
    if live.numel() == 0:
        return keep
    order = live[torch.sort(dets.objectness[live], descending=True, stable=True).indices]
    b = dets.boxes[order]
    over = (box_iou(b.unsqueeze(1), b.unsqueeze(0)) > torch.tensor(nms_thresh, dtype=torch.float32)).numpy()
    alive = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if alive[i]:
            alive[i + 1:] &= ~over[i, i + 1:]
    keep[order[torch.from_numpy(alive)]] = True
    return keep


def _comp4_lines(dets, classes: int, ident: str, im_w: int, im_h: int) -> list[list[str]]:
    """Darknet's print_detector_detections for one image: lines per class file, det order.

    Corners are computed in double from the float box (``x - w/2. + 1``), stored as float,
    clamped to [1, w] x [1, h], and printed with %f."""
    boxes = dets.boxes.numpy().astype(np.float64)
    probs = dets.probs.numpy()
    x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    f32 = np.float32
    xmin = (x - w / 2.0 + 1).astype(f32)
    xmax = (x + w / 2.0 + 1).astype(f32)
    ymin = (y - h / 2.0 + 1).astype(f32)
    ymax = (y + h / 2.0 + 1).astype(f32)
    xmin = np.where(xmin < 1, f32(1), xmin)
    ymin = np.where(ymin < 1, f32(1), ymin)
    xmax = np.where(xmax > im_w, f32(im_w), xmax)
    ymax = np.where(ymax > im_h, f32(im_h), ymax)
    out: list[list[str]] = [[] for _ in range(classes)]
    rows, cols = np.nonzero(probs[:, :classes])
    for i, j in zip(rows.tolist(), cols.tolist()):
        out[j].append(format_comp4(ident, float(probs[i, j]), float(xmin[i]), float(ymin[i]),
                                   float(xmax[i]), float(ymax[i])))
    return out


def run_valid(net, paths: Sequence[str], out_dir, names: Sequence[str], thresh: float = 0.005,
              nms: float = 0.45, prefix: str = "comp4_det_test_", recall: bool = True, batch: int = 8,
              show_progress: bool | None = None, report=None) -> dict:
    """Darknet's ``detector valid`` (VOC mode) over ``paths``: each picture letterboxed to the
    network, boxes with class prob > ``thresh`` in image pixels, per-class NMS (``do_nms_sort``),
    one ``<out_dir>/<prefix><name>.txt`` per class with ``id prob xmin ymin xmax ymax`` lines
    (1-based pixels, clamped to the image; id = the file name up to its first dot).

    With ``recall``, also the proposals of Darknet's ``detector recall`` in
    ``<out_dir>/recall_proposals.txt`` (``id objectness x y w h``, relative): the picture
    resized (not letterboxed) to the network, objectness > .001, ``do_nms_obj`` at .4.
    Returns a summary (images, failures, seconds, images_per_second, files).
    """
    import torch

    from . import boxes as boxmod
    from .image import ImageError, letterbox, load_image, resize
    from .voc import progress

    report = report or (lambda line: print(line, file=sys.stderr))
    layer = net.detection_layer
    if layer is None or layer.kind != "region":
        raise DataError(f"{net.cfg_path}: valid needs a [region] output layer")
    if getattr(layer, "tree", None) is not None:
        raise DataError("WordTree (YOLO9000) validation is not supported")
    classes = layer.classes
    if len(names) < classes:
        raise DataError(f"{classes} classes in the network but only {len(names)} names")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    net.eval()
    files = [open(out_dir / f"{prefix}{names[j]}.txt", "w") for j in range(classes)]
    prop = open(out_dir / "recall_proposals.txt", "w") if recall else None
    failed, done = 0, 0
    start = time.perf_counter()

    def run(images: list, sized: list) -> list:
        with torch.no_grad():
            return list(net(torch.stack(sized).to(device)).float().cpu())

    try:
        chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
        for chunk in progress(chunks, desc="valid", enabled=show_progress):
            imgs, ids = [], []
            for p in chunk:
                try:
                    imgs.append(load_image(p))
                    ids.append(image_id(p))
                except ImageError as e:
                    report(f"error: cannot read image {e}")
                    failed += 1
            if not imgs:
                continue
            outs = run(imgs, [letterbox(im, net.width, net.height) for im in imgs])
            for im, ident, out in zip(imgs, ids, outs):
                im_w, im_h = im.shape[2], im.shape[1]
                dets = boxmod.decode_region(out, layer.anchors, layer.num, classes, layer.coords, thresh,
                                            im_w, im_h, net.width, net.height, letterbox=True, relative=False)
                if nms:
                    dets = boxmod.nms_sort(dets, classes, nms)
                for j, lines in enumerate(_comp4_lines(dets, classes, ident, im_w, im_h)):
                    files[j].writelines(lines)
            if prop is not None:
                outs = run(imgs, [resize(im, net.width, net.height) for im in imgs])
                for ident, out in zip(ids, outs):
                    dets = boxmod.decode_region(out, layer.anchors, layer.num, classes, layer.coords, 0.001,
                                                net.width, net.height, net.width, net.height,
                                                letterbox=False, relative=True)
                    keep = nms_obj(dets, 0.4)
                    for i in torch.nonzero(keep).flatten().tolist():
                        x, y, w, h = dets.boxes[i].tolist()
                        prop.write(f"{ident} {float(dets.objectness[i]):.9g} {x:.9g} {y:.9g} {w:.9g} {h:.9g}\n")
            done += len(imgs)
    finally:
        for f in files:
            f.close()
        if prop is not None:
            prop.close()
    seconds = time.perf_counter() - start
    return {"images": done, "failed": failed, "seconds": seconds,
            "images_per_second": done / seconds if seconds > 0 else 0.0,
            "thresh": thresh, "nms": nms, "prefix": prefix, "results": str(out_dir),
            "recall_proposals": str(out_dir / "recall_proposals.txt") if recall else None}


def _validation_set(data_file: Path):
    """A .data file (DataConfig: its options, paths resolved as Darknet and beside the file),
    its class names and its validation pictures."""
    data = DataConfig.from_file(data_file)
    if "valid" not in data.options or "names" not in data.options:
        raise DataError(f"{data_file}: needs valid= and names=")
    return data, data.class_names(), data.valid_list()


def valid_main(argv=None) -> int:
    """``tools/valid.py DATA CFG WEIGHTS``: Darknet's ``detector valid``."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="valid.py",
        description="Darknet's `detector valid`: run a detector over the valid= list of a .data file and "
                    "write per-class comp4 result files (then run tools/map.py).")
    ap.add_argument("data", metavar="DATA")
    ap.add_argument("cfg", metavar="CFG")
    ap.add_argument("weights", metavar="WEIGHTS")
    ap.add_argument("--out", metavar="DIR", help="results folder (default: results= of DATA, else ./results)")
    ap.add_argument("--thresh", type=float, default=0.005, help="class probability threshold (.005)")
    ap.add_argument("--nms", type=float, default=0.45, help="per-class NMS IoU threshold (.45; 0 disables)")
    ap.add_argument("--prefix", default="comp4_det_test_", help="results file prefix (comp4_det_test_)")
    ap.add_argument("--batch", type=int, default=8, help="pictures per forward pass (8)")
    ap.add_argument("--no-recall", action="store_true",
                    help="skip the second pass for Darknet's `detector recall` proposals")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--exact", action="store_true", help="Darknet's own float arithmetic (slow)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    from .cfg import CfgError
    from .network import Darknet
    from .weights import WeightsError

    try:
        data_file = Path(args.data)
        data, names, paths = _validation_set(data_file)
        out_dir = Path(args.out or data.options.get("results", "results"))
        net = Darknet(args.cfg, exact=args.exact)
        net.load_weights(args.weights)
        net.names = names
        net.eval().to(args.device)
        summary = run_valid(net, paths, out_dir, names, args.thresh, args.nms, args.prefix,
                            recall=not args.no_recall, batch=max(1, args.batch),
                            show_progress=False if args.quiet else None)
    except (DataError, CfgError, WeightsError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary.update({"data": str(data_file), "cfg": args.cfg, "weights": args.weights,
                    "names": list(names), "valid": data.options["valid"]})
    (out_dir / "valid.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['images']} images in {summary['seconds']:.2f} s ({summary['images_per_second']:.2f} images/s); "
          f"results in {out_dir}/{args.prefix}<class>.txt", file=sys.stderr)
    print(f"Total Detection Time: {summary['seconds']:f} Seconds", file=sys.stderr)
    return 1 if summary["failed"] else 0


# --------------------------------------------------------------------------- command line
def map_main(argv=None) -> int:
    """``tools/map.py``: VOC AP/mAP of comp4 result files against the ground truth."""
    import argparse

    ap = argparse.ArgumentParser(
        prog="map.py",
        description="VOC AP per class (VOC2007 11-point and all-point area), mAP, precision/recall at a "
                    "threshold, Darknet's `detector recall`, PR curves; from tools/valid.py's results.")
    ap.add_argument("data", metavar="DATA", help=".data file (valid=, names=, optional valid_truth= / results=)")
    ap.add_argument("--results", metavar="DIR", help="folder of the comp4 files (default: results= of DATA, "
                                                     "else ./results)")
    ap.add_argument("--prefix", default="comp4_det_test_", help="results file prefix (comp4_det_test_)")
    ap.add_argument("--truth", help="ground truth JSON (default: valid_truth= of DATA, else VOC XML beside "
                                    "the images, else the label files)")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU threshold for a match (0.5)")
    ap.add_argument("--thresh", type=float, default=0.25, help="score threshold for precision/recall (0.25)")
    ap.add_argument("--plots", metavar="DIR", help="PR-curve PNGs here (default: RESULTS/pr_curves when "
                                                  "matplotlib is installed)")
    ap.add_argument("--no-plots", action="store_true", help="no PR-curve PNGs")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args(argv)
    notes: list[str] = []

    def report(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        data_file = Path(args.data)
        data, names, paths = _validation_set(data_file)
        results = Path(args.results or data.options.get("results", "results"))
        truth_file = args.truth or (str(data.resolve(data.options["valid_truth"]))
                                    if "valid_truth" in data.options else None)
        truth = load_truth(paths, names, truth_file, report)
        dets = read_comp4(results, names, args.prefix, report)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    listed = set(truth.images)
    if len(listed) != len(truth.images):
        notes.append("some listed images share an id (file name up to the first dot); their results mix")
    stray = sum(1 for r in dets if r[0] not in listed)
    if stray:
        notes.append(f"{stray} detections name images that are not in the valid list; ignored")
        dets = [r for r in dets if r[0] in listed]

    res = evaluate(dets, truth.rows, args.iou, classes=range(len(names)))
    per_class = {}
    for c, r in res.items():
        at = r.at_threshold(args.thresh)
        per_class[names[c]] = {"ap_voc07": r.ap(True), "ap_area": r.ap(False), "npos": r.npos,
                               "detections": int(len(r.scores)), **at}
    valid_classes = [c for c, r in res.items() if r.npos > 0]
    m07 = float(np.mean([res[c].ap(True) for c in valid_classes])) if valid_classes else float("nan")
    marea = float(np.mean([res[c].ap(False) for c in valid_classes])) if valid_classes else float("nan")
    tp = sum(per_class[names[c]]["tp"] for c in valid_classes)
    fp = sum(per_class[names[c]]["fp"] for c in valid_classes)
    npos = sum(res[c].npos for c in valid_classes)
    summary = {"iou_thresh": args.iou, "map_voc07": m07, "map_area": marea,
               "thresh": args.thresh, "precision": tp / (tp + fp) if tp + fp else 0.0,
               "recall": tp / npos if npos else float("nan"), "tp": tp, "fp": fp, "npos": npos,
               "images": len(truth.images), "truth_source": truth.source, "results": str(results)}
    if args.iou == 0.5:
        summary["map50_voc07"], summary["map50_area"] = m07, marea

    # Darknet's `detector recall`: proposals from tools/valid.py, else the class detections
    rel_truth = truth.relative_rows()
    prop_file = results / "recall_proposals.txt"
    if prop_file.is_file():
        props = read_proposals(prop_file)
        rec = proposal_recall(props, rel_truth, 0.5, len(truth.images))
        rec["source"] = f"{prop_file} (objectness > .001 after NMS .4 on the resized image, as `detector recall`)"
    else:
        rows = []
        for iid, _c, _s, x1, y1, x2, y2 in dets:
            if iid in truth.sizes:
                W, H = truth.sizes[iid]
                # comp4 corners (1-based, clipped) back to Darknet's relative box
                rows.append((iid, _s, (x1 - 1) / W, (y1 - 1) / H, (x2 - 1) / W, (y2 - 1) / H))
        rec = proposal_recall(rows, rel_truth, 0.5, len(truth.images))
        rec["source"] = "class detections of the comp4 files (no recall_proposals.txt: an approximation)"
    summary["recall_darknet"] = rec
    summary["classes"] = per_class

    plots_dir = None
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
            plots_dir = Path(args.plots) if args.plots else results / "pr_curves"
        except ImportError:
            if args.plots:
                print("error: --plots needs matplotlib: pip install matplotlib", file=sys.stderr)
                return 2
            notes.append("matplotlib is not installed: no PR-curve PNGs (pip install matplotlib)")
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
        for c, r in res.items():
            plot_pr(r, names[c], plots_dir / f"pr_{_safe(names[c])}.png", args.thresh)
        summary["plots"] = str(plots_dir)

    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=1, default=float))
        return 0
    w = max([len(n) for n in names] + [5])
    print(f"{len(truth.images)} images, ground truth from {truth.source}, IoU > {args.iou:g}")
    print(f"{'class':<{w}}  {'AP07':>7} {'AP area':>7}  {'P@' + format(args.thresh, 'g'):>7} "
          f"{'R@' + format(args.thresh, 'g'):>7}  {'GT':>5} {'dets':>7}")
    for c, r in res.items():
        pc = per_class[names[c]]
        if r.npos == 0:
            print(f"{names[c]:<{w}}  {'-':>7} {'-':>7}  {'-':>7} {'-':>7}  {0:5d} {pc['detections']:7d}  (no ground truth)")
            continue
        print(f"{names[c]:<{w}}  {pc['ap_voc07']:7.4f} {pc['ap_area']:7.4f}  {pc['precision']:7.4f} "
              f"{pc['recall']:7.4f}  {r.npos:5d} {pc['detections']:7d}")
    print(f"mAP@{args.iou:g}: VOC2007 11-point {m07:.4f}, all-point (area) {marea:.4f}")
    print(f"at score > {args.thresh:g}: precision {summary['precision']:.4f}, recall {summary['recall']:.4f} "
          f"(TP {tp}, FP {fp}, FN {npos - tp})")
    print(f"Darknet recall (IoU > .5): {100 * rec['recall']:.2f}% ({rec['correct']}/{rec['total']}), "
          f"avg IoU {100 * rec['avg_iou']:.2f}%, RPs/img {rec['proposals_per_image']:.2f}  [{rec['source']}]")
    if plots_dir is not None:
        print(f"PR curves: {plots_dir}/pr_<class>.png")
    return 0
