"""[yolo] (YOLOv3's output layer) and AlexeyAB's [Gaussian_yolo]: forward only.

[yolo] keeps Darknet's layout [anchor][x, y, w, h, obj, classes][row][col] and applies the
logistic to everything but w and h; AlexeyAB's ``scale_x_y`` then maps x and y to
``x·s − (s−1)/2``, and with ``new_coords=1`` nothing is activated (the previous layer is
logistic; boxes decode as (2·t)²·anchor).  [Gaussian_yolo] has 8 box entries (μ, σ of x, y,
w, h).  Box decoding lives in :mod:`pydarknet.boxes` (:func:`~pydarknet.boxes.decode_yolo`).

Training losses for these heads are not implemented (see :mod:`pydarknet.train`).
"""
from __future__ import annotations

import warnings

import torch

from ..cfg import CfgWarning
from .base import Layer, register
from .region import MAX_ANCHORS, MAX_BOXES, MAX_CLASSES

IOU_LOSSES = ("mse", "iou", "giou", "diou", "ciou")
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")


def _scale_xy(t: torch.Tensor, s: float) -> torch.Tensor:
    """scal_add_cpu(scale_x_y, -0.5*(scale_x_y - 1)): a float product and a float sum."""
    if s == 1:
        return t
    return t * torch.tensor(s, dtype=t.dtype) + torch.tensor(-.5 * (s - 1), dtype=torch.float32).to(t.dtype)


@register("yolo")
class Yolo(Layer):
    box_entries = 4

    def __init__(self, section, index):
        super().__init__(section, index)
        g = section
        self.classes = g.get_int("classes", 20, min=0, max=MAX_CLASSES)
        self.total = g.get_int("num", 1, min=1, max=MAX_ANCHORS)
        self.mask = g.get_list("mask", int, default=lambda: list(range(self.total)))
        self.num = len(self.mask)
        self.anchors = self._read_anchors(g)
        self.max_boxes = g.get_int("max", 90, min=0, max=MAX_BOXES)
        self.jitter = g.get_float("jitter", .2, min=0)
        self.ignore_thresh = g.get_float("ignore_thresh", .5)
        self.truth_thresh = g.get_float("truth_thresh", 1.)
        self.random = g.get_float("random", 0) != 0
        self.map_file = g.get_str("map")
        if self.map_file:
            raise g.error("map= (class remapping at detection) is not supported by pydarknet", "map")
        self._read_alexeyab(g)

    def _read_anchors(self, g):
        """num*2 anchors, Darknet's .5 where the list is short; mask values past num use the
        extra anchors written in the cfg (Darknet would read past its bias buffer there)."""
        anchors = g.get_list("anchors", float, default=lambda: [], min=0)
        if any(not 0 <= m for m in self.mask):
            raise g.error("mask values must not be negative", "mask")
        need = 2 * max(self.total, max(self.mask, default=0) + 1)
        if len(anchors) < 2 * self.total and g.has("anchors"):
            warnings.warn(f"{g.where('anchors')}: anchors has {len(anchors)} values, num={self.total} needs "
                          f"{2 * self.total}; Darknet leaves the rest at .5", CfgWarning, stacklevel=4)
        if max(self.mask, default=0) >= self.total:
            if len(anchors) < need:
                raise g.error(f"mask uses anchor {max(self.mask)} but num={self.total} and only "
                              f"{len(anchors) // 2} anchors are given", "mask")
            warnings.warn(f"{g.where('mask')}: mask uses anchor {max(self.mask)} but num={self.total}: "
                          f"Darknet would read past its anchors; pydarknet uses the cfg's extra anchors",
                          CfgWarning, stacklevel=4)
        anchors = anchors[:need]
        return anchors + [.5] * (need - len(anchors))

    def _read_alexeyab(self, g):
        """AlexeyAB's options: those that change detection are kept, the training ones read."""
        self.scale_x_y = g.get_float("scale_x_y", 1.)
        self.new_coords = g.get_bool("new_coords")
        self.nms_kind = g.get_str("nms_kind", "default")
        if self.nms_kind not in NMS_KINDS:  # AlexeyAB falls back to the default NMS
            self.nms_kind = "default"
        self.beta_nms = g.get_float("beta_nms", .6)
        self.resize = g.get_float("resize", 1.)  # training augmentation
        for key in ("max_delta", "label_smooth_eps", "iou_normalizer", "obj_normalizer", "cls_normalizer",
                    "delta_normalizer", "iou_thresh", "uc_normalizer", "sim_thresh", "track_ciou_norm",
                    "beta1"):
            g.get_float(key, 0.)
        for key in ("objectness_smooth", "focal_loss", "show_details", "track_history_size",
                    "dets_for_track", "dets_for_show", "embedding_layer"):
            g.get_int(key, 0)
        g.get_str("iou_loss", "mse")
        g.get_str("iou_thresh_kind", "iou")
        g.get_str("counters_per_class")
        if g.get_str("yolo_point", "center") != "center":
            raise g.error("yolo_point other than center is not supported by pydarknet", "yolo_point")

    @property
    def entries(self) -> int:
        return self.box_entries + 1 + self.classes

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if s.c != self.num * self.entries:
            raise self.error(f"the previous layer gives {s.c} channels but len(mask)*(classes+"
                             f"{self.box_entries + 1}) = {self.num * self.entries}")
        return s

    def _sigmoid(self, t):
        return self.arith.logistic(t)

    def forward(self, x):
        n, _, h, w = x.shape
        v = x.view(n, self.num, self.entries, h, w)
        if self.new_coords:
            out = torch.cat([_scale_xy(v[:, :, :2], self.scale_x_y), v[:, :, 2:]], dim=2)
        else:
            out = torch.cat([_scale_xy(self._sigmoid(v[:, :, :2]), self.scale_x_y), v[:, :, 2:4],
                             self._sigmoid(v[:, :, 4:])], dim=2)
        return out.view(n, -1, h, w)

    def describe(self):
        return "yolo"


@register("gaussian_yolo")
class GaussianYolo(Yolo):
    """[Gaussian_yolo]: entries (μx, σx, μy, σy, μw, σw, μh, σh, obj, classes); the logistic on
    all but μw, μh; scale_x_y on μx, μy."""

    box_entries = 8

    def forward(self, x):
        n, _, h, w = x.shape
        v = x.view(n, self.num, self.entries, h, w)
        sig = self._sigmoid
        s = self.scale_x_y
        parts = [_scale_xy(sig(v[:, :, 0:1]), s), sig(v[:, :, 1:2]), _scale_xy(sig(v[:, :, 2:3]), s),
                 sig(v[:, :, 3:4]), v[:, :, 4:5], sig(v[:, :, 5:6]), v[:, :, 6:7], sig(v[:, :, 7:8]),
                 sig(v[:, :, 8:])]
        return torch.cat(parts, dim=2).view(n, -1, h, w)

    def describe(self):
        return "Gaussian_yolo"
