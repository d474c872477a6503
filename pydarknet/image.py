"""Darknet-exact image pixels: loading, ``resize_image`` and ``letterbox_image``.

Images are float32 torch tensors in CHW layout, RGB, values in 0..1, as in
Darknet's ``image`` struct.  ``resize`` and ``letterbox`` reproduce Darknet's
float32 arithmetic step by step, so the network input matches Darknet's
bit for bit.  Both also accept extra leading (batch) dimensions.
"""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import torch

from . import kernels
from .imagefile import DecodeError, decode_image_bytes

__all__ = [
    "ImageError",
    "image_from_array",
    "load_image",
    "to_uint8",
    "resize",
    "letterbox_geometry",
    "letterbox",
]


class ImageError(OSError):
    """An image file is missing or cannot be decoded: ``ImageError(errno, reason, path)``,
    printed as ``<path>: <reason>`` (the path once, the reason always)."""

    def __str__(self) -> str:
        if self.filename is not None and self.strerror:
            return f"{os.fsdecode(self.filename)}: {self.strerror}"
        return super().__str__()


# Darknet divides in double and stores a float; a table makes that exact and cheap.
_U8_TO_FLOAT = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)

def image_from_array(pixels: np.ndarray) -> torch.Tensor:
    """Turn uint8 RGB pixels (HxW, HxWx1, HxWx3 or HxWx4) into a (3,H,W) float32 image.

    Grey is replicated to three channels and alpha is dropped, as stb_image does
    when Darknet asks it for 3 channels.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4 pixels, got shape {pixels.shape}")
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    chw = _U8_TO_FLOAT[pixels[:, :, :3].transpose(2, 0, 1)]
    return torch.from_numpy(np.ascontiguousarray(chw))


def load_image(path: str | os.PathLike, decoder: str | None = None) -> torch.Tensor:
    """Read an image file as Darknet's ``load_image_color(path, 0, 0)`` would: (3,H,W) float32 RGB.

    ``decoder="stb"`` (the default, see ``imagefile.set_decoder``) gives Darknet's
    pixels bit for bit: JPEGs are decoded as stb_image decodes them, and a file
    stb_image would reject is an ``ImageError`` with its reason.
    ``decoder="opencv"`` uses OpenCV's libjpeg (no first-use compile, more formats);
    its JPEG pixels differ from Darknet's by a few levels.
    """
    path = os.fspath(path)
    try:
        # a FIFO or device would block or never end: only regular files are read
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageError(errno.EINVAL, "not a regular file" if not os.path.isdir(path) else "is a directory",
                             path)
        with open(path, "rb") as f:
            data = f.read()
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(e.errno, e.strerror or str(e), path) from None
    try:
        rgb = decode_image_bytes(data, decoder)
    except DecodeError as e:
        raise ImageError(errno.EINVAL, f"cannot decode: {e}" if data else "empty file", path) from None
    return image_from_array(rgb)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Convert a (C,H,W) image to HxWxC uint8, as Darknet's ``save_image``: truncate ``255*f``.

    Values are clamped to 0..1 first (NaN becomes 0).  Truncation is lossless for
    images that came from ``image_from_array``.
    """
    if img.dim() != 3:
        raise ValueError(f"expected a (C,H,W) image, got shape {tuple(img.shape)}")
    f = torch.nan_to_num(img.detach().to(torch.float32).cpu(), nan=0.0).clamp(0.0, 1.0)
    u8 = (f * 255).to(torch.uint8)  # float->uint8 conversion truncates, like C's cast
    return np.ascontiguousarray(u8.permute(1, 2, 0).numpy())


def _positions(n_in: int, n_out: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source index and fraction of output positions 0..count-1 when n_in is resized to n_out.

    As in C: the scale ``(float)(n_in-1)/(n_out-1)`` is a float32, the position is
    the float32 product ``i*scale``, the index is its truncation and the fraction
    is the float32 difference.
    """
    scale = torch.tensor(np.float32(n_in - 1) / np.float32(n_out - 1))
    pos = torch.arange(count, dtype=torch.float32) * scale
    idx = pos.to(torch.int64)  # C's (int) cast truncates toward zero
    return idx, pos - idx.to(torch.float32)


def _resize_columns(img: torch.Tensor, w: int) -> torch.Tensor:
    in_w = img.shape[-1]
    last = img[..., -1:]
    # Darknet copies the source's last column into the last output column
    # rather than interpolating it; a 1-pixel-wide source or target is all copies.
    if in_w == 1 or w == 1:
        return last.expand(*img.shape[:-1], w).clone()
    ix, dx = _positions(in_w, w, w - 1)
    left = img.index_select(-1, ix)
    right = img.index_select(-1, ix + 1)
    # Separate float32 products and sum (Darknet's -O2 build has no FMA).
    inner = (1 - dx) * left + dx * right
    return torch.cat([inner, last], dim=-1)


def _resize_rows(part: torch.Tensor, h: int) -> torch.Tensor:
    in_h = part.shape[-2]
    # A 1-pixel-tall source: scale 0, every row is 1*row[0].  A 1-row target
    # divides by zero in Darknet (undefined); take row 0, the limit of the formula.
    if in_h == 1 or h == 1:
        return part[..., :1, :].expand(*part.shape[:-2], h, part.shape[-1]).clone()
    iy, dy = _positions(in_h, h, h)
    dy = dy[:, None]
    out = (1 - dy) * part.index_select(-2, iy)
    # Darknet skips the dy*row[iy+1] term on the last output row.  There the
    # position (h-1)*scale can land just below in_h-1, giving iy = in_h-2 and
    # dy close to 1, so the last row comes out nearly black (e.g. 512 -> 42 rows).
    below = dy[:-1] * part.index_select(-2, iy[:-1] + 1)
    return torch.cat([out[..., :-1, :] + below, out[..., -1:, :]], dim=-2)


def resize(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Darknet's ``resize_image``: bilinear, columns first, then rows, all in float32.

    ``img`` is (..., H, W); the result is (..., h, w) float32.
    """
    if w < 1 or h < 1:
        raise ValueError(f"target size must be positive, got {w}x{h}")
    if img.dim() < 2 or img.shape[-1] < 1 or img.shape[-2] < 1:
        raise ValueError(f"expected a non-empty (..., H, W) image, got shape {tuple(img.shape)}")
    if not torch.is_floating_point(img):
        raise TypeError(f"expected a float image, got {img.dtype}")
    img = img.to(torch.float32)
    if (kernels.AVAILABLE and img.dim() == 3 and img.device.type == "cpu" and min(w, h) > 1
            and min(img.shape[-2:]) > 1):
        return kernels.resize(img, w, h, _positions)  # the same arithmetic in one parallel pass each
    return _resize_rows(_resize_columns(img, w), h)


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def letterbox_geometry(im_w: int, im_h: int, w: int, h: int) -> tuple[int, int, int, int]:
    """Size and offset of the image inside Darknet's letterbox: ``(new_w, new_h, dx, dy)``.

    The side to fit is chosen by comparing float32 ratios; the other side and the
    offsets use C integer arithmetic, exactly as ``letterbox_image``.
    """
    if np.float32(w) / np.float32(im_w) < np.float32(h) / np.float32(im_h):
        new_w, new_h = w, _c_div(im_h * w, im_w)
    else:
        new_w, new_h = _c_div(im_w * h, im_h), h
    return new_w, new_h, _c_div(w - new_w, 2), _c_div(h - new_h, 2)


def letterbox(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Darknet's ``letterbox_image``: resize keeping the aspect ratio, centre on 0.5 grey.

    ``img`` is (..., C, H, W); the result is (..., C, h, w) float32.
    """
    im_h, im_w = img.shape[-2:]
    new_w, new_h, dx, dy = letterbox_geometry(im_w, im_h, w, h)
    out = torch.full((*img.shape[:-2], h, w), 0.5, dtype=torch.float32, device=img.device)
    # A very thin image can round to 0 rows or columns: Darknet leaves only grey.
    if new_w < 1 or new_h < 1:
        return out
    resized = resize(img, new_w, new_h)
    # Paste with clipping, as Darknet's set_pixel ignores out-of-range writes.
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + new_w, w), min(dy + new_h, h)
    if x1 > x0 and y1 > y0:
        out[..., y0:y1, x0:x1] = resized[..., y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return out


def image_size(path) -> tuple[int, int]:
    """(width, height) of a picture file, without converting its pixels."""
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError(f"{path}: cannot read the image to find its size")
    return int(img.shape[1]), int(img.shape[0])
