"""[shortcut]: residual add of earlier layers.

pjreddie: one ``from=`` layer, ``alpha``·input + ``beta``·from, with Darknet's strided/sampled
form for unequal sizes.  AlexeyAB: ``from=`` may list several layers (equal width and height;
each adds into the first channels), and ``weights_type=per_feature|per_channel`` gives one
learnt weight per input (per channel), optionally normalised (``weights_normalization=relu``:
relu(w)/(eps+Σrelu(w); ``softmax``: exp(w-max)/(eps+Σexp)), stored in the weights file.
"""
from __future__ import annotations

import torch
from torch import nn

from .activations import ACTIVATIONS, activation
from .base import Layer, register

WEIGHTS_TYPES = {"none": None, "per_feature": "feature", "per_layer": "feature", "per_channel": "channel"}
NORMALIZATIONS = {"none": None, "relu": "relu", "avg_relu": "relu", "softmax": "softmax"}


@register("shortcut")
class Shortcut(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        given = section.get_list("from", int, required=True)
        self.froms = [g + index if g < 0 else g for g in given]
        for g, src in zip(given, self.froms):
            if not 0 <= src < index:
                raise self.error(f"from={g} refers to layer {src}, which is not an earlier layer")
        self.source = self.froms[0]
        self.activation = section.get_choice("activation", ACTIVATIONS, "linear")
        self.alpha = section.get_float("alpha", 1.)
        self.beta = section.get_float("beta", 1.)
        self.weights_type = WEIGHTS_TYPES[section.get_choice("weights_type", WEIGHTS_TYPES, "none")]
        self.normalization = NORMALIZATIONS[section.get_choice("weights_normalization", NORMALIZATIONS, "none")]
        self._act = activation(self.activation)

    @property
    def sources(self):
        return [self.index - 1, *self.froms]

    @property
    def _darknet_plain(self) -> bool:
        return len(self.froms) == 1 and self.weights_type is None

    def build(self, in_shapes):
        c = in_shapes[0].c
        if self.weights_type is not None:
            n = len(self.froms) + 1
            # AlexeyAB initialises the shortcut weights to 1
            self.weight = nn.Parameter(torch.ones(n if self.weights_type == "feature" else n * c))
        return super().build(in_shapes)

    def infer_shape(self, in_shapes):
        out = in_shapes[0]
        if self._darknet_plain:
            add = in_shapes[1]
            stride, sample = max(add.w // out.w, 1), max(out.w // add.w, 1)
            if stride != max(add.h // out.h, 1) or sample != max(out.h // add.h, 1):
                raise self.error(f"cannot add layer {self.source} ({add.w}x{add.h}) to {out.w}x{out.h}: "
                                 f"the width and height ratios differ")
            return out
        for src, s in zip(self.froms, in_shapes[1:]):
            if (s.w, s.h) != (out.w, out.h):
                raise self.error(f"layer {src} is {s.w}x{s.h}, this input {out.w}x{out.h}: AlexeyAB's "
                                 f"multi-input/weighted shortcut needs equal sizes")
        return out

    def darknet_params(self):
        return [self.weight] if self.weights_type is not None else []

    def _input_weights(self) -> torch.Tensor:
        """(n+1, 1 or C) weights after the normalisation, row 0 for the input, row i for from[i-1]."""
        n = len(self.froms) + 1
        w = self.weight.view(n, -1)
        if self.normalization == "relu":
            r = torch.relu(w)
            w = r / (r.sum(dim=0, keepdim=True) + 1e-4)
        elif self.normalization == "softmax":
            e = torch.exp(w - w.max(dim=0, keepdim=True).values)
            w = e / (e.sum(dim=0, keepdim=True) + 1e-4)
        return w

    def forward(self, x, *adds):
        if self._darknet_plain:
            return self._act(self._plain(x, adds[0]))
        w = self._input_weights() if self.weights_type is not None else None
        y = x * w[0].view(1, -1, 1, 1) if w is not None else x.clone()
        for i, add in enumerate(adds, start=1):
            c = min(x.shape[1], add.shape[1])  # AlexeyAB adds where the flat index fits both
            a = add[:, :c]
            if w is not None:
                a = a * w[i].view(1, -1, 1, 1)[:, :c] if w.shape[1] > 1 else a * w[i]
            y = torch.cat([y[:, :c] + a, y[:, c:]], dim=1) if c < y.shape[1] else y + a
        return self._act(y)

    def _plain(self, x, add):
        if x.shape == add.shape:
            return self.alpha * x + self.beta * add
        # Darknet adds the overlapping channels, reading `add` every `stride` pixels
        # and writing every `sample` pixels; the rest of x passes unchanged.
        (_, c2, h2, w2), (_, c1, h1, w1) = x.shape, add.shape
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
        c, h, w = min(c1, c2), min(h1, h2), min(w1, w2)
        a = add[:, :c, :h * stride:stride, :w * stride:stride]
        y = x.clone()
        part = y[:, :c, :h * sample:sample, :w * sample:sample]
        y[:, :c, :h * sample:sample, :w * sample:sample] = self.alpha * part + self.beta * a
        return y

    def describe(self):
        return "res  " + " ".join(f"{s:3d}" for s in self.froms)
