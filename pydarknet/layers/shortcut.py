"""[shortcut]: residual add of an earlier layer (Darknet's strided/sampled form for unequal sizes)."""
from __future__ import annotations

from .activations import ACTIVATIONS, activation
from .base import Layer, register


@register("shortcut")
class Shortcut(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        given = section.get_int("from", required=True)
        self.source = given + index if given < 0 else given
        if not 0 <= self.source < index:
            raise self.error(f"from={given} refers to layer {self.source}, which is not an earlier layer")
        self.activation = section.get_choice("activation", ACTIVATIONS, "linear")
        self.alpha = section.get_float("alpha", 1.)
        self.beta = section.get_float("beta", 1.)
        self._act = activation(self.activation)

    @property
    def sources(self):
        return [self.index - 1, self.source]

    def infer_shape(self, in_shapes):
        out, add = in_shapes
        stride, sample = max(add.w // out.w, 1), max(out.w // add.w, 1)
        if stride != max(add.h // out.h, 1) or sample != max(out.h // add.h, 1):
            raise self.error(f"cannot add layer {self.source} ({add.w}x{add.h}) to {out.w}x{out.h}: "
                             f"the width and height ratios differ")
        return out

    def forward(self, x, add):
        if x.shape == add.shape:
            y = self.alpha * x + self.beta * add
        else:
            # Darknet adds the overlapping channels, reading `add` every `stride` pixels
            # and writing every `sample` pixels; the rest of x passes unchanged.
            (_, c2, h2, w2), (_, c1, h1, w1) = x.shape, add.shape
            stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
            c, h, w = min(c1, c2), min(h1, h2), min(w1, w2)
            a = add[:, :c, :h * stride:stride, :w * stride:stride]
            y = x.clone()
            part = y[:, :c, :h * sample:sample, :w * sample:sample]
            y[:, :c, :h * sample:sample, :w * sample:sample] = self.alpha * part + self.beta * a
        return self._act(y)

    def describe(self):
        return f"res  {self.source:3d}"
