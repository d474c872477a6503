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

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .boxes import box_iou, region_boxes
from .exact import sum_array
from .tree import WordTree, resolve_data_path

__all__ = ["region_delta", "region_cost", "read_map"]

_F32 = torch.float32
_F64 = torch.float64
MAX_TRUTHS = 30          # Darknet's truth buffer holds 30 rows per image (l.truths = 30*(coords+1))
PRIOR_SEEN = 12800       # the anchor-prior pull stops once this many images were seen
ONLYCLASS_MIN = 100000   # a row with x and y above this is a class-only (no box) label

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
        out = output.detach().to(_F32)
        if out.dim() != 4:
            raise ValueError(f"region loss: expected a (B, C, H, W) output, got shape {tuple(out.shape)}")
        B, C, H, W = out.shape
        num, coords, classes = int(layer.num), int(layer.coords), int(layer.classes)
        E = coords + 1 + classes
        if C != num * E:
            raise ValueError(f"region loss: output has {C} channels, num*(coords+1+classes) = {num * E}")
        hw = H * W
        dev = out.device
        o = out.reshape(B, num, E, H, W)

        def f32(v) -> Tensor:
            return torch.tensor(v, dtype=_F32, device=dev)

        t_all = torch.as_tensor(truths, device=dev).to(_F32)
        if t_all.shape[0] != B or t_all.numel() % (B * (coords + 1)):
            raise ValueError(f"region loss: truths of shape {tuple(t_all.shape)} do not hold rows of "
                             f"{coords + 1} values for {B} images")
        t_all = t_all.reshape(B, -1, coords + 1)[:, :MAX_TRUTHS]
        T = t_all.shape[1]
        tx_, ty_, tw_, th_ = (t_all[..., k] for k in range(4))
        # Darknet stops at the first row whose x is 0 (a NaN x does not stop it).
        active = torch.cumprod((tx_ != 0).to(torch.int64), dim=1).bool()
        T = int(active.sum(dim=1).max()) if T else 0           # rows past every image's stop are never read
        t_all, active = t_all[:, :T], active[:, :T]
        tx_, ty_, tw_, th_ = (t_all[..., k] for k in range(4))

        bias = torch.tensor([float(a) for a in layer.anchors[: 2 * num]], dtype=_F32, device=dev).view(num, 2)
        fW, fH = f32(W), f32(H)
        noobj_s, obj_s = f32(layer.noobject_scale), f32(layer.object_scale)
        cls_s, coord_s = f32(layer.class_scale), f32(layer.coord_scale)
        tree = getattr(layer, "tree", None)
        tree_tabs = _tree_tables(tree, dev) if tree is not None else None

        # --- class-only images (WordTree only): the first such row decides --------------
        onlyclass = torch.zeros(B, dtype=torch.bool, device=dev)
        if tree is not None and T:
            marker = active & (tx_ > ONLYCLASS_MIN) & (ty_ > ONLYCLASS_MIN)
            onlyclass = marker.any(dim=1)
        box_img = ~onlyclass
        box_rows = active & box_img[:, None]

        # --- every prediction: objectness and the anchor prior -------------------------
        col = torch.arange(W, dtype=_F32, device=dev)
        row = torch.arange(H, dtype=_F32, device=dev).view(H, 1)
        aw = bias[:, 0].view(1, num, 1, 1)
        ah = bias[:, 1].view(1, num, 1, 1)
        px, py, pw, ph = region_boxes(o[:, :, :4], bias)
        pred = torch.stack([px, py, pw, ph], dim=-1)            # (B, num, H, W, 4)

        if T:
            iou = box_iou(pred.unsqueeze(-2), t_all[:, None, None, None, :, :4])  # (B, num, H, W, T)
            keep = active[:, None, None, None, :] & (iou > 0)   # strict > from 0; NaN never wins
            best = torch.where(keep, iou, torch.zeros_like(iou)).amax(dim=-1)
        else:
            best = torch.zeros(B, num, H, W, dtype=_F32, device=dev)

        delta = torch.zeros_like(o)
        obj = o[:, :, coords]
        d_obj = noobj_s * ((1 if layer.background else 0) - obj)
        d_obj = torch.where(best > f32(layer.thresh), torch.zeros_like(d_obj), d_obj)
        d_obj_oc = noobj_s * (0 - obj)                           # class-only images: no IoU test
        delta[:, :, coords] = torch.where(onlyclass.view(B, 1, 1, 1), d_obj_oc, d_obj)

        if int(seen) < PRIOR_SEEN:
            # Prior "truth": centre (i+.5)/w computed in double, size anchor/w in float.
            cx = torch.tensor([(i + .5) / W for i in range(W)], dtype=_F64, device=dev).to(_F32)
            cy = torch.tensor([(j + .5) / H for j in range(H)], dtype=_F64, device=dev).to(_F32).view(H, 1)
            prior = torch.stack([
                (cx * fW - col).expand(H, W).expand(B, num, H, W),
                (cy * fH - row).expand(H, W).expand(B, num, H, W),
                torch.log(((aw / fW * fW) / aw).to(_F64)).to(_F32).expand(B, num, H, W),
                torch.log(((ah / fH * fH) / ah).to(_F64)).to(_F32).expand(B, num, H, W),
            ], dim=2)
            d_prior = f32(.01) * (prior - o[:, :, 0:4])
            delta[:, :, 0:4] = torch.where(box_img.view(B, 1, 1, 1, 1), d_prior, delta[:, :, 0:4])

        dv = delta.view(B, num, E, hw)
        ov = o.reshape(B, num, E, hw)
        rows_b = torch.arange(B, device=dev).view(B, 1)

        # --- every truth: its cell and best-matching anchor ----------------------------
        write_keys, write_rows, write_cls = [], [], []
        if T and bool(box_rows.any()):
            bad = box_rows & ~(torch.isfinite(tx_) & torch.isfinite(ty_))
            if bool(bad.any()):
                b, t = (int(v) for v in torch.nonzero(bad)[0])
                raise ValueError(f"region loss: image {b} truth row {t} has a non-finite centre")
            ci = (tx_ * fW).to(torch.int64)                      # C's (int) truncates toward 0
            cj = (ty_ * fH).to(torch.int64)
            cell = cj * W + ci                                   # Darknet indexes the flat location
            bad = box_rows & ((cell < 0) | (cell >= hw))
            if bool(bad.any()):
                b, t = (int(v) for v in torch.nonzero(bad)[0])
                raise ValueError(f"region loss: image {b} truth row {t} (x={float(tx_[b, t])}, "
                                 f"y={float(ty_[b, t])}) falls outside the {W}x{H} grid")
            cell = torch.where(box_rows, cell, torch.zeros_like(cell))
            if layer.bias_match:
                sw = (bias[:, 0] / fW).expand(B, T, num)
                sh = (bias[:, 1] / fH).expand(B, T, num)
            else:  # the predicted sizes of the cell's anchors
                sw = torch.gather(pw.reshape(B, num, hw), 2, cell.view(B, 1, T).expand(B, num, T)).transpose(1, 2)
                sh = torch.gather(ph.reshape(B, num, hw), 2, cell.view(B, 1, T).expand(B, num, T)).transpose(1, 2)
            zero = torch.zeros_like(sw)
            shape_iou = box_iou(torch.stack([zero, zero, sw, sh], -1),
                                torch.stack([torch.zeros_like(tw_), torch.zeros_like(th_), tw_, th_], -1).unsqueeze(2))
            best_n = torch.where(shape_iou > 0, shape_iou, torch.full_like(shape_iou, -1)).argmax(dim=-1)  # (B, T)

            ob = ov[rows_b, best_n, :, cell]                     # (B, T, E): the matched prediction
            bw, bh = bias[best_n, 0], bias[best_n, 1]
            fi, fj = ci.to(_F32), cj.to(_F32)
            pbox = torch.stack([
                (fi + ob[..., 0]) / fW,
                (fj + ob[..., 1]) / fH,
                (torch.exp(ob[..., 2].to(_F64)) * bw.to(_F64) / W).to(_F32),
                (torch.exp(ob[..., 3].to(_F64)) * bh.to(_F64) / H).to(_F32),
            ], dim=-1)
            t_iou = box_iou(pbox, t_all[..., :4])
            target = torch.stack([
                tx_ * fW - fi,
                ty_ * fH - fj,
                torch.log((tw_ * fW / bw).to(_F64)).to(_F32),
                torch.log((th_ * fH / bh).to(_F64)).to(_F32),
            ], dim=-1)
            scale = coord_s * (2 - tw_ * th_)
            d_box = scale.unsqueeze(-1) * (target - ob[..., 0:4])
            if layer.background:
                d_tobj = obj_s * (0 - ob[..., coords])
            elif layer.rescore:
                d_tobj = obj_s * (t_iou - ob[..., coords])
            else:
                d_tobj = obj_s * (1 - ob[..., coords])
            pieces = [d_box]
            if coords > 4:
                # delta_region_mask reads the row from its 6th value (the class is the last one it
                # reads) and takes mask_scale as an int.
                mask_s = f32(float(int(layer.mask_scale)))
                pieces.append(mask_s * (t_all[..., 5:coords + 1] - ob[..., 4:coords]))
            pieces.append(d_tobj.unsqueeze(-1))
            d_head = torch.cat(pieces, dim=-1)                   # entries 0..coords

            # A later truth at the same location overwrites: keep each location's last row.
            key = best_n * hw + cell
            tt = torch.arange(T, device=dev)
            later_same = (box_rows.unsqueeze(1) & (tt.view(1, 1, T) > tt.view(1, T, 1))
                          & (key.unsqueeze(2) == key.unsqueeze(1)))        # [b, t, t'] t' overwrites t
            last = box_rows & ~later_same.any(dim=2)
            b_i, t_i = torch.nonzero(last, as_tuple=True)
            dv[b_i, best_n[b_i, t_i], 0:coords + 1, cell[b_i, t_i]] = d_head[b_i, t_i]

            cls = t_all[..., coords].to(torch.int64)            # (int) of the float class
            cls = torch.where(box_rows, cls, torch.zeros_like(cls))
            cmap = _layer_map(layer)
            if cmap is not None:
                _check_classes(cls, box_rows, len(cmap), "class (before map=)")
                cls = torch.tensor(cmap, dtype=torch.int64, device=dev)[cls]
            _check_classes(cls, box_rows, classes, "class")
            write_keys.append((best_n, cell, later_same))
            write_rows.append(box_rows)
            write_cls.append(cls)

        # --- class-only images: the location most confident in the class ---------------
        if bool(onlyclass.any()):
            marker = active & (tx_ > ONLYCLASS_MIN) & (ty_ > ONLYCLASS_MIN)
            first = marker.to(torch.int64).argmax(dim=1)
            oc_cls = t_all[torch.arange(B, device=dev), first, coords].to(torch.int64)  # not mapped
            oc_cls = torch.where(onlyclass, oc_cls, torch.zeros_like(oc_cls))
            _check_classes(oc_cls.view(B, 1), onlyclass.view(B, 1), classes, "class")
            parent, _, depth = tree_tabs
            path = _tree_path(oc_cls, parent, depth)             # (B, D)
            prob = torch.ones(B, num, hw, dtype=_F32, device=dev)
            for d in range(depth):                               # p *= x[c], leaf upward, in float
                node = path[:, d]
                factor = ov[rows_b.view(B), :, coords + 1 + node.clamp(min=0), :]  # (B, num, hw)
                prob = torch.where((node >= 0).view(B, 1, 1), prob * factor, prob)
            p = (ov[:, :, coords] * prob).reshape(B, num * hw)
            loc = torch.where(p > 0, p, torch.full_like(p, -1)).argmax(dim=1)  # strict > from 0
            oc_n, oc_cell = loc // hw, loc % hw
            b_i = torch.nonzero(onlyclass).flatten()
            dv[b_i, oc_n[b_i], coords, oc_cell[b_i]] = 0
            none_later = torch.zeros(B, 1, 1, dtype=torch.bool, device=dev)
            write_keys.append((oc_n.view(B, 1), oc_cell.view(B, 1), none_later))
            write_rows.append(onlyclass.view(B, 1))
            write_cls.append(oc_cls.view(B, 1))

        # --- class deltas ------------------------------------------------------------------
        tag = tree is None and not layer.softmax
        for (n_idx, c_idx, later_same), rows, cls in zip(write_keys, write_rows, write_cls):
            p = ov[rows_b, n_idx, coords + 1:, c_idx]           # (B, T', classes)
            written, target = _class_targets(cls, classes, tree_tabs)
            value = cls_s * (target - p)
            if tag:
                _tag_class_writes(dv, rows, n_idx, c_idx, cls, value, coords, cls_s, p)
                continue
            # an entry keeps the value of the last row at that location that writes it
            overwritten = torch.einsum("btu,buc->btc", later_same.to(_F32), written.to(_F32)) > 0
            final = rows.unsqueeze(-1) & written & ~overwritten
            b_i, t_i, k_i = torch.nonzero(final, as_tuple=True)
            dv[b_i, n_idx[b_i, t_i], coords + 1 + k_i, c_idx[b_i, t_i]] = value[b_i, t_i, k_i]

        delta = delta.reshape(B, C, H, W)
        return delta, region_cost(delta)


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
