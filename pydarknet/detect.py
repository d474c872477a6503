"""Detection, end to end: picture -> letterbox -> network -> boxes -> NMS, as ``detector test``."""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import boxes as boxmod
from . import image as imagemod

__all__ = ["Detection", "detect", "detect_tensor"]


@dataclass
class Detection:
    """One (box, class) pair above the threshold; ``box`` = (x, y, w, h) centre and size
    relative to the original picture."""
    class_id: int
    name: str | None
    prob: float
    objectness: float
    box: tuple[float, float, float, float]
    det_index: int | None = None  # anchor*H*W + row*W + col of the box it belongs to

    def to_dict(self) -> dict:
        d = asdict(self)
        d["box"] = list(self.box)
        del d["det_index"]
        return d

    def darknet_line(self) -> str:
        """What Darknet prints: ``name: NN%`` (prob*100 in float, printed with %.0f)."""
        percent = float(np.float32(self.prob) * np.float32(100))
        return f"{self.name if self.name is not None else self.class_id}: {percent:.0f}%"


def _as_image(img) -> torch.Tensor:
    if isinstance(img, (str, os.PathLike)):
        return imagemod.load_image(img)
    if isinstance(img, np.ndarray):
        return imagemod.image_from_array(img)
    if isinstance(img, torch.Tensor) and img.dim() == 3:
        return img.to(torch.float32)
    raise TypeError("image must be a path, an HxWx3 uint8 RGB array or a (3,H,W) float tensor")


def detect_tensor(net, output: torch.Tensor, im_w: int, im_h: int, thresh: float = .5,
                  hier_thresh: float = .5, nms: float = .45) -> list[Detection]:
    """Detections from one image's network output (C×H×W), in Darknet's print order."""
    layer = net.detection_layer
    if layer is None or layer.kind != "region":
        raise ValueError(f"{net.cfg_path}: detection needs a [region] output layer")
    tree = getattr(layer, "tree", None)
    if tree is not None:
        # YOLO9000: one WordTree node per box (hierarchy_top_prediction), prob = objectness
        if tree.n != layer.classes:
            raise ValueError(f"{net.cfg_path}: classes={layer.classes} but the tree has {tree.n} nodes")
        dets = boxmod.decode_region_tree(output.detach().float().cpu(), layer.anchors, layer.num, tree,
                                         layer.coords, thresh, hier_thresh, im_w, im_h,
                                         net.width, net.height)
    else:
        dets = boxmod.decode_region(output.detach().float().cpu(), layer.anchors, layer.num, layer.classes,
                                    layer.coords, thresh, im_w, im_h, net.width, net.height)
    if nms:
        dets = boxmod.nms_sort(dets, layer.classes, nms)
    names = net.names
    found = []
    for row in boxmod.printed(dets, thresh):
        name = names[row.cls] if names and row.cls < len(names) else None
        found.append(Detection(row.cls, name, float(dets.probs[row.pos, row.cls]),
                               float(dets.objectness[row.pos]),
                               tuple(float(v) for v in dets.boxes[row.pos]), int(dets.index[row.pos])))
    return found


@torch.no_grad()
def detect(net, image, thresh: float = .5, hier_thresh: float = .5, nms: float = .45) -> list[Detection]:
    """Run ``net`` on one picture as ``./darknet detector test`` does.

    ``image`` is a path, an HxWx3 uint8 RGB array or a (3,H,W) float tensor (RGB, 0..1).
    Returns one :class:`Detection` per (box, class) with prob > thresh, in the order Darknet
    prints them.
    """
    img = _as_image(image)
    out = forward_letterboxed(net, img)
    with _one_thread():
        return detect_tensor(net, out, img.shape[2], img.shape[1], thresh, hier_thresh, nms)


def forward_letterboxed(net, img: torch.Tensor) -> torch.Tensor:
    """The network's output for one picture letterboxed to its input size (inference mode,
    on the network's device), as Darknet's ``detector test`` and ``classifier predict`` feed it."""
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with _one_thread():
        x = imagemod.letterbox(img, net.width, net.height)[None].to(device)
    was_training = net.training
    net.eval()
    try:
        return net(x)[0]
    finally:
        net.train(was_training)


@contextlib.contextmanager
def _one_thread():
    """Run the small tensor ops around the forward (letterbox, decoding, NMS: a few thousand
    values each) on one thread: splitting them over a thread pool only adds wake-ups, which cost
    tens of milliseconds per op on a busy machine."""
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)
