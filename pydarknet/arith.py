"""The one switch between Darknet-exact and fast arithmetic: an :class:`Arithmetic` object.

Every layer computes through ``self.arith``, one of three objects:

* :data:`DARKNET` — inference in Darknet's own operation order (:mod:`pydarknet.exact`):
  sequential float32 sums in every product, its float/double mix in batch norm, the
  activations and the softmax; bit-identical to the reference build, slower.
* :data:`FAST` — plain PyTorch kernels (batch norm folded into the convolutions at
  inference), within float32 noise (~1e-5) of Darknet.
* :data:`DARKNET_TRAINING` — what a network built exact uses in ``train()`` mode: the
  plain kernels (autograd needs them) with batch-norm statistics summed in Darknet's float
  order, which keeps the loss within ~1e-6 of Darknet's.

``Darknet(cfg, exact=True|False)`` (or ``net.exact = ...``) picks DARKNET or FAST; a layer in
training mode asks its strategy for its training counterpart.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import exact

__all__ = ["Arithmetic", "DarknetArithmetic", "FAST", "DARKNET", "DARKNET_TRAINING", "arithmetic"]


class Arithmetic:
    """Plain PyTorch kernels (the fast path)."""

    name = "fast"
    #: inference follows Darknet's operation order step by step
    darknet_order = False
    #: training sums batch-norm statistics and softmax outputs in Darknet's float order
    ordered_sums = False

    def training(self) -> "Arithmetic":
        """The strategy a layer of this network uses in ``train()`` mode."""
        return FAST

    def conv2d(self, x, weight, stride: int, padding: int, groups: int):
        return F.conv2d(x, weight, None, stride, padding, 1, groups)

    def linear(self, x, weight):
        return F.linear(x, weight)

    def logistic(self, x):
        return torch.sigmoid(x)

    def softmax(self, x, dim: int, temperature: float = 1.):
        return torch.softmax(x / temperature if temperature != 1 else x, dim=dim)

    def group_softmax(self, x, tree, temperature: float = 1.):
        """Softmax within each WordTree group of the last dimension."""
        from .tree import group_softmax
        return group_softmax(x / temperature if temperature != 1 else x, tree, dim=-1)

    def mean_hw(self, x):
        return x.mean(dim=(2, 3), keepdim=True)

    def __repr__(self) -> str:
        return f"<{self.name} arithmetic>"


class DarknetArithmetic(Arithmetic):
    """Darknet's operation order, bit for bit (inference)."""

    name = "darknet"
    darknet_order = True
    ordered_sums = True

    def training(self) -> Arithmetic:
        return DARKNET_TRAINING

    def conv2d(self, x, weight, stride: int, padding: int, groups: int):
        return exact.conv2d(x, weight, stride, padding, groups)

    def conv_layer(self, x, weight, stride: int, padding: int, groups: int, bias, bn, activation: str):
        """A whole [convolutional] forward (conv, batch norm or bias, activation) in Darknet's order."""
        return exact.conv_layer(x, weight, stride, padding, groups, bias, bn, activation)

    def linear(self, x, weight):
        return exact.linear(x, weight)

    def logistic(self, x):
        return exact.logistic(x)

    def softmax(self, x, dim: int, temperature: float = 1.):
        return exact.softmax(x, dim, temperature)

    def group_softmax(self, x, tree, temperature: float = 1.):
        return exact.group_softmax(x, tree, temperature)

    def mean_hw(self, x):
        return exact.mean_hw(x)


class _DarknetTraining(Arithmetic):
    """Plain kernels for autograd, Darknet's float order for the sums that move the loss."""

    name = "darknet-training"
    ordered_sums = True

    def training(self) -> Arithmetic:
        return self


FAST = Arithmetic()
DARKNET = DarknetArithmetic()
DARKNET_TRAINING = _DarknetTraining()


def arithmetic(exact_mode: bool) -> Arithmetic:
    """DARKNET for ``exact=True``, FAST otherwise."""
    return DARKNET if exact_mode else FAST
