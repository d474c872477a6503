"""Annotated pictures in Darknet's style: class colours, box widths and labels."""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["class_color", "draw_detections"]

_COLORS = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def _get_color(c: int, x: int, classes: int) -> float:
    ratio = np.float32(x) / np.float32(classes) * np.float32(5)
    i, j = math.floor(ratio), math.ceil(ratio)
    ratio -= i
    return float((1 - ratio) * _COLORS[i][c] + ratio * _COLORS[j][c])


def class_color(class_id: int, classes: int) -> tuple[int, int, int]:
    """Darknet's colour for a class, as 8-bit RGB."""
    offset = class_id * 123457 % max(classes, 1)
    return tuple(int(255 * _get_color(c, offset, classes)) for c in (2, 1, 0))


def draw_detections(rgb: np.ndarray, detections, classes: int) -> np.ndarray:
    """Draw boxes and labels on an HxWx3 uint8 RGB picture (a new array is returned).

    As Darknet, one box per detection with every class above the threshold in its label,
    line width ``0.006·height``, coloured by the first class.
    """
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    width = max(int(h * .006), 1)
    groups: dict[int, list] = {}
    for d in detections:
        groups.setdefault(d.det_index if d.det_index is not None else id(d), []).append(d)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(h * .03 / 22, .35)
    for dets in groups.values():
        first = dets[0]
        label = ", ".join(d.name if d.name is not None else str(d.class_id) for d in dets)
        color = class_color(first.class_id, classes)
        x, y, bw, bh = first.box
        left, right = max(int((x - bw / 2) * w), 0), min(int((x + bw / 2) * w), w - 1)
        top, bot = max(int((y - bh / 2) * h), 0), min(int((y + bh / 2) * h), h - 1)
        cv2.rectangle(out, (left, top), (right, bot), color, width)
        (tw, th), base = cv2.getTextSize(label, font, scale, 1)
        y0 = max(top - th - base - 2, 0) if top - th - base - 2 >= 0 else top
        cv2.rectangle(out, (left, y0), (left + tw + 4, y0 + th + base + 2), color, -1)
        lum = .299 * color[0] + .587 * color[1] + .114 * color[2]
        cv2.putText(out, label, (left + 2, y0 + th + 1), font, scale, (0, 0, 0) if lum > 128 else (255, 255, 255),
                    1, cv2.LINE_AA)
    return out
