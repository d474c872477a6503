"""YOLOv2 / YOLO9000 region loss: the training delta ``forward_region_layer`` computes.

:func:`region_delta` takes the region layer's activated output for a whole batch and
Darknet's truth rows and returns Darknet's ``l.delta`` (before any backward: no logistic
gradient applied) and ``*l.cost``.  Every step keeps Darknet's float/double mix, so on
the golden fixtures the result is bit-identical to the reference build.

What is computed, per image (see the golden README, items 14 and 24-26):

* every prediction: objectness delta ``noobject_scale*(0 - obj)`` (``(1 - obj)`` with
  ``background``), set to 0 when the prediction's best IoU with any truth is ``> thresh``;
* while ``seen < 12800``: the coordinates pulled (scale .01) toward the cell centre and
  the anchor's own size;
* every truth row (until the first with x == 0, at most 30): cell ``(int)(x*W), (int)(y*H)``,
  the anchor whose shape best matches (strict ``>``, so ties keep the first), coordinate
  deltas scaled by ``coord_scale*(2 - w*h)``, objectness ``object_scale*(iou - obj)``
  with ``rescore`` (``1 - obj`` without), class deltas ``class_scale*((c == cls) - p)``;
  a later truth at the same cell and anchor overwrites what an earlier one wrote;
* with a WordTree: ``map=`` applies to box truths; a row with x and y > 100000 makes the
  whole image class-only (objectness pushed to 0 everywhere, the hierarchical class delta
  at the location with the largest ``obj * P(class)``, that location's objectness delta
  0); the class delta touches every group on the class's path to the root.

``cost = pow(mag_array(delta), 2)``: a sequential float32 sum of squares, its square root
rounded to float, squared in double and stored as float.
"""
from __future__ import annotations

from dataclasses import dataclass

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .boxes import box_iou, region_boxes
from .data import ONLYCLASS_MIN  # a row with x and y above this is a class-only (no box) label
from .exact import sum_array
from .tree import WordTree, resolve_data_path

__all__ = ["region_delta", "region_cost", "read_map"]

_F32 = torch.float32
_F64 = torch.float64
MAX_TRUTHS = 30          # Darknet's truth buffer holds 30 rows per image (l.truths = 30*(coords+1))
PRIOR_SEEN = 12800       # the anchor-prior pull stops once this many images were seen

_ATOI = re.compile(r"\s*([+-]?\d+)")


def read_map(path) -> list[int]:
    """A ``map=`` file as Darknet's ``read_map`` reads it: one integer per line, ``atoi``
    semantics (leading blanks and sign, digits up to the first other character, 0 if none)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read map file ({e.strerror})") from None
    out = []
    for line in text.split("\n")[: text.count("\n") + (0 if text.endswith("\n") or not text else 1)]:
        m = _ATOI.match(line)
        out.append(int(m.group(1)) if m else 0)
    return out


_map_cache: dict[tuple[str, int], list[int]] = {}


def _layer_map(layer) -> list[int] | None:
    name = getattr(layer, "map_file", None)
    if not name:
        return None
    path = resolve_data_path(name, getattr(layer, "path", None))
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError as e:
        raise FileNotFoundError(f"map={name}: cannot read {path} ({e.strerror})") from None
    if key not in _map_cache:
        _map_cache[key] = read_map(path)
    return _map_cache[key]


def region_cost(delta: Tensor | np.ndarray) -> Tensor:
    """Darknet's ``pow(mag_array(delta, n), 2)`` as a float32 scalar (CPU tensor).

    mag_array sums ``a[i]*a[i]`` one element at a time in float32 (numpy's
    ``add.accumulate`` is sequential, unlike any pairwise or vectorised reduction), returns
    ``sqrt`` of it (double) rounded to float; ``pow(x, 2)`` is exact in double for a float
    ``x`` and is rounded to float when stored in ``*l.cost``.
    """
    d = delta.detach().cpu().numpy() if isinstance(delta, Tensor) else np.asarray(delta)
    d = np.ascontiguousarray(d, dtype=np.float32).ravel()
    total = np.float32(sum_array(torch.from_numpy(d * d)))
    mag = np.float32(np.sqrt(np.float64(total)))
    return torch.tensor(np.float32(np.float64(mag) * np.float64(mag)), dtype=_F32)


def _tree_tables(tree: WordTree, device) -> tuple[Tensor, Tensor, int]:
    """(parent, group) as int64 tensors and the depth of the deepest node."""
    parent = torch.tensor(tree.parent, dtype=torch.int64, device=device)
    group = torch.tensor(tree.group, dtype=torch.int64, device=device)
    depth, node = 0, torch.arange(tree.n, device=device)
    while bool((node >= 0).any()):
        depth += 1
        if depth > tree.n:
            raise ValueError("the tree's parent links form a cycle")
        node = torch.where(node >= 0, parent[node.clamp(min=0)], node)
    return parent, group, depth


def _tree_path(cls: Tensor, parent: Tensor, depth: int) -> Tensor:
    """(..., depth) nodes from ``cls`` up to its root, padded with -1."""
    nodes, node = [], cls
    for _ in range(depth):
        nodes.append(node)
        node = torch.where(node >= 0, parent[node.clamp(min=0)], node)
    return torch.stack(nodes, dim=-1)


def _class_targets(cls: Tensor, classes: int, tree_tabs) -> tuple[Tensor, Tensor]:
    """Which class entries a truth of class ``cls`` writes and their targets, (..., classes) each.

    Flat softmax: every entry, target one-hot.  Tree: every entry of each group on the path
    from the class to its root; target 1 on the path's nodes, 0 elsewhere in those groups.
    """
    if tree_tabs is None:
        target = torch.nn.functional.one_hot(cls, classes).to(_F32)
        return torch.ones_like(target, dtype=torch.bool), target
    parent, group, depth = tree_tabs
    path = _tree_path(cls, parent, depth)                      # (..., D)
    on = path >= 0
    safe = path.clamp(min=0)
    n_groups = int(group.max()) + 1
    # scatter_add, not scatter_: padding entries share an index with real ones
    path_groups = torch.zeros(*cls.shape, n_groups, dtype=_F32, device=cls.device)
    path_groups.scatter_add_(-1, group[safe], on.to(_F32))
    written = (path_groups > 0)[..., group]                    # (..., classes)
    target = torch.zeros(*cls.shape, classes, dtype=_F32, device=cls.device)
    target.scatter_add_(-1, safe, on.to(_F32))
    return written, (target > 0).to(_F32)


def _check_classes(cls: Tensor, rows: Tensor, limit: int, what: str) -> None:
    bad = rows & ((cls < 0) | (cls >= limit))
    if bool(bad.any()):
        b, t = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"region loss: image {b} truth row {t} has {what} {int(cls[b, t])}, "
                         f"outside 0..{limit - 1}")


@dataclass
class _Batch:
    """What the steps of :func:`region_delta` share about one batch."""
    layer: object
    o: Tensor              # (B, num, E, H, W) output
    t_all: Tensor          # (B, T, coords+1) truth rows read
    active: Tensor         # (B, T) rows Darknet reads (before the first x == 0)
    onlyclass: Tensor      # (B,) WordTree class-only images
    bias: Tensor           # (num, 2) anchors
    delta: Tensor          # (B, num, E, H, W), written by the steps

    def __post_init__(self):
        self.B, self.num, self.E, self.H, self.W = self.o.shape
        self.hw = self.H * self.W
        self.coords, self.classes = int(self.layer.coords), int(self.layer.classes)
        self.dev = self.o.device
        self.ov = self.o.reshape(self.B, self.num, self.E, self.hw)
        self.dv = self.delta.view(self.B, self.num, self.E, self.hw)
        self.rows_b = torch.arange(self.B, device=self.dev).view(self.B, 1)
        self.box_rows = self.active & ~self.onlyclass[:, None]
        tree = getattr(self.layer, "tree", None)
        self.tree_tabs = _tree_tables(tree, self.dev) if tree is not None else None

    def f32(self, v) -> Tensor:
        return torch.tensor(v, dtype=_F32, device=self.dev)


def region_delta(layer, output: Tensor, truths, seen: int) -> tuple[Tensor, Tensor]:
    """Darknet's region-layer training delta and cost for one batch.

    ``layer``: a :class:`pydarknet.layers.region.Region` (its options: classes, coords, num,
    anchors, softmax, background, rescore, bias_match, thresh, the four scales, mask_scale,
    tree, map_file).  ``output``: the layer's forward output, (B, num*(coords+1+classes), H, W)
    (x, y, obj logistic; classes softmaxed).  ``truths``: Darknet's region truth layout,
    (B, T, coords+1) or (B, T*(coords+1)) rows ``[x, y, w, h, class]``; only the first 30
    rows are read and reading stops at the first row with x == 0.  ``seen``: the images-seen
    counter after this batch was added.

    Returns ``(delta, cost)``: ``delta`` float32 shaped like ``output``, in Darknet's sign
    convention ``scale*(target - output)``, before backward; ``cost`` a float32 scalar tensor
    (on the CPU), ``pow(mag_array(delta), 2)``.
    """
    with torch.no_grad():
        o = _checked_output(layer, output)
        t_all, active = _read_truths(layer, o, truths)
        bias = torch.tensor([float(a) for a in layer.anchors[: 2 * o.shape[1]]], dtype=_F32,
                            device=o.device).view(-1, 2)
        onlyclass = torch.zeros(o.shape[0], dtype=torch.bool, device=o.device)
        if getattr(layer, "tree", None) is not None and t_all.shape[1]:
            onlyclass = _class_only_rows(t_all, active).any(dim=1)
        b = _Batch(layer, o, t_all, active, onlyclass, bias, torch.zeros_like(o))
        pred = torch.stack(region_boxes(o[:, :, :4], bias), dim=-1)      # (B, num, H, W, 4)
        _objectness_deltas(b, pred)
        if int(seen) < PRIOR_SEEN:
            _prior_deltas(b)
        writes = []
        if b.t_all.shape[1] and bool(b.box_rows.any()):
            writes.append(_box_truth_deltas(b, pred))
        if bool(onlyclass.any()):
            writes.append(_class_only_location(b))
        for write in writes:
            _class_deltas(b, *write)
        delta = b.delta.reshape(output.shape)
        return delta, region_cost(delta)


def _checked_output(layer, output: Tensor) -> Tensor:
    """The output as (B, num, coords+1+classes, H, W) float32."""
    out = output.detach().to(_F32)
    if out.dim() != 4:
        raise ValueError(f"region loss: expected a (B, C, H, W) output, got shape {tuple(out.shape)}")
    B, C, H, W = out.shape
    num, E = int(layer.num), int(layer.coords) + 1 + int(layer.classes)
    if C != num * E:
        raise ValueError(f"region loss: output has {C} channels, num*(coords+1+classes) = {num * E}")
    return out.reshape(B, num, E, H, W)


def _read_truths(layer, o: Tensor, truths) -> tuple[Tensor, Tensor]:
    """(rows (B, T, coords+1), active (B, T)): at most 30 rows, Darknet stopping at the first row
    whose x is 0 (a NaN x does not stop it); rows past every image's stop are dropped."""
    B, coords = o.shape[0], int(layer.coords)
    t_all = torch.as_tensor(truths, device=o.device).to(_F32)
    if t_all.shape[0] != B or t_all.numel() % (B * (coords + 1)):
        raise ValueError(f"region loss: truths of shape {tuple(t_all.shape)} do not hold rows of "
                         f"{coords + 1} values for {B} images")
    t_all = t_all.reshape(B, -1, coords + 1)[:, :MAX_TRUTHS]
    active = torch.cumprod((t_all[..., 0] != 0).to(torch.int64), dim=1).bool()
    T = int(active.sum(dim=1).max()) if t_all.shape[1] else 0
    return t_all[:, :T], active[:, :T]


def _class_only_rows(t_all: Tensor, active: Tensor) -> Tensor:
    """WordTree class-only truth rows (x and y above ONLYCLASS_MIN)."""
    return active & (t_all[..., 0] > ONLYCLASS_MIN) & (t_all[..., 1] > ONLYCLASS_MIN)


def _objectness_deltas(b: _Batch, pred: Tensor) -> None:
    """noobject_scale*(0 - obj) (background: 1 - obj) where no truth overlaps more than
    ``thresh``; class-only images skip the IoU test."""
    layer, coords = b.layer, b.coords
    if b.t_all.shape[1]:
        iou = box_iou(pred.unsqueeze(-2), b.t_all[:, None, None, None, :, :4])  # (B, num, H, W, T)
        keep = b.active[:, None, None, None, :] & (iou > 0)   # strict > from 0; NaN never wins
        best = torch.where(keep, iou, torch.zeros_like(iou)).amax(dim=-1)
    else:
        best = torch.zeros(b.B, b.num, b.H, b.W, dtype=_F32, device=b.dev)
    noobj_s = b.f32(layer.noobject_scale)
    obj = b.o[:, :, coords]
    d_obj = noobj_s * ((1 if layer.background else 0) - obj)
    d_obj = torch.where(best > b.f32(layer.thresh), torch.zeros_like(d_obj), d_obj)
    d_obj_oc = noobj_s * (0 - obj)
    b.delta[:, :, coords] = torch.where(b.onlyclass.view(b.B, 1, 1, 1), d_obj_oc, d_obj)


def _prior_deltas(b: _Batch) -> None:
    """Early in training (seen < 12800) every prediction of a box image is pulled towards its
    anchor prior: centre (i+.5)/w computed in double, size anchor/w in float, scale .01."""
    B, num, H, W = b.B, b.num, b.H, b.W
    fW, fH = b.f32(W), b.f32(H)
    col = torch.arange(W, dtype=_F32, device=b.dev)
    row = torch.arange(H, dtype=_F32, device=b.dev).view(H, 1)
    aw, ah = b.bias[:, 0].view(1, num, 1, 1), b.bias[:, 1].view(1, num, 1, 1)
    cx = torch.tensor([(i + .5) / W for i in range(W)], dtype=_F64, device=b.dev).to(_F32)
    cy = torch.tensor([(j + .5) / H for j in range(H)], dtype=_F64, device=b.dev).to(_F32).view(H, 1)
    prior = torch.stack([
        (cx * fW - col).expand(H, W).expand(B, num, H, W),
        (cy * fH - row).expand(H, W).expand(B, num, H, W),
        torch.log(((aw / fW * fW) / aw).to(_F64)).to(_F32).expand(B, num, H, W),
        torch.log(((ah / fH * fH) / ah).to(_F64)).to(_F32).expand(B, num, H, W),
    ], dim=2)
    d_prior = b.f32(.01) * (prior - b.o[:, :, 0:4])
    b.delta[:, :, 0:4] = torch.where((~b.onlyclass).view(B, 1, 1, 1, 1), d_prior, b.delta[:, :, 0:4])


def _truth_cells(b: _Batch) -> tuple[Tensor, Tensor, Tensor]:
    """(ci, cj, flat cell) of every box truth; a non-finite centre or one off the grid is an error."""
    tx_, ty_ = b.t_all[..., 0], b.t_all[..., 1]
    rows = b.box_rows
    bad = rows & ~(torch.isfinite(tx_) & torch.isfinite(ty_))
    if bool(bad.any()):
        i, t = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"region loss: image {i} truth row {t} has a non-finite centre")
    ci = (tx_ * b.f32(b.W)).to(torch.int64)                 # C's (int) truncates toward 0
    cj = (ty_ * b.f32(b.H)).to(torch.int64)
    cell = cj * b.W + ci                                    # Darknet indexes the flat location
    bad = rows & ((cell < 0) | (cell >= b.hw))
    if bool(bad.any()):
        i, t = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"region loss: image {i} truth row {t} (x={float(tx_[i, t])}, "
                         f"y={float(ty_[i, t])}) falls outside the {b.W}x{b.H} grid")
    return ci, cj, torch.where(rows, cell, torch.zeros_like(cell))


def _best_anchor(b: _Batch, pred: Tensor, cell: Tensor) -> Tensor:
    """(B, T) anchor of each truth: the best shape IoU with the anchors (bias_match) or with
    the cell's predicted sizes."""
    B, T, num = b.B, b.t_all.shape[1], b.num
    tw_, th_ = b.t_all[..., 2], b.t_all[..., 3]
    if b.layer.bias_match:
        sw = (b.bias[:, 0] / b.f32(b.W)).expand(B, T, num)
        sh = (b.bias[:, 1] / b.f32(b.H)).expand(B, T, num)
    else:
        index = cell.view(B, 1, T).expand(B, num, T)
        sw = torch.gather(pred[..., 2].reshape(B, num, b.hw), 2, index).transpose(1, 2)
        sh = torch.gather(pred[..., 3].reshape(B, num, b.hw), 2, index).transpose(1, 2)
    zero = torch.zeros_like(sw)
    shape_iou = box_iou(torch.stack([zero, zero, sw, sh], -1),
                        torch.stack([torch.zeros_like(tw_), torch.zeros_like(th_), tw_, th_], -1).unsqueeze(2))
    return torch.where(shape_iou > 0, shape_iou, torch.full_like(shape_iou, -1)).argmax(dim=-1)


def _box_head_deltas(b: _Batch, ob: Tensor, best_n: Tensor, ci: Tensor, cj: Tensor) -> Tensor:
    """(B, T, coords+1) deltas of the matched predictions ``ob``: box, mask entries, objectness."""
    layer, coords = b.layer, b.coords
    fW, fH = b.f32(b.W), b.f32(b.H)
    tx_, ty_, tw_, th_ = (b.t_all[..., k] for k in range(4))
    bw, bh = b.bias[best_n, 0], b.bias[best_n, 1]
    fi, fj = ci.to(_F32), cj.to(_F32)
    pbox = torch.stack([
        (fi + ob[..., 0]) / fW,
        (fj + ob[..., 1]) / fH,
        (torch.exp(ob[..., 2].to(_F64)) * bw.to(_F64) / b.W).to(_F32),
        (torch.exp(ob[..., 3].to(_F64)) * bh.to(_F64) / b.H).to(_F32),
    ], dim=-1)
    target = torch.stack([
        tx_ * fW - fi,
        ty_ * fH - fj,
        torch.log((tw_ * fW / bw).to(_F64)).to(_F32),
        torch.log((th_ * fH / bh).to(_F64)).to(_F32),
    ], dim=-1)
    obj_s = b.f32(layer.object_scale)
    d_box = (b.f32(layer.coord_scale) * (2 - tw_ * th_)).unsqueeze(-1) * (target - ob[..., 0:4])
    if layer.background:
        d_tobj = obj_s * (0 - ob[..., coords])
    elif layer.rescore:
        d_tobj = obj_s * (box_iou(pbox, b.t_all[..., :4]) - ob[..., coords])
    else:
        d_tobj = obj_s * (1 - ob[..., coords])
    pieces = [d_box]
    if coords > 4:
        # delta_region_mask reads the row from its 6th value (the class is the last one it
        # reads) and takes mask_scale as an int.
        mask_s = b.f32(float(int(layer.mask_scale)))
        pieces.append(mask_s * (b.t_all[..., 5:coords + 1] - ob[..., 4:coords]))
    pieces.append(d_tobj.unsqueeze(-1))
    return torch.cat(pieces, dim=-1)


def _box_truth_deltas(b: _Batch, pred: Tensor):
    """Every box truth: its cell and best anchor, that prediction's box/objectness deltas (a
    later truth at the same location overwrites); returns what the class step needs."""
    T = b.t_all.shape[1]
    rows = b.box_rows
    ci, cj, cell = _truth_cells(b)
    best_n = _best_anchor(b, pred, cell)
    ob = b.ov[b.rows_b, best_n, :, cell]                    # (B, T, E): the matched prediction
    d_head = _box_head_deltas(b, ob, best_n, ci, cj)
    key = best_n * b.hw + cell
    tt = torch.arange(T, device=b.dev)
    later_same = (rows.unsqueeze(1) & (tt.view(1, 1, T) > tt.view(1, T, 1))
                  & (key.unsqueeze(2) == key.unsqueeze(1)))           # [b, t, t'] t' overwrites t
    last = rows & ~later_same.any(dim=2)
    b_i, t_i = torch.nonzero(last, as_tuple=True)
    b.dv[b_i, best_n[b_i, t_i], 0:b.coords + 1, cell[b_i, t_i]] = d_head[b_i, t_i]

    cls = b.t_all[..., b.coords].to(torch.int64)            # (int) of the float class
    cls = torch.where(rows, cls, torch.zeros_like(cls))
    cmap = _layer_map(b.layer)
    if cmap is not None:
        _check_classes(cls, rows, len(cmap), "class (before map=)")
        cls = torch.tensor(cmap, dtype=torch.int64, device=b.dev)[cls]
    _check_classes(cls, rows, b.classes, "class")
    return best_n, cell, later_same, rows, cls


def _class_only_location(b: _Batch):
    """WordTree class-only images: the location most confident in the (unmapped) class gets
    no objectness delta and the class delta."""
    B, coords, hw = b.B, b.coords, b.hw
    first = _class_only_rows(b.t_all, b.active).to(torch.int64).argmax(dim=1)
    oc_cls = b.t_all[torch.arange(B, device=b.dev), first, coords].to(torch.int64)
    oc_cls = torch.where(b.onlyclass, oc_cls, torch.zeros_like(oc_cls))
    _check_classes(oc_cls.view(B, 1), b.onlyclass.view(B, 1), b.classes, "class")
    parent, _, depth = b.tree_tabs
    path = _tree_path(oc_cls, parent, depth)                # (B, D)
    prob = torch.ones(B, b.num, hw, dtype=_F32, device=b.dev)
    for d in range(depth):                                  # p *= x[c], leaf upward, in float
        node = path[:, d]
        factor = b.ov[b.rows_b.view(B), :, coords + 1 + node.clamp(min=0), :]  # (B, num, hw)
        prob = torch.where((node >= 0).view(B, 1, 1), prob * factor, prob)
    p = (b.ov[:, :, coords] * prob).reshape(B, b.num * hw)
    loc = torch.where(p > 0, p, torch.full_like(p, -1)).argmax(dim=1)  # strict > from 0
    oc_n, oc_cell = loc // hw, loc % hw
    b_i = torch.nonzero(b.onlyclass).flatten()
    b.dv[b_i, oc_n[b_i], coords, oc_cell[b_i]] = 0
    none_later = torch.zeros(B, 1, 1, dtype=torch.bool, device=b.dev)
    return oc_n.view(B, 1), oc_cell.view(B, 1), none_later, b.onlyclass.view(B, 1), oc_cls.view(B, 1)


def _class_deltas(b: _Batch, n_idx, c_idx, later_same, rows, cls) -> None:
    """class_scale*(target - p) at each written location; logistic classes use Darknet's tag rule."""
    coords, cls_s = b.coords, b.f32(b.layer.class_scale)
    p = b.ov[b.rows_b, n_idx, coords + 1:, c_idx]           # (B, T', classes)
    written, target = _class_targets(cls, b.classes, b.tree_tabs)
    value = cls_s * (target - p)
    if getattr(b.layer, "tree", None) is None and not b.layer.softmax:
        _tag_class_writes(b.dv, rows, n_idx, c_idx, cls, value, coords, cls_s, p)
        return
    # an entry keeps the value of the last row at that location that writes it
    overwritten = torch.einsum("btu,buc->btc", later_same.to(_F32), written.to(_F32)) > 0
    final = rows.unsqueeze(-1) & written & ~overwritten
    b_i, t_i, k_i = torch.nonzero(final, as_tuple=True)
    b.dv[b_i, n_idx[b_i, t_i], coords + 1 + k_i, c_idx[b_i, t_i]] = value[b_i, t_i, k_i]


def _tag_class_writes(dv, rows, n_idx, c_idx, cls, value, coords, cls_s, p) -> None:
    """Logistic classes (``softmax=0``): delta_region_class's ``tag`` rule, row by row.

    When the location's class-0 delta is already non-zero (an earlier truth there), only
    the truth's own class gets ``class_scale*(1 - p)``; otherwise all classes are written.
    Rows are taken in order because each decision reads what the previous rows wrote.
    """
    for t in range(rows.shape[1]):
        b_i = torch.nonzero(rows[:, t]).flatten()
        if not b_i.numel():
            continue
        n, c = n_idx[b_i, t], c_idx[b_i, t]
        partial = dv[b_i, n, coords + 1, c] != 0
        full_b = ~partial
        fb = b_i[full_b]
        dv[fb, n[full_b], coords + 1:, c[full_b]] = value[fb, t]
        pb = b_i[partial]
        k = cls[pb, t]
        dv[pb, n[partial], coords + 1 + k, c[partial]] = cls_s * (1 - p[pb, t, k])
