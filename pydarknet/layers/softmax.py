"""[softmax]: grouped softmax over each image's flat output (classifier head)."""
from __future__ import annotations

import torch

from .. import exact
from ..tree import group_softmax, read_tree, resolve_data_path
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
        self.tree = None
        if self.tree_file:
            try:
                self.tree = read_tree(resolve_data_path(self.tree_file, section.path))
            except (OSError, ValueError) as e:
                raise section.error(f"tree={self.tree_file}: {e}", "tree") from None
        if self.groups < 1:
            raise section.error("groups must be positive", "groups")

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if self.tree is not None and s.numel != self.tree.n:
            raise self.error(f"{s.numel} inputs but the tree {self.tree_file} has {self.tree.n} nodes")
        if not self.spatial and s.numel % self.groups:
            raise self.error(f"{s.numel} inputs are not divisible by groups={self.groups}")
        return s

    def forward(self, x):
        t = x / self.temperature if self.temperature != 1 else x
        if self.spatial:
            return torch.softmax(t, dim=1)  # over channels, at every position
        n = x.shape[0]
        if self.use_exact and self.tree is None and not self.spatial:
            return exact.softmax(x.reshape(n, self.groups, -1), 2, self.temperature).reshape(x.shape)
        if self.tree is not None:
            return group_softmax(t.reshape(n, -1), self.tree, dim=1).reshape(x.shape)
        return torch.softmax(t.reshape(n, self.groups, -1), dim=2).reshape(x.shape)

    def describe(self):
        return f"softmax                                        {self.out_shape.numel:4d}"
