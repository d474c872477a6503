"""Darknet's activation functions (src/activations.h), as differentiable torch ops."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _logistic(x):
    return torch.sigmoid(x)


def _loggy(x):
    return 2 * torch.sigmoid(x) - 1


def _selu(x):
    # Darknet's own constants, not torch.selu's more precise ones.
    return torch.where(x >= 0, 1.0507 * x, (1.0507 * 1.6732) * torch.expm1(x))


def _plse(x):
    return torch.where(x < -4, .01 * (x + 4), torch.where(x > 4, .01 * (x - 4) + 1, .125 * x + .5))


def _lhtan(x):
    return torch.where(x < 0, .001 * x, torch.where(x > 1, .001 * (x - 1) + 1, x))


def _stair(x):
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _softplus(x, threshold: float = 20.):
    """AlexeyAB's softplus_activate: x above the threshold, exp(x) below -threshold."""
    return torch.where(x > threshold, x, torch.where(x < -threshold, torch.exp(x), torch.log(torch.exp(x) + 1)))


def _ab_tanh(x):
    """AlexeyAB's tanh_activate: 2/(1+exp(-2x)) - 1 in float."""
    return 2 / (1 + torch.exp(-2 * x)) - 1


def _mish(x):
    return x * _ab_tanh(_softplus(x))


def _hard_mish(x):
    return torch.where(x > 0, x, torch.where(x > -2, x * x / 2 + x, torch.zeros_like(x)))


def _gelu(x):
    # AlexeyAB: 0.5*x*(1 + tanhf(0.797885*x + 0.035677*x^3))
    return .5 * x * (1 + torch.tanh(.797885 * x + .035677 * x ** 3))


def _normalize_channels(x):
    """AlexeyAB's normalize_channels: positive values over (eps + their sum across channels)."""
    pos = torch.clamp(x, min=0)
    return pos / (pos.sum(dim=1, keepdim=True) + 1e-4)


def _normalize_channels_softmax(x, use_max: bool = False):
    """AlexeyAB's normalize_channels_softmax(_maxval): exp(x - max) / (eps + sum) across channels."""
    m = x.max(dim=1, keepdim=True).values if use_max else torch.zeros_like(x[:, :1])
    e = torch.exp(x - m)
    return e / (e.sum(dim=1, keepdim=True) + 1e-4)


ACTIVATIONS = {
    "linear": lambda x: x,
    "logistic": _logistic,
    "loggy": _loggy,
    "relu": F.relu,
    "elu": lambda x: torch.where(x >= 0, x, torch.expm1(x)),
    "selu": _selu,
    "relie": lambda x: F.leaky_relu(x, 0.01),
    "ramp": lambda x: F.relu(x) + .1 * x,
    "leaky": lambda x: F.leaky_relu(x, 0.1),
    "tanh": torch.tanh,
    "plse": _plse,
    "hardtan": lambda x: torch.clamp(x, -1, 1),
    "lhtan": _lhtan,
    "stair": _stair,
    # AlexeyAB's Darknet only
    "swish": lambda x: x * torch.sigmoid(x),
    "mish": _mish,
    "hard_mish": _hard_mish,
    "relu6": lambda x: torch.clamp(x, 0, 6),
    "gelu": _gelu,
    "revleaky": lambda x: F.leaky_relu(x, 0.1),  # its forward is leaky's
    "normalize_channels": _normalize_channels,
    "normalize_channels_softmax": _normalize_channels_softmax,
    "normalize_channels_softmax_maxval": lambda x: _normalize_channels_softmax(x, True),
}
#: Activations only AlexeyAB's Darknet knows (a cfg using one is AlexeyAB-flavoured).
ALEXEYAB_ACTIVATIONS = {"swish", "mish", "hard_mish", "relu6", "gelu", "revleaky", "normalize_channels",
                        "normalize_channels_softmax", "normalize_channels_softmax_maxval"}


def activation(name: str):
    return ACTIVATIONS[name]
