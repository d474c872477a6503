"""Batch-norm statistics measured over a set of pictures, instead of Darknet's running average.

Darknet's rolling mean and variance move by 1 % a training step (``.99 * rolling + .01 *
batch``), so after n steps a fraction .99^n of the starting values remains: 37 % after 100
steps, 5 % after 300.  A detection head trained for a few hundred steps from scratch therefore
infers with statistics that still lean on its initial ones (mean 0, variance 1), far from
the ones it trained with, and its detections suffer.  :func:`precise_batchnorm` sets every
batch-norm layer's rolling statistics to the average of its batch statistics over the given
batches (the network in training mode, as the statistics are met in training; "precise BN",
Wu & Johnson 2021).  The result is an ordinary Darknet weights file.
"""
from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["precise_batchnorm"]


def _bn_layers(net) -> list:
    recurrent = [layer for layer in net.layers if hasattr(layer, "reset_state") and layer.batch_normalize]
    if recurrent:
        # their sub-layers update the rolling statistics once per time step, not once per batch
        layer = recurrent[0]
        raise ValueError(f"{net.cfg_path}: layer {layer.index} [{layer.header}] (line {layer.line}) is a recurrent "
                         f"layer with batch norm: precise batch-norm statistics do not handle it")
    return [layer for layer in net.layers if getattr(layer, "batch_normalize", False)]


def precise_batchnorm(net, batches: Iterable[torch.Tensor]) -> int:
    """Replace the rolling statistics of ``net``'s batch-norm layers by the mean over ``batches``
    (N×3×H×W tensors at the network's size) of each batch's mean and unbiased variance.

    Each batch runs forward in training mode without gradients; the layers' own update
    (``.99 * rolling + .01 * batch``) from zeroed statistics gives ``.01 * batch`` exactly up
    to float rounding.  Returns the number of batches used (0 leaves the network unchanged)."""
    layers = _bn_layers(net)
    sums = [(torch.zeros_like(l.rolling_mean), torch.zeros_like(l.rolling_variance)) for l in layers]
    saved = [(l.rolling_mean.clone(), l.rolling_variance.clone()) for l in layers]
    was_training, n = net.training, 0
    net.train()
    try:
        with torch.no_grad():
            for images in batches:
                for layer in layers:
                    layer.rolling_mean.zero_()
                    layer.rolling_variance.zero_()
                net(images.to(layers[0].rolling_mean.device) if layers else images)
                for layer, (m, v) in zip(layers, sums):
                    m.add_(layer.rolling_mean * 100)
                    v.add_(layer.rolling_variance * 100)
                n += 1
        with torch.no_grad():
            for layer, (m, v), (m0, v0) in zip(layers, sums, saved):
                layer.rolling_mean.copy_(m / n if n else m0)
                layer.rolling_variance.copy_(v / n if n else v0)
    finally:
        net.train(was_training)
    return n
