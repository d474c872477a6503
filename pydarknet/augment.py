"""Darknet's training-time augmentation for detection (``load_data_detection``).

What one training sample goes through in Darknet, and here:

1. **Jitter crop.**  With ``dw = jitter*orig_w`` and ``dh = jitter*orig_h`` the new
   aspect ratio is ``(orig_w + U(-dw, dw)) / (orig_h + U(-dh, dh))``.  The image is
   fitted into the w x h network input at that ratio (scale 1: the longer
   relative side fills the input, as in pjreddie/darknet, where the
   ``scale = U(.25, 2)`` line is commented out), then shifted by
   ``dx = U(0, w - nw)``, ``dy = U(0, h - nh)``.  ``place_image`` samples it
   bilinearly onto a canvas filled with 0.5 grey; pixels past the source's
   right and bottom edges read as 0, and the size and offset are truncated to
   integers, both as in Darknet.
2. **Colour distortion** (``random_distort_image``): hue shift ``U(-hue, hue)``,
   saturation and exposure factors ``rand_scale(s)`` = ``U(1, s)`` or its inverse
   with equal odds, applied in Darknet's HSV space, then clipped to 0..1.
3. **Horizontal flip** with probability 1/2.
4. **Boxes** (``fill_truth_detection``): shuffled (``randomize_boxes``), moved
   and scaled with the float crop geometry, mirrored on a flip, clipped to
   0..1 (``correct_boxes``), cut to ``max_boxes`` and those narrower or
   shorter than .001 dropped, then written as Darknet's region truth rows
   ``[x, y, w, h, class]``, zero-padded.

Every step is Darknet's float32 arithmetic, so given the same random draws the
pixels and truths are Darknet's bit for bit.  The draws come from a
``numpy.random.Generator`` rather than C's ``rand()``, so a run is not
Darknet's sequence of samples, only the same distributions.

Images are (3,H,W) float32 RGB tensors in 0..1 (``pydarknet.image``); label
rows are ``[class, x, y, w, h]`` as in Darknet's label files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .image import letterbox, letterbox_geometry, resize

__all__ = [
    "rand_uniform",
    "rand_scale",
    "place_image",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "distort_image",
    "flip_image",
    "Placement",
    "draw_placement",
    "fit_placement",
    "correct_boxes",
    "randomize_boxes",
    "fill_truth",
    "augment_detection",
    "fit_detection",
]

F32 = np.float32


# --- Darknet's random numbers --------------------------------------------------------

def rand_uniform(rng: np.random.Generator, lo: float, hi: float) -> np.float32:
    """Darknet's ``rand_uniform``: uniform on [lo, hi] (bounds swapped if reversed), float32."""
    lo, hi = F32(lo), F32(hi)
    if hi < lo:
        lo, hi = hi, lo
    return F32(F32(rng.random()) * (hi - lo)) + lo


def rand_scale(rng: np.random.Generator, s: float) -> np.float32:
    """Darknet's ``rand_scale``: ``U(1, s)``, inverted with probability 1/2."""
    scale = rand_uniform(rng, 1, s)
    if rng.integers(2):
        return scale
    return F32(1.0 / float(scale))


# --- pixels ---------------------------------------------------------------------------

def _sample_positions(n_out: int, n_in: int, start: int, stop: int):
    """Source index and fraction of outputs start..stop-1 for ``place_image``: ``(i/n_out)*n_in``."""
    pos = (np.arange(start, stop, dtype=F32) / F32(n_out)) * F32(n_in)
    idx = np.floor(pos).astype(np.int64)
    frac = pos - idx.astype(F32)
    return np.clip(idx, 0, n_in), np.clip(idx + 1, 0, n_in), frac


def place_image(img: torch.Tensor, w: int, h: int, dx: int, dy: int, canvas: torch.Tensor) -> torch.Tensor:
    """Darknet's ``place_image``: draw ``img`` stretched to w x h at (dx, dy) into ``canvas``.

    Output pixel (x, y) samples the source at ``((float)x/w*im_w, (float)y/h*im_h)``
    bilinearly, with pixels outside the source reading as 0 (``get_pixel_extend``),
    in Darknet's float32 order of operations.  Writes outside the canvas are
    dropped (``set_pixel``).  ``canvas`` (C,H,W) is changed in place and returned.
    """
    w, h, dx, dy = int(w), int(h), int(dx), int(dy)
    cw, ch = canvas.shape[-1], canvas.shape[-2]
    x0, x1 = max(0, -dx), min(w, cw - dx)
    y0, y1 = max(0, -dy), min(h, ch - dy)
    if x1 <= x0 or y1 <= y0:
        return canvas
    im_h, im_w = img.shape[-2:]
    ix0, ix1, fx = _sample_positions(w, im_w, x0, x1)
    iy0, iy1, fy = _sample_positions(h, im_h, y0, y1)
    # One zero row and column past the edges stand for get_pixel_extend's 0.
    padded = torch.nn.functional.pad(img.to(torch.float32), (0, 1, 0, 1))

    rows0 = padded.index_select(1, torch.from_numpy(iy0))
    rows1 = padded.index_select(1, torch.from_numpy(iy1))
    cx0, cx1 = torch.from_numpy(ix0), torch.from_numpy(ix1)
    gx, gy = 1 - fx, 1 - fy  # float32 (1-dx), (1-dy)

    def weight(a, b):
        return torch.from_numpy(np.multiply.outer(a, b))

    # (1-dy)*(1-dx)*p00 + dy*(1-dx)*p01 + (1-dy)*dx*p10 + dy*dx*p11, summed left to right.
    val = weight(gy, gx) * rows0.index_select(2, cx0)
    val = val + weight(fy, gx) * rows1.index_select(2, cx0)
    val = val + weight(gy, fx) * rows0.index_select(2, cx1)
    val = val + weight(fy, fx) * rows1.index_select(2, cx1)
    canvas[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx] = val
    return canvas


def rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    """Darknet's ``rgb_to_hsv`` on a (3,H,W) float32 image: H, S, V each in 0..1 for 0..1 input.

    Grey pixels (no chroma) get hue 0 (Darknet computes 0/0 there, but its
    saturation is 0 so the hue is never used).
    """
    r, g, b = img[0], img[1], img[2]
    mx = torch.maximum(torch.maximum(r, g), b)
    mn = torch.minimum(torch.minimum(r, g), b)
    delta = mx - mn
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    h = torch.where(r == mx, (g - b) / safe,
                    torch.where(g == mx, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(h < 0, h + 6, h) / 6
    grey = delta == 0
    h = torch.where(grey | (mx == 0), torch.zeros_like(h), h)
    s = torch.where(mx == 0, torch.zeros_like(mx), delta / torch.where(mx == 0, torch.ones_like(mx), mx))
    return torch.stack([h, s, mx])


_HSV_SECTORS = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]])


def hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    """Darknet's ``hsv_to_rgb`` on a (3,H,W) float32 image (hue 1.0 falls in the last sector, as there)."""
    h, s, v = 6 * img[0], img[1], img[2]
    index = torch.floor(h)
    f = h - index
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    # Sector k of floor(6h) takes (r, g, b) from (v, q, p, t) by this table; any other index
    # (6 for hue 1.0, or a negative one) falls to Darknet's last branch, sector 5.
    sector = torch.where((index >= 0) & (index <= 4), index, torch.full_like(index, 5)).to(torch.int64)
    pick = _HSV_SECTORS[sector].permute(2, 0, 1)
    rgb = torch.gather(torch.stack([v, q, p, t]), 0, pick)
    return torch.where(s == 0, v, rgb)


def distort_image(img: torch.Tensor, hue: float, sat: float, val: float) -> torch.Tensor:
    """Darknet's ``distort_image``: scale S and V, rotate H (wrapping once), back to RGB, clip 0..1."""
    hsv = rgb_to_hsv(img.to(torch.float32))
    h = hsv[0] + F32(hue).item()
    h = torch.where(h > 1, h - 1, h)
    h = torch.where(h < 0, h + 1, h)
    hsv = torch.stack([h, hsv[1] * F32(sat).item(), hsv[2] * F32(val).item()])
    return hsv_to_rgb(hsv).clamp_(0, 1)


def flip_image(img: torch.Tensor) -> torch.Tensor:
    """Darknet's ``flip_image``: mirror left-right."""
    return torch.flip(img, dims=[-1])


# --- geometry -------------------------------------------------------------------------

@dataclass(frozen=True)
class Placement:
    """Where a sample's image goes in the w x h input, and its colour and flip draws.

    ``nw, nh, dx, dy`` are Darknet's float values: the boxes use them as they are,
    the pixels their integer truncations (``place_image`` takes ints).
    """

    w: int
    h: int
    nw: float
    nh: float
    dx: float
    dy: float
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: bool = False
    distort: bool = False  # run random_distort_image's HSV round trip (Darknet always does)

    @property
    def pixels(self) -> tuple[int, int, int, int]:
        """``(w, h, dx, dy)`` as ``place_image`` receives them: C float-to-int truncation."""
        return int(self.nw), int(self.nh), int(self.dx), int(self.dy)

    @property
    def box_transform(self) -> tuple[np.float32, np.float32, np.float32, np.float32]:
        """``(dx, dy, sx, sy)`` as ``fill_truth_detection`` gets them: ``-dx/w, -dy/h, nw/w, nh/h``."""
        w, h = F32(self.w), F32(self.h)
        return (-F32(self.dx) / w, -F32(self.dy) / h, F32(self.nw) / w, F32(self.nh) / h)


def _fit(new_ar: np.float32, w: int, h: int) -> tuple[np.float32, np.float32]:
    if new_ar < 1:
        nh = F32(h)
        return nh * new_ar, nh
    nw = F32(w)
    return nw, nw / new_ar


def draw_placement(orig_w: int, orig_h: int, w: int, h: int, jitter: float, hue: float,
                   saturation: float, exposure: float, rng: np.random.Generator) -> Placement:
    """The random draws of one ``load_data_detection`` sample, in Darknet's order.

    ``saturation`` and ``exposure`` of 0 mean 1, as ``load_thread`` makes them.
    """
    saturation = saturation or 1
    exposure = exposure or 1
    dw = F32(jitter) * F32(orig_w)
    dh = F32(jitter) * F32(orig_h)
    num = F32(orig_w) + rand_uniform(rng, -dw, dw)
    den = F32(orig_h) + rand_uniform(rng, -dh, dh)
    nw, nh = _fit(num / den, w, h)
    dx = rand_uniform(rng, 0, F32(w) - nw)
    dy = rand_uniform(rng, 0, F32(h) - nh)
    dhue = rand_uniform(rng, -hue, hue)
    dsat = rand_scale(rng, saturation)
    dexp = rand_scale(rng, exposure)
    flip = bool(rng.integers(2))
    return Placement(w, h, float(nw), float(nh), float(dx), float(dy), float(dhue), float(dsat),
                     float(dexp), flip, distort=True)


def fit_placement(orig_w: int, orig_h: int, w: int, h: int, fit: str = "letterbox") -> Placement:
    """Deterministic placement, no colour change and no flip.

    ``fit="letterbox"``: Darknet's ``letterbox_image`` (what validation and
    detection feed the network); ``fit="resize"``: ``resize_image`` to w x h,
    aspect ratio not kept.
    """
    if fit == "letterbox":
        nw, nh, dx, dy = letterbox_geometry(orig_w, orig_h, w, h)
    elif fit == "resize":
        nw, nh, dx, dy = w, h, 0, 0
    else:
        raise ValueError(f"fit must be 'letterbox' or 'resize', got {fit!r}")
    return Placement(w, h, float(nw), float(nh), float(dx), float(dy))


def correct_boxes(labels: np.ndarray, dx: float, dy: float, sx: float, sy: float, flip: bool) -> np.ndarray:
    """Darknet's ``correct_boxes`` on (K,5) ``[class, x, y, w, h]`` rows, in float32.

    Edges are scaled by (sx, sy) and shifted by (-dx, -dy), mirrored on a flip and
    clipped to 0..1; the result is re-centred.  A row with x == 0 and y == 0
    (YOLO9000's class-only marker, ``data.class_only_mask``) becomes Darknet's
    ``x = y = w = h = 999999``, untouched by the crop and the flip; ``fill_truth``
    keeps it (its w and h pass the .001 filter) for the region layer's class-only branch.
    """
    labels = np.asarray(labels, dtype=F32).reshape(-1, 5)
    out = labels.copy()
    if not len(labels):
        return out
    x, y, w, h = (labels[:, i] for i in range(1, 5))
    dx, dy, sx, sy = F32(dx), F32(dy), F32(sx), F32(sy)
    left = (x - w / F32(2)) * sx - dx
    right = (x + w / F32(2)) * sx - dx
    top = (y - h / F32(2)) * sy - dy
    bottom = (y + h / F32(2)) * sy - dy
    if flip:
        left, right = F32(1) - right, F32(1) - left
    left, right, top, bottom = (np.clip(v, F32(0), F32(1)) for v in (left, right, top, bottom))
    out[:, 1] = (left + right) / F32(2)
    out[:, 2] = (top + bottom) / F32(2)
    out[:, 3] = np.clip(right - left, F32(0), F32(1))
    out[:, 4] = np.clip(bottom - top, F32(0), F32(1))
    empty = (x == 0) & (y == 0)
    out[empty, 1:] = F32(999999)
    return out


def randomize_boxes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darknet's ``randomize_boxes``: for each i, swap row i with a uniformly chosen row."""
    labels = np.array(labels, dtype=F32).reshape(-1, 5)
    n = len(labels)
    for i in range(n):
        j = int(rng.integers(n))
        labels[[i, j]] = labels[[j, i]]
    return labels


def fill_truth(labels: np.ndarray, max_boxes: int = 30) -> torch.Tensor:
    """Darknet's region truth from corrected (K,5) ``[class, x, y, w, h]`` rows.

    As ``fill_truth_detection``: only the first ``max_boxes`` rows are looked at,
    those with w or h below .001 are dropped, and the rest become
    ``[x, y, w, h, class]`` rows of a zero-padded (max_boxes, 5) float32 tensor.
    """
    labels = np.asarray(labels, dtype=F32).reshape(-1, 5)[:max_boxes]
    keep = ~((labels[:, 3].astype(np.float64) < .001) | (labels[:, 4].astype(np.float64) < .001))
    kept = labels[keep]
    truth = np.zeros((max_boxes, 5), dtype=F32)
    truth[:len(kept), :4] = kept[:, 1:]
    truth[:len(kept), 4] = kept[:, 0]
    return torch.from_numpy(truth)


def _apply(img: torch.Tensor, labels: np.ndarray, p: Placement, max_boxes: int,
           rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    canvas = torch.full((img.shape[0], p.h, p.w), 0.5, dtype=torch.float32)
    place_image(img, *p.pixels, canvas)
    if p.distort:
        canvas = distort_image(canvas, p.hue, p.saturation, p.exposure)
    if p.flip:
        canvas = flip_image(canvas)
    labels = np.asarray(labels, dtype=F32).reshape(-1, 5)
    if rng is not None:
        labels = randomize_boxes(labels, rng)
    return canvas, fill_truth(correct_boxes(labels, *p.box_transform, p.flip), max_boxes)


def augment_detection(img: torch.Tensor, labels: np.ndarray, w: int, h: int, *, jitter: float = .2,
                      hue: float = 0, saturation: float = 1, exposure: float = 1, max_boxes: int = 30,
                      rng: np.random.Generator | None = None,
                      placement: Placement | None = None) -> tuple[torch.Tensor, torch.Tensor, Placement]:
    """One ``load_data_detection`` sample: ``(image (3,h,w), truth (max_boxes,5), placement)``.

    ``img`` is the (3,H,W) source image and ``labels`` its (K,5) ``[class, x, y, w, h]``
    rows.  ``placement`` replays given draws instead of drawing new ones (the box
    shuffle still uses ``rng``).
    """
    rng = rng if rng is not None else np.random.default_rng()
    if placement is None:
        placement = draw_placement(img.shape[-1], img.shape[-2], w, h, jitter, hue, saturation,
                                   exposure, rng)
    image, truth = _apply(img, labels, placement, max_boxes, rng)
    return image, truth, placement


def fit_detection(img: torch.Tensor, labels: np.ndarray, w: int, h: int, *, fit: str = "letterbox",
                  max_boxes: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic path: ``letterbox`` (or ``resize``) the image, move the boxes with it.

    The pixels are exactly ``pydarknet.image.letterbox`` / ``resize``; boxes keep
    their file order and go through ``correct_boxes`` and ``fill_truth``.
    """
    p = fit_placement(img.shape[-1], img.shape[-2], w, h, fit)
    image = letterbox(img, w, h) if fit == "letterbox" else resize(img, w, h)
    truth = fill_truth(correct_boxes(labels, *p.box_transform, False), max_boxes)
    return image, truth
