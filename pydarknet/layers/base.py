"""What every layer shares: its cfg section, its wiring, its shape inference, its weights order."""
from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn

from ..arith import FAST, Arithmetic
from ..cfg import CfgError, Section

REGISTRY: dict[str, type["Layer"]] = {}


class BuildError(CfgError):
    """The layer graph is inconsistent; the message names the layer index and cfg line."""


class Shape(NamedTuple):
    """Output shape of one image (channels, height, width), as Darknet's out_c/out_h/out_w."""
    c: int
    h: int
    w: int

    @property
    def numel(self) -> int:
        return self.c * self.h * self.w


def register(*kinds: str):
    """Class decorator: build this layer for the cfg sections of these canonical kinds."""
    def wrap(cls):
        for kind in kinds:
            REGISTRY[kind] = cls
        cls.kind = kinds[0]
        return cls
    return wrap


class Layer(nn.Module):
    """A cfg section built as a module.

    The network calls, in order: ``__init__(section, index)`` (read options),
    ``sources`` (which earlier outputs feed it; -1 is the network input),
    ``build(in_shapes)`` once (create parameters, return the output shape) and
    ``reshape(in_shapes)`` on every resize.  ``forward`` gets the source outputs
    as positional tensors.
    """

    kind: ClassVar[str] = "?"
    #: The network's arithmetic (pydarknet.arith: DARKNET or FAST), set by the network.
    strategy: Arithmetic = FAST
    #: The cfg's Darknet, "pjreddie" or "alexeyab" (pydarknet.flavour), set by the network.
    flavour: str = "pjreddie"

    @property
    def arith(self) -> Arithmetic:
        """The arithmetic of this forward: the strategy's inference one, or in ``train()`` mode
        its training counterpart (plain kernels, since autograd needs them)."""
        return self.strategy.training() if self.training else self.strategy

    def __init__(self, section: Section, index: int):
        super().__init__()
        self.index = index
        self.line = section.line
        self.path = section.path
        self.header = section.header
        self.out_shape: Shape | None = None
        self.in_shapes: list[Shape] = []
        # Options Darknet reads for every layer (parser.c, after the layer's own parse).
        self.dontload = section.get_bool("dontload")
        self.dontsave = section.get_bool("dontsave")
        self.dontloadscales = section.get_bool("dontloadscales")
        self.stopbackward = section.get_bool("stopbackward")
        self.onlyforward = section.get_bool("onlyforward")
        self.learning_rate_scale = section.get_float("learning_rate", 1., min=0)
        self.smooth = section.get_float("smooth", 0., min=0)
        section.get_int("truth", 0)
        if section.get_int("numload", 0):
            raise section.error("numload= is not supported by pydarknet", "numload")

    @property
    def sources(self) -> list[int]:
        return [self.index - 1]

    def error(self, message: str) -> BuildError:
        return BuildError(f"{self.path}:{self.line}: layer {self.index} [{self.header}]: {message}")

    def param_count(self, in_shapes: list[Shape]) -> int:
        """How many numbers ``build`` will allocate for these inputs (checked against the
        memory budget before they are allocated)."""
        return 0

    def work_count(self, in_shapes: list[Shape], out: Shape) -> int:
        """Numbers of scratch memory a forward needs beyond its output (Darknet's workspace)."""
        return 0

    def build(self, in_shapes: list[Shape]) -> Shape:
        return self.reshape(in_shapes)

    def reshape(self, in_shapes: list[Shape]) -> Shape:
        self.in_shapes = list(in_shapes)
        self.out_shape = self.infer_shape(in_shapes)
        return self.out_shape

    def infer_shape(self, in_shapes: list[Shape]) -> Shape:
        """The output shape for these inputs; also called before ``build`` (nothing allocated yet)."""
        return in_shapes[0]

    def darknet_params(self) -> list[torch.Tensor]:
        """Tensors this layer stores in a .weights file, in file order (empty for most)."""
        return []

    def describe(self) -> str:
        """One line in the spirit of Darknet's layer table."""
        i, o = self.in_shapes[0] if self.in_shapes else None, self.out_shape
        shape = (f"{i.w:4d} x{i.h:4d} x{i.c:4d}   ->  {o.w:4d} x{o.h:4d} x{o.c:4d}"
                 if i and o else "")
        return f"{self.kind:<14}{shape}"

    def extra_repr(self) -> str:
        return f"index={self.index}, out={tuple(self.out_shape) if self.out_shape else None}"
