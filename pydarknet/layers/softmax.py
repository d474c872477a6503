"""[softmax]: grouped softmax over each image's flat output (classifier head)."""
from __future__ import annotations

import torch

from .base import Layer, register


@register("softmax")
class Softmax(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.groups = section.get_int("groups", 1)
        self.temperature = section.get_float("temperature", 1.)
        self.spatial = section.get_float("spatial", 0.)
        self.noloss = section.get_bool("noloss")
        self.tree_file = section.get_str("tree")
        if self.tree_file:
            raise section.error("tree= (WordTree softmax) is not supported yet", "tree")
        if self.groups < 1:
            raise section.error("groups must be positive", "groups")

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if not self.spatial and s.numel % self.groups:
            raise self.error(f"{s.numel} inputs are not divisible by groups={self.groups}")
        return s

    def forward(self, x):
        t = x / self.temperature if self.temperature != 1 else x
        if self.spatial:
            return torch.softmax(t, dim=1)  # over channels, at every position
        n = x.shape[0]
        return torch.softmax(t.reshape(n, self.groups, -1), dim=2).reshape(x.shape)

    def describe(self):
        return f"softmax                                        {self.out_shape.numel:4d}"
