"""[convolutional]: conv (+ Darknet batch norm) + bias + activation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ACTIVATIONS, activation
from .base import Layer, Shape, register
from ..exact import bn_divisor
from .batchnorm import bn_denominator, normalize_and_activate


@register("convolutional")
class Convolutional(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.filters = section.get_int("filters", 1, min=1)
        self.size = section.get_int("size", 1, min=1)
        self._read_stride(section)
        pad = section.get_int("pad", 0)
        padding = section.get_int("padding", 0, min=0)
        # pad=1 means "same" padding, size/2 (so a 1x1 conv with pad=1 gets none).
        self.padding = self.size // 2 if pad else padding
        self.groups = section.get_int("groups", 1, min=1)
        self.batch_normalize = section.get_bool("batch_normalize")
        if section.get_int("cbn", 0):  # AlexeyAB's cross-iteration BN: batch norm at inference
            self.batch_normalize = True
        self.activation = section.get_choice("activation", ACTIVATIONS, "logistic")
        # binary=1: Darknet's forward uses sign(w)*mean|w| per filter; xnor=1 also binarises the input.
        self.binary = section.get_bool("binary")
        self.xnor = section.get_bool("xnor")
        section.get_int("bin_output", 0)  # AlexeyAB's bit-packed output: an inference speed-up only
        if self.xnor and self.groups != 1:
            raise section.error("xnor=1 needs groups=1 (AlexeyAB forces it, pjreddie's kernels assume it)", "xnor")
        self._read_alexeyab(section, index)
        section.get_int("flipped", 0)
        section.get_float("dot", 0)
        if self.filters < 1 or self.size < 1 or self.stride < 1 or self.groups < 1:
            raise section.error("filters, size, stride and groups must be positive")
        self._act = activation(self.activation)

    def param_count(self, in_shapes):
        c = in_shapes[0].c
        return self.filters * (c // self.groups) * self.size ** 2 + self.filters * (4 if self.batch_normalize else 1)

    def work_count(self, in_shapes, out):
        # im2col's columns (Darknet's workspace; our exact path builds the same matrix)
        return in_shapes[0].c * self.size ** 2 * out.h * out.w

    def _read_stride(self, section):
        """stride, or AlexeyAB's stride_x/stride_y (both must be set to replace stride)."""
        sx, sy = section.get_int("stride_x", -1), section.get_int("stride_y", -1)
        stride = section.get_int("stride", 1, min=1)
        self.stride_x = sx if sx >= 1 else stride
        self.stride_y = sy if sy >= 1 else stride
        self.stride = self.stride_x

    def _read_alexeyab(self, section, index):
        """AlexeyAB's options: dilation, antialiasing, share_index; training-only ones are read,
        and the deformable/coordconv variants, which pydarknet does not build, are errors."""
        self.dilation = section.get_int("dilation", 1)
        if self.size == 1:  # AlexeyAB: a 1x1 kernel ignores dilation
            self.dilation = 1
        if self.dilation < 1:
            raise section.error("dilation must be positive", "dilation")
        self.antialiasing = section.get_int("antialiasing", 0)
        if self.antialiasing not in (0, 1, 2):
            raise section.error("antialiasing must be 0, 1 or 2", "antialiasing")
        share = section.get_int("share_index", -1000000000)
        self.share_index = None if share == -1000000000 else (share if share >= 0 else index + share)
        if self.share_index is not None and not 0 <= self.share_index < index:
            raise section.error(f"share_index={share} is not an earlier layer", "share_index")
        for key in ("sway", "rotate", "stretch", "stretch_sway", "coordconv"):
            if section.get_int(key, 0):
                raise section.error(f"{key}=1 (AlexeyAB's deformable/coord convolution) is not supported "
                                    f"by pydarknet", key)
        section.get_float("assisted_excitation", 0)  # training only
        section.get_float("angle", 15)
        section.get_int("grad_centr", 0)
        section.get_float("reverse", 0)
        section.get_int("stream", -1)
        section.get_int("wait_stream", -1)

    @property
    def _shared_with(self):
        ref = getattr(self, "_share_ref", None)
        return ref[0] if ref else None

    def bind(self, layers):
        """share_index=: use that earlier [convolutional]'s kernels and biases (not its batch norm)."""
        if self.share_index is None:
            return
        other = layers[self.share_index]
        if other.kind != "convolutional":
            raise self.error(f"share_index={self.share_index} is a [{other.header}], not a [convolutional]")
        self._share_ref = [other]  # a list, so the other layer is not registered as a submodule

    def build(self, in_shapes):
        c = in_shapes[0].c
        if c % self.groups or self.filters % self.groups:
            raise self.error(f"{c} input channels and {self.filters} filters are not divisible by groups={self.groups}")
        n, k = self.filters, self.size
        fan_in = c // self.groups * k * k
        share = self._shared_with
        if share is not None:
            if share.weight.shape != (n, c // self.groups, k, k):
                raise self.error(f"share_index={self.share_index}: that layer's kernels are "
                                 f"{tuple(share.weight.shape)}, this one needs {(n, c // self.groups, k, k)}")
            self.weight, self.bias = share.weight, share.bias
        else:
            # Darknet's initialisation: normal*sqrt(2/fan_in) kernels, zero biases, unit BN scales, zero
            # rolling statistics (calloc), so an untrained layer divides by 1e-6 at inference as Darknet does.
            self.weight = nn.Parameter(torch.randn(n, c // self.groups, k, k).mul_(math.sqrt(2.0 / fan_in)))
            self.bias = nn.Parameter(torch.zeros(n))
        if self.batch_normalize:
            self.scales = nn.Parameter(torch.ones(n))
            self.register_buffer("rolling_mean", torch.zeros(n))
            self.register_buffer("rolling_variance", torch.zeros(n))
        if self.antialiasing:
            # AlexeyAB's blur after the activation: a depthwise 3x3 [1 2 1]^T[1 2 1]/16 (or 2x2 mean) conv
            # with the layer's stride, the host conv itself running at stride 1.
            blur = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16 if self.antialiasing == 1 \
                else torch.full((2, 2), .25)
            self.register_buffer("blur", blur.expand(n, 1, *blur.shape).clone())
        return super().build(in_shapes)

    @property
    def _host_stride(self):
        return (1, 1) if self.antialiasing else (self.stride_y, self.stride_x)

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if hasattr(self, "weight") and s.c != self.weight.shape[1] * self.groups:
            raise self.error(f"expects {self.weight.shape[1] * self.groups} input channels, got {s.c}")
        sy, sx = self._host_stride
        # Darknet's size ignores the dilation: (h + 2*pad - size)/stride + 1, the taps reaching pad*dilation.
        h = (s.h + 2 * self.padding - self.size) // sy + 1
        w = (s.w + 2 * self.padding - self.size) // sx + 1
        if h < 1 or w < 1:
            raise self.error(f"input {s.w}x{s.h} is smaller than the {self.size}x{self.size} kernel")
        if self.dilation != 1:
            d, p = self.dilation, self.padding * self.dilation
            if (s.h + 2 * p - d * (self.size - 1) - 1) // sy + 1 != h or (s.w + 2 * p - d * (self.size - 1) - 1) // sx + 1 != w:
                raise self.error(f"dilation={d} with size={self.size}, padding={self.padding}: Darknet's output "
                                 f"size rule and its taps disagree here; pydarknet does not build it")
        if self.antialiasing:
            b, bp = (3, 1) if self.antialiasing == 1 else (2, 0)
            h, w = (h + 2 * bp - b) // self.stride_y + 1, (w + 2 * bp - b) // self.stride_x + 1
        return Shape(self.filters, h, w)

    def darknet_params(self):
        if self._shared_with is not None:
            return []  # AlexeyAB neither loads nor saves a layer that shares another's weights
        if self.batch_normalize:
            return [self.bias, self.scales, self.rolling_mean, self.rolling_variance, self.weight]
        return [self.bias, self.weight]

    def _folded(self):
        """Kernels and bias with the inference batch norm folded in (fast path), cached until
        any parameter or statistic changes (their version counters move on every write)."""
        params = (self.weight, self.bias, self.scales, self.rolling_mean, self.rolling_variance)
        key = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        if getattr(self, "_fold_key", None) != key:
            with torch.no_grad():
                a = self.scales / bn_denominator(self.rolling_variance, self.flavour)
                self._fold = (self.weight * a.view(-1, 1, 1, 1), self.bias - self.rolling_mean * a)
            self._fold_key = key
        return self._fold

    def _kernels(self):
        """The kernels the forward multiplies by: Darknet's binarised ones for binary/xnor."""
        if not (self.binary or self.xnor):
            return self.weight
        w = self.weight
        mean = w.abs().flatten(1).mean(dim=1).view(-1, 1, 1, 1)
        return torch.where(w > 0, mean, -mean)

    def _conv(self, x, w, b=None):
        sy, sx = self._host_stride
        if self.arith.darknet_order and b is None and self.dilation == 1 and sx == sy:
            return self.arith.conv2d(x, w, sx, self.padding, self.groups)
        return F.conv2d(x, w, b, (sy, sx), self.padding * self.dilation, self.dilation, self.groups)

    def forward(self, x):
        arith = self.arith
        plain = not (self.binary or self.xnor)
        if self.xnor:  # binarize_cpu: the input becomes +-1 (the zero padding stays 0)
            x = torch.where(x > 0, torch.ones_like(x), -torch.ones_like(x))
        if self.batch_normalize and not self.training and not arith.darknet_order and plain:
            # Folding rounds differently from Darknet's (x - mean) / (sqrt(var) + eps) * scale + bias,
            # at the float32 noise level the fast path already has.
            w, b = self._folded()
            y = self._conv(x, w, b)
            y = F.leaky_relu(y, .1, inplace=True) if self.activation == "leaky" and not torch.is_grad_enabled() \
                else self._act(y)
        elif arith.darknet_order and plain and self.dilation == 1 and self.stride_x == self.stride_y \
                and not self.antialiasing:
            # conv, batch norm, bias and activation in one pass, Darknet's order
            bn = (self.rolling_mean, bn_divisor(self.rolling_variance, self.flavour), self.scales) \
                if self.batch_normalize else None
            y = arith.conv_layer(x, self._kernels(), self.stride, self.padding, self.groups, self.bias, bn,
                                 self.activation)
        else:
            y = normalize_and_activate(self, self._conv(x, self._kernels()))
        if self.antialiasing:
            b, bp = (3, 1) if self.antialiasing == 1 else (2, 0)
            y = F.conv2d(y, self.blur, None, (self.stride_y, self.stride_x), bp, 1, self.filters)
        return y

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        bn = " bn" if self.batch_normalize else ""
        return (f"conv  {self.filters:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}{bn} {self.activation}")
