"""[yolo]: YOLOv3's output layer (forward only: logistic on everything but w, h)."""
from __future__ import annotations

import torch

from .base import Layer, register
from .region import MAX_ANCHORS, MAX_BOXES, MAX_CLASSES


@register("yolo")
class Yolo(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        g = section
        self.classes = g.get_int("classes", 20, min=0, max=MAX_CLASSES)
        self.total = g.get_int("num", 1, min=1, max=MAX_ANCHORS)
        self.mask = g.get_list("mask", int, default=lambda: list(range(self.total)))
        self.num = len(self.mask)
        self.anchors = g.get_list("anchors", float, default=lambda: [.5] * (2 * self.total), min=0)
        if len(self.anchors) != 2 * self.total:
            raise g.error(f"anchors has {len(self.anchors)} values, num={self.total} needs {2 * self.total}",
                          "anchors")
        if any(not 0 <= m < self.total for m in self.mask):
            raise g.error(f"mask values must lie in 0..{self.total - 1}", "mask")
        self.max_boxes = g.get_int("max", 90, min=0, max=MAX_BOXES)
        self.jitter = g.get_float("jitter", .2, min=0)
        self.ignore_thresh = g.get_float("ignore_thresh", .5)
        self.truth_thresh = g.get_float("truth_thresh", 1.)
        self.random = g.get_bool("random")
        self.map_file = g.get_str("map")

    @property
    def entries(self) -> int:
        return 4 + 1 + self.classes

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if s.c != self.num * self.entries:
            raise self.error(f"the previous layer gives {s.c} channels but len(mask)*(classes+5) = "
                             f"{self.num * self.entries}")
        return s

    def forward(self, x):
        n, _, h, w = x.shape
        v = x.view(n, self.num, self.entries, h, w)
        out = torch.cat([torch.sigmoid(v[:, :, :2]), v[:, :, 2:4], torch.sigmoid(v[:, :, 4:])], dim=2)
        return out.view(n, -1, h, w)

    def describe(self):
        return "yolo"
