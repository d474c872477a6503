"""Darknet's binary ``.weights`` format: header, then each layer's floats in file order.

Header: int32 major, minor, revision, then ``seen`` as uint64 when
major*10+minor >= 2 (and both < 1000), else int32.  Files with major or minor
above 1000 store connected-layer matrices transposed.  Reading then writing a
file gives the same bytes; unlike Darknet, a short file, a file for another
cfg, trailing bytes, NaN/Inf values and impossible headers are errors instead of
garbage (see :func:`load_weights` for the opt-ins).
"""
from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write

__all__ = ["Header", "WeightsError", "load_weights", "save_weights", "weights_bytes", "read_header",
           "check_header", "layer_boundaries", "atomic_write"]


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


def _connected_weights(layer) -> list:
    """Connected-layer matrices (a [connected] layer's, a recurrent layer's sub-layers')."""
    if layer.kind == "connected":
        return [layer.weight]
    return layer.connected_weights() if hasattr(layer, "connected_weights") else []


def _file_view(layer, tensor, header: Header):
    """Shape of a tensor as stored in the file (connected weights may be transposed)."""
    if header.transposed and any(tensor is w for w in _connected_weights(layer)):
        return lambda flat: flat.reshape(tensor.shape[1], tensor.shape[0]).T, lambda t: t.T
    return lambda flat: flat.reshape(tensor.shape), lambda t: t


def expected_size(net, cutoff=None, header: Header = Header()) -> int:
    return header.nbytes + 4 * sum(p.numel() for _, ps in _layer_blobs(net, cutoff, True) for p in ps)


def _what_it_is(size: int, net) -> str:
    """'; this is <the published model of that size>' or '; its size fits <cfg>', or ''."""
    from .published import describe_size  # lazy: published imports network, which imports us
    what = describe_size(size, getattr(net, "cfg_path", None))
    return f"; {what}" if what else ""


#: Versions Darknet writes: 0.1.x (32-bit ``seen``) and 0.2.x (64-bit); old files that store
#: connected layers transposed mark it with a major or minor version above 1000.
KNOWN_MAJOR = {0, 1000, 1001, 1002}
KNOWN_MINOR = {0, 1, 2, 1000, 1001, 1002}
#: Largest credible ``seen`` (images trained on): 2^48 is ~10^6 passes over ImageNet-22k.
MAX_SEEN = 1 << 48


def check_header(header: Header, path) -> None:
    """A WeightsError for a header no Darknet writes (not a weights file, or a corrupted one)."""
    h = header
    if h.major not in KNOWN_MAJOR or h.minor not in KNOWN_MINOR or not 0 <= h.revision < 1000:
        raise WeightsError(f"{path}: version {h.major}.{h.minor}.{h.revision} is not one Darknet writes "
                           f"(0.1.x or 0.2.x): not a Darknet weights file, or a corrupted header")
    if not 0 <= h.seen < MAX_SEEN:
        raise WeightsError(f"{path}: the header says {h.seen} images were seen (must lie in 0..2^48): "
                           f"a corrupted header")


def _open_regular(path: Path):
    """The open file and its size; a folder, FIFO or device is a WeightsError (checked without blocking)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise WeightsError(f"{path}: is {'a directory' if stat.S_ISDIR(st.st_mode) else 'not a regular file'}, "
                               f"not a weights file")
        f = open(path, "rb")
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    return f, st.st_size


def layer_boundaries(net, header: Header) -> list[int]:
    """``sizes[k]``: bytes of a file holding the weights of the first k layers (k = 0..len(layers))."""
    stored = {id(layer): sum(p.numel() for p in ps) for layer, ps in _layer_blobs(net, None, True)}
    sizes = [header.nbytes]
    for layer in net.layers:
        sizes.append(sizes[-1] + 4 * stored.get(id(layer), 0))
    return sizes


def _size_mismatch(net, path, size: int, sizes: list[int], count: int, partial: bool) -> WeightsError:
    """Why a file of ``size`` bytes cannot fill the first ``count`` layers of ``net``, naming what
    the file is when its size is that of a published model or of another shipped cfg."""
    error = _size_mismatch_reason(net, path, size, sizes, count, partial)
    return WeightsError(f"{error}{_what_it_is(size, net)}")


def _size_mismatch_reason(net, path, size: int, sizes: list[int], count: int, partial: bool) -> str:
    need = sizes[count]
    if size > sizes[-1]:
        return (f"{path}: the file is not for {net.cfg_path}: {size - sizes[-1]} bytes more than "
                f"it needs (expected {need} bytes, found {size})")
    if size in sizes:
        k = max(i for i, b in enumerate(sizes) if b == size)
        if k == 0:
            return (f"{path}: holds a header and no layer weights ({size} bytes; {net.cfg_path} "
                    f"needs {need})")
        how = ("" if partial else "; load it with partial=True to start training from these layers "
               "(the others keep their initialisation)")
        return (f"{path}: holds weights for the first {k} of the {count} layers of {net.cfg_path} "
                f"only (expected {need} bytes, found {size}): a partial file{how}")
    at = max(i for i, b in enumerate(sizes) if b <= size)
    layer = net.layers[at]
    return (f"{path}: file size does not fit {net.cfg_path}: expected {need} bytes, found {size} "
            f"(it ends inside layer {layer.index} [{layer.header}], line {layer.line}, whose "
            f"weights run from byte {sizes[at]} to {sizes[at + 1]}): the file is not for "
            f"{net.cfg_path}, or is truncated")


def _layers_to_fill(net, path, size: int, header: Header, cutoff, partial: bool, allow_trailing: bool) -> int:
    """How many layers a file of ``size`` bytes fills, or a WeightsError (see :func:`load_weights`)."""
    sizes = layer_boundaries(net, header)
    n = len(net.layers)
    count = n if cutoff is None else max(0, min(int(cutoff), n))
    if size == sizes[count]:
        return count
    if cutoff is not None and size in sizes[count:]:
        return count            # a longer file for this cfg: Darknet's load_weights_upto reads its start
    if partial and size in sizes[1:count]:
        k = max(i for i, b in enumerate(sizes) if b == size)
        warnings.warn(f"{path}: fills the first {k} of the {count} layers of {net.cfg_path} ({size} of "
                      f"{sizes[count]} bytes); the other layers keep their initialisation", stacklevel=4)
        return k
    if allow_trailing and size > sizes[count]:
        warnings.warn(f"{path}: {size - sizes[count]} trailing bytes after the last layer ignored "
                      f"(expected {sizes[count]} bytes for {net.cfg_path}, found {size})", stacklevel=4)
        return count
    raise _size_mismatch(net, path, size, sizes, count, partial)


def _check_values(net, path, blobs, data: np.ndarray, allow_nonfinite: bool) -> None:
    """Non-finite values (each layer named) and negative batch-norm variances, before anything is copied."""
    bad, offset = [], 0
    for layer, params in blobs:
        for p in params:
            chunk = data[offset:offset + p.numel()]
            name = _param_name(layer, p)
            finite = np.isfinite(chunk)
            if not finite.all():
                bad.append(f"layer {layer.index} [{layer.header}] (line {layer.line}) {name}: "
                           f"{int(np.isnan(chunk).sum())} NaN, {int(np.isinf(chunk).sum())} infinite")
            elif name.rsplit(".", 1)[-1] == "rolling_variance" and (chunk < 0).any():
                raise WeightsError(
                    f"{path}: layer {layer.index} [{layer.header}] reads a negative batch-norm variance: "
                    f"this file is not for {net.cfg_path}")
            offset += p.numel()
    if bad and not allow_nonfinite:
        raise WeightsError(f"{path}: non-finite values in " + "; ".join(bad[:5])
                           + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
                           + " (pass allow_nonfinite=True to load them anyway)")
    if bad:
        warnings.warn(f"{path}: loaded non-finite values in " + "; ".join(bad[:5]), stacklevel=4)


def _param_name(layer, tensor) -> str:
    # recurrent layers hold theirs in sub-layers: "input_layer.rolling_variance"
    return next((name for name, p in layer.named_parameters() if p is tensor), None) or \
        next((name for name, b in layer.named_buffers() if b is tensor), "values")


def load_weights(net, path, cutoff: int | None = None, *, partial: bool = False, allow_trailing: bool = False,
                 allow_nonfinite: bool = False) -> Header:
    """Fill ``net``'s parameters from a Darknet weights file; sets ``net.seen`` and ``net.header``.

    The file must hold exactly the weights of ``net``'s layers (the first ``cutoff`` ones
    when given; then a longer file for the same cfg is read up to there, as Darknet's
    ``load_weights_upto``).  Unlike Darknet, which reads garbage or zeros, these are
    WeightsErrors, raised before any parameter changes: a file for another cfg (shorter or
    longer), a header no Darknet writes (version, ``seen``), NaN or infinite values (named by
    layer), a negative variance.  Opt-ins: ``partial=True`` accepts a file that ends at a layer
    boundary (a backbone such as ``darknet19_448.conv.23``; the other layers keep their
    initialisation, with a warning saying how many it fills), ``allow_trailing=True`` ignores
    bytes after the last layer, ``allow_nonfinite=True`` loads NaN/Inf values with a warning.
    """
    path = Path(path)
    f, size = _open_regular(path)
    with f:
        header = read_header(f.read(20), path)
        check_header(header, path)
        count = _layers_to_fill(net, path, size, header, cutoff, partial, allow_trailing)
        f.seek(header.nbytes)
        need = (layer_boundaries(net, header)[count] - header.nbytes) // 4
        data = np.fromfile(f, "<f4", need)
    if data.size != need:
        raise WeightsError(f"{path}: changed while being read ({data.size} of {need} values)")
    blobs = list(_layer_blobs(net, count, True))
    _check_values(net, path, blobs, data, allow_nonfinite)
    offset = 0
    with torch.no_grad():
        for layer, params in blobs:
            for p in params:
                from_file, _ = _file_view(layer, p, header)
                block = torch.from_numpy(from_file(data[offset:offset + p.numel()]).copy())
                p.copy_(block.to(p.dtype))
                offset += p.numel()
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
