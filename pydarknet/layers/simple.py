"""Small pass-through-like sections: [batchnorm], [crop] (inference), [empty]/[silence]."""
from __future__ import annotations

import torch
from torch import nn

from .base import Layer, Shape, register
from .batchnorm import batch_norm


@register("batchnorm")
class BatchnormLayer(Layer):
    """A standalone batch norm (inference statistics).  Weights file: pjreddie stores scales,
    rolling mean and variance; AlexeyAB the biases first, then those three."""

    flavour = "pjreddie"

    def build(self, in_shapes):
        c = in_shapes[0].c
        self.bias = nn.Parameter(torch.zeros(c))
        self.scales = nn.Parameter(torch.ones(c))
        self.register_buffer("rolling_mean", torch.zeros(c))
        self.register_buffer("rolling_variance", torch.zeros(c))
        return super().build(in_shapes)

    def darknet_params(self):
        stats = [self.scales, self.rolling_mean, self.rolling_variance]
        return [self.bias, *stats] if self.flavour == "alexeyab" else stats

    def forward(self, x):
        if self.training:
            raise NotImplementedError(f"layer {self.index} [batchnorm]: training a standalone batch norm "
                                      f"is not supported by pydarknet")
        return batch_norm(x, self.rolling_mean, self.rolling_variance, self.scales, self.bias, self.flavour)


@register("crop")
class Crop(Layer):
    """Darknet's [crop] at inference: the centred crop_width x crop_height window, mapped to
    2x-1 (x unchanged with noadjust=1).  Training (random crops, flips) is not supported."""

    def __init__(self, section, index):
        super().__init__(section, index)
        self.crop_h = section.get_int("crop_height", 1)
        self.crop_w = section.get_int("crop_width", 1)
        self.noadjust = section.get_bool("noadjust")
        for key in ("flip",):
            section.get_int(key, 0)
        for key in ("angle", "saturation", "exposure", "shift"):
            section.get_float(key, 0)

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if self.crop_h > s.h or self.crop_w > s.w:
            raise self.error(f"crop {self.crop_w}x{self.crop_h} is larger than its input {s.w}x{s.h}")
        return Shape(s.c, self.crop_h, self.crop_w)

    def forward(self, x):
        if self.training:
            raise NotImplementedError(f"layer {self.index} [crop]: training crops are not supported by pydarknet")
        h, w = x.shape[-2:]
        dh, dw = (h - self.crop_h) // 2, (w - self.crop_w) // 2
        y = x[:, :, dh:dh + self.crop_h, dw:dw + self.crop_w]
        return y if self.noadjust else y * 2 - 1

    def describe(self):
        return f"crop         {self.crop_w} x {self.crop_h}"


@register("empty")
class Empty(Layer):
    """AlexeyAB's [empty]/[silence]: the input, unchanged."""

    def forward(self, x):
        return x


@register("contrastive")
class Contrastive(Layer):
    """AlexeyAB's [contrastive]: a training-only loss; at inference its output stays zero (its
    forward returns at once and Darknet's output buffer is calloc'ed)."""

    def __init__(self, section, index):
        super().__init__(section, index)
        self.classes = section.get_int("classes", 1000)
        given = section.get_int("yolo_layer", 0)
        self.yolo_layer = given + index if given < 0 else given
        for key in ("temperature", "cls_normalizer", "max_delta"):
            section.get_float(key, 1.)
        section.get_int("contrastive_neg_max", 3)

    def bind(self, layers):
        if not 0 <= self.yolo_layer < len(layers) or layers[self.yolo_layer].kind != "yolo":
            raise self.error("yolo_layer= must point to a [yolo] layer (AlexeyAB stops otherwise)")

    def forward(self, x):
        return torch.zeros_like(x)
