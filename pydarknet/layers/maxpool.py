"""[maxpool] with Darknet's padding rule."""
from __future__ import annotations

import torch.nn.functional as F

from .base import Layer, Shape, register


@register("maxpool")
class Maxpool(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.stride = section.get_int("stride", 1, min=1)
        self.size = section.get_int("size", self.stride, min=1)
        # Darknet pads size-1 by default, offset by -padding/2: a 2x2/1 pool keeps the size
        # (padding only right and bottom) and a 2x2/2 pool rounds odd sizes up (13 -> 7).
        self.padding = section.get_int("padding", self.size - 1, min=0)
        if self.size < 1 or self.stride < 1 or self.padding < 0:
            raise section.error("size and stride must be positive, padding non-negative")

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        h = (s.h + self.padding - self.size) // self.stride + 1
        w = (s.w + self.padding - self.size) // self.stride + 1
        if h < 1 or w < 1:
            raise self.error(f"input {s.w}x{s.h} is too small for a {self.size}x{self.size} pool")
        return Shape(s.c, h, w)

    def work_count(self, in_shapes, out):
        # the input padded to the taps the pool reads
        s, o = in_shapes[0], out
        return s.c * ((o.h - 1) * self.stride + self.size) * ((o.w - 1) * self.stride + self.size)

    def forward(self, x):
        h, w = x.shape[-2:]
        left = self.padding // 2
        out_h = (h + self.padding - self.size) // self.stride + 1
        out_w = (w + self.padding - self.size) // self.stride + 1
        need_h = (out_h - 1) * self.stride + self.size
        need_w = (out_w - 1) * self.stride + self.size
        # Taps outside the image are -inf (Darknet uses -FLT_MAX); negative pads crop.
        x = F.pad(x, (left, need_w - w - left, left, need_h - h - left), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        return (f"max          {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}")
