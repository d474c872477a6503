"""[maxpool] with Darknet's padding rule, AlexeyAB's stride_x/stride_y and maxpool_depth,
and AlexeyAB's [local_avgpool] (the same window, averaging the taps inside the image)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Layer, Shape, register


@register("maxpool")
class Maxpool(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.stride = section.get_int("stride", 1, min=1)
        self.stride_x = section.get_int("stride_x", self.stride, min=1)
        self.stride_y = section.get_int("stride_y", self.stride, min=1)
        self.size = section.get_int("size", self.stride, min=1)
        # Darknet pads size-1 by default, offset by -padding/2: a 2x2/1 pool keeps the size
        # (padding only right and bottom) and a 2x2/2 pool rounds odd sizes up (13 -> 7).
        self.padding = section.get_int("padding", self.size - 1, min=0)
        if self.size < 1 or self.stride_x < 1 or self.stride_y < 1 or self.padding < 0:
            raise section.error("size and stride must be positive, padding non-negative")
        self._read_alexeyab(section)

    def _read_alexeyab(self, section):
        # maxpool_depth=1: the max over channels g, g+out_channels, ... at each position (AlexeyAB)
        self.maxpool_depth = section.get_int("maxpool_depth", 0)
        self.out_channels = section.get_int("out_channels", 1)
        if section.get_int("antialiasing", 0):
            raise section.error("antialiasing=1 in a pooling layer is not supported by pydarknet", "antialiasing")
        section.get_int("maxpool_zero_nonmax", 0)  # training only (zeroes the non-max deltas)

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if self.maxpool_depth:
            if self.out_channels < 1:
                raise self.error("out_channels must be positive")
            return Shape(self.out_channels, s.h, s.w)
        h = (s.h + self.padding - self.size) // self.stride_y + 1
        w = (s.w + self.padding - self.size) // self.stride_x + 1
        if h < 1 or w < 1:
            raise self.error(f"input {s.w}x{s.h} is too small for a {self.size}x{self.size} pool")
        return Shape(s.c, h, w)

    def work_count(self, in_shapes, out):
        # the input padded to the taps the pool reads
        s, o = in_shapes[0], out
        return s.c * ((o.h - 1) * self.stride_y + self.size) * ((o.w - 1) * self.stride_x + self.size)

    def _padded(self, x, value):
        """The input padded (or cropped) so that a plain pool gives Darknet's window positions."""
        h, w = x.shape[-2:]
        left = self.padding // 2
        o = self.infer_shape([Shape(x.shape[1], h, w)])
        need_h = (o.h - 1) * self.stride_y + self.size
        need_w = (o.w - 1) * self.stride_x + self.size
        pads = (left, need_w - w - left, left, need_h - h - left)
        return x if not any(pads) else F.pad(x, pads, value=value)

    def forward(self, x):
        if self.maxpool_depth:
            n, c, h, w = x.shape
            g = self.out_channels
            full = -(-c // g) * g  # channels k = g, g+out_c, ... < c; missing ones are -inf
            xp = F.pad(x, (0, 0, 0, 0, 0, full - c), value=float("-inf")) if full != c else x
            return xp.view(n, full // g, g, h, w).amax(dim=1)
        # Taps outside the image are -inf (Darknet uses -FLT_MAX); negative pads crop.
        x = self._padded(x, float("-inf"))
        if torch.is_grad_enabled() and x.requires_grad:   # autograd's one-tap backward
            return F.max_pool2d(x, self.size, (self.stride_y, self.stride_x))
        return window_max(x, self.size, self.stride_y, self.stride_x)

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        return (f"max          {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}")


def window_max(x: torch.Tensor, size: int, stride_y: int, stride_x: int) -> torch.Tensor:
    """``max_pool2d`` without padding, as two passes of strided slices (a row maximum, then a
    column maximum): the same values, several times faster than torch's CPU pooling kernel."""
    h, w = x.shape[-2:]
    oh, ow = (h - size) // stride_y + 1, (w - size) // stride_x + 1
    cols = x[..., :, :(ow - 1) * stride_x + 1:stride_x]
    for d in range(1, size):
        cols = torch.maximum(cols, x[..., :, d:d + (ow - 1) * stride_x + 1:stride_x])
    out = cols[..., :(oh - 1) * stride_y + 1:stride_y, :]
    for d in range(1, size):
        out = torch.maximum(out, cols[..., d:d + (oh - 1) * stride_y + 1:stride_y, :])
    return out.contiguous()


@register("local_avgpool")
class LocalAvgpool(Maxpool):
    """AlexeyAB's [local_avgpool]: the maxpool window, averaging the taps inside the image."""

    def _read_alexeyab(self, section):
        self.maxpool_depth, self.out_channels = 0, 1

    def forward(self, x):
        k, s = self.size, (self.stride_y, self.stride_x)
        total = F.avg_pool2d(self._padded(x, 0.), k, s, divisor_override=1)
        ones = torch.ones_like(x[:1, :1])
        count = F.avg_pool2d(self._padded(ones, 0.), k, s, divisor_override=1)
        return total / count

    def describe(self):
        return "local_avg" + super().describe()[3:]
