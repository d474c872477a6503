"""[dropout]: Darknet's inverted dropout (scale 1/(1-p) on kept values in training)."""
from __future__ import annotations

import torch

from .base import Layer, register


@register("dropout")
class Dropout(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.probability = section.get_float("probability", .5)
        if not 0 <= self.probability < 1:
            raise section.error("probability must lie in [0, 1)", "probability")

    def forward(self, x):
        if not self.training or self.probability == 0:
            return x
        keep = torch.rand_like(x) >= self.probability
        return x * keep * (1. / (1. - self.probability))

    def describe(self):
        return f"dropout       p = {self.probability:.2f}"
