"""AlexeyAB's [reorg3d] (its make_reorg_layer): reorg_cpu on the *output* dimensions.

Forward, stride s: output channel ``k = (dy*s + dx)*C + c`` at (y, x) is input channel c at
(y*s + dy, x*s + dx) — space-to-depth with the phase as the major channel index (AlexeyAB's
[reorg], like pjreddie's, is the other reading of the same loop, see :mod:`.reorg`).
``reverse=1`` runs the loop the other way on the output dimensions.
"""
from __future__ import annotations

import torch

from .base import Layer, Shape, register


def reorg_cpu(x: torch.Tensor, w: int, h: int, c: int, stride: int, forward: bool, out_numel: int) -> torch.Tensor:
    """Darknet's ``reorg_cpu(x, w, h, c, batch, stride, forward, out)`` as one gather/scatter."""
    n = x.shape[0]
    s = stride
    in_c = c // (s * s)
    k = torch.arange(c).view(c, 1, 1)
    j = torch.arange(h).view(1, h, 1)
    i = torch.arange(w).view(1, 1, w)
    in_index = (i + w * (j + h * k)).reshape(-1)
    c2, offset = k % in_c, k // in_c
    w2, h2 = i * s + offset % s, j * s + offset // s
    out_index = (w2 + w * s * (h2 + h * s * c2)).reshape(-1)
    flat = x.reshape(n, -1)
    out = flat.new_zeros(n, out_numel)
    if forward:
        out[:, out_index] = flat[:, in_index]
    else:
        out[:, in_index] = flat[:, out_index]
    return out


@register("reorg3d")
class Reorg3d(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.stride = section.get_int("stride", 1)
        self.reverse = section.get_bool("reverse")
        if self.stride < 1:
            raise section.error("stride must be positive", "stride")

    def infer_shape(self, in_shapes):
        s, k = in_shapes[0], self.stride
        if self.reverse:
            if s.c % (k ** 4):
                raise self.error(f"reverse=1: {s.c} channels are not divisible by stride^4={k ** 4} "
                                 f"(AlexeyAB's loop would read outside its input)")
            return Shape(s.c // (k * k), s.h * k, s.w * k)
        if s.h % k or s.w % k:
            raise self.error(f"input {s.w}x{s.h} is not divisible by stride {k}")
        return Shape(s.c * k * k, s.h // k, s.w // k)

    def forward(self, x):
        o = self.out_shape
        y = reorg_cpu(x, o.w, o.h, o.c, self.stride, self.reverse, o.numel)
        return y.view(x.shape[0], o.c, o.h, o.w)

    def describe(self):
        return f"reorg3d        /{self.stride:2d}"
