"""[route]: channel concatenation of earlier layers' outputs."""
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

    @property
    def sources(self):
        return self._sources

    def infer_shape(self, in_shapes):
        first = in_shapes[0]
        for src, s in zip(self._sources, in_shapes):
            if (s.h, s.w) != (first.h, first.w):
                raise self.error(f"cannot concatenate layer {self._sources[0]} ({first.w}x{first.h}) "
                                 f"with layer {src} ({s.w}x{s.h})")
        return Shape(sum(s.c for s in in_shapes), first.h, first.w)

    def forward(self, *xs):
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)

    def describe(self):
        return "route  " + " ".join(str(i) for i in self._sources)
