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
}


def activation(name: str):
    return ACTIVATIONS[name]
