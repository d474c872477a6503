"""Moving a model between Darknet ``.weights``, PyTorch checkpoints, safetensors and ONNX.

Formats
-------
``weights``
    Darknet's own file (:mod:`pydarknet.weights`); needs the cfg to be read.
``pt``
    ``torch.save`` of a plain dict, loadable with ``torch.load(weights_only=True)``::

        {"format": "pydarknet-checkpoint", "version": 1,
         "state_dict": net.state_dict(),           # float32 tensors, names as in Darknet
         "cfg": "<the cfg file's text>",
         "cfg_path": "<where that cfg was read from>",   # informative only
         "header": {"major": 0, "minor": 2, "revision": 0, "seen": 64000},
         "names": ["aeroplane", ...] or None}

    The header is the one of the ``.weights`` file the net was read from, so writing
    the checkpoint back as ``.weights`` gives the original bytes.
``safetensors``
    The same ``state_dict`` as a safetensors file (no pickle), with the rest in the
    file's string metadata: ``format``, ``version``, ``cfg``, ``cfg_path`` and
    ``header`` / ``names`` as JSON.  Needs the optional ``safetensors`` package.
``onnx``
    :func:`export_onnx`; needs the optional ``onnx`` package (and ``onnxruntime``
    to check the exported model numerically, which is done by default).

Every reader checks the file against the cfg and names expected and found sizes or
shapes when they differ: a conversion never writes a silently wrong file.

ONNX outputs
------------
One input ``input``: N×C×H×W float32 (RGB, 0..1, letterboxed to the network size).

By default one output ``output``: exactly ``Darknet.forward``'s result, the last
layer's N×C'×H'×W' tensor in Darknet memory order (for a ``[region]`` net, per anchor
``[x, y, w, h, obj, classes...]`` with x, y, obj logistic, classes softmaxed, w, h raw).

With ``with_boxes=True`` (a net whose last layer is a ``[region]``) two outputs instead:

``boxes``  N × (num·H'·W') × 4, float32
    (x, y, w, h): box centre and size relative to the *network input* (0..1 over the
    letterboxed picture, before Darknet's ``correct_region_boxes``):
    ``x = (col + σ(tx)) / W'``, ``y = (row + σ(ty)) / H'``,
    ``w = exp(tw) · anchor_w / W'``, ``h = exp(th) · anchor_h / H'``.
``scores`` N × (num·H'·W') × classes, float32
    objectness × class probability (Darknet's ``prob``), not thresholded.

Row ``r = anchor·H'·W' + row·W' + col``, the order and ``index`` of
:func:`pydarknet.boxes.decode_region`'s detections.  To reproduce Darknet's detections,
zero the scores ``<= thresh``, map the boxes out of the letterbox and run NMS.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .boxes import region_boxes
from .cfg import CfgError, parse as parse_cfg
from .data import read_names
from .network import Darknet
from .weights import (Header, WeightsError, atomic_write, expected_size, load_weights, read_header,
                      weights_bytes)

__all__ = [
    "ConvertError", "FORMATS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION",
    "checkpoint_dict", "save_checkpoint", "load_checkpoint",
    "save_safetensors", "load_safetensors",
    "load_weights_checked", "load_model", "save_model", "convert",
    "export_onnx", "RegionBoxes", "onnx_exportable",
    "partial", "truncate_cfg_text", "source_format", "target_format",
    "header_dict",
]

CHECKPOINT_FORMAT = "pydarknet-checkpoint"
CHECKPOINT_VERSION = 1
FORMATS = ("weights", "pt", "safetensors", "onnx")
EXTENSIONS = {".weights": "weights", ".pt": "pt", ".pth": "pt", ".safetensors": "safetensors",
              ".onnx": "onnx"}
DEFAULT_OPSET = 17

# Layer kinds whose inference forward exports to plain ONNX operators.
ONNX_KINDS = {"convolutional", "connected", "maxpool", "avgpool", "reorg", "route", "region", "softmax",
              "yolo", "shortcut", "upsample", "dropout", "cost"}


class ConvertError(ValueError):
    """A conversion that cannot be done faithfully; the message says why (expected vs found)."""


# --- small helpers -------------------------------------------------------------
def _require(module: str, purpose: str, pip_name: str | None = None):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConvertError(f"{purpose} needs the optional package '{pip_name or module}': "
                           f"pip install {pip_name or module}") from None


def header_dict(net) -> dict:
    major, minor, revision = (int(v) for v in net.header)
    return {"major": major, "minor": minor, "revision": revision, "seen": int(net.seen)}


def _set_header(net, header: dict, source) -> None:
    try:
        h = Header(int(header["major"]), int(header["minor"]), int(header["revision"]), int(header["seen"]))
    except (KeyError, TypeError, ValueError):
        raise ConvertError(f"{source}: bad header {header!r}: expected major, minor, revision and seen") from None
    net.header = (h.major, h.minor, h.revision)
    net.seen = h.seen


def _layer_of(key: str, net) -> str:
    """'layer 3 [convolutional]' for a state_dict key such as 'layers.3.weight'."""
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "layers" and parts[1].isdigit() and int(parts[1]) < len(net.layers):
        layer = net.layers[int(parts[1])]
        return f"layer {layer.index} [{layer.header}] "
    return ""


def _check_state_dict(net, state: dict, source) -> None:
    """Raise a ConvertError naming every expected/found difference between ``state`` and ``net``."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ConvertError(f"{source}: state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
        found[k] = tuple(v.shape)
    problems = []
    for k, shape in expected.items():
        if k not in found:
            problems.append(f"{_layer_of(k, net)}{k}: expected shape {shape}, missing from the file")
        elif found[k] != shape:
            problems.append(f"{_layer_of(k, net)}{k}: expected shape {shape}, found {found[k]}")
    problems += [f"{k}: found shape {found[k]}, which {net.cfg_path} has no place for"
                 for k in found if k not in expected]
    if problems:
        shown = "\n  ".join(problems[:8])
        more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise ConvertError(f"{source} holds a different architecture than {net.cfg_path} "
                           f"({len(problems)} differences in {len(expected)} expected tensors):\n  {shown}{more}")


def _fill(net, state: dict, source) -> None:
    _check_state_dict(net, state, source)
    with torch.no_grad():
        net.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                            strict=True)


def _darknet(cfg, text: str | None = None, exact: bool | None = None) -> Darknet:
    """Darknet(cfg), in exact mode or not as asked (Darknet's own default when None)."""
    return Darknet(cfg, text=text) if exact is None else Darknet(cfg, text=text, exact=exact)


def _build(cfg, cfg_text: str | None, cfg_path: str | None, source, exact: bool | None) -> Darknet:
    """The net from an explicit cfg if given, else from the text embedded in a checkpoint."""
    if cfg is not None:
        return _darknet(cfg, exact=exact)
    if not cfg_text:
        raise ConvertError(f"{source} has no embedded cfg: give the cfg file (--cfg)")
    try:
        return _darknet(cfg_path or f"<cfg embedded in {source}>", cfg_text, exact)
    except CfgError as e:
        raise ConvertError(f"{source}: its embedded cfg does not build: {e}") from None


# --- .weights ------------------------------------------------------------------
def load_weights_checked(net, path, *, min_layers: int | None = None) -> Header:
    """Read a Darknet ``.weights`` file that must fit ``net`` exactly.

    Unlike :meth:`Darknet.load_weights` (which, like Darknet, fills what a short file has
    and ignores extra bytes), a file of the wrong size is an error naming the expected and
    found sizes.  With ``min_layers``, a file that ends at the boundary after layer
    k >= ``min_layers`` (a partial file) is accepted and fills the first k layers.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(20)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    header = read_header(head, path)
    full = expected_size(net, None, header)
    n_layers = len(net.layers)
    if size == full:
        return load_weights(net, path)
    bounds = {}  # file size -> the most layers a file of that size covers
    for k in range(n_layers + 1):
        bounds[expected_size(net, k, header)] = k
    if min_layers is not None and size in bounds and bounds[size] >= min_layers:
        return load_weights(net, path, cutoff=bounds[size])
    if size > full:
        raise WeightsError(f"{path}: {size - full} bytes more than {net.cfg_path} needs (expected {full} bytes, "
                           f"found {size}): the file is for another cfg")
    if size in bounds:
        k = bounds[size]
        need = f"at least {min_layers} layers" if min_layers is not None else f"all {n_layers} layers"
        raise WeightsError(f"{path}: holds weights for the first {k} layers of {net.cfg_path} only (expected "
                           f"{full} bytes for {need}, found {size}): a partial file; use a cfg truncated to "
                           f"{k} layers")
    # a size that matches no layer boundary: let the loader name the layer where it runs out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_weights(net, path)
    raise WeightsError(f"{path}: file size does not fit {net.cfg_path}: expected {full} bytes, found {size}")


# --- .pt -------------------------------------------------------------------------
def checkpoint_dict(net) -> dict:
    """The self-describing checkpoint (plain types only, so ``weights_only=True`` loads it)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "cfg": net.cfg_text,
        "cfg_path": str(net.cfg_path),
        "header": header_dict(net),
        "names": list(net.names) if net.names is not None else None,
    }


def save_checkpoint(net, path) -> None:
    """Write ``net`` as a ``.pt`` checkpoint (atomically)."""
    if net.cfg_text is None:
        raise ConvertError(f"{net.cfg_path}: the network has no cfg text to embed in the checkpoint")
    buf = io.BytesIO()
    torch.save(checkpoint_dict(net), buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path, cfg=None, *, exact: bool | None = None) -> Darknet:
    """Build a :class:`Darknet` from a ``.pt`` checkpoint (its embedded cfg unless ``cfg`` is given).

    A bare ``state_dict`` (a dict of tensors) is accepted when ``cfg`` is given.  ``exact``
    sets the network's arithmetic mode (Darknet's default when None).
    """
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and unpickler errors all mean "not a checkpoint"
        raise ConvertError(f"{path}: not a PyTorch checkpoint that loads with weights_only=True "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: holds a {type(obj).__name__}, not a pydarknet checkpoint dict")
    if obj.get("format") != CHECKPOINT_FORMAT:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()) and cfg is not None:
            net = _darknet(cfg, exact=exact)
            _fill(net, obj, path)
            return net
        what = "a bare state_dict: give its cfg (--cfg)" if obj and all(
            isinstance(v, torch.Tensor) for v in obj.values()) else f"keys {sorted(map(str, obj))[:6]}"
        raise ConvertError(f"{path}: not a {CHECKPOINT_FORMAT} file ({what})")
    version = obj.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise ConvertError(f"{path}: checkpoint version {version!r}; this pydarknet reads version "
                           f"{CHECKPOINT_VERSION} and older")
    net = _build(cfg, obj.get("cfg"), obj.get("cfg_path"), path, exact)
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise ConvertError(f"{path}: no state_dict in the checkpoint")
    _fill(net, state, path)
    _set_header(net, obj.get("header") or {"major": 0, "minor": 2, "revision": 0, "seen": 0}, path)
    names = obj.get("names")
    net.names = list(names) if names is not None else None
    return net


# --- .safetensors ----------------------------------------------------------------
def save_safetensors(net, path) -> None:
    """Write ``net``'s state_dict as safetensors, with cfg, header and names in the metadata."""
    st = _require("safetensors.torch", "Writing .safetensors", "safetensors")
    if net.cfg_text is None:
        raise ConvertError(f"{net.cfg_path}: the network has no cfg text to embed in the file")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    meta = {"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION), "cfg": net.cfg_text,
            "cfg_path": str(net.cfg_path), "header": json.dumps(header_dict(net)),
            "names": json.dumps(list(net.names) if net.names is not None else None)}
    atomic_write(path, st.save(tensors, metadata=meta))


def load_safetensors(path, cfg=None, *, exact: bool | None = None) -> Darknet:
    """Build a :class:`Darknet` from a ``.safetensors`` file written by :func:`save_safetensors`
    (or any safetensors file of the net's state_dict, when ``cfg`` is given)."""
    _require("safetensors", "Reading .safetensors")
    from safetensors import SafetensorError, safe_open
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such safetensors file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ConvertError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        if cfg is None:
            raise ConvertError(f"{path}: a safetensors file without pydarknet metadata: give its cfg (--cfg)")
        net = _darknet(cfg, exact=exact)
        _fill(net, state, path)
        return net
    try:
        version = int(meta.get("version", "0"))
        header = json.loads(meta.get("header", "null"))
        names = json.loads(meta.get("names", "null"))
    except ValueError as e:
        raise ConvertError(f"{path}: bad pydarknet metadata ({e})") from None
    if version > CHECKPOINT_VERSION:
        raise ConvertError(f"{path}: checkpoint version {version}; this pydarknet reads version "
                           f"{CHECKPOINT_VERSION} and older")
    net = _build(cfg, meta.get("cfg"), meta.get("cfg_path"), path, exact)
    _fill(net, state, path)
    _set_header(net, header or {"major": 0, "minor": 2, "revision": 0, "seen": 0}, path)
    net.names = list(names) if names is not None else None
    return net


# --- format detection ------------------------------------------------------------
def source_format(path) -> str:
    """The format of an existing file, from its content (Darknet files often have no extension)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise ConvertError(f"{path}: ONNX files can be written, not read back")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConvertError(f"{path}: no such file") from None
    except OSError as e:
        raise ConvertError(f"{path}: cannot read ({e.strerror or e})") from None
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "pt"  # torch.save's zip (or legacy pickle) format
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= size:
        return "safetensors"
    return "weights"


def target_format(path, to: str | None = None) -> str:
    if to is not None:
        if to not in FORMATS:
            raise ConvertError(f"--to {to}: expected one of {', '.join(FORMATS)}")
        return to
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConvertError(f"{path}: cannot tell the format from the extension "
                           f"(use .weights, .pt, .safetensors or .onnx, or --to)")
    return fmt


def load_model(path, cfg=None, fmt: str | None = None, *, exact: bool | None = None) -> Darknet:
    """A :class:`Darknet` from a ``.weights`` (needs ``cfg``), ``.pt`` or ``.safetensors`` file."""
    fmt = fmt or source_format(path)
    if fmt == "weights":
        if cfg is None:
            raise ConvertError(f"{path}: a Darknet .weights file needs its cfg (--cfg)")
        net = _darknet(cfg, exact=exact)
        load_weights_checked(net, path)
        return net
    if fmt == "pt":
        return load_checkpoint(path, cfg, exact=exact)
    if fmt == "safetensors":
        return load_safetensors(path, cfg, exact=exact)
    raise ConvertError(f"{path}: cannot read format {fmt!r}")


def save_model(net, path, fmt: str, **onnx_options) -> None:
    if fmt == "weights":
        atomic_write(path, weights_bytes(net))
    elif fmt == "pt":
        save_checkpoint(net, path)
    elif fmt == "safetensors":
        save_safetensors(net, path)
    elif fmt == "onnx":
        export_onnx(net, path, **onnx_options)
    else:
        raise ConvertError(f"{path}: cannot write format {fmt!r}")


def convert(src, dst, cfg=None, *, to: str | None = None, names=None, **onnx_options) -> Darknet:
    """Convert ``src`` to ``dst`` (format from ``to`` or the extension); returns the network
    (built with ``exact=False``: the plain PyTorch kernels, which is what ONNX expresses)."""
    fmt = target_format(dst, to)
    if onnx_options and fmt != "onnx":
        raise ConvertError(f"{', '.join(sorted(onnx_options))}: only for ONNX export")
    if fmt == "safetensors":  # fail before reading a large source
        _require("safetensors.torch", "Writing .safetensors", "safetensors")
    elif fmt == "onnx":
        _require("onnx", "ONNX export")
    net = load_model(src, cfg, exact=False)
    if names is not None:
        net.names = read_names(names) if isinstance(names, (str, os.PathLike)) else list(names)
    save_model(net, dst, fmt, **onnx_options)
    return net


# --- ONNX --------------------------------------------------------------------------
class RegionBoxes(nn.Module):
    """``net`` followed by the region decoding: ``x -> (boxes, scores)`` (layout in the module doc)."""

    def __init__(self, net: Darknet):
        super().__init__()
        region = net.layers[-1]
        if region.kind != "region":
            raise ConvertError(f"{net.cfg_path}: with_boxes needs a [region] last layer; the last layer is "
                               f"layer {region.index} [{region.header}]")
        if region.tree is not None:
            raise ConvertError(f"{net.cfg_path}: layer {region.index} [region] uses a WordTree "
                               f"(tree={region.tree_file}): its hierarchical scores are not exported")
        if region.coords < 4:
            raise ConvertError(f"{net.cfg_path}: layer {region.index} [region] has coords={region.coords}; "
                               f"box decoding needs 4")
        self.net = net
        self.num, self.classes, self.coords = region.num, region.classes, region.coords
        self.h, self.w = region.out_shape.h, region.out_shape.w
        self.register_buffer("anchors", torch.tensor(region.anchors[:2 * self.num], dtype=torch.float32).view(
            self.num, 2), persistent=False)

    def forward(self, x):
        out = self.net(x)
        h, w, num, entries = self.h, self.w, self.num, self.coords + 1 + self.classes
        v = out.reshape(-1, num, entries, h, w)
        bx, by, bw, bh = region_boxes(v[:, :, :4], self.anchors, darknet_rounding=False)
        boxes = torch.stack([bx, by, bw, bh], dim=-1).reshape(-1, num * h * w, 4)
        scores = v[:, :, self.coords:self.coords + 1] * v[:, :, self.coords + 1:]
        scores = scores.permute(0, 1, 3, 4, 2).reshape(-1, num * h * w, self.classes)
        return boxes, scores


def onnx_exportable(net) -> None:
    """Raise a ConvertError naming the first thing in ``net`` that has no faithful ONNX export."""
    if getattr(net, "exact", False) or any(getattr(layer, "exact", False) for layer in net.layers):
        raise ConvertError(f"{net.cfg_path}: the network is in exact-arithmetic mode (exact=True), which "
                           f"follows Darknet's float rounding step by step and has no ONNX equivalent; "
                           f"set net.exact = False to export the plain-kernel network (within float32 noise, "
                           f"~1e-5, of Darknet)")
    for layer in net.layers:
        if layer.kind not in ONNX_KINDS:
            raise ConvertError(f"{net.cfg_path}: layer {layer.index} [{layer.header}] has no ONNX export")
        if getattr(layer, "tree", None) is not None:
            raise ConvertError(f"{net.cfg_path}: layer {layer.index} [{layer.header}] uses a WordTree "
                               f"(tree={layer.tree_file}); its grouped softmax has no ONNX export in pydarknet")


def _onnx_export(model, x, f, opset, output_names, dynamic_axes):
    kwargs = dict(input_names=["input"], output_names=output_names, opset_version=opset,
                  do_constant_folding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        try:
            torch.onnx.export(model, (x,), f, dynamo=False, dynamic_axes=dynamic_axes, **kwargs)
        except (TypeError, NotImplementedError, ImportError, AttributeError) as legacy_error:
            # no TorchScript exporter in this torch: the torch.export one (needs onnxscript)
            try:
                import onnxscript  # noqa: F401
            except ImportError:
                raise ConvertError(f"ONNX export failed with torch {torch.__version__}'s TorchScript exporter "
                                   f"({legacy_error}); its torch.export-based exporter needs onnxscript: "
                                   f"pip install onnxscript") from None
            shapes = ({0: torch.export.Dim("batch")},) if dynamic_axes else None
            prog = torch.onnx.export(model, (x,), None, dynamo=True, dynamic_shapes=shapes,
                                     external_data=False, **kwargs)
            prog.save(f)


def _check_onnx(data: bytes, model, shape, output_names, path) -> float | None:
    """Run the exported model with ONNX Runtime next to PyTorch; returns the max abs difference."""
    try:
        import onnxruntime as ort
    except ImportError:
        warnings.warn(f"{path}: onnxruntime is not installed, so the exported model was not checked "
                      f"numerically (pip install onnxruntime)", stacklevel=3)
        return None
    import numpy as np
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=gen)
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        ref = model(x.to(device))
    ref = [r.cpu() for r in ([ref] if isinstance(ref, torch.Tensor) else ref)]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    got = sess.run(output_names, {"input": x.numpy()})
    worst = 0.
    for name, r, g in zip(output_names, ref, got):
        r = r.numpy()
        if g.shape != r.shape:
            raise ConvertError(f"{path}: the exported model's {name} has shape {g.shape}, "
                               f"PyTorch gives {r.shape}; nothing written")
        finite = np.isfinite(r)
        if not np.array_equal(finite, np.isfinite(g)) or not np.allclose(g[finite], r[finite], rtol=1e-3,
                                                                          atol=1e-3):
            diff = float(np.abs(g[finite] - r[finite]).max()) if finite.any() else float("nan")
            raise ConvertError(f"{path}: ONNX Runtime's {name} differs from PyTorch's (max abs difference "
                               f"{diff:g}); nothing written")
        if finite.any():
            worst = max(worst, float(np.abs(g[finite] - r[finite]).max()))
    return worst


def export_onnx(net, path, *, with_boxes: bool = False, opset: int = DEFAULT_OPSET, batch="dynamic",
                check: bool = True) -> None:
    """Export ``net`` (inference mode) to an ONNX file; layout of the outputs in the module doc.

    ``batch="dynamic"`` gives the batch axis a symbolic size; an integer fixes it.  With
    ``check`` (default) the model is run with ONNX Runtime and compared with PyTorch before
    the file is written.  Needs the ``onnx`` package.
    """
    onnx = _require("onnx", "ONNX export")
    onnx_exportable(net)
    opset = int(opset)
    if opset < DEFAULT_OPSET:
        raise ConvertError(f"--opset {opset}: pydarknet exports opset {DEFAULT_OPSET} or later")
    dynamic = batch in (None, "dynamic")
    if not dynamic:
        try:
            batch = int(batch)
        except (TypeError, ValueError):
            raise ConvertError(f"--batch {batch}: expected 'dynamic' or a positive integer") from None
        if batch < 1:
            raise ConvertError(f"--batch {batch}: expected 'dynamic' or a positive integer")
    model = RegionBoxes(net) if with_boxes else net
    output_names = ["boxes", "scores"] if with_boxes else ["output"]
    was_training = net.training
    # the exporter restores the mode of the module it is given, recursively: the wrapper must
    # be in eval mode too, or the net comes back in training mode (batch statistics)
    model.eval()
    try:
        shape = (2 if dynamic else batch, net.channels, net.height, net.width)
        device = next(net.parameters(), torch.empty(0)).device
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(1)).to(device)
        axes = {n: {0: "batch"} for n in ["input", *output_names]} if dynamic else None
        buf = io.BytesIO()
        try:
            _onnx_export(model, x, buf, opset, output_names, axes)
        except ConvertError:
            raise
        except Exception as e:
            raise ConvertError(f"{net.cfg_path}: ONNX export (opset {opset}) failed: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}") from e
        raw = buf.getvalue()
        del buf
        proto = onnx.load_from_string(raw)
        del raw
        meta = {"pydarknet.format": "onnx", "pydarknet.cfg": net.cfg_text or "",
                "pydarknet.header": json.dumps(header_dict(net)),
                "pydarknet.names": json.dumps(list(net.names) if net.names is not None else None),
                "pydarknet.outputs": ("boxes: N x (num*H*W) x 4 (x, y, w, h relative to the network input), "
                                      "scores: N x (num*H*W) x classes (objectness * class probability); "
                                      "row = anchor*H*W + row*W + col" if with_boxes else
                                      "output: Darknet.forward, the last layer's output in Darknet memory order")}
        if with_boxes:
            meta["pydarknet.region"] = json.dumps({"num": model.num, "classes": model.classes, "h": model.h,
                                                   "w": model.w, "anchors": list(net.layers[-1].anchors)})
        for k, v in meta.items():
            prop = proto.metadata_props.add()
            prop.key, prop.value = k, v
        proto.producer_name = "pydarknet"
        data = proto.SerializeToString()
        del proto
        onnx.checker.check_model(data)
        if check:
            _check_onnx(data, model, (1 if dynamic else batch,) + shape[1:], output_names, path)
        atomic_write(path, data)
    finally:
        net.train(was_training)


# --- partial ------------------------------------------------------------------------
def truncate_cfg_text(text: str, n: int, path: str = "<string>") -> str:
    """The cfg text with only ``[net]`` and its first ``n`` layer sections (comments kept)."""
    sections = parse_cfg(text, path)
    if n < 0:
        raise ConvertError(f"cannot keep {n} layers")
    if n + 1 >= len(sections):
        return text
    lines = text.splitlines(keepends=True)[:sections[n + 1].line - 1]
    # comment and blank lines just above the first dropped section belong to it
    while lines and (not lines[-1].strip() or lines[-1].lstrip()[:1] in "#;"):
        lines.pop()
    return "".join(lines).rstrip("\r\n") + "\n"


def partial(cfg, weights, out, n: int, *, cfg_out=None) -> Header:
    """Darknet's ``partial``: the first ``n`` layers' weights of ``weights`` into ``out``.

    Like ``darknet partial CFG WEIGHTS OUT N`` (load_network(..., clear=1) then
    save_weights_upto): the header is Darknet's current 0.2.0 with ``seen`` = 0 (64-bit),
    whatever the source's header was.  ``cfg_out`` also writes the cfg truncated to ``n``
    layers (what OpenCV or a classifier-free reader needs to read the file on its own).
    """
    n = int(n)
    if n < 0:
        raise ConvertError(f"N = {n}: the number of layers to keep must be 0 or more")
    net = _darknet(cfg, exact=False)
    if n > len(net.layers):
        raise ConvertError(f"N = {n}: {cfg} has only {len(net.layers)} layers")
    load_weights_checked(net, weights, min_layers=n)
    net.seen = 0
    header = Header(0, 2, 0, 0)
    atomic_write(out, weights_bytes(net, cutoff=n, header=header))
    if cfg_out is not None:
        if net.cfg_text is None:
            raise ConvertError(f"{cfg}: cannot read the cfg text to truncate")
        atomic_write(cfg_out, truncate_cfg_text(net.cfg_text, n, str(cfg)).encode("utf-8"))
    return header
