"""pjreddie's [local]: a locally connected layer, one kernel per output position (YOLOv1).

Output o at position l: ``bias[o, l] + Σ_k W[l][o][k]·col[k][l]`` with col = im2col(input,
size, stride, padding ``pad``); its height is ``(h-1)/stride+1`` with pad, ``(h-size)/stride+1``
without.  Weights file: the out_c·out_h·out_w biases, then the kernels location by location.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ACTIVATIONS, activation
from .base import Layer, Shape, register


@register("local")
class Local(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.filters = section.get_int("filters", 1)
        self.size = section.get_int("size", 1)
        self.stride = section.get_int("stride", 1)
        self.pad = section.get_int("pad", 0)
        self.activation = section.get_choice("activation", ACTIVATIONS, "logistic")
        self._act = activation(self.activation)
        if self.filters < 1 or self.size < 1 or self.stride < 1 or self.pad < 0:
            raise section.error("filters, size and stride must be positive, pad non-negative")
        if self.pad and self.size != 2 * self.pad + 1:
            raise section.error(f"pad={self.pad} with size={self.size}: Darknet's output size and its im2col "
                                f"disagree (it reads the wrong columns); pydarknet does not build it", "pad")

    def _out_hw(self, s: Shape):
        h, w = (s.h - 1, s.w - 1) if self.pad else (s.h - self.size, s.w - self.size)
        return h // self.stride + 1, w // self.stride + 1

    def build(self, in_shapes):
        s = in_shapes[0]
        oh, ow = self._out_hw(s)
        k = s.c * self.size * self.size
        w = torch.zeros(oh * ow, self.filters, k)
        # Darknet initialises only the first c*n*size*size values (uniform * sqrt(2/(size*size*c)))
        first = w.view(-1)[:k * self.filters]
        first.copy_((torch.rand(first.numel()) * 2 - 1) * math.sqrt(2. / k))
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(self.filters, oh, ow))
        return super().build(in_shapes)

    def param_count(self, in_shapes):
        s = in_shapes[0]
        oh, ow = self._out_hw(s)
        return oh * ow * self.filters * (s.c * self.size * self.size + 1)

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        oh, ow = self._out_hw(s)
        if hasattr(self, "weight") and \
                (oh * ow, s.c * self.size * self.size) != (self.weight.shape[0], self.weight.shape[2]):
            raise self.error("a [local] layer cannot change its input size")
        return Shape(self.filters, oh, ow)

    def darknet_params(self):
        return [self.bias, self.weight]

    def forward(self, x):
        cols = F.unfold(x, self.size, padding=self.pad, stride=self.stride)  # (N, k, L)
        y = torch.einsum("lok,nkl->nol", self.weight, cols).reshape(x.shape[0], *self.bias.shape)
        return self._act(y + self.bias)

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        return f"Local Layer: {i.h} x {i.w} x {i.c} image, {self.filters} filters -> {o.h} x {o.w} x {o.c} image"
