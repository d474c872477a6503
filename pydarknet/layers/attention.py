"""AlexeyAB's attention layers: [scale_channels] and [sam] (forward_scale_channels_layer,
forward_sam_layer).  Both multiply the ``from=`` layer's output by the previous layer's."""
from __future__ import annotations

from .activations import ACTIVATIONS, activation
from .base import Layer, register


class _FromLayer(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        given = section.get_int("from", required=True)
        self.source = given + index if given < 0 else given
        if not 0 <= self.source < index:
            raise self.error(f"from={given} refers to layer {self.source}, which is not an earlier layer")
        self.activation = section.get_choice("activation", ACTIVATIONS, "linear")
        self._act = activation(self.activation)

    @property
    def sources(self):
        return [self.index - 1, self.source]


@register("scale_channels")
class ScaleChannels(_FromLayer):
    """Output = from-layer × the previous layer's (C,1,1) per-channel scale, or with
    ``scale_wh=1`` × its (1,H,W) per-position scale."""

    def __init__(self, section, index):
        super().__init__(section, index)
        self.scale_wh = section.get_bool("scale_wh")

    def infer_shape(self, in_shapes):
        scale, src = in_shapes
        if self.scale_wh and (scale.c != 1 or (scale.h, scale.w) != (src.h, src.w)):
            raise self.error(f"scale_wh=1 needs a 1x{src.h}x{src.w} input, got {scale.c}x{scale.h}x{scale.w}")
        if not self.scale_wh and (scale.h, scale.w, scale.c) != (1, 1, src.c):
            raise self.error(f"needs a {src.c}x1x1 input to scale layer {self.source}'s {src.c} channels, "
                             f"got {scale.c}x{scale.h}x{scale.w}")
        return src

    def forward(self, scale, src):
        return self._act(src * scale)

    def describe(self):
        return f"scale Layer: {self.source}"


@register("sam")
class Sam(_FromLayer):
    """Spatial attention: output = from-layer × previous output, element by element."""

    def infer_shape(self, in_shapes):
        a, src = in_shapes
        if a != src:
            raise self.error(f"input {tuple(a)} and layer {self.source}'s {tuple(src)} differ")
        return src

    def forward(self, a, src):
        return self._act(src * a)

    def describe(self):
        return f"scale Layer: {self.source}"
