"""Darknet's batch normalisation (forward_batchnorm_layer / backward_batchnorm_layer).

Darknet's epsilons are not PyTorch's: the forward divides by ``sqrt(var) + 1e-6`` (outside
the root; AlexeyAB's ``sqrt(var + 1e-5)``, which the cfg's flavour selects), while its backward
uses ``sqrt(var + 1e-5)``; in training the variance is the unbiased one (1/(N-1)) and the
rolling statistics move by .99/.01.
"""
from __future__ import annotations

import torch

from ..exact import bn_divisor, sequential_sum

BN_GRAD_EPS = 1e-5   # backward: 1 / sqrt(var + 1e-5)
_F = torch.float32


def _view(t):
    return t.view(1, -1, 1, 1)


def bn_denominator(variance: torch.Tensor, flavour: str = "pjreddie") -> torch.Tensor:
    """The inference divisor of the cfg's Darknet (:func:`pydarknet.exact.bn_divisor`: pjreddie's
    sqrt(var) + 1e-6, AlexeyAB's sqrt(var + 1e-5)), computed in double, rounded to float."""
    return bn_divisor(variance, flavour).to(variance.dtype)


def batch_norm(x: torch.Tensor, mean, variance, scales, biases, flavour: str = "pjreddie") -> torch.Tensor:
    """Inference: normalise with the given statistics, then scale, then add the bias."""
    x = (x - _view(mean)) / _view(bn_denominator(variance, flavour))
    return x * _view(scales) + _view(biases)


def batch_statistics(x: torch.Tensor, darknet_order: bool = True):
    """Per-channel mean and *unbiased* variance over batch and positions (mean_cpu, variance_cpu).

    With ``darknet_order`` the float sums run in Darknet's order (image by image, position by
    position) and then times 1/N in float, reproducing its rounding; otherwise accurate sums
    (about three times cheaper, ~1e-4 away from Darknet on large layers)."""
    c = x.shape[1]
    n = x.numel() // c
    if not darknet_order:
        var, mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=1)
        return mean, var
    flat = x.detach().float().transpose(0, 1).reshape(c, n)
    mean = sequential_sum(flat, 1) * torch.tensor(1. / n, dtype=_F).to(x.device)
    # Darknet adds double squares into a float accumulator; squaring a float in double is exact,
    # so rounding each square to float first differs from it only in rare last bits.
    squares = ((flat - mean.view(-1, 1)).double() ** 2).float()
    var = sequential_sum(squares, 1) * torch.tensor(1. / (n - 1), dtype=_F).to(x.device)
    return mean, var


class _TrainBatchNorm(torch.autograd.Function):
    """Batch-statistics normalisation whose backward is Darknet's (its own epsilon and 1/N)."""

    @staticmethod
    def forward(ctx, x, scales, biases, mean, var, darknet_order, flavour):
        ctx.darknet_order = darknet_order
        if darknet_order:  # normalize_cpu divides in double and rounds to float
            x_norm = ((x - _view(mean)).double() / _view(bn_divisor(var, flavour))).float()
            ctx.save_for_backward(x, x_norm, scales, mean, var)
            return x_norm * _view(scales) + _view(biases)
        # fast: one pass, x * (scale / denom) + (bias - mean * scale / denom)
        ctx.denominator = bn_denominator(var, flavour)
        a = scales / ctx.denominator
        ctx.save_for_backward(x, None, scales, mean, var)
        return torch.addcmul(_view(biases - mean * a), x, _view(a))

    @staticmethod
    def backward(ctx, grad):
        x, x_norm, scales, mean, var = ctx.saved_tensors
        grad = grad.contiguous()
        # Darknet's mean_delta, variance_delta and normalize_delta with 1/sqrt(var + 1e-5):
        #   dx = invstd * (d - mean(d) - x_hat * mean(d * x_hat)),  d = grad * scale,
        #   x_hat = (x - mean) * invstd
        # which is the standard training batch-norm gradient given that invstd: one fused kernel.
        invstd = (1. / torch.sqrt(var.double() + BN_GRAD_EPS)).to(x.dtype)
        if ctx.darknet_order:
            grad_bias = grad.sum(dim=(0, 2, 3))
            grad_scale = (grad * x_norm).sum(dim=(0, 2, 3))  # backward_scale_cpu: the forward's x_norm
            dx = torch.ops.aten.native_batch_norm_backward(
                grad, x.contiguous(), scales, None, None, mean, invstd, True, BN_GRAD_EPS, [True, False, False])[0]
            return dx, grad_scale, grad_bias, None, None, None, None
        # fast: the same kernel also sums grad and grad * (x - mean) * invstd; the scale's gradient
        # wants the forward's x_norm = (x - mean) / (sqrt(var) + 1e-6), a per-channel rescale
        dx, grad_w, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad, x.contiguous(), scales, None, None, mean, invstd, True, BN_GRAD_EPS, [True, True, True])
        grad_scale = grad_w / (invstd * ctx.denominator)
        return dx, grad_scale, grad_bias, None, None, None, None


def normalize_and_activate(layer, y: torch.Tensor) -> torch.Tensor:
    """What follows the product in [convolutional] and [connected]: batch norm (training or
    inference) or the bias alone, then the activation, in Darknet's arithmetic when exact."""
    from .. import exact
    arith = layer.arith
    if arith.darknet_order:
        if layer.batch_normalize:
            y = exact.batch_norm(y, layer.rolling_mean, exact.bn_divisor(layer.rolling_variance, layer.flavour),
                                 layer.scales, layer.bias)
        else:
            y = exact.add_bias(y, layer.bias)
        return exact.activate(y, layer.activation)
    if layer.batch_normalize and layer.training:
        # exact: batch statistics summed in Darknet's float order (slower, the same loss as Darknet)
        y = train_batch_norm(y, layer.scales, layer.bias, layer.rolling_mean, layer.rolling_variance,
                             darknet_order=arith.ordered_sums, flavour=layer.flavour)
    elif layer.batch_normalize:
        y = batch_norm(y, layer.rolling_mean, layer.rolling_variance, layer.scales, layer.bias, layer.flavour)
    else:
        y = y + _view(layer.bias)
    return layer._act(y)


def train_batch_norm(x, scales, biases, rolling_mean, rolling_variance, momentum_update: bool = True,
                     darknet_order: bool = True, flavour: str = "pjreddie"):
    """Training forward: normalise with the batch statistics and update the rolling ones in place."""
    mean, var = batch_statistics(x.detach(), darknet_order)
    if momentum_update:
        with torch.no_grad():
            rolling_mean.mul_(torch.tensor(.99, dtype=_F)).add_(torch.tensor(.01, dtype=_F) * mean)
            rolling_variance.mul_(torch.tensor(.99, dtype=_F)).add_(torch.tensor(.01, dtype=_F) * var)
    return _TrainBatchNorm.apply(x, scales, biases, mean, var, darknet_order, flavour)
