"""[avgpool]: Darknet's global average pool, (c,h,w) -> (c,1,1)."""
from __future__ import annotations

from .base import Layer, Shape, register


@register("avgpool")
class Avgpool(Layer):
    def infer_shape(self, in_shapes):
        return Shape(in_shapes[0].c, 1, 1)

    def forward(self, x):
        return self.arith.mean_hw(x)
