"""Detection, end to end: picture -> letterbox -> network -> boxes -> NMS, as ``detector test``."""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import boxes as boxmod
from . import image as imagemod

__all__ = ["Detection", "detect", "detect_tensor", "detect_heads", "network_input", "uses_letterbox"]


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

    def alexeyab_line(self, im_w: int, im_h: int) -> str:
        """AlexeyAB's ``-ext_output`` line: ``name: NN%\t(left_x: L   top_y: T   width: W   height: H)``,
        pixel values round()ed from the float box as draw_detections_v3 does."""
        x, y, w, h = (np.float32(v) for v in self.box)
        fw, fh = np.float32(im_w), np.float32(im_h)
        vals = tuple(_c_round(float(v)) for v in ((x - w / np.float32(2)) * fw, (y - h / np.float32(2)) * fh,
                                                  w * fw, h * fh))
        return (f"{self.darknet_line()}\t(left_x: {vals[0]:4.0f}   top_y: {vals[1]:4.0f}   "
                f"width: {vals[2]:4.0f}   height: {vals[3]:4.0f})")

    def printed_line(self, flavour: str, im_w: int, im_h: int) -> str:
        """The line the flavour's ``detector test`` prints (AlexeyAB: with ``-ext_output``)."""
        return self.alexeyab_line(im_w, im_h) if flavour == "alexeyab" else self.darknet_line()

    def darknet_line(self) -> str:
        """What Darknet prints: ``name: NN%`` (prob*100 in float, printed with %.0f)."""
        percent = float(np.float32(self.prob) * np.float32(100))
        return f"{self.name if self.name is not None else self.class_id}: {percent:.0f}%"


def _c_round(v: float) -> float:
    """C's round(): halves away from zero (Python's round() goes to even)."""
    return float(np.copysign(np.floor(abs(v) + .5), v))


def _as_image(img) -> torch.Tensor:
    if isinstance(img, (str, os.PathLike)):
        return imagemod.load_image(img)
    if isinstance(img, np.ndarray):
        return imagemod.image_from_array(img)
    if isinstance(img, torch.Tensor) and img.dim() == 3:
        return img.to(torch.float32)
    raise TypeError("image must be a path, an HxWx3 uint8 RGB array or a (3,H,W) float tensor")


def _head_detections(net, layer, output, im_w, im_h, thresh, hier_thresh, letterbox):
    """One head's detections (Darknet's get_*_detections), boxes relative to the picture."""
    out = output.detach().float().cpu()
    if layer.kind == "region":
        tree = getattr(layer, "tree", None)
        if tree is not None:
            # YOLO9000: one WordTree node per box (hierarchy_top_prediction), prob = objectness
            if tree.n != layer.classes:
                raise ValueError(f"{net.cfg_path}: classes={layer.classes} but the tree has {tree.n} nodes")
            return boxmod.decode_region_tree(out, layer.anchors, layer.num, tree, layer.coords, thresh,
                                             hier_thresh, im_w, im_h, net.width, net.height, letterbox)
        return boxmod.decode_region(out, layer.anchors, layer.num, layer.classes, layer.coords, thresh,
                                    im_w, im_h, net.width, net.height, letterbox)
    if layer.kind in ("yolo", "gaussian_yolo"):
        return boxmod.decode_yolo(out, layer.anchors, layer.mask, layer.classes, thresh, im_w, im_h,
                                  net.width, net.height, letterbox, new_coords=layer.new_coords,
                                  gaussian=layer.kind == "gaussian_yolo")
    if layer.kind == "detection":
        return layer.detections(out, thresh)
    raise ValueError(f"{net.cfg_path}: layer {layer.index} [{layer.header}] is not a detection head")


def uses_letterbox(net, flavour: str | None = None) -> bool:
    """pjreddie letterboxes the picture; AlexeyAB resizes it unless ``[net] letter_box=1``."""
    flavour = flavour or net.flavour
    if any(layer.kind == "detection" for layer in net.heads):
        return False  # YOLOv1's test program resizes, and its boxes are not corrected
    return flavour == "pjreddie" or bool(net.options.letter_box)


def detect_heads(net, outputs, im_w: int, im_h: int, thresh: float = .5, hier_thresh: float = .5,
                 nms: float = .45, flavour: str | None = None) -> list[Detection]:
    """Detections from one image's head outputs (one C×H×W tensor per :attr:`Darknet.heads`), in
    the order the cfg's Darknet prints them (``flavour`` overrides ``net.flavour``).

    The boxes of every head are gathered, then NMS runs with the last layer's rule: IoU
    (``do_nms_sort``), or for AlexeyAB's ``nms_kind=greedynms|diounms`` DIoU (``diounms_sort``)."""
    flavour = flavour or net.flavour
    heads = net.heads
    if not heads:
        raise ValueError(f"{net.cfg_path}: no detection layer ([region], [yolo], [Gaussian_yolo], [detection])")
    if len(outputs) != len(heads):
        raise ValueError(f"{net.cfg_path}: {len(heads)} heads but {len(outputs)} outputs")
    letterbox = uses_letterbox(net, flavour)
    dets = boxmod.concat_detections([_head_detections(net, layer, out, im_w, im_h, thresh, hier_thresh, letterbox)
                                     for layer, out in zip(heads, outputs)])
    last = heads[-1]
    if nms:
        kind = getattr(last, "nms_kind", "default") if flavour == "alexeyab" else "default"
        dets = boxmod.nms_sort(dets, last.classes, nms, kind if kind in ("greedynms", "diounms") else "default",
                               getattr(last, "beta_nms", .6))
    rows = boxmod.printed_alexeyab(dets, thresh) if flavour == "alexeyab" else boxmod.printed(dets, thresh)
    names = net.names
    found = []
    for row in rows:
        name = names[row.cls] if names and row.cls < len(names) else None
        found.append(Detection(row.cls, name, float(dets.probs[row.pos, row.cls]),
                               float(dets.objectness[row.pos]),
                               tuple(float(v) for v in dets.boxes[row.pos]), int(dets.index[row.pos])))
    return found


def detect_tensor(net, output: torch.Tensor, im_w: int, im_h: int, thresh: float = .5,
                  hier_thresh: float = .5, nms: float = .45, flavour: str | None = None) -> list[Detection]:
    """Detections from one image's output of a single-head network (C×H×W), in Darknet's print order."""
    return detect_heads(net, [output], im_w, im_h, thresh, hier_thresh, nms, flavour)


def network_input(net, img: torch.Tensor, flavour: str | None = None) -> torch.Tensor:
    """The picture as the cfg's Darknet feeds it: letterboxed (pjreddie, AlexeyAB letter_box=1) or resized."""
    if uses_letterbox(net, flavour):
        return imagemod.letterbox(img, net.width, net.height)
    return imagemod.resize(img, net.width, net.height)


@torch.no_grad()
def detect(net, image, thresh: float = .5, hier_thresh: float = .5, nms: float = .45,
           flavour: str | None = None) -> list[Detection]:
    """Run ``net`` on one picture as ``./darknet detector test`` does.

    ``image`` is a path, an HxWx3 uint8 RGB array or a (3,H,W) float tensor (RGB, 0..1).
    Returns one :class:`Detection` per (box, class) with prob > thresh, in the order the cfg's
    Darknet prints them.  ``flavour`` ("pjreddie" or "alexeyab") overrides ``net.flavour``,
    which decides the preprocessing, the NMS and the print order (see :mod:`pydarknet.flavour`).
    """
    img = _as_image(image)
    outs = forward_picture(net, img, flavour, heads=True)
    with _one_thread():
        return detect_heads(net, outs, img.shape[2], img.shape[1], thresh, hier_thresh, nms, flavour)


def forward_picture(net, img: torch.Tensor, flavour: str | None = None, heads: bool = False) -> list[torch.Tensor]:
    """The network's outputs for one picture fed as the cfg's Darknet feeds it (letterboxed, or
    resized for AlexeyAB without letter_box), in inference mode on the network's device: every
    detection head's output with ``heads``, else the last layer's (``classifier predict``)."""
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with _one_thread():
        x = network_input(net, img, flavour)[None].to(device)
    was_training = net.training
    if was_training:                # (walking every module to set a flag it has costs ~0.2 ms)
        net.eval()
    try:
        if heads and not (len(net.heads) == 1 and net.heads[0] is net.layers[-1]):
            return [o[0] for o in net.forward_heads(x)]
        return [net(x)[0]]          # net(x) runs the inference backend when one is attached
    finally:
        if was_training:
            net.train()


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
