"""pydarknet: Darknet (YOLOv2, YOLO9000) in Python and PyTorch, numerically compatible with the C original."""
from .cfg import CfgError, CfgWarning
from .layers import BuildError
from .network import Darknet, NetOptions, load_network
from .weights import WeightsError

__all__ = ["Darknet", "NetOptions", "load_network", "CfgError", "CfgWarning", "BuildError", "WeightsError"]
__version__ = "0.1.0"
