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

File formats (:mod:`pydarknet.comp4`, :mod:`pydarknet.truths`): Darknet's ``detector valid`` writes ``comp4_det_test_<class>.txt`` files of
``image_id score x1 y1 x2 y2`` lines ; ground truth comes from the
``<set>_truth.json`` files of :mod:`pydarknet.voc`, from VOC XML or from Darknet label files
.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["iou_voc", "voc_ap", "ClassResult", "evaluate", "voc_eval", "proposal_recall", "map_summary"]

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


def map_summary(results: dict, names, iou: float, thresh: float) -> dict:
    """mAP (VOC07 and area), precision/recall at ``thresh`` and per-class figures from
    :func:`evaluate`'s results; classes without ground truth are left out of the means."""
    per_class = {}
    for c, r in results.items():
        per_class[names[c]] = {"ap_voc07": r.ap(True), "ap_area": r.ap(False), "npos": r.npos,
                               "detections": int(len(r.scores)), **r.at_threshold(thresh)}
    scored = [c for c, r in results.items() if r.npos > 0]
    m07 = float(np.mean([results[c].ap(True) for c in scored])) if scored else float("nan")
    marea = float(np.mean([results[c].ap(False) for c in scored])) if scored else float("nan")
    tp = sum(per_class[names[c]]["tp"] for c in scored)
    fp = sum(per_class[names[c]]["fp"] for c in scored)
    npos = sum(results[c].npos for c in scored)
    summary = {"iou_thresh": iou, "map_voc07": m07, "map_area": marea, "thresh": thresh,
               "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / npos if npos else float("nan"),
               "tp": tp, "fp": fp, "npos": npos, "classes": per_class}
    if iou == 0.5:
        summary["map50_voc07"], summary["map50_area"] = m07, marea
    return summary
