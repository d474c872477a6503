"""[reorg]: Darknet's passthrough reorganisation (not PixelUnshuffle's channel order)."""
from __future__ import annotations

import torch

from .base import Layer, Shape, register


def reorg(x, s: int):
    """Darknet's reorg (reorg_cpu with forward=0): the (C,H,W) input's memory is read as a
    (C/s², H·s, W·s) image and its s×s phases become channel blocks; the result's memory is
    then read as (C·s², H/s, W/s)."""
    n, c, h, w = x.shape
    oc = c // (s * s)
    y = x.reshape(n, oc, h, s, w, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * s * s, h // s, w // s)


def reorg_reverse(x, s: int):
    """The inverse of :func:`reorg` (reorg_cpu with forward=1, Darknet's reverse=1)."""
    n, c, h, w = x.shape
    oc = c // (s * s)
    y = x.reshape(n, s, s, oc, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, oc, h * s, w * s)


@register("reorg")
class Reorg(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.stride = section.get_int("stride", 1, min=1, max=1 << 16)
        self.reverse = section.get_bool("reverse")
        if section.get_int("flatten", 0):
            raise section.error("flatten=1 is not supported by pydarknet", "flatten")
        # pjreddie's extra=N: the flat input followed by N zeros (go.cfg's pass move)
        self.extra = section.get_int("extra", 0)
        if self.extra < 0:
            raise section.error("extra must not be negative", "extra")
        if self.stride < 1:
            raise section.error("stride must be positive", "stride")

    def infer_shape(self, in_shapes):
        s, k = in_shapes[0], self.stride
        if self.extra:
            return Shape(s.numel + self.extra, 1, 1)
        if self.reverse:
            if s.c % (k * k):
                raise self.error(f"{s.c} channels are not divisible by stride²={k * k}")
            return Shape(s.c // (k * k), s.h * k, s.w * k)
        if s.h % k or s.w % k:
            raise self.error(f"input {s.w}x{s.h} is not divisible by stride {k}")
        if s.c % (k * k):
            # Darknet's flat-memory reading needs C divisible by s² as well.
            raise self.error(f"{s.c} channels are not divisible by stride²={k * k}")
        return Shape(s.c * k * k, s.h // k, s.w // k)

    def forward(self, x):
        if self.extra:
            return torch.cat([x.flatten(1), x.new_zeros(x.shape[0], self.extra)], 1)[:, :, None, None]
        return reorg_reverse(x, self.stride) if self.reverse else reorg(x, self.stride)
