"""Layer modules, one per Darknet section kind, registered by section name."""
from . import (attention, avgpool, connected, convolutional, cost, detection, dropout, local,  # noqa: F401
               maxpool, recurrent, region, reorg, reorg3d, route, shortcut, simple, softmax, upsample, yolo)
from .base import REGISTRY, BuildError, Layer, Shape, register

__all__ = ["REGISTRY", "BuildError", "Layer", "Shape", "register"]
