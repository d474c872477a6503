"""[cost]: a training loss over the previous output; at inference it passes it through.

Darknet's ``forward_cost_layer`` compares its input ``p`` (the previous layer's output) with
the truth ``t`` and keeps ``delta`` (target − output sign) and an error array whose
sequential float32 sum is the layer's cost; ``backward_cost_layer`` *adds* ``scale·delta``
into the previous layer's delta.  In training mode :meth:`Cost.forward` returns a view of its
input, so the trainer's ``-delta`` for this layer reaches the previous output and adds to
that layer's own gradient (a [softmax] then carries both through to its input, as Darknet's
``net.delta += l.delta`` does).  ``calc_network_cost`` averages the costs of every loss layer.

Types (``type=``):

- ``sse`` (default), ``masked``, ``seg``: l2, ``delta = t − p``, ``error = delta²``.
  ``masked`` first overwrites its input with ``SECRET_NUM = -1234`` wherever ``t == -1234``
  (darknet9000.cfg's ending), so masked entries get delta 0 and error 0.  Darknet's GPU
  masked cost masks ``net.delta_gpu``, a NULL pointer in ``forward_network_gpu``: it has no
  working GPU variant, and the CPU rule is used under both semantics.
- ``L1``: ``error = |t − p|``, ``delta = (t − p) > 0 ? 1 : −1``.
- ``smooth`` (smooth L1): ``|d| < 1``: ``error = d²``, ``delta = d``; otherwise
  ``error = 2|d| − 1`` and ``delta = ±1``.  The CPU code has the sign backwards
  (``d < 0 ? 1 : −1``); the GPU kernel's is right (``d > 0 ? 1 : −1``).
- ``wgan``: GPU only (``error = t ? −p : p``, ``delta = t > 0 ? 1 : −1``); the CPU runs l2.

``semantics = "gpu"`` (default; Darknet's GPU path is the reference) also applies what only
``forward_cost_layer_gpu`` does: label smoothing of the truth by the layer's ``smooth=``,
``seg`` with ``noobj≠1`` scaling delta and error where ``t == 0``, and ``thresh=`` zeroing
deltas below ``thresh/inputs``.  (``ratio=`` ends in a threshold of 0: no effect.)
``semantics = "cpu"`` is ``forward_cost_layer`` as the CPU binary runs it.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Layer, register
from .passthrough import flat_output_and_truth
from ..exact import sum_array
from .softmax import SECRET_NUM, SEMANTICS

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")

_F = np.float32


@register("cost")
class Cost(Layer):
    semantics: str = "gpu"

    def __init__(self, section, index):
        super().__init__(section, index)
        self.cost_type = section.get_choice("type", COST_TYPES, "sse")
        self.scale = section.get_float("scale", 1.)
        self.ratio = section.get_float("ratio", 0.)
        self.noobject_scale = section.get_float("noobj", 1.)
        self.thresh = section.get_float("thresh", 0.)

    def forward(self, x):
        # Training: a distinct autograd node whose gradient flows into x, summed with the
        # gradient x gets as a loss layer of its own.
        if self.training and torch.is_grad_enabled() and x.requires_grad:
            return x.view_as(x)
        return x

    def delta(self, output: torch.Tensor, truth, seen: int = 0):
        """The delta this layer adds into its input's delta (``scale·l.delta``, shape of
        ``output``) and ``l.cost``, for this batch's input ``output`` and truth rows."""
        if self.semantics not in SEMANTICS:
            raise ValueError(f"cost semantics must be one of {SEMANTICS}, not {self.semantics!r}")
        gpu = self.semantics == "gpu"
        p, t = flat_output_and_truth(self, output, truth)
        inputs = p.shape[1]
        if gpu and self.smooth:
            t = t * torch.tensor(_F(1 - _F(self.smooth))) + torch.tensor(_F(self.smooth * 1. / inputs))
        if self.cost_type == "masked":
            p = torch.where(t == SECRET_NUM, torch.tensor(SECRET_NUM), p)
        diff = t - p
        one = torch.ones_like(diff)
        if self.cost_type == "smooth":
            small = diff.abs() < 1
            sign = torch.where(diff > 0, one, -one) if gpu else torch.where(diff < 0, one, -one)
            error = torch.where(small, diff * diff, 2 * diff.abs() - 1)
            delta = torch.where(small, diff, sign)
        elif self.cost_type == "L1":
            error = diff.abs()
            delta = torch.where(diff > 0, one, -one)
        elif self.cost_type == "wgan" and gpu:
            error = torch.where(t != 0, -p, p)
            delta = torch.where(t > 0, one, -one)
        else:
            error = diff * diff
            delta = diff
        if gpu and self.cost_type == "seg" and self.noobject_scale != 1:
            s = torch.tensor(_F(self.noobject_scale))
            delta = torch.where(t == 0, delta * s, delta)
            error = torch.where(t == 0, error * s, error)
        if gpu and self.thresh:
            a = torch.tensor(_F(self.thresh * 1. / inputs))
            delta = torch.where(delta * delta < a * a, torch.zeros_like(delta), delta)
        cost = sum_array(error)
        if self.scale != 1:
            delta = delta * torch.tensor(_F(self.scale))
        return delta.reshape(output.shape), cost

    def describe(self):
        return f"cost                                           {self.out_shape.numel:4d}"
