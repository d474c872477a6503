"""[convolutional]: conv (+ Darknet batch norm) + bias + activation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ACTIVATIONS, activation
from .base import Layer, Shape, register
from .batchnorm import bn_denominator, normalize_and_activate


@register("convolutional")
class Convolutional(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.filters = section.get_int("filters", 1, min=1)
        self.size = section.get_int("size", 1, min=1)
        self.stride = section.get_int("stride", 1, min=1)
        pad = section.get_int("pad", 0)
        padding = section.get_int("padding", 0, min=0)
        # pad=1 means "same" padding, size/2 (so a 1x1 conv with pad=1 gets none).
        self.padding = self.size // 2 if pad else padding
        self.groups = section.get_int("groups", 1, min=1)
        self.batch_normalize = section.get_bool("batch_normalize")
        self.activation = section.get_choice("activation", ACTIVATIONS, "logistic")
        for flag in ("binary", "xnor"):
            if section.get_int(flag, 0):
                raise section.error(f"{flag}=1 convolutions are not supported by pydarknet", flag)
        section.get_int("flipped", 0)
        section.get_float("dot", 0)
        if self.filters < 1 or self.size < 1 or self.stride < 1 or self.groups < 1:
            raise section.error("filters, size, stride and groups must be positive")
        self._act = activation(self.activation)

    def param_count(self, in_shapes):
        c = in_shapes[0].c
        return self.filters * (c // self.groups) * self.size ** 2 + self.filters * (4 if self.batch_normalize else 1)

    def work_count(self, in_shapes, out):
        # im2col's columns (Darknet's workspace; our exact path builds the same matrix)
        return in_shapes[0].c * self.size ** 2 * out.h * out.w

    def build(self, in_shapes):
        c = in_shapes[0].c
        if c % self.groups or self.filters % self.groups:
            raise self.error(f"{c} input channels and {self.filters} filters are not divisible by groups={self.groups}")
        n, k = self.filters, self.size
        fan_in = c // self.groups * k * k
        # Darknet's initialisation: normal*sqrt(2/fan_in) kernels, zero biases, unit BN scales,
        # zero rolling statistics (calloc), so an untrained layer divides by 1e-6 at inference as Darknet does.
        self.weight = nn.Parameter(torch.randn(n, c // self.groups, k, k).mul_(math.sqrt(2.0 / fan_in)))
        self.bias = nn.Parameter(torch.zeros(n))
        if self.batch_normalize:
            self.scales = nn.Parameter(torch.ones(n))
            self.register_buffer("rolling_mean", torch.zeros(n))
            self.register_buffer("rolling_variance", torch.zeros(n))
        return super().build(in_shapes)

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if hasattr(self, "weight") and s.c != self.weight.shape[1] * self.groups:
            raise self.error(f"expects {self.weight.shape[1] * self.groups} input channels, got {s.c}")
        h = (s.h + 2 * self.padding - self.size) // self.stride + 1
        w = (s.w + 2 * self.padding - self.size) // self.stride + 1
        if h < 1 or w < 1:
            raise self.error(f"input {s.w}x{s.h} is smaller than the {self.size}x{self.size} kernel")
        return Shape(self.filters, h, w)

    def darknet_params(self):
        if self.batch_normalize:
            return [self.bias, self.scales, self.rolling_mean, self.rolling_variance, self.weight]
        return [self.bias, self.weight]

    def _folded(self):
        """Kernels and bias with the inference batch norm folded in (fast path), cached until
        any parameter or statistic changes (their version counters move on every write)."""
        params = (self.weight, self.bias, self.scales, self.rolling_mean, self.rolling_variance)
        key = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        if getattr(self, "_fold_key", None) != key:
            with torch.no_grad():
                a = self.scales / bn_denominator(self.rolling_variance)
                self._fold = (self.weight * a.view(-1, 1, 1, 1), self.bias - self.rolling_mean * a)
            self._fold_key = key
        return self._fold

    def forward(self, x):
        arith = self.arith
        if self.batch_normalize and not self.training and not arith.darknet_order:
            # Folding rounds differently from Darknet's (x - mean) / (sqrt(var) + eps) * scale + bias,
            # at the float32 noise level the fast path already has.
            w, b = self._folded()
            y = F.conv2d(x, w, b, self.stride, self.padding, 1, self.groups)
            return F.leaky_relu(y, .1, inplace=True) if self.activation == "leaky" and not torch.is_grad_enabled() \
                else self._act(y)
        if arith.darknet_order:   # conv, batch norm, bias and activation in one pass, Darknet's order
            bn = (self.rolling_mean, self.rolling_variance, self.scales) if self.batch_normalize else None
            return arith.conv_layer(x, self.weight, self.stride, self.padding, self.groups, self.bias, bn,
                                    self.activation)
        y = arith.conv2d(x, self.weight, self.stride, self.padding, self.groups)
        return normalize_and_activate(self, y)

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        bn = " bn" if self.batch_normalize else ""
        return (f"conv  {self.filters:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}{bn} {self.activation}")
