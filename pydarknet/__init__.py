"""pydarknet: Darknet (YOLOv2, YOLO9000) in Python and PyTorch, numerically compatible with the C original."""
from .cfg import CfgError, CfgWarning
from .classify import Prediction, classify
from .data import DataError
from .detect import Detection, detect
from .image import ImageError, letterbox, load_image, resize
from .layers import BuildError
from .network import Darknet, NetOptions, load_network
from .train import Trainer, TrainingError
from .weights import WeightsError

__all__ = ["Darknet", "NetOptions", "load_network", "detect", "Detection", "classify", "Prediction",
           "load_image", "resize", "letterbox", "Trainer", "TrainingError", "CfgError", "CfgWarning",
           "BuildError", "WeightsError", "ImageError", "DataError"]
__version__ = "0.2.0"
