"""Layer modules, one per Darknet section kind, registered by section name."""
from . import (avgpool, connected, convolutional, cost, dropout, maxpool, region,  # noqa: F401
               reorg, route, shortcut, softmax, upsample, yolo)
from .base import REGISTRY, BuildError, Layer, Shape, register

__all__ = ["REGISTRY", "BuildError", "Layer", "Shape", "register"]
