"""Region-layer box decoding and Darknet's per-class NMS.

Reproduces ``get_network_boxes`` for a ``[region]`` layer (``get_region_detections`` +
``correct_region_boxes``) and ``do_nms_sort`` bit for bit, including the order of the
detections, so that printed detections match the C program line for line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .image import letterbox_geometry

__all__ = [
    "Detections",
    "DetectionRows",
    "PrintedRow",
    "box_iou",
    "box_diou",
    "concat_detections",
    "decode_yolo",
    "printed_alexeyab",
    "decode_region",
    "decode_region_tree",
    "detection_rows",
    "nms_sort",
    "printed",
]

_F32 = torch.float32


def _f32(value: float) -> Tensor:
    """A float32 scalar, so comparisons and products round like Darknet's ``float``."""
    return torch.tensor(value, dtype=_F32)


@dataclass
class Detections:
    """Darknet's ``detection`` array for one image, one row per detection.

    ``boxes`` are (x, y, w, h) centre/size, relative to the original image; ``index`` is
    the detection's original index ``anchor*H*W + row*W + col``.
    """

    boxes: Tensor  # (K, 4) float32
    objectness: Tensor  # (K,) float32
    probs: Tensor  # (K, C) float32
    index: Tensor  # (K,) int64

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def select(self, rows: Tensor) -> "Detections":
        """Rows picked (or reordered) by an index tensor or a boolean mask."""
        return Detections(self.boxes[rows], self.objectness[rows], self.probs[rows], self.index[rows])

    def clone(self) -> "Detections":
        return Detections(self.boxes.clone(), self.objectness.clone(), self.probs.clone(), self.index.clone())


def region_boxes(out: Tensor, anchors: Tensor, darknet_rounding: bool = True) -> tuple[Tensor, ...]:
    """Darknet's ``get_region_box`` for every cell: ``out`` (..., num, entries, H, W) with x, y
    already logistic, ``anchors`` (num, 2) float32 in grid cells; returns x, y, w, h, each
    (..., num, H, W), relative to the network input.

    x and y are float sums and quotients; ``exp(t) * anchor / W`` is evaluated in double and
    rounded once, as the C expression is (``darknet_rounding``).  Without it everything stays
    in float32 (exportable to ONNX, within float32 noise).
    """
    H, W = out.shape[-2:]
    col = torch.arange(W, dtype=_F32, device=out.device)
    row = torch.arange(H, dtype=_F32, device=out.device).unsqueeze(1)
    aw, ah = anchors[:, 0, None, None], anchors[:, 1, None, None]
    x = (col + out[..., 0, :, :]) / _f32(W).to(out.device)
    y = (row + out[..., 1, :, :]) / _f32(H).to(out.device)
    if darknet_rounding:
        w = (torch.exp(out[..., 2, :, :].double()) * aw.double() / W).to(_F32)
        h = (torch.exp(out[..., 3, :, :].double()) * ah.double() / H).to(_F32)
    else:
        w = torch.exp(out[..., 2, :, :]) * aw / W
        h = torch.exp(out[..., 3, :, :]) * ah / H
    return x, y, w, h


def _correct_boxes(x, y, w, h, im_w, im_h, net_w, net_h, letterbox: bool, relative: bool):
    """correct_region_boxes / correct_yolo_boxes: from the network input back to the picture."""
    if net_w is None or net_h is None:
        if im_w is not None or im_h is not None:
            raise ValueError("net_w and net_h are needed to correct boxes to the image")
        return x, y, w, h
    device = x.device
    im_w = net_w if im_w is None else im_w
    im_h = net_h if im_h is None else im_h
    new_w, new_h = letterbox_geometry(im_w, im_h, net_w, net_h)[:2] if letterbox else (net_w, net_h)
    # correct_region_boxes mixes precisions: the offset is a double expression, the scale a
    # float quotient, and the x/y subtraction and division happen in double.
    x = ((x.double() - (net_w - new_w) / 2.0 / net_w) / float(_f32(new_w) / _f32(net_w))).to(_F32)
    y = ((y.double() - (net_h - new_h) / 2.0 / net_h) / float(_f32(new_h) / _f32(net_h))).to(_F32)
    w = w * (_f32(net_w) / _f32(new_w)).to(device)
    h = h * (_f32(net_h) / _f32(new_h)).to(device)
    if not relative:
        x, w = x * _f32(im_w).to(device), w * _f32(im_w).to(device)
        y, h = y * _f32(im_h).to(device), h * _f32(im_h).to(device)
    return x, y, w, h


def decode_region(
    output: Tensor,
    anchors: Sequence[float],
    num: int,
    classes: int,
    coords: int = 4,
    thresh: float = 0.5,
    im_w: int | None = None,
    im_h: int | None = None,
    net_w: int | None = None,
    net_h: int | None = None,
    letterbox: bool = True,
    relative: bool = True,
) -> Detections:
    """All ``num*H*W`` detections of one image from an activated ``[region]`` output.

    ``output`` is (num*(coords+1+classes), H, W) in Darknet memory order with x, y, obj
    already logistic and the classes softmaxed; ``anchors`` is the flat cfg list in grid cells.
    Boxes are mapped back from the letterboxed network input to the original image
    (``im_w``/``im_h``; the network input itself when omitted). With ``relative=False`` they
    are in pixels of the original image.
    """
    _, H, W = output.shape
    entries = coords + 1 + classes
    out = output.to(_F32).reshape(num, entries, H, W)
    device = out.device
    bias = torch.tensor(list(anchors), dtype=_F32, device=device).reshape(num, 2)  # float, as l.biases
    x, y, w, h = region_boxes(out, bias)

    thr = _f32(thresh).to(device)
    obj = out[:, coords]
    objectness = torch.where(obj > thr, obj, torch.zeros_like(obj))
    prob = obj.unsqueeze(1) * out[:, coords + 1:]
    keep = (prob > thr) & (objectness != 0).unsqueeze(1)
    prob = torch.where(keep, prob, torch.zeros_like(prob))

    x, y, w, h = _correct_boxes(x, y, w, h, im_w, im_h, net_w, net_h, letterbox, relative)

    boxes = torch.stack([x, y, w, h], dim=-1).reshape(num * H * W, 4)
    probs = prob.permute(0, 2, 3, 1).reshape(num * H * W, classes)
    index = torch.arange(num * H * W, device=device, dtype=torch.int64)
    return Detections(boxes, objectness.reshape(-1), probs, index)


def decode_region_tree(
    output: Tensor,
    anchors: Sequence[float],
    num: int,
    tree,
    coords: int = 4,
    thresh: float = 0.5,
    hier_thresh: float = 0.5,
    im_w: int | None = None,
    im_h: int | None = None,
    net_w: int | None = None,
    net_h: int | None = None,
    letterbox: bool = True,
    relative: bool = True,
) -> Detections:
    """``get_region_detections`` for a ``[region]`` with a WordTree (YOLO9000, ``map`` 0).

    Boxes and objectness as :func:`decode_region`; the class entries (conditional, softmaxed
    within each group) go through ``hierarchy_predictions(only_leaves=0)`` once, then
    ``hierarchy_top_prediction(hier_thresh)`` picks ONE node per box, whose prob is the
    objectness (``obj > thresh ? obj : 0``), not objectness times the class probability.
    """
    from .tree import hierarchy_predictions, hierarchy_top_prediction

    classes = tree.n
    dets = decode_region(output, anchors, num, classes, coords, thresh, im_w, im_h, net_w, net_h,
                         letterbox, relative)
    _, H, W = output.shape
    out = output.to(_F32).reshape(num, coords + 1 + classes, H, W)
    cls = out[:, coords + 1:].permute(0, 2, 3, 1).reshape(num * H * W, classes)
    top = hierarchy_top_prediction(hierarchy_predictions(cls, tree, False), tree, hier_thresh)
    probs = torch.zeros_like(dets.probs)
    probs[torch.arange(len(dets), device=probs.device), top.to(probs.device)] = dets.objectness
    return Detections(dets.boxes, dets.objectness, probs, dets.index)


def decode_yolo(
    output: Tensor,
    anchors: Sequence[float],
    mask: Sequence[int],
    classes: int,
    thresh: float = 0.5,
    im_w: int | None = None,
    im_h: int | None = None,
    net_w: int | None = None,
    net_h: int | None = None,
    letterbox: bool = True,
    relative: bool = True,
    new_coords: bool = False,
    gaussian: bool = False,
) -> Detections:
    """``get_yolo_detections`` (and AlexeyAB's ``get_gaussian_yolo_detections``) for one head.

    ``output`` is the activated (len(mask)*(box+1+classes), H, W) head output.  Only boxes whose
    objectness is above ``thresh`` are kept, in Darknet's order: position (row-major) first, then
    anchor; ``index`` is ``anchor*H*W + position``.  Boxes: x = (col + tx)/W, w = exp(tw)·anchor/net_w
    (``new_coords``: (2·tw)²·anchor/net_w, i.e. tw²·4·anchor); prob = obj·class (Gaussian: times
    1 − mean σ).  ``letterbox`` corrects for pjreddie's letterboxed input (AlexeyAB: ``letter_box=1``).
    """
    _, H, W = output.shape
    num = len(mask)
    box = 8 if gaussian else 4
    out = output.to(_F32).reshape(num, box + 1 + classes, H, W).permute(2, 3, 0, 1).reshape(H * W * num, -1)
    obj = out[:, box]
    keep = obj > _f32(thresh).to(out.device)
    rows = torch.nonzero(keep).flatten()
    out = out[rows]
    pos, anchor = rows // num, rows % num
    col, row = (pos % W).to(_F32), (pos // W).to(_F32)
    bias = torch.tensor(list(anchors), dtype=_F32, device=out.device).reshape(-1, 2)[torch.tensor(list(mask))[anchor]]
    tx, ty, tw, th = (out[:, 0], out[:, 2], out[:, 4], out[:, 6]) if gaussian else out[:, :4].unbind(1)
    x = (col + tx) / _f32(W).to(out.device)
    y = (row + ty) / _f32(H).to(out.device)
    nw, nh = (W, H) if net_w is None else (net_w, net_h)
    if new_coords:
        w = tw * tw * _f32(4).to(out.device) * bias[:, 0] / _f32(nw).to(out.device)
        h = th * th * _f32(4).to(out.device) * bias[:, 1] / _f32(nh).to(out.device)
    else:  # exp() is the double libm exp, the product and quotient in double, rounded once
        w = (torch.exp(tw.double()) * bias[:, 0].double() / nw).to(_F32)
        h = (torch.exp(th.double()) * bias[:, 1].double() / nh).to(_F32)
    x, y, w, h = _correct_boxes(x, y, w, h, im_w, im_h, net_w, net_h, letterbox, relative)
    objectness = out[:, box]
    prob = objectness.unsqueeze(1) * out[:, box + 1:]
    if gaussian:
        uc = ((out[:, 1].double() + out[:, 3] + out[:, 5] + out[:, 7]) / 4.0)
        prob = (prob.double() * (1.0 - uc.unsqueeze(1))).to(_F32)
    prob = torch.where(prob > _f32(thresh).to(out.device), prob, torch.zeros_like(prob))
    return Detections(torch.stack([x, y, w, h], dim=-1), objectness, prob, anchor * H * W + pos)


def concat_detections(parts: Sequence[Detections]) -> Detections:
    """The detections of several heads, one after the other (Darknet's fill_network_boxes)."""
    return Detections(torch.cat([d.boxes for d in parts]), torch.cat([d.objectness for d in parts]),
                      torch.cat([d.probs for d in parts]), torch.cat([d.index for d in parts]))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of centre/size boxes (..., 4), broadcast, in Darknet's float32 arithmetic (box.c)."""
    a, b = a.to(_F32), b.to(_F32)

    def overlap(x1: Tensor, w1: Tensor, x2: Tensor, w2: Tensor) -> Tensor:
        l1, l2 = x1 - w1 / 2, x2 - w2 / 2
        r1, r2 = x1 + w1 / 2, x2 + w2 / 2
        # ternaries, not fmax/fmin: a NaN picks the other operand exactly as in C
        return torch.where(r1 < r2, r1, r2) - torch.where(l1 > l2, l1, l2)

    ow = overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
    oh = overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    inter = torch.where((ow < 0) | (oh < 0), torch.zeros_like(ow), ow * oh)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / union


def box_diou(a: Tensor, b: Tensor, beta: float = 0.6) -> Tensor:
    """AlexeyAB's ``box_diou`` (beta 0.6) / ``box_diounms``: IoU − (d²/c²)^beta, d the centre
    distance, c the diagonal of the smallest enclosing box (IoU alone when c is 0)."""
    a, b = a.to(_F32), b.to(_F32)
    top = torch.minimum(a[..., 1] - a[..., 3] / 2, b[..., 1] - b[..., 3] / 2)
    bot = torch.maximum(a[..., 1] + a[..., 3] / 2, b[..., 1] + b[..., 3] / 2)
    left = torch.minimum(a[..., 0] - a[..., 2] / 2, b[..., 0] - b[..., 2] / 2)
    right = torch.maximum(a[..., 0] + a[..., 2] / 2, b[..., 0] + b[..., 2] / 2)
    c = (right - left) ** 2 + (bot - top) ** 2
    d = (a[..., 0] - b[..., 0]) ** 2 + (a[..., 1] - b[..., 1]) ** 2
    iou = box_iou(a, b)
    u = torch.pow((d / c).double(), beta).to(_F32)  # pow() in double
    return torch.where(c == 0, iou, iou - u)


def _compaction_order(live: Tensor) -> Tensor:
    """Permutation left by do_nms_sort's swap-with-tail scan that moves objectness-0 dets back.

    ``order[p]`` is the detection that ends at position p. Live dets already in the first
    ``n_live`` slots stay put; the holes there are filled by the live dets of the tail, the
    last one first. A tail slot k then holds det k+1 when that one is dead (it was swapped
    in and straight out again), otherwise the next dead det met by the forward scan.
    """
    n = live.numel()
    device = live.device
    n_live = int(live.sum())
    order = torch.arange(n, device=device)
    if n_live == n:
        return order
    dead = torch.nonzero(~live).flatten()
    order[dead[dead < n_live]] = (torch.nonzero(live[n_live:]).flatten() + n_live).flip(0)
    tail = torch.arange(n_live, n, device=device)
    next_live = torch.cat([live[n_live + 1:], torch.ones(1, dtype=torch.bool, device=device)])
    order[tail[~next_live]] = tail[~next_live] + 1
    takers = tail[next_live].flip(0)
    order[takers] = dead[: takers.numel()]
    return order


def _greedy_keep(suppress: Tensor) -> Tensor:
    """Greedy NMS survivors given ``suppress[i, j]`` (i before j, IoU above threshold).

    ``keep[j] = not any(keep[i] and suppress[i, j] for i < j)`` is triangular, so iterating it
    from all-True reaches its unique fixed point (exact, usually in a few rounds).
    """
    n = suppress.shape[0]
    later = torch.ones(n, n, dtype=torch.bool, device=suppress.device).triu(1)
    suppress = suppress & later
    keep = torch.ones(n, dtype=torch.bool, device=suppress.device)
    while True:
        new = ~(suppress & keep.unsqueeze(1)).any(dim=0)
        if torch.equal(new, keep):
            return keep
        keep = new


def nms_sort(dets: Detections, classes: int, nms_thresh: float, kind: str = "default",
             beta: float = 0.6) -> Detections:
    """Darknet's ``do_nms_sort``: returns the detections reordered, suppressed probs zeroed.

    Dead (objectness 0) detections are moved to the tail first, then for every class the live
    prefix is stably sorted by that class's prob (glibc qsort is a merge sort) and each det
    with a non-zero prob zeroes the prob of every later det it overlaps by more than
    ``nms_thresh``. The final order is the one the last class's sort left.

    AlexeyAB's ``diounms_sort`` is the same loop with another overlap: ``kind="greedynms"``
    suppresses by DIoU (beta 0.6), ``"diounms"`` by DIoU with ``beta`` (its ``beta_nms``);
    ``"default"`` is IoU.
    """
    dets = dets.select(_compaction_order(dets.objectness != 0))
    n_live = int((dets.objectness != 0).sum())
    probs = dets.probs.clone()
    # Only detections with some non-zero prob can suppress or be suppressed: the IoU matrix
    # covers those (usually a handful), indexed through ``slot``.
    ids = torch.nonzero((probs[:n_live, :classes] > 0).any(dim=1)).flatten()
    slot = torch.full((n_live,), -1, dtype=torch.int64, device=probs.device)
    slot[ids] = torch.arange(ids.numel(), device=probs.device)
    cand_boxes = dets.boxes[ids]
    pair = (cand_boxes.unsqueeze(1), cand_boxes.unsqueeze(0))
    if kind == "default":
        iou = box_iou(*pair)
    elif kind in ("greedynms", "diounms"):
        iou = box_diou(*pair, 0.6 if kind == "greedynms" else beta)
    else:
        raise ValueError(f"nms kind must be default, greedynms or diounms, not {kind!r}")
    over = iou > _f32(nms_thresh).to(iou.device)

    order = torch.arange(n_live, device=probs.device)
    # a class with no non-zero prob has all keys equal: its stable sort leaves the order as it is
    active = torch.nonzero((probs[:n_live, :classes] > 0).any(dim=0)).flatten().tolist()
    for c in active:
        key = probs[order, c]
        n_pos = int((key > 0).sum())
        order = order[torch.sort(key, descending=True, stable=True).indices]
        cand = order[:n_pos]
        s = slot[cand]
        keep = _greedy_keep(over[s][:, s])
        probs[cand[~keep], c] = 0

    full = torch.cat([order, torch.arange(n_live, len(dets), device=order.device)])
    return Detections(dets.boxes[full], dets.objectness[full], probs[full], dets.index[full])


class DetectionRows(NamedTuple):
    """One row per (detection, class) with prob above a threshold, in position then class order."""

    pos: Tensor  # (R,) int64 position in the detections array
    index: Tensor  # (R,) int64 original detection index
    cls: Tensor  # (R,) int64
    prob: Tensor  # (R,) float32
    box: Tensor  # (R, 4) float32
    objectness: Tensor  # (R,) float32


def detection_rows(dets: Detections, thresh: float = 0.0) -> DetectionRows:
    """Rows with ``prob > thresh`` (the fixtures' ``prenms_*``/``det_*`` layout for thresh 0)."""
    pos, cls = torch.nonzero(dets.probs > _f32(thresh).to(dets.probs.device), as_tuple=True)
    return DetectionRows(
        pos, dets.index[pos], cls, dets.probs[pos, cls], dets.boxes[pos], dets.objectness[pos]
    )


class PrintedRow(NamedTuple):
    pos: int
    cls: int
    prob: float
    percent: float  # float32 prob*100, the value Darknet formats with "%.0f%%"


def printed(dets: Detections, thresh: float) -> list[PrintedRow]:
    """The (detection, class) lines ``draw_detections`` prints, in its order."""
    rows = detection_rows(dets, thresh)
    percent = rows.prob * _f32(100).to(rows.prob.device)
    return [
        PrintedRow(int(p), int(c), float(v), float(pc))
        for p, c, v, pc in zip(rows.pos.tolist(), rows.cls.tolist(), rows.prob.tolist(), percent.tolist())
    ]


def printed_alexeyab(dets: Detections, thresh: float) -> list[PrintedRow]:
    """The lines AlexeyAB's ``draw_detections_v3`` prints: each detection with a class above
    ``thresh`` gives its best class (first maximum) then its other classes above ``thresh`` in
    class order; the detections are stably sorted by their left edge x − w/2."""
    probs = dets.probs
    above = probs > _f32(thresh).to(probs.device)
    chosen = torch.nonzero(above.any(dim=1)).flatten()
    if not len(chosen):
        return []
    left = dets.boxes[chosen, 0] - dets.boxes[chosen, 2] / 2
    chosen = chosen[torch.sort(left, stable=True).indices]
    masked = torch.where(above, probs, torch.full_like(probs, -1.))
    best = masked.argmax(dim=1)  # first maximum, as its strict '>' scan
    rows = []
    for p in chosen.tolist():
        b = int(best[p])
        for c in [b] + [c for c in torch.nonzero(above[p]).flatten().tolist() if c != b]:
            v = probs[p, c]
            rows.append(PrintedRow(p, c, float(v), float(v * _f32(100))))
    return rows
