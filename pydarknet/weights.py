"""Darknet's binary ``.weights`` format: header, then each layer's floats in file order.

Header: int32 major, minor, revision, then ``seen`` as uint64 when
major*10+minor >= 2 (and both < 1000), else int32.  Files with major or minor
above 1000 store connected-layer matrices transposed.  Reading then writing a
file gives the same bytes; unlike Darknet, a short file, a file for another
cfg and trailing bytes are reported instead of read as garbage.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Header", "WeightsError", "load_weights", "save_weights", "weights_bytes", "read_header",
           "atomic_write"]


class WeightsError(ValueError):
    """A weights file that does not fit the network; the message says expected and found sizes."""


@dataclass(frozen=True)
class Header:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_64bit(self) -> bool:
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def transposed(self) -> bool:
        """Old files store connected weights as (inputs, outputs)."""
        return self.major > 1000 or self.minor > 1000

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.seen_is_64bit else 4)

    def to_bytes(self) -> bytes:
        head = np.array([self.major, self.minor, self.revision], "<i4").tobytes()
        seen = np.array([self.seen], "<u8" if self.seen_is_64bit else "<i4")
        return head + seen.tobytes()


def read_header(buf: bytes, path="<bytes>") -> Header:
    if len(buf) < 16:
        raise WeightsError(f"{path}: {len(buf)} bytes is too short for a Darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(buf, "<i4", 3))
    h = Header(major, minor, revision)
    if h.seen_is_64bit:
        if len(buf) < 20:
            raise WeightsError(f"{path}: {len(buf)} bytes is too short for a version {major}.{minor} header")
        seen = int(np.frombuffer(buf, "<u8", 1, 12)[0])
    else:
        seen = int(np.frombuffer(buf, "<i4", 1, 12)[0])
    return Header(major, minor, revision, seen)


def _layer_blobs(net, cutoff, loading: bool):
    """(layer, [tensors]) for each layer that stores data, in file order."""
    n = len(net.layers) if cutoff is None else min(int(cutoff), len(net.layers))
    for layer in list(net.layers)[:n]:
        if (layer.dontload if loading else layer.dontsave):
            continue
        params = layer.darknet_params()
        if loading and layer.dontloadscales and getattr(layer, "batch_normalize", False):
            params = [p for p in params if p is not layer.scales and p is not layer.rolling_mean
                      and p is not layer.rolling_variance]
        if params:
            yield layer, params


def _file_view(layer, tensor, header: Header):
    """Shape of a tensor as stored in the file (connected weights may be transposed)."""
    if header.transposed and layer.kind == "connected" and tensor is layer.weight:
        return lambda flat: flat.reshape(tensor.shape[1], tensor.shape[0]).T, lambda t: t.T
    return lambda flat: flat.reshape(tensor.shape), lambda t: t


def expected_size(net, cutoff=None, header: Header = Header()) -> int:
    return header.nbytes + 4 * sum(p.numel() for _, ps in _layer_blobs(net, cutoff, True) for p in ps)


def _what_it_is(size: int, net) -> str:
    """'; this is <the published model of that size>' or '; its size fits <cfg>', or ''."""
    from .published import describe_size  # lazy: published imports network, which imports us
    what = describe_size(size, getattr(net, "cfg_path", None))
    return f"; {what}" if what else ""


def load_weights(net, path, cutoff: int | None = None) -> Header:
    """Fill ``net``'s parameters from a Darknet weights file; sets ``net.seen`` and ``net.header``."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    header = read_header(buf, path)
    need = expected_size(net, cutoff, header)
    data = np.frombuffer(buf, "<f4", (len(buf) - header.nbytes) // 4, header.nbytes)
    offset = 0
    with torch.no_grad():
        for layer, params in _layer_blobs(net, cutoff, True):
            size = sum(p.numel() for p in params)
            if offset == data.size and len(buf) == header.nbytes + 4 * offset and offset:
                # The file ends exactly at a layer boundary: a partial file (darknet partial).
                warnings.warn(f"{path}: holds weights for the layers before layer {layer.index} only "
                              f"({len(buf)} of {need} bytes); the remaining layers keep their "
                              f"initialisation (a partial file such as darknet19_448.conv.23)", stacklevel=3)
                break
            if offset + size > data.size:
                raise WeightsError(
                    f"{path}: file is too short for {net.cfg_path}: expected {need} bytes, found {len(buf)} "
                    f"(ran out in layer {layer.index} [{layer.header}], which needs {4 * size} bytes at "
                    f"byte {header.nbytes + 4 * offset}){_what_it_is(len(buf), net)}")
            for p in params:
                from_file, _ = _file_view(layer, p, header)
                block = torch.from_numpy(from_file(data[offset:offset + p.numel()]).copy())
                p.copy_(block.to(p.dtype))
                offset += p.numel()
            var = getattr(layer, "rolling_variance", None)
            if var is not None and any(v is var for v in params) and not bool((var >= 0).all()):
                raise WeightsError(
                    f"{path}: layer {layer.index} [{layer.header}] reads a negative batch-norm variance: "
                    f"this file is not for {net.cfg_path} (expected {need} bytes, found {len(buf)})"
                    f"{_what_it_is(len(buf), net)}")
    used = header.nbytes + 4 * offset
    if used < len(buf) and cutoff is None:
        what = _what_it_is(len(buf), net)
        if what:  # the whole file of another model: its last layers read garbage
            raise WeightsError(f"{path}: {len(buf)} bytes does not fit {net.cfg_path} (expected {need}){what}")
        warnings.warn(f"{path}: {len(buf) - used} trailing bytes after the last layer "
                      f"(expected {need} bytes for {net.cfg_path}, found {len(buf)}); they were ignored",
                      stacklevel=3)
    net.seen = header.seen
    net.header = (header.major, header.minor, header.revision)
    return header


def weights_bytes(net, cutoff: int | None = None, header: Header | None = None) -> bytes:
    if header is None:
        header = Header(*net.header, seen=int(net.seen))
    parts = [header.to_bytes()]
    for layer, params in _layer_blobs(net, cutoff, False):
        for p in params:
            _, to_file = _file_view(layer, p, header)
            parts.append(to_file(p.detach()).float().cpu().contiguous().numpy().astype("<f4").tobytes())
    return b"".join(parts)


def save_weights(net, path, cutoff: int | None = None, *, header: Header | str | None = None) -> None:
    """Write ``net`` as a Darknet weights file, atomically (temp file + rename).

    ``header=None`` keeps the format of the file last loaded (Darknet's own 0.2.0 for a
    fresh network); ``header="current"`` forces 0.2.0 with a 64-bit ``seen``.
    """
    if header == "current":
        header = Header(0, 2, 0, int(net.seen))
    atomic_write(path, weights_bytes(net, cutoff, header))


def _remove_stale_temporaries(path: Path, age: float = 3600.) -> None:
    """Temporary files of ``path`` left by a writer that was killed (older than ``age`` seconds,
    so that a concurrent writer's file is never touched)."""
    now = time.time()
    for stale in path.parent.glob(path.name + ".*.tmp"):
        try:
            if now - stale.stat().st_mtime > age:
                stale.unlink()
        except OSError:
            pass


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``:
    readers (and a crash) see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        _remove_stale_temporaries(path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
