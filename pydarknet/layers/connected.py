"""[connected]: fully connected layer over the flattened (c,h,w) input."""
from __future__ import annotations

import math

import torch
from torch import nn

from .activations import ACTIVATIONS, activation
from .base import Layer, Shape, register
from .batchnorm import normalize_and_activate


@register("connected")
class Connected(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.outputs = section.get_int("output", 1, min=1)
        self.activation = section.get_choice("activation", ACTIVATIONS, "logistic")
        self.batch_normalize = section.get_bool("batch_normalize")
        self._act = activation(self.activation)

    def param_count(self, in_shapes):
        return self.outputs * (in_shapes[0].numel + (4 if self.batch_normalize else 1))

    def build(self, in_shapes):
        inputs = in_shapes[0].numel
        # Darknet's initialisation: uniform(-1,1)*sqrt(2/inputs) weights, zero biases.
        self.weight = nn.Parameter((torch.rand(self.outputs, inputs) * 2 - 1) * math.sqrt(2.0 / inputs))
        self.bias = nn.Parameter(torch.zeros(self.outputs))
        if self.batch_normalize:
            self.scales = nn.Parameter(torch.ones(self.outputs))
            self.register_buffer("rolling_mean", torch.zeros(self.outputs))
            self.register_buffer("rolling_variance", torch.zeros(self.outputs))
        return super().build(in_shapes)

    def infer_shape(self, in_shapes):
        if hasattr(self, "weight") and in_shapes[0].numel != self.weight.shape[1]:
            raise self.error(f"expects {self.weight.shape[1]} inputs, got {in_shapes[0].numel}: "
                             f"a connected layer cannot change its input size")
        return Shape(self.outputs, 1, 1)

    def darknet_params(self):
        # File order differs from conv: biases, weights, then the batch-norm triple.
        if self.batch_normalize:
            return [self.bias, self.weight, self.scales, self.rolling_mean, self.rolling_variance]
        return [self.bias, self.weight]

    def forward(self, x):
        y = self.arith.linear(x.flatten(1), self.weight).view(x.shape[0], -1, 1, 1)
        return normalize_and_activate(self, y)

    def describe(self):
        return f"connected                            {self.in_shapes[0].numel:4d}  ->  {self.outputs:4d}"
