"""Darknet's recurrent layers: [rnn], [gru], [lstm] (built of [connected] sub-layers), [crnn] and
AlexeyAB's [conv_lstm] (built of [convolutional] ones), as rnn_layer.c, gru_layer.c,
lstm_layer.c, crnn_layer.c and conv_lstm_layer.c compute them on the CPU.

Darknet reads a batch of N rows as ``steps`` = [net] time_steps consecutive time steps of
N/steps sequences: row ``t*B + b`` is sequence ``b`` at step ``t``.  The hidden state lives in
the layer and carries over from one forward to the next (Darknet's ``l.state``) until
:meth:`Recurrent.reset_state`; in ``train()`` mode [rnn] and [crnn] start every forward from a
zero state, as Darknet does when ``net.train`` is set, while [gru], [lstm] and [conv_lstm] keep
theirs.
The products that do not depend on the state run on all rows at once; the time loop runs the
rest.  Training goes through autograd (Darknet's own recurrent backward is not reproduced).

Where the two Darknets differ, the network's flavour decides: the order of the sub-layers in
the weights file ([gru], [lstm]), the options read ([rnn] hidden=/logistic=, [crnn]
output=/hidden=/size=... against pjreddie's output_filters=/hidden_filters=, [gru] tanh=) and,
in exact arithmetic, the gates' logistic and tanh (pjreddie computes them in double,
AlexeyAB in float).
"""
from __future__ import annotations

import warnings

import torch

from .. import exact
from ..cfg import CfgWarning, Option, Section
from .activations import ACTIVATIONS
from .base import REGISTRY, Layer, Shape, register


class Recurrent(Layer):
    """What the recurrent layers share: sub-layers built from a synthetic section, the carried state,
    the steps of the batch and the weights order."""

    #: sub-layer names, in the order of each Darknet's load_weights (set by configure)
    order: tuple[str, ...] = ()

    def __init__(self, section, index):
        super().__init__(section, index)
        self.time_steps = 1
        self._states: dict[str, torch.Tensor] = {}
        if self.dontloadscales:
            # Darknet sets it on the layer, but its connected/convolutional sub-layers read their own (0)
            warnings.warn(f"{section.where('dontloadscales')}: dontloadscales has no effect on "
                          f"[{section.header}] in Darknet (its sub-layers load their scales)", CfgWarning)
            self.dontloadscales = False

    def configure(self, section: Section, net_options) -> None:
        """Read the options (which depend on the flavour, set just before) and make the sub-layers."""
        self.time_steps = net_options.time_steps

    def _sub(self, section: Section, kind: str, name: str, **options) -> Layer:
        """A [connected] or [convolutional] sub-layer, its options on the parent's lines."""
        opts = {k: Option(str(v), section.options[k].line if k in section.options else section.line)
                for k, v in options.items()}
        sub = REGISTRY[kind](Section(kind, section.header, section.line, section.path, opts), self.index)
        sub.flavour = self.flavour
        self.add_module(name, sub)
        return sub

    @property
    def strategy(self):
        return self.__dict__.get("_strategy", Layer.strategy)

    @strategy.setter
    def strategy(self, value):
        self.__dict__["_strategy"] = value
        for name in self.order:
            if name in self._modules:
                getattr(self, name).strategy = value

    # --- shapes and weights ------------------------------------------------------------------
    def _chain(self, in_shapes):
        """(sub-layer, its input shape) for each sub-layer, given this layer's input."""
        raise NotImplementedError

    def param_count(self, in_shapes):
        return sum(sub.param_count([shape]) for sub, shape in self._chain(in_shapes))

    def work_count(self, in_shapes, out):
        return max(sub.work_count([s], sub.infer_shape([s])) for sub, s in self._chain(in_shapes))

    def build(self, in_shapes):
        for sub, shape in self._chain(in_shapes):
            sub.build([shape])
        return super().build(in_shapes)

    def reshape(self, in_shapes):
        for sub, shape in self._chain(in_shapes):
            sub.reshape([shape])
        self._states.clear()
        return super().reshape(in_shapes)

    def darknet_params(self):
        return [p for name in self.order for p in getattr(self, name).darknet_params()]

    def sub_layers(self) -> list[Layer]:
        """The sub-layers in weights order; Darknet updates each with its own learning-rate scale
        (1: the parent's learning_rate= does not reach them)."""
        return [getattr(self, n) for n in self.order]

    def connected_weights(self) -> list[torch.Tensor]:
        """Matrices that old weights files (version above 1000) store transposed."""
        return [getattr(self, n).weight for n in self.order if getattr(self, n).kind == "connected"]

    # --- state ---------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Forget the hidden state: the next forward starts from zeros."""
        self._states.clear()

    def _state(self, key: str, like: torch.Tensor) -> torch.Tensor:
        s = self._states.get(key)
        if s is None or s.shape != like.shape or s.device != like.device:
            s = torch.zeros_like(like)
        return s

    def _keep(self, key: str, value: torch.Tensor) -> None:
        self._states[key] = value.detach()

    def _steps(self, x: torch.Tensor) -> int:
        n = x.shape[0]
        if n % self.time_steps:
            raise ValueError(f"layer {self.index} [{self.header}] reads the batch as time_steps="
                             f"{self.time_steps} steps: it needs a multiple of {self.time_steps} rows, got {n}")
        return n // self.time_steps

    def _all_rows(self, sub: Layer, x: torch.Tensor) -> torch.Tensor:
        """A sub-layer on every row: at once at inference, step by step in training (Darknet's
        batch norm takes its statistics over one step's batch)."""
        if self.training and getattr(sub, "batch_normalize", False):
            return torch.cat([sub(xt) for xt in x.chunk(self.time_steps)])
        return sub(x)

    def _gate(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The gates' logistic or tanh: pjreddie's in double, AlexeyAB's in float when exact."""
        if not self.arith.darknet_order:
            return torch.sigmoid(x) if name == "logistic" else torch.tanh(x)
        if self.flavour == "alexeyab":   # 1.f/(1.f+expf(-x)) and 2/(1+expf(-2x))-1, in float
            e = exact.expf(-x if name == "logistic" else -2 * x)
            return 1 / (1 + e) if name == "logistic" else 2 / (1 + e) - 1
        if name == "logistic":
            return exact.logistic(x)
        e = torch.exp((2 * x).double())  # pjreddie: (exp(2x)-1)/(exp(2x)+1) in double
        return ((e - 1) / (e + 1)).float()


class _Elman(Recurrent):
    """[rnn] and [crnn]: state = (old state if shortcut) + input_layer(x) + self_layer(state);
    output = output_layer(state)."""

    order = ("input_layer", "self_layer", "output_layer")

    def forward(self, x):
        b = self._steps(x)
        xin = self._all_rows(self.input_layer, x)
        # Darknet's train mode zeroes the state first and leaves the stored one at zero
        state = torch.zeros_like(xin[:b]) if self.training else self._state("h", xin[:b])
        states = []
        for t in range(self.time_steps):
            xt, st = xin[t * b:(t + 1) * b], self.self_layer(state)
            # fill (or copy the old state), then axpy the input's and the self layer's outputs
            state = (state + xt) + st if self.shortcut else xt + st
            states.append(state)
        if self.training:
            self._states.pop("h", None)
        else:
            self._keep("h", state)
        return self._all_rows(self.output_layer, torch.cat(states))


@register("rnn")
class RNN(_Elman):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.outputs = section.get_int("output", 1, min=1)
        self.activation = section.get_choice("activation", ACTIVATIONS, "logistic")
        self.batch_normalize = section.get_bool("batch_normalize")
        self.shortcut = section.get_bool("shortcut")

    def configure(self, section, net_options):
        super().configure(section, net_options)
        self_activation = self.activation
        if self.flavour == "alexeyab":   # hidden= sizes the state; logistic=1|2 the self layer's activation
            self.hidden = section.get_int("hidden", 1, min=1)
            log = section.get_int("logistic", 0)
            self_activation = {1: "logistic", 2: "loggy"}.get(log, self.activation)
        else:
            self.hidden = self.outputs
        bn = int(self.batch_normalize)
        self._sub(section, "connected", "input_layer", output=self.hidden, activation=self.activation, batch_normalize=bn)
        self._sub(section, "connected", "self_layer", output=self.hidden, activation=self_activation, batch_normalize=bn)
        self._sub(section, "connected", "output_layer", output=self.outputs, activation=self.activation,
                  batch_normalize=bn)

    def _chain(self, in_shapes):
        h = Shape(self.hidden, 1, 1)
        return [(self.input_layer, in_shapes[0]), (self.self_layer, h), (self.output_layer, h)]

    def infer_shape(self, in_shapes):
        return Shape(self.outputs, 1, 1)

    def describe(self):
        return f"RNN Layer: {self.in_shapes[0].numel} inputs, {self.outputs} outputs"


@register("crnn")
class CRNN(_Elman):
    def __init__(self, section, index):
        super().__init__(section, index)
        self.activation = section.get_choice("activation", ACTIVATIONS, "logistic")
        self.batch_normalize = section.get_bool("batch_normalize")
        self.shortcut = section.get_bool("shortcut")

    def configure(self, section, net_options):
        super().configure(section, net_options)
        conv = dict(activation=self.activation, batch_normalize=int(self.batch_normalize))
        if self.flavour == "alexeyab":
            size = section.get_int("size", 3, min=1)
            pad, padding = section.get_int("pad", 0), section.get_int("padding", 0, min=0)
            conv.update(size=size, stride=section.get_int("stride", 1, min=1),
                        dilation=section.get_int("dilation", 1), padding=size // 2 if pad else padding,
                        groups=section.get_int("groups", 1, min=1), xnor=section.get_int("xnor", 0))
            self.filters = section.get_int("output", 1, min=1)
            self.hidden = section.get_int("hidden", 1, min=1)
        else:   # pjreddie: 3x3 kernels, stride 1, padding 1
            conv.update(size=3, stride=1, padding=1)
            # parse_crnn passes (w, h) where make_crnn_layer takes (h, w): the layer reads its input's
            # memory as a w-row, h-column image and hands that shape on
            self.swap_hw = True
            self.filters = section.get_int("output_filters", 1, min=1)
            self.hidden = section.get_int("hidden_filters", 1, min=1)
        self._sub(section, "convolutional", "input_layer", filters=self.hidden, **conv)
        self._sub(section, "convolutional", "self_layer", filters=self.hidden, **conv)
        self._sub(section, "convolutional", "output_layer", filters=self.filters, **conv)

    swap_hw = False

    def _chain(self, in_shapes):
        s = in_shapes[0]
        if self.swap_hw:
            s = Shape(s.c, s.w, s.h)
        h = Shape(self.hidden, s.h, s.w)
        got = self.input_layer.infer_shape([s])
        if (got.h, got.w) != (s.h, s.w):
            # crnn_layer.c: the state is h*w*hidden, so each convolution must keep the size (Darknet asserts)
            raise self.error(f"its convolutions turn {s.w}x{s.h} into {got.w}x{got.h}; the state needs the "
                             f"input's size (Darknet's make_crnn_layer asserts): use stride=1 and pad=1")
        return [(self.input_layer, s), (self.self_layer, h), (self.output_layer, h)]

    def infer_shape(self, in_shapes):
        return self.output_layer.infer_shape([self._chain(in_shapes)[-1][1]])

    def forward(self, x):
        if self.swap_hw:
            x = x.reshape(x.shape[0], x.shape[1], x.shape[3], x.shape[2])
        return super().forward(x)

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        return f"crnn          {i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}"


class _Gated(Recurrent):
    """[gru] and [lstm]: input sub-layers (inputs -> outputs) and state sub-layers (outputs -> outputs),
    all linear."""

    inputs_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()

    def __init__(self, section, index):
        super().__init__(section, index)
        self.outputs = section.get_int("output", 1, min=1)
        self.batch_normalize = section.get_bool("batch_normalize")

    def configure(self, section, net_options):
        super().configure(section, net_options)
        for name in self.order:
            self._sub(section, "connected", name, output=self.outputs, activation="linear",
                      batch_normalize=int(self.batch_normalize))

    def _chain(self, in_shapes):
        h = Shape(self.outputs, 1, 1)
        return [(getattr(self, n), in_shapes[0] if n in self.inputs_names else h) for n in self.order]

    def infer_shape(self, in_shapes):
        return Shape(self.outputs, 1, 1)

    def _inputs(self, x):
        return {n: self._all_rows(getattr(self, n), x) for n in self.inputs_names}

    def describe(self):
        return f"{self.kind.upper()} Layer: {self.in_shapes[0].numel} inputs, {self.outputs} outputs"


@register("gru")
class GRU(_Gated):
    inputs_names = ("uz", "ur", "uh")
    state_names = ("wz", "wr", "wh")

    def configure(self, section, net_options):
        # pjreddie loads the state sub-layers first, AlexeyAB the input ones; only pjreddie reads tanh=
        self.order = ("wz", "wr", "wh", "uz", "ur", "uh") if self.flavour == "pjreddie" else \
            ("uz", "ur", "uh", "wz", "wr", "wh")
        self.tanh = self.flavour == "pjreddie" and section.get_bool("tanh")
        super().configure(section, net_options)

    def forward(self, x):
        b = self._steps(x)
        u = self._inputs(x)
        state = self._state("h", u["uz"][:b])
        out = []
        for t in range(self.time_steps):
            rows = slice(t * b, (t + 1) * b)
            z = self._gate(u["uz"][rows] + self.wz(state), "logistic")
            r = self._gate(u["ur"][rows] + self.wr(state), "logistic")
            h = self._gate(u["uh"][rows] + self.wh(state * r), "tanh" if self.tanh else "logistic")
            state = z * state + (1 - z) * h     # weighted_sum_cpu
            out.append(state)
        self._keep("h", state)
        return torch.cat(out)


@register("lstm")
class LSTM(_Gated):
    inputs_names = ("uf", "ui", "ug", "uo")
    state_names = ("wf", "wi", "wg", "wo")

    def configure(self, section, net_options):
        self.order = ("wi", "wf", "wo", "wg", "ui", "uf", "uo", "ug") if self.flavour == "pjreddie" else \
            ("wf", "wi", "wg", "wo", "uf", "ui", "ug", "uo")
        super().configure(section, net_options)

    def forward(self, x):
        b = self._steps(x)
        u = self._inputs(x)
        h, c = self._state("h", u["uf"][:b]), self._state("c", u["uf"][:b])
        out = []
        for t in range(self.time_steps):
            rows = slice(t * b, (t + 1) * b)
            f = self._gate(self.wf(h) + u["uf"][rows], "logistic")
            i = self._gate(self.wi(h) + u["ui"][rows], "logistic")
            g = self._gate(self.wg(h) + u["ug"][rows], "tanh")
            o = self._gate(self.wo(h) + u["uo"][rows], "logistic")
            c = c * f + i * g
            h = self._gate(c, "tanh") * o
            out.append(h)
        self._keep("h", h)
        self._keep("c", c)
        return torch.cat(out)


@register("conv_lstm")
class ConvLSTM(Recurrent):
    """AlexeyAB's [conv_lstm] as its CPU forward computes it (conv_lstm_layer.c): an LSTM whose
    products are convolutions, with optional peephole convolutions of the cell state, the cell
    clipped to +-state_constrain and non-finite values replaced by 1/i (i: the flat index)."""

    def __init__(self, section, index):
        super().__init__(section, index)
        self.filters = section.get_int("output", 1, min=1)
        self.activation = section.get_choice("activation", ACTIVATIONS, "linear")
        self.batch_normalize = section.get_bool("batch_normalize")
        self.peephole = section.get_bool("peephole")
        if section.get_int("bottleneck", 0):
            raise section.error("bottleneck=1: AlexeyAB's CPU forward does not implement it (only its GPU "
                                "one does); pydarknet does not build it", "bottleneck")
        if section.get_choice("lstm_activation", ACTIVATIONS, "tanh") != "tanh":
            raise section.error("lstm_activation= other than tanh: AlexeyAB's CPU forward always uses tanh, its "
                                "GPU one this activation; pydarknet does not build it", "lstm_activation")
        section.get_bool("shortcut")                 # acts only with bottleneck=1 (GPU)
        section.get_float("time_normalizer", 1.)     # read, used by no forward

    def configure(self, section, net_options):
        super().configure(section, net_options)
        self.state_constrain = section.get_int("state_constrain", self.time_steps * 32)
        size = section.get_int("size", 3, min=1)
        pad, padding = section.get_int("pad", 0), section.get_int("padding", 0, min=0)
        conv = dict(filters=self.filters, size=size, stride=section.get_int("stride", 1, min=1),
                    dilation=section.get_int("dilation", 1), padding=size // 2 if pad else padding,
                    groups=section.get_int("groups", 1, min=1), xnor=section.get_int("xnor", 0),
                    activation=self.activation, batch_normalize=int(self.batch_normalize))
        # load_weights: the peephole convolutions first, then W (state) and U (input)
        self.order = (("vf", "vi", "vo") if self.peephole else ()) + ("wf", "wi", "wg", "wo", "uf", "ui", "ug", "uo")
        for name in self.order:
            self._sub(section, "convolutional", name, **conv)

    def _chain(self, in_shapes):
        s = in_shapes[0]
        got = self.uf.infer_shape([s])
        if (got.h, got.w) != (s.h, s.w):
            raise self.error(f"its convolutions turn {s.w}x{s.h} into {got.w}x{got.h}; the state convolutions "
                             f"read the input's size (AlexeyAB reads past its buffers): use stride=1 and pad=1")
        h = Shape(self.filters, s.h, s.w)
        return [(getattr(self, n), s if n[0] == "u" else h) for n in self.order]

    def infer_shape(self, in_shapes):
        self._chain(in_shapes)
        return Shape(self.filters, in_shapes[0].h, in_shapes[0].w)

    def _fix(self, x: torch.Tensor) -> torch.Tensor:
        """constrain_cpu then fix_nan_and_inf_cpu: C's fminf/fmaxf skip NaN, a non-finite value becomes 1.f/i."""
        if torch.isfinite(x).all():
            return x
        index = torch.arange(x.numel(), dtype=x.dtype, device=x.device).view_as(x)
        return torch.where(torch.isfinite(x), x, 1 / index)

    def forward(self, x):
        b = self._steps(x)
        u = {n: self._all_rows(getattr(self, n), x) for n in ("uf", "ui", "ug", "uo")}
        h, c = self._state("h", u["uf"][:b]), self._state("c", u["uf"][:b])
        limit = torch.tensor(float(self.state_constrain), dtype=x.dtype, device=x.device)
        out = []
        for t in range(self.time_steps):
            rows = slice(t * b, (t + 1) * b)
            f, i = self.wf(h) + u["uf"][rows], self.wi(h) + u["ui"][rows]
            if self.peephole:   # of the previous cell state
                f, i = f + self.vf(c), i + self.vi(c)
            f, i = self._gate(f, "logistic"), self._gate(i, "logistic")
            g = self._gate(self.wg(h) + u["ug"][rows], "tanh")
            c = c * f + i * g
            o = self.wo(h) + u["uo"][rows]
            if self.peephole:   # of the new one
                o = o + self.vo(c)
            h = self._gate(c, "tanh") * self._gate(o, "logistic")
            if self.state_constrain:
                c = torch.fmin(limit, torch.fmax(-limit, c))
            c, h = self._fix(c), self._fix(h)
            out.append(h)
        self._keep("h", h)
        self._keep("c", c)
        return torch.cat(out)

    def describe(self):
        i, o = self.in_shapes[0], self.out_shape
        return f"conv_lstm     {i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}"
