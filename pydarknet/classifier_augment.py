"""Darknet's classification augmentation (``load_image_augment_paths``, ``center=0``).

Per picture, in Darknet's draw order: ``random_augment_args`` (aspect = ``rand_scale(aspect)``,
crop side r = ``rand_int(min, max)``, angle ``U(-angle, angle)`` degrees, shifts dx, dy),
``rotate_crop_image`` (the picture scaled so its shorter side (aspect-corrected) is r, rotated
about its centre, a w×h window at the shift; bilinear, black outside), a flip with
probability 1/2, then ``random_distort_image`` (hue ``U(-hue, hue)``, saturation and exposure
``rand_scale``).  ``min``/``max`` are ``[net]``'s ``min_ratio``/``max_ratio`` (default
``min_crop``/``max_crop`` over the width) times the width.  Darknet computes ``dy`` from the
*width* (``(im.h*scale - w)/2``); so do we.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .augment import distort_image, flip_image, rand_scale, rand_uniform

__all__ = ["CropArgs", "crop_range", "random_augment_args", "rotate_crop", "augment_classification"]

F32 = np.float32


@dataclass(frozen=True)
class CropArgs:
    rad: float
    scale: float
    w: int
    h: int
    dx: float
    dy: float
    aspect: float


def crop_range(options, width: int) -> tuple[int, int]:
    """``train_classifier``'s ``args.min``/``args.max``: ``(int)(ratio * w)``."""
    return int(F32(options.min_ratio) * F32(width)), int(F32(options.max_ratio) * F32(width))


def rand_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Darknet's ``rand_int``: uniform on lo..hi inclusive (bounds swapped if reversed)."""
    lo, hi = min(lo, hi), max(lo, hi)
    return int(rng.integers(lo, hi + 1))


def random_augment_args(rng: np.random.Generator, im_w: int, im_h: int, angle: float, aspect: float,
                        low: int, high: int, w: int, h: int) -> CropArgs:
    """Darknet's ``random_augment_args`` (float32 values, its order of draws)."""
    aspect = rand_scale(rng, aspect)
    r = rand_int(rng, low, high)
    short = im_h if im_h < F32(im_w) * aspect else int(F32(im_w) * aspect)
    scale = F32(F32(r) / F32(short))
    rad = F32(float(rand_uniform(rng, -angle, angle)) * 2 * math.pi / 360.)
    dx = F32((float(F32(F32(im_w) * scale)) / float(aspect) - w) / 2.)
    dy = F32((float(F32(F32(im_h) * scale)) - w) / 2.)
    dx, dy = rand_uniform(rng, -dx, dx), rand_uniform(rng, -dy, dy)
    return CropArgs(float(rad), float(scale), w, h, float(dx), float(dy), float(aspect))


def rotate_crop(img: torch.Tensor, a: CropArgs) -> torch.Tensor:
    """Darknet's ``rotate_crop_image``: source coordinates in double, stored as float, then
    ``bilinear_interpolate`` with 0 outside the picture."""
    c, im_h, im_w = img.shape
    x = torch.arange(a.w, dtype=torch.float64)[None, :]
    y = torch.arange(a.h, dtype=torch.float64)[:, None]
    s = float(F32(a.scale))
    u = (x - a.w / 2.) / s * a.aspect + a.dx / s * a.aspect
    v = (y - a.h / 2.) / s + a.dy / s
    cos, sin = math.cos(a.rad), math.sin(a.rad)
    rx = (cos * u - sin * v + im_w / 2.).to(torch.float32)
    ry = (sin * u + cos * v + im_h / 2.).to(torch.float32)
    ix, iy = torch.floor(rx), torch.floor(ry)
    fx, fy = rx - ix, ry - iy
    ix, iy = ix.to(torch.int64), iy.to(torch.int64)
    flat = img.to(torch.float32).reshape(c, -1)

    def pixel(px, py):
        inside = (px >= 0) & (px < im_w) & (py >= 0) & (py < im_h)
        idx = (py.clamp(0, im_h - 1) * im_w + px.clamp(0, im_w - 1)).reshape(-1)
        return flat[:, idx].reshape(c, a.h, a.w) * inside

    return ((1 - fy) * (1 - fx) * pixel(ix, iy) + fy * (1 - fx) * pixel(ix, iy + 1)
            + (1 - fy) * fx * pixel(ix + 1, iy) + fy * fx * pixel(ix + 1, iy + 1))


def augment_classification(img: torch.Tensor, w: int, h: int, rng: np.random.Generator, *, low: int, high: int,
                           angle: float = 0., aspect: float = 1., hue: float = 0., saturation: float = 1.,
                           exposure: float = 1.) -> torch.Tensor:
    """One training picture as ``load_image_augment_paths`` makes it (crop, flip, colour)."""
    crop = rotate_crop(img, random_augment_args(rng, img.shape[2], img.shape[1], angle, aspect, low, high, w, h))
    if rng.integers(2):
        crop = flip_image(crop)
    dhue = rand_uniform(rng, -hue, hue)
    dsat, dexp = rand_scale(rng, saturation), rand_scale(rng, exposure)
    return distort_image(crop, dhue, dsat, dexp)
