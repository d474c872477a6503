"""pjreddie's [detection]: YOLOv1's output layer (forward_detection_layer + get_detection_detections).

The flat input holds side² class vectors, then side²·num confidences, then side²·num boxes
(x, y, √w, √h with sqrt=1).  Forward only softmaxes each class vector (``softmax=1``).
Boxes are relative to the network input, which YOLOv1's test program *resizes* the picture to.
"""
from __future__ import annotations

import torch

from ..boxes import Detections
from .base import Layer, register


@register("detection")
class Detection(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        g = section
        self.coords = g.get_int("coords", 1)
        self.classes = g.get_int("classes", 1)
        self.rescore = g.get_bool("rescore")
        self.num = g.get_int("num", 1)
        self.side = g.get_int("side", 7)
        self.softmax = g.get_bool("softmax")
        self.sqrt = g.get_bool("sqrt")
        self.max_boxes = g.get_int("max", 90)
        for key in ("coord_scale", "object_scale", "noobject_scale", "class_scale", "jitter"):
            g.get_float(key, 1.)
        for key in ("forced", "random", "reorg"):
            g.get_int(key, 0)
        if self.coords != 4:
            raise g.error(f"coords={self.coords}: Darknet's box decoding reads 4 coordinates", "coords")

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        need = self.side * self.side * ((1 + self.coords) * self.num + self.classes)
        if s.numel != need:
            raise self.error(f"{s.numel} inputs but side²·((1+coords)·num+classes) = {need}")
        return s

    def forward(self, x):
        if not self.softmax:
            return x
        n = x.shape[0]
        cells = self.side * self.side * self.classes
        flat = x.reshape(n, -1)
        cls = flat[:, :cells].reshape(n, self.side * self.side, self.classes)
        cls = self.arith.softmax(cls, 2)
        return torch.cat([cls.reshape(n, cells), flat[:, cells:]], dim=1).view_as(x)

    def detections(self, output: torch.Tensor, thresh: float) -> Detections:
        """get_detection_detections with w = h = 1: side²·num boxes, position-major."""
        s2, num, classes = self.side * self.side, self.num, self.classes
        p = output.reshape(-1).float()
        cls = p[:s2 * classes].view(s2, 1, classes)
        scale = p[s2 * classes:s2 * (classes + num)].view(s2, num)
        box = p[s2 * (classes + num):].view(s2, num, 4)
        pos = torch.arange(s2)
        col, row = (pos % self.side).float().view(-1, 1), (pos // self.side).float().view(-1, 1)
        side = torch.tensor(float(self.side))
        x = (box[..., 0] + col) / side
        y = (box[..., 1] + row) / side
        w = box[..., 2] * box[..., 2] if self.sqrt else box[..., 2]
        h = box[..., 3] * box[..., 3] if self.sqrt else box[..., 3]
        prob = scale.unsqueeze(-1) * cls
        prob = torch.where(prob > torch.tensor(thresh, dtype=torch.float32), prob, torch.zeros_like(prob))
        return Detections(torch.stack([x, y, w, h], -1).view(-1, 4), scale.reshape(-1),
                          prob.reshape(-1, classes), torch.arange(s2 * num))

    def describe(self):
        return "Detection Layer"
