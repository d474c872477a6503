"""[cost]: a training loss over the previous output; at inference it passes it through."""
from __future__ import annotations

from .base import Layer, register

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


@register("cost")
class Cost(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.cost_type = section.get_choice("type", COST_TYPES, "sse")
        self.scale = section.get_float("scale", 1.)
        self.ratio = section.get_float("ratio", 0.)
        self.noobject_scale = section.get_float("noobj", 1.)
        self.thresh = section.get_float("thresh", 0.)

    def forward(self, x):
        return x

    def describe(self):
        return f"cost                                           {self.out_shape.numel:4d}"
