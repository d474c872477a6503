"""[softmax]: grouped softmax over each image's flat output (classifier head), and its loss.

Inference: Darknet's ``forward_softmax_layer`` (``groups``, ``temperature``, ``tree=``).

Training (Darknet's ``softmax_x_ent``): with a truth row ``t`` per image, ``delta = t - p``
and ``loss = t != 0 ? -log(p) : 0``; the cost is the sequential float32 sum of the loss.
Backward hands ``delta`` to the previous layer as is (no softmax Jacobian: the cross-entropy
gradient), which :func:`loss_layer_output` reproduces in autograd.

With ``tree=`` the truth comes from ``fill_truth`` + ``fill_hierarchy`` (see
:mod:`pydarknet.labels`): groups off the label's path hold ``SECRET_NUM = -1234``.  Darknet's
two builds differ there.  The GPU layer (``forward_softmax_layer_gpu``, the reference) zeroes
delta and loss wherever ``t == -1234``; the CPU one has no mask, so each masked entry adds
``-log p`` to the cost and ``-1234 - p`` to the delta, which blows training up.  ``semantics``
selects one: ``"gpu"`` (default) or ``"cpu"`` (to reproduce the CPU binary).  Without a tree
the two agree.
"""
from __future__ import annotations

import torch

from ..exact import sum_array
from ..tree import read_tree, resolve_data_path
from .base import Layer, register
from .passthrough import flat_output_and_truth, loss_layer_output

SECRET_NUM = -1234.0
SEMANTICS = ("gpu", "cpu")


@register("softmax")
class Softmax(Layer):
    #: "gpu": forward_softmax_layer_gpu's loss (tree: masked at -1234); "cpu": softmax_x_ent_cpu as is.
    semantics: str = "gpu"

    def __init__(self, section, index):
        super().__init__(section, index)
        self.groups = section.get_int("groups", 1, min=1)
        self.temperature = section.get_float("temperature", 1.)
        if self.temperature == 0:
            raise section.error("temperature=0: Darknet divides by it", "temperature")
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

    def _softmax(self, x: torch.Tensor, arith) -> torch.Tensor:
        n = x.shape[0]
        if self.spatial:
            # Only Darknet's GPU layer has spatial=1: a softmax over channels at every position,
            # at temperature 1.
            return arith.softmax(x, 1)
        if self.tree is not None:
            return arith.group_softmax(x.reshape(n, -1), self.tree, self.temperature).reshape(x.shape)
        return arith.softmax(x.reshape(n, self.groups, -1), 2, self.temperature).reshape(x.shape)

    def forward(self, x):
        if not self.training:
            return self._softmax(x, self.arith)
        # Training: Darknet back-propagates the delta straight through (the x-ent gradient), so
        # the output itself needs no autograd and follows the network's inference arithmetic.
        with torch.no_grad():
            y = self._softmax(x, self.strategy)
        return loss_layer_output(x, y)

    def delta(self, output: torch.Tensor, truth, seen: int = 0):
        """Darknet's ``l.delta`` (shape of ``output``, sign = target − output) and ``l.cost``
        for this batch's softmax output and its truth rows (B × inputs)."""
        if self.semantics not in SEMANTICS:
            raise ValueError(f"softmax semantics must be one of {SEMANTICS}, not {self.semantics!r}")
        p, t = flat_output_and_truth(self, output, truth)
        if self.noloss:  # Darknet leaves delta at 0 and the cost at 0 (still counted in the average)
            return torch.zeros_like(output, dtype=torch.float32), 0.0
        d = t - p
        loss = torch.where(t != 0, (-torch.log(p.double())).float(), torch.zeros_like(p))
        if self.semantics == "gpu" and self.tree is not None:
            masked = t == SECRET_NUM
            d = d.masked_fill(masked, 0.)
            loss = loss.masked_fill(masked, 0.)
        return d.reshape(output.shape), sum_array(loss)

    def describe(self):
        return f"softmax                                        {self.out_shape.numel:4d}"
