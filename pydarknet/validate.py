"""Running a detector over a validation list, as Darknet's ``detector valid`` and ``detector
recall`` do, writing the comp4 result files that :mod:`pydarknet.metrics` scores."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import boxes as boxmod
from .comp4 import format_comp4
from .data import DataConfig, DataError
from .image import ImageError, letterbox, load_image, resize
from .progress import progress
from .voc import image_id

__all__ = ["nms_obj", "run_valid", "validation_set"]


def nms_obj(dets, nms_thresh: float):
    """Darknet's ``do_nms_obj`` survivors: a boolean mask over ``dets`` (a
    :class:`pydarknet.boxes.Detections`).  Live detections (objectness != 0) by objectness,
    highest first; each survivor removes every later one overlapping it by more than
    ``nms_thresh`` (Darknet's float IoU)."""
    live = torch.nonzero(dets.objectness != 0).flatten()
    keep = torch.zeros(len(dets), dtype=torch.bool)
    if live.numel() == 0:
        return keep
    order = live[torch.sort(dets.objectness[live], descending=True, stable=True).indices]
    b = dets.boxes[order]
    over = (boxmod.box_iou(b.unsqueeze(1), b.unsqueeze(0)) > torch.tensor(nms_thresh, dtype=torch.float32)).numpy()
    alive = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if alive[i]:
            alive[i + 1:] &= ~over[i, i + 1:]
    keep[order[torch.from_numpy(alive)]] = True
    return keep


def _comp4_lines(dets, classes: int, ident: str, im_w: int, im_h: int) -> list[list[str]]:
    """Darknet's print_detector_detections for one image: lines per class file, det order.

    Corners are computed in double from the float box (``x - w/2. + 1``), stored as float,
    clamped to [1, w] x [1, h], and printed with %f."""
    boxes = dets.boxes.numpy().astype(np.float64)
    probs = dets.probs.numpy()
    x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    f32 = np.float32
    xmin = (x - w / 2.0 + 1).astype(f32)
    xmax = (x + w / 2.0 + 1).astype(f32)
    ymin = (y - h / 2.0 + 1).astype(f32)
    ymax = (y + h / 2.0 + 1).astype(f32)
    xmin = np.where(xmin < 1, f32(1), xmin)
    ymin = np.where(ymin < 1, f32(1), ymin)
    xmax = np.where(xmax > im_w, f32(im_w), xmax)
    ymax = np.where(ymax > im_h, f32(im_h), ymax)
    out: list[list[str]] = [[] for _ in range(classes)]
    rows, cols = np.nonzero(probs[:, :classes])
    for i, j in zip(rows.tolist(), cols.tolist()):
        out[j].append(format_comp4(ident, float(probs[i, j]), float(xmin[i]), float(ymin[i]),
                                   float(xmax[i]), float(ymax[i])))
    return out


def run_valid(net, paths: Sequence[str], out_dir, names: Sequence[str], thresh: float = 0.005,
              nms: float = 0.45, prefix: str = "comp4_det_test_", recall: bool = True, batch: int = 8,
              show_progress: bool | None = None, report=None) -> dict:
    """Darknet's ``detector valid`` (VOC mode) over ``paths``: each picture letterboxed to the
    network, boxes with class prob > ``thresh`` in image pixels, per-class NMS (``do_nms_sort``),
    one ``<out_dir>/<prefix><name>.txt`` per class with ``id prob xmin ymin xmax ymax`` lines
    (1-based pixels, clamped to the image; id = the file name up to its first dot).

    With ``recall``, also the proposals of Darknet's ``detector recall`` in
    ``<out_dir>/recall_proposals.txt`` (``id objectness x y w h``, relative): the picture
    resized (not letterboxed) to the network, objectness > .001, ``do_nms_obj`` at .4.
    Returns a summary (images, failures, seconds, images_per_second, files).
    """
    report = report or (lambda line: print(line, file=sys.stderr))
    layer = net.detection_layer
    if layer is None or layer.kind != "region":
        raise DataError(f"{net.cfg_path}: valid needs a [region] output layer")
    if getattr(layer, "tree", None) is not None:
        raise DataError("WordTree (YOLO9000) validation is not supported")
    classes = layer.classes
    if len(names) < classes:
        raise DataError(f"{classes} classes in the network but only {len(names)} names")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    net.eval()
    files = [open(out_dir / f"{prefix}{names[j]}.txt", "w") for j in range(classes)]
    prop = open(out_dir / "recall_proposals.txt", "w") if recall else None
    failed, done = 0, 0
    start = time.perf_counter()

    def run(images: list, sized: list) -> list:
        with torch.no_grad():
            return list(net(torch.stack(sized).to(device)).float().cpu())

    try:
        chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
        for chunk in progress(chunks, desc="valid", enabled=show_progress):
            imgs, ids = [], []
            for p in chunk:
                try:
                    imgs.append(load_image(p))
                    ids.append(image_id(p))
                except ImageError as e:
                    report(f"error: cannot read image {e}")
                    failed += 1
            if not imgs:
                continue
            outs = run(imgs, [letterbox(im, net.width, net.height) for im in imgs])
            for im, ident, out in zip(imgs, ids, outs):
                im_w, im_h = im.shape[2], im.shape[1]
                dets = boxmod.decode_region(out, layer.anchors, layer.num, classes, layer.coords, thresh,
                                            im_w, im_h, net.width, net.height, letterbox=True, relative=False)
                if nms:
                    dets = boxmod.nms_sort(dets, classes, nms)
                for j, lines in enumerate(_comp4_lines(dets, classes, ident, im_w, im_h)):
                    files[j].writelines(lines)
            if prop is not None:
                outs = run(imgs, [resize(im, net.width, net.height) for im in imgs])
                for ident, out in zip(ids, outs):
                    dets = boxmod.decode_region(out, layer.anchors, layer.num, classes, layer.coords, 0.001,
                                                net.width, net.height, net.width, net.height,
                                                letterbox=False, relative=True)
                    keep = nms_obj(dets, 0.4)
                    for i in torch.nonzero(keep).flatten().tolist():
                        x, y, w, h = dets.boxes[i].tolist()
                        prop.write(f"{ident} {float(dets.objectness[i]):.9g} {x:.9g} {y:.9g} {w:.9g} {h:.9g}\n")
            done += len(imgs)
    finally:
        for f in files:
            f.close()
        if prop is not None:
            prop.close()
    seconds = time.perf_counter() - start
    return {"images": done, "failed": failed, "seconds": seconds,
            "images_per_second": done / seconds if seconds > 0 else 0.0,
            "thresh": thresh, "nms": nms, "prefix": prefix, "results": str(out_dir),
            "recall_proposals": str(out_dir / "recall_proposals.txt") if recall else None}


def validation_set(data_file: Path):
    """A .data file (DataConfig: its options, paths resolved as Darknet and beside the file),
    its class names and its validation pictures."""
    data = DataConfig.from_file(data_file)
    if "valid" not in data.options or "names" not in data.options:
        raise DataError(f"{data_file}: needs valid= and names=")
    return data, data.class_names(), data.valid_list()
