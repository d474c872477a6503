"""Autograd for Darknet's loss layers, whose backward is not the derivative of their forward.

Darknet's [region] (GPU build) and [softmax] layers compute a delta for their *outputs* and
hand it to the previous layer as the gradient of their *inputs*: the logistic entries are
multiplied by σ(1−σ), everything else (softmaxed classes, raw w and h) passes through as
is, i.e. the softmax is back-propagated as cross-entropy would be, not through its Jacobian.
"""
from __future__ import annotations

import torch


class _Passthrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, logistic_mask):
        ctx.save_for_backward(y, logistic_mask)
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        y, mask = ctx.saved_tensors
        if mask is None or not mask.any():
            return grad, None, None
        return torch.where(mask, grad * (1 - y) * y, grad), None, None


def flat_output_and_truth(layer, output: torch.Tensor, truth):
    """(predictions, truth) as B × n float32 rows, checking the truth holds one value per output."""
    n = output.shape[0]
    p = output.detach().reshape(n, -1).to(torch.float32)
    t = torch.as_tensor(truth).detach().to(device=p.device, dtype=torch.float32)
    if t.numel() != p.numel():
        raise ValueError(f"layer {layer.index} [{layer.header}]: truth has {tuple(t.shape)} values for a batch of "
                         f"{n} x {p.shape[1]} outputs")
    return p, t.reshape(n, -1)


def loss_layer_output(x: torch.Tensor, y: torch.Tensor, logistic_mask: torch.Tensor | None = None):
    """Return ``y`` (computed from ``x`` without autograd) so that d/dx = d/dy, times
    σ(1−σ) = (1−y)·y where ``logistic_mask`` is set."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return y
    if logistic_mask is None:
        logistic_mask = torch.zeros((), dtype=torch.bool)
    return _Passthrough.apply(x, y.detach(), logistic_mask.expand_as(y) if logistic_mask.dim() else logistic_mask)
