"""Layer modules, one per Darknet section kind, registered by section name."""
from . import (attention, avgpool, connected, convolutional, cost, dropout, maxpool, region,  # noqa: F401
               reorg, reorg3d, route, shortcut, simple, softmax, upsample, yolo)
from .base import REGISTRY, BuildError, Layer, Shape, register

__all__ = ["REGISTRY", "BuildError", "Layer", "Shape", "register"]
