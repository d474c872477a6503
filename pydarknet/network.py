"""The layer graph: cfg sections -> layer modules, their wiring, shapes and weights order."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import cfg as cfgmod
from .arith import Arithmetic, arithmetic
from .budget import format_size, memory_budget
from .resources import resolve_cfg
from .layers import REGISTRY, BuildError, Layer, Shape

__all__ = ["Darknet", "NetOptions"]

HEAD_KINDS = ("region", "yolo", "gaussian_yolo", "detection")
POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random", "sgdr")


@dataclass
class NetOptions:
    """The ``[net]`` section with Darknet's defaults (parser.c parse_net_options)."""
    batch: int = 1
    subdivisions: int = 1
    width: int = 0
    height: int = 0
    channels: int = 0
    learning_rate: float = .001
    momentum: float = .9
    decay: float = .0001
    policy: str = "constant"
    burn_in: int = 0
    power: float = 4.
    step: int = 1
    scale: float = 1.
    steps: list = field(default_factory=list)
    scales: list = field(default_factory=list)
    gamma: float = 1.
    max_batches: int = 0
    time_steps: int = 1
    adam: bool = False
    B1: float = .9
    B2: float = .999
    eps: float = 1e-7
    random: int = 0
    max_crop: int = 0
    min_crop: int = 0
    max_ratio: float = 0.
    min_ratio: float = 0.
    center: int = 0
    clip: float = 0.
    angle: float = 0.
    aspect: float = 1.
    saturation: float = 1.
    exposure: float = 1.
    hue: float = 0.
    learning_rate_min: float = .00001  # AlexeyAB's sgdr
    sgdr_cycle: int = 0
    sgdr_mult: int = 2
    letter_box: bool = False  # AlexeyAB: letterbox (instead of resize) the picture at detection

    @classmethod
    def from_section(cls, s: cfgmod.Section) -> "NetOptions":
        o = cls()
        # Values Darknet would accept but that cannot train or run (negative sizes or rates,
        # a zero step) are errors here; sizes too large to allocate are found by the budget.
        o.batch = s.get_int("batch", 1, min=1)
        o.subdivisions = s.get_int("subdivisions", 1, min=1)
        o.time_steps = s.get_int("time_steps", 1, min=1)
        s.get_int("notruth", 0)
        o.random = s.get_int("random", 0)
        o.adam = s.get_bool("adam")
        if o.adam:
            o.B1, o.B2 = s.get_float("B1", .9, min=0, max=1), s.get_float("B2", .999, min=0, max=1)
            o.eps = s.get_float("eps", 1e-7, min=0)
        o.height = s.get_int("height", 0, min=0)
        o.width = s.get_int("width", 0, min=0)
        o.channels = s.get_int("channels", 0, min=0)
        inputs = s.get_int("inputs", o.height * o.width * o.channels)
        if inputs > 0 and not (o.height or o.width or o.channels):
            # inputs= alone (the text cfgs of [rnn], [gru], [lstm]): a vector, Darknet's h = w = c = 0
            o.height, o.width, o.channels = 1, 1, inputs
        elif not inputs or not (o.height and o.width and o.channels):
            raise s.error("needs width=, height= and channels= (Darknet: 'No input parameters supplied')")
        elif inputs != o.height * o.width * o.channels:
            raise s.error(f"inputs={inputs} differs from width*height*channels = "
                          f"{o.height * o.width * o.channels}; pydarknet does not build that", "inputs")
        o.max_crop = s.get_int("max_crop", o.width * 2, min=0)
        o.min_crop = s.get_int("min_crop", o.width, min=0)
        o.max_ratio = s.get_float("max_ratio", o.max_crop / o.width, min=0)
        o.min_ratio = s.get_float("min_ratio", o.min_crop / o.width, min=0)
        o.center = s.get_int("center", 0)
        o.clip = s.get_float("clip", 0., min=0)
        o.angle = s.get_float("angle", 0.)
        o.aspect = s.get_float("aspect", 1., min=0)
        o.saturation = s.get_float("saturation", 1., min=0)
        o.exposure = s.get_float("exposure", 1., min=0)
        o.hue = s.get_float("hue", 0.)
        o.learning_rate = s.get_float("learning_rate", .001, min=0)
        o.momentum = s.get_float("momentum", .9, min=0)
        o.decay = s.get_float("decay", .0001, min=0)
        o.policy = s.get_choice("policy", POLICIES, "constant")
        o.burn_in = s.get_int("burn_in", 0, min=0)
        o.power = s.get_float("power", 4.)
        if o.policy == "step":
            o.step, o.scale = s.get_int("step", 1, min=1), s.get_float("scale", 1., min=0)
        elif o.policy == "steps":
            o.steps = s.get_list("steps", int, required=True)
            o.scales = s.get_list("scales", float, required=True, min=0)
            if len(o.scales) < len(o.steps):
                raise s.error(f"steps has {len(o.steps)} values but scales only {len(o.scales)}", "scales")
        elif o.policy == "exp":
            o.gamma = s.get_float("gamma", 1., min=0)
        elif o.policy == "sigmoid":
            o.gamma, o.step = s.get_float("gamma", 1.), s.get_int("step", 1)
        o.max_batches = s.get_int("max_batches", 0, min=0)
        if o.policy == "sgdr":  # AlexeyAB: cosine restarts; steps/scales are optional there
            o.learning_rate_min = s.get_float("learning_rate_min", .00001)
            o.sgdr_cycle = s.get_int("sgdr_cycle", o.max_batches)
            o.sgdr_mult = s.get_int("sgdr_mult", 2)
            if s.has("steps"):
                o.steps = s.get_list("steps", int)
                o.scales = s.get_list("scales", float, default=[1.] * len(o.steps))
        o.letter_box = s.get_bool("letter_box")
        if o.batch < 1 or o.subdivisions < 1:
            raise s.error("batch and subdivisions must be positive")
        return o


def _budget_or_error(budget) -> int:
    try:
        return memory_budget(budget)
    except ValueError as e:
        raise cfgmod.CfgError(str(e)) from None


class Darknet(nn.Module):
    """A Darknet network built from a ``.cfg`` file (or its text).

    ``forward(x)`` takes an N×3×H×W float tensor (RGB, 0..1) at the network's size and
    returns the last layer's output, N×C×H×W, whose flattening is Darknet's memory order.
    ``layers[i]`` is the module of the i-th section after ``[net]`` (Darknet's numbering).

    ``exact=True`` (the default) makes inference follow Darknet's own float arithmetic and
    reproduce the reference build bit for bit; ``exact=False`` uses plain PyTorch kernels,
    several times faster and within float32 noise (~1e-5) of Darknet.

    ``memory_budget`` (bytes, or a size such as ``"8G"``; default ``$PYDARKNET_MEMORY_BUDGET``
    or 2 GiB) bounds what the cfg may ask for: each layer's parameters and output are
    estimated from the inferred shapes before any tensor is created, and a layer or a
    network above the budget is a CfgError naming the cfg line and the size.  Training (``train()``
    mode) always uses the plain convolution kernels, since autograd needs them; ``exact``
    then only makes batch norm sum its statistics in Darknet's float order, which puts the
    loss within ~1e-6 of Darknet's instead of ~1e-4 (at about twice the cost per step).
    """

    def __init__(self, cfg, *, text: str | None = None, exact: bool = True, flavour: str | None = None,
                 memory_budget: int | str | None = None):
        super().__init__()
        if text is None:
            cfg = resolve_cfg(cfg)     # a bare name such as "yolov2-voc" is a shipped cfg
            self.cfg_path = str(cfg)
            self.cfg_text = cfgmod.read_cfg_text(cfg)
            sections = cfgmod.parse(self.cfg_text, self.cfg_path)
        else:
            self.cfg_path, self.cfg_text = str(cfg or "<string>"), text
            sections = cfgmod.parse(text, self.cfg_path)
        from .flavour import detect_flavour, mark_training_options
        #: "pjreddie" or "alexeyab": which Darknet's detection rules apply (pydarknet.flavour).
        self.flavour = detect_flavour(sections, flavour)
        for section in sections:
            mark_training_options(section)
        self.options = NetOptions.from_section(sections[0])
        self.width, self.height, self.channels = self.options.width, self.options.height, self.options.channels
        self.seen = 0
        self.header = (0, 2, 0)  # (major, minor, revision) of the last weights file read
        self.names: list[str] | None = None
        self.layers = nn.ModuleList()
        if len(sections) < 2:
            raise cfgmod.CfgError(f"{self.cfg_path}: no layers after [net]")
        self._budget = _budget_or_error(memory_budget)
        total, work = 4 * self.width * self.height * self.channels, 0
        self._check_budget(sections[0], None, total, "its input")
        for index, section in enumerate(sections[1:]):
            if section.kind == "net":
                raise section.error("a second [net] section is not allowed")
            layer = REGISTRY[section.kind](section, index)
            layer.flavour = self.flavour
            if hasattr(layer, "configure"):  # options that depend on the flavour and on [net] (recurrent)
                layer.configure(section, self.options)
            if hasattr(layer, "bind"):  # layers that use another layer's parameters (share_index=)
                layer.bind(self.layers)
            in_shapes = [self._source_shape(j) for j in layer.sources]
            # everything is sized from the shapes before build() allocates the parameters
            params = 4 * layer.param_count(in_shapes)
            self._check_budget(section, params, total + work + params, "its parameters")
            shape = layer.infer_shape(in_shapes)
            out, scratch = 4 * shape.numel, 4 * layer.work_count(in_shapes, shape)
            total += params + out
            work = max(work, scratch)
            self._check_budget(section, params + out + scratch, total + work,
                               "this layer (parameters, output and scratch space for one image)")
            layer.build(in_shapes)
            section.warn_unused()
            self.layers.append(layer)
        #: Bytes of parameters, activations of one image and the largest scratch space (an estimate).
        self.memory_estimate = total + work
        sections[0].warn_unused()
        self._plan()
        self.exact = exact
        self.backend = None  # an inference backend (pydarknet.backends) that forward uses when set

    def _check_budget(self, section, layer_bytes, total: int, what: str) -> None:
        """A CfgError when one layer (``layer_bytes``) or the network so far (``total``) is over budget."""
        whole = "the network up to here (parameters, one image's activations, the largest scratch space)"
        over = [(n, who) for n, who in ((layer_bytes, what), (total, whole)) if n is not None and n > self._budget]
        if over:
            n, who = over[0]
            raise section.error(f"{who} would need {format_size(n)} ({n} bytes of float32), over the memory "
                                f"budget of {format_size(self._budget)} (raise it with memory_budget= or "
                                f"PYDARKNET_MEMORY_BUDGET)")

    @property
    def exact(self) -> bool:
        """Follow Darknet's float arithmetic step by step (bit-exact, slow); see pydarknet.arith."""
        return self.arith.darknet_order

    @exact.setter
    def exact(self, value: bool) -> None:
        self.arith = arithmetic(bool(value))

    @property
    def arith(self) -> Arithmetic:
        """The network's arithmetic strategy (pydarknet.arith.DARKNET or FAST)."""
        return self._arith

    @arith.setter
    def arith(self, value: Arithmetic) -> None:
        self._arith = value
        for layer in self.layers:
            layer.strategy = value

    # --- wiring ---------------------------------------------------------------
    def _source_shape(self, j: int) -> Shape:
        return Shape(self.channels, self.height, self.width) if j < 0 else self.layers[j].out_shape

    def _plan(self) -> None:
        """Index of the last layer that reads each output, so that forward can free it early."""
        last = list(range(len(self.layers)))
        for layer in self.layers:
            for j in layer.sources:
                if j >= 0:
                    last[j] = max(last[j], layer.index)
        last[-1] = len(self.layers)
        self._last_use = last
        self._frozen = max((layer.index for layer in self.layers if layer.stopbackward), default=-1)

    def resize(self, width: int, height: int) -> None:
        """Change the input size (multi-scale training) and re-infer every layer's shape."""
        old = (self.width, self.height)
        self.width, self.height = int(width), int(height)
        try:
            for layer in self.layers:
                layer.reshape([self._source_shape(j) for j in layer.sources])
        except BuildError:
            self.width, self.height = old
            for layer in self.layers:
                layer.reshape([self._source_shape(j) for j in layer.sources])
            raise

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    @property
    def detection_layer(self) -> Layer | None:
        """The last detection head ([region], [yolo], [Gaussian_yolo], [detection]), or None."""
        heads = self.heads
        return heads[-1] if heads else None

    @property
    def heads(self) -> list[Layer]:
        """Every detection head, in layer order (Darknet gathers boxes from each)."""
        return [layer for layer in self.layers if layer.kind in HEAD_KINDS]

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of :attr:`heads` for the input ``x``."""
        keep = {layer.index for layer in self.heads}
        outputs = self._run(x, keep=False, also=keep)
        return [outputs[i] for i in sorted(keep)]

    # --- forward --------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected an N×{self.channels}×H×W tensor, got shape {tuple(x.shape)}")
        if (x.shape[2], x.shape[3]) != (self.height, self.width):
            raise ValueError(f"input is {x.shape[3]}x{x.shape[2]} but the network is {self.width}x{self.height}; "
                             f"letterbox the image to that size or call resize({x.shape[3]}, {x.shape[2]})")

    def _run(self, x: torch.Tensor, keep: bool, also=()):
        self._check_input(x)
        outputs: list[torch.Tensor | None] = []
        for i, layer in enumerate(self.layers):
            ins = [x if j < 0 else outputs[j] for j in layer.sources]
            out = layer(*ins)
            # Darknet's backward_network stops at the last layer with stopbackward=1: neither
            # it nor any layer before it gets a gradient (frozen, even when a route reads them).
            outputs.append(out.detach() if self.training and i <= self._frozen else out)
            if not keep:
                for j in layer.sources:
                    if j >= 0 and self._last_use[j] == i and j not in also:
                        outputs[j] = None
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend is not None and self.backend.usable(x):
            self._check_input(x)
            return self.backend(x)
        return self._run(x, keep=False)[-1]

    def reset_state(self) -> None:
        """Forget the hidden state of the recurrent layers ([rnn], [gru], [lstm], [crnn]), which
        otherwise carries over from one forward to the next as in Darknet."""
        for layer in self.layers:
            if hasattr(layer, "reset_state"):
                layer.reset_state()

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, in order (Darknet's ``l.output`` after each forward)."""
        return self._run(x, keep=True)

    # --- weights --------------------------------------------------------------
    def load_weights(self, path, cutoff: int | None = None, *, partial: bool = False,
                     allow_trailing: bool = False, allow_nonfinite: bool = False):
        """Read a Darknet ``.weights`` file (the first ``cutoff`` layers only, if given); it must fit
        this cfg exactly unless ``partial=True`` (a backbone file) — see :func:`pydarknet.weights.load_weights`."""
        from .weights import load_weights
        return load_weights(self, path, cutoff, partial=partial, allow_trailing=allow_trailing,
                            allow_nonfinite=allow_nonfinite)

    def save_weights(self, path, cutoff: int | None = None, *, header=None):
        """Write a Darknet ``.weights`` file, in the format of the file last read unless ``header`` says."""
        from .weights import save_weights
        return save_weights(self, path, cutoff, header=header)

    # --- description ----------------------------------------------------------
    def summary(self) -> str:
        lines = ["layer     filters    size              input                output"]
        lines += [f"{layer.index:5d} {layer.describe()}" for layer in self.layers]
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return f"cfg={self.cfg_path!r}, input={self.width}x{self.height}x{self.channels}"


def load_network(cfg, weights=None, *, names=None, engine: str = "auto", device=None,
                 flavour: str | None = None) -> Darknet:
    """Build a network, read its weights, and put it in inference mode.

    ``engine`` (see :mod:`pydarknet.backends`): ``"auto"`` (default: ONNX Runtime when installed,
    else plain PyTorch kernels; Darknet's detections up to ~1e-6 ties), ``"torch"``,
    ``"onnxruntime"`` or ``"exact"`` (Darknet's arithmetic bit for bit, a few times slower)."""
    from .backends import set_engine
    net = Darknet(cfg, exact=engine == "exact", flavour=flavour)
    if weights is not None:
        net.load_weights(weights)
    if names is not None:
        net.names = list(names)
    if device is not None:
        net.to(device)
    set_engine(net, engine)
    return net.eval()
