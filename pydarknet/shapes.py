"""Synthetic detection scenes: a few shape classes on varied backgrounds, in VOC layout.

The offline demo model is trained on these, because real photographs may not ship with the
project.  Each scene has a random background (a colour gradient, stripes or blobs, plus
noise), 1-4 objects (filled circles, squares and triangles, each with a random colour,
size, aspect and rotation, and a darker outline), and mild blur.  ``write_dataset`` writes
``JPEGImages/``, ``Annotations/`` (VOC XML), ``labels/`` (Darknet's ``class x y w h``),
``ImageSets/Main/{train,val}.txt``, list files with absolute paths, ``.names`` and ``.data``.
"""
from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from .progress import progress

__all__ = ["CLASSES", "make_scene", "write_dataset"]

CLASSES = ("circle", "square", "triangle")


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    if kind == 1:  # stripes
        period = rng.uniform(8, 40)
        s = (np.sin((xx * np.cos(angle + 1) + yy * np.sin(angle + 1)) * 2 * math.pi / period) > 0)
        img = img * (1 - .25 * s[..., None])
    elif kind == 2:  # soft blobs
        for _ in range(rng.integers(3, 8)):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(.1, .4) * min(w, h)
            g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            img = img * (1 - .5 * g[..., None]) + .5 * g[..., None] * rng.uniform(0, 255, 3)
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return img


def _polygon(cls: str, cx: float, cy: float, rw: float, rh: float, rot: float) -> np.ndarray:
    if cls == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
    else:  # triangle
        pts = np.array([[0, -1], [1, 1], [-1, 1]], np.float32)
    pts = pts * [rw, rh]
    c, s = math.cos(rot), math.sin(rot)
    pts = pts @ np.array([[c, s], [-s, c]], np.float32)
    return pts + [cx, cy]


def make_scene(rng: np.random.Generator, w: int = 320, h: int = 240, max_objects: int = 4):
    """One scene: (HxWx3 uint8 RGB pixels, [(class_index, x1, y1, x2, y2)] pixel boxes)."""
    img = _background(rng, w, h)
    boxes: list[tuple[int, float, float, float, float]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            cls = int(rng.integers(len(CLASSES)))
            size = rng.uniform(.12, .45) * min(w, h)
            aspect = rng.uniform(.7, 1.4)
            rw, rh = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
            rot = rng.uniform(-.35, .35) if CLASSES[cls] != "circle" else 0.
            cx, cy = rng.uniform(rw, w - rw), rng.uniform(rh, h - rh)
            mask = np.zeros((h, w), np.uint8)
            if CLASSES[cls] == "circle":
                cv2.ellipse(mask, (int(round(cx * 16)), int(round(cy * 16))),
                            (int(round(rw * 16)), int(round(rh * 16))), 0, 0, 360, 255, -1, cv2.LINE_AA, 4)
            else:
                pts = _polygon(CLASSES[cls], cx, cy, rw, rh, rot)
                cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
            ys, xs = np.nonzero(mask > 127)
            if len(xs) < 20:
                continue
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            if any(_iou(box, b[1:]) > .2 for b in boxes):
                continue
            colour = rng.uniform(0, 255, 3)
            alpha = (mask.astype(np.float32) / 255)[..., None]
            img = img * (1 - alpha) + colour * alpha
            edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32) / 255
            img = img * (1 - .6 * edge[..., None]) + .6 * edge[..., None] * colour * .4
            boxes.append((cls, *box))
            break
    if rng.random() < .5:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(.3, 1.))
    return np.clip(img, 0, 255).astype(np.uint8), boxes


def _iou(a, b) -> float:
    ix = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.


def _voc_xml(name: str, w: int, h: int, boxes) -> str:
    objs = "".join(
        f"  <object>\n    <name>{escape(CLASSES[c])}</name>\n    <difficult>0</difficult>\n"
        f"    <bndbox><xmin>{int(x1) + 1}</xmin><ymin>{int(y1) + 1}</ymin>"
        f"<xmax>{int(x2)}</xmax><ymax>{int(y2)}</ymax></bndbox>\n  </object>\n"
        for c, x1, y1, x2, y2 in boxes)
    return (f"<annotation>\n  <folder>shapes</folder>\n  <filename>{name}.jpg</filename>\n"
            f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>\n{objs}</annotation>\n")


def write_dataset(root, n_train: int = 1000, n_val: int = 100, seed: int = 0,
                  sizes=((320, 240), (240, 320), (300, 300), (400, 300)), show_progress: bool | None = None) -> Path:
    """Write a VOC-layout shapes dataset under ``root``; returns the path of its ``.data`` file."""
    root = Path(root).resolve()
    for sub in ("JPEGImages", "Annotations", "labels", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sets = {"train": [], "val": []}
    total = n_train + n_val
    for i in progress(range(total), desc="scenes", enabled=show_progress):
        split = "train" if i < n_train else "val"
        name = f"{split}_{i:06d}"
        w, h = sizes[int(rng.integers(len(sizes)))]
        pixels, boxes = make_scene(rng, w, h)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        (root / "Annotations" / f"{name}.xml").write_text(_voc_xml(name, w, h, boxes))
        lines = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                 for c, x1, y1, x2, y2 in boxes]
        (root / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        sets[split].append(name)
    for split, names in sets.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
        (root / f"{split}.txt").write_text("".join(f"{root / 'JPEGImages' / n}.jpg\n" for n in names))
    (root / "shapes.names").write_text("\n".join(CLASSES) + "\n")
    data = root / "shapes.data"
    data.write_text(f"classes = {len(CLASSES)}\ntrain = {root / 'train.txt'}\nvalid = {root / 'val.txt'}\n"
                    f"names = {root / 'shapes.names'}\nbackup = {root / 'backup'}\n")
    return data
