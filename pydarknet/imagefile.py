"""Picture files to RGB bytes, as Darknet's ``stbi_load(path, &w, &h, &c, 3)`` gives them.

Two decoders:

* ``"stb"`` (the default): Darknet's pixels.  JPEGs go through
  ``stb_jpeg`` (stb_image's own decoder, bit for bit).  PNG, BMP, GIF and
  binary PNM are decoded by OpenCV, which gives stb's bytes for them (16-bit
  samples keep their high byte, alpha is dropped without compositing, palettes
  and grey are expanded), except where stb differs: a GIF's transparent pixels
  are black in stb's first frame, and stb rejects PNM files with a maximum
  value above 255.  TGA needs Pillow.  A file stb would reject is an error.
* ``"opencv"``: ``cv2.imdecode`` (libjpeg-turbo): no first-use compile, more
  formats (TIFF, WebP, ...), about the same decoding speed, and JPEG pixels that
  differ from Darknet's by a few levels (see the README).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

__all__ = ["DECODERS", "DecodeError", "decode_image_bytes", "get_decoder", "set_decoder"]

DECODERS = ("stb", "opencv")
_decoder = os.environ.get("PYDARKNET_DECODER", "stb")

# Darknet's stb_image loader ignores EXIF orientation; OpenCV applies it by default.
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


class DecodeError(ValueError):
    """The bytes are not a picture the decoder reads; the message says why."""


def set_decoder(name: str) -> None:
    """Choose the decoder ``load_image`` uses when not told: ``"stb"`` or ``"opencv"``.

    The environment variable ``PYDARKNET_DECODER`` sets the starting value, so
    data-loader worker processes inherit it.
    """
    global _decoder
    _decoder = _check(name)


def get_decoder() -> str:
    return _check(_decoder)


def _check(name: str) -> str:
    if name not in DECODERS:
        raise ValueError(f"unknown image decoder {name!r} (expected one of {', '.join(DECODERS)})")
    return name


def decode_image_bytes(data: bytes, decoder: str | None = None) -> np.ndarray:
    """A picture file's bytes as HxWx3 uint8 RGB; ``DecodeError`` if it cannot be read."""
    decoder = _check(decoder or _decoder)
    if decoder == "opencv":
        return _opencv(data)
    from . import stb_jpeg  # numba: imported on the first decode, not with pydarknet

    if stb_jpeg.is_jpeg(data[:64]):
        try:
            return stb_jpeg.decode_jpeg(data)
        except stb_jpeg.JpegError as e:
            raise DecodeError(f"stb_image rejects this JPEG: {e}") from None
    kind = _stb_kind(data)
    if kind in ("png", "bmp"):
        return _opencv(data)
    if kind == "pnm":
        return _pnm(data)
    if kind == "gif":
        return _gif(data)
    if kind in ("psd", "pic", "hdr"):
        raise DecodeError(f"a {kind.upper()} file: stb_image reads it, pydarknet does not decode it "
                          "as stb does; use decoder='opencv' or convert it to PNG")
    return _tga(data)


def _stb_kind(data: bytes) -> str:
    """Which of stb's loaders takes the file, tested in stb's order (TGA last, by elimination)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"GIF8" and data[4:6] in (b"7a", b"9a"):
        return "gif"
    if data[:4] == b"8BPS":
        return "psd"
    if data[:4] == b"\x53\x80\xf6\x34" and data[88:92] == b"PICT":
        return "pic"
    if data[:2] in (b"P5", b"P6"):
        return "pnm"
    if data.startswith(b"#?RADIANCE\n") or data.startswith(b"#?RGBE\n"):
        return "hdr"
    return "tga"


def _opencv(data: bytes) -> np.ndarray:
    bgr = None
    if data:
        try:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_FLAGS)
        except cv2.error:
            bgr = None
    if bgr is None:
        raise DecodeError("not a picture OpenCV can decode")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _pnm(data: bytes) -> np.ndarray:
    """Binary PGM/PPM: stb reads only maximum values up to 255."""
    fields = data[2:64].split(maxsplit=3)
    try:
        maxval = int(fields[2])
    except (IndexError, ValueError):
        raise DecodeError("bad PNM header") from None
    if maxval > 255:
        raise DecodeError("max value > 255 (stb_image reads 8-bit PNM only)")
    return _opencv(data)


def _pillow(data: bytes, what: str):
    try:
        from PIL import Image
    except ImportError:
        raise DecodeError(f"{what} files need Pillow (pip install pillow), "
                          "or stb_image does not read this file at all") from None
    import io

    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception as e:  # Pillow raises many kinds for a bad file
        raise DecodeError(f"not a {what} file Pillow can decode ({e})") from None
    return im


def _gif(data: bytes) -> np.ndarray:
    """stb's first GIF frame: palette colours, transparent pixels black (stb's zeroed canvas)."""
    im = _pillow(data, "GIF")
    if im.mode != "P":
        return np.asarray(im.convert("RGB"))
    idx = np.asarray(im)
    pal = np.array(im.getpalette() or [0] * 768, np.uint8).reshape(-1, 3)
    pal = np.concatenate([pal, np.zeros((256 - len(pal), 3), np.uint8)]) if len(pal) < 256 else pal
    rgb = pal[idx]
    t = im.info.get("transparency")
    if isinstance(t, int):
        rgb[idx == t] = 0
    return rgb


def _tga(data: bytes) -> np.ndarray:
    """TGA (stb tests it last): Pillow's pixels, alpha dropped, grey and palette expanded."""
    unknown = DecodeError("unknown image type (stb_image reads JPEG, PNG, BMP, GIF, PSD, PIC, PNM, "
                          "HDR and TGA; decoder='opencv' reads more)")
    try:
        im = _pillow(data, "TGA")
    except DecodeError as e:
        if "Pillow can decode" in str(e):  # not a TGA either: stb's "unknown image type"
            raise unknown from None
        raise
    if im.format != "TGA":
        raise unknown
    return np.asarray(im.convert("RGB"))
