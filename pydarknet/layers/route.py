"""[route]: channel concatenation of earlier layers' outputs.

AlexeyAB's ``groups=``/``group_id=`` take, from each input, the ``group_id``-th of ``groups``
equal parts of its flat (c, h, w) memory (the ``group_id``-th channel block when c divides)."""
from __future__ import annotations

import torch

from .base import Layer, Shape, register


@register("route")
class Route(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        layers = section.get_list("layers", int, required=True)
        # Negative indices count back from the route's own index.
        self._sources = [i + index if i < 0 else i for i in layers]
        for given, src in zip(layers, self._sources):
            if not 0 <= src < index:
                raise self.error(f"layers={given} refers to layer {src}, which is not an earlier layer")
        self.groups = section.get_int("groups", 1)
        self.group_id = section.get_int("group_id", 0)
        if self.groups < 1 or not 0 <= self.group_id < self.groups:
            raise section.error(f"groups={self.groups}, group_id={self.group_id}: need groups >= 1 and "
                                f"0 <= group_id < groups", "group_id")
        section.get_int("stream", -1)
        section.get_int("wait_stream", -1)

    @property
    def sources(self):
        return self._sources

    def infer_shape(self, in_shapes):
        first = in_shapes[0]
        for src, s in zip(self._sources, in_shapes):
            if (s.h, s.w) != (first.h, first.w):
                raise self.error(f"cannot concatenate layer {self._sources[0]} ({first.w}x{first.h}) "
                                 f"with layer {src} ({s.w}x{s.h})")
        c = sum(s.c for s in in_shapes)
        if self.groups > 1 and any(s.numel % self.groups for s in in_shapes) or \
                sum(s.numel // self.groups for s in in_shapes) != c // self.groups * first.h * first.w:
            raise self.error(f"the inputs' sizes are not divisible into groups={self.groups}")
        return Shape(c // self.groups, first.h, first.w)

    def forward(self, *xs):
        if self.groups > 1:
            parts = []
            for x in xs:
                flat = x.flatten(1)
                part = flat.shape[1] // self.groups
                parts.append(flat[:, part * self.group_id:part * (self.group_id + 1)])
            o = self.out_shape
            return torch.cat(parts, dim=1).view(xs[0].shape[0], o.c, o.h, o.w)
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)

    def describe(self):
        group = f"  {self.group_id}/{self.groups}" if self.groups > 1 else ""
        return "route  " + " ".join(str(i) for i in self._sources) + group
