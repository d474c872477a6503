"""[upsample]: nearest-neighbour upsampling times `scale`; a negative stride sums s×s blocks."""
from __future__ import annotations

import torch.nn.functional as F

from .base import Layer, Shape, register


@register("upsample")
class Upsample(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        stride = section.get_int("stride", 2, min=-(1 << 16), max=1 << 16)
        if stride == 0:
            raise section.error("stride must not be 0", "stride")
        self.reverse = stride < 0
        self.stride = abs(stride)
        self.scale = section.get_float("scale", 1.)

    def infer_shape(self, in_shapes):
        s, k = in_shapes[0], self.stride
        if self.reverse:
            return Shape(s.c, s.h // k, s.w // k)
        return Shape(s.c, s.h * k, s.w * k)

    def forward(self, x):
        k = self.stride
        if self.reverse:
            # Darknet's "downsample": the scaled sum of each k×k block.
            o = self.out_shape
            y = F.avg_pool2d(x[:, :, :o.h * k, :o.w * k], k) * (k * k)
        else:
            y = x.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
        return y * self.scale if self.scale != 1 else y
