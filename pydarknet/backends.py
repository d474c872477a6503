"""Inference engines: how a built :class:`~pydarknet.network.Darknet` runs its forward.

``exact``        Darknet's own float arithmetic, bit for bit (:mod:`pydarknet.exact`, with the
                 numba kernels of :mod:`pydarknet.kernels` when numba is installed).
``torch``        plain PyTorch kernels with batch norm folded in (float32 noise, ~1e-5, from
                 Darknet).
``onnxruntime``  the same fast-arithmetic network exported to ONNX in memory and run by ONNX
                 Runtime on the CPU (its fused conv + activation kernels): the fastest on a CPU.
``auto``         ``onnxruntime`` when the ``onnx`` and ``onnxruntime`` packages are installed,
                 the network is on the CPU and every layer exports; ``torch`` otherwise, with
                 a one-line note saying why.

The fast engines give Darknet's detections (the same rows in the same order as ``exact``)
except where two probabilities tie to ~1e-6 or one sits within ~1e-5 of the threshold.

An ONNX Runtime engine is attached to the network (``net.backend``) and used by
``Darknet.forward`` in inference mode; it rebuilds itself when a parameter is written to,
the network is resized or moved, and steps aside (the torch path runs) in training mode,
in exact mode, off the CPU or when autograd needs the graph.
"""
from __future__ import annotations

import importlib.util
import io
import sys
import warnings

import torch

__all__ = ["ENGINES", "OrtEngine", "set_engine", "ort_unavailable_reason"]

ENGINES = ("auto", "torch", "onnxruntime", "exact")


def ort_unavailable_reason(net) -> str | None:
    """Why ``net`` cannot run in ONNX Runtime here, or None when it can."""
    for module in ("onnx", "onnxruntime"):  # looked up, not imported: importing costs a second
        try:
            found = sys.modules[module] is not None if module in sys.modules else \
                importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{module} is not installed (pip install onnx onnxruntime)"
    from .convert import ConvertError, onnx_exportable
    if any(p.device.type != "cpu" for p in net.parameters()):
        return "the network is not on the CPU"
    was = net.exact
    net.exact = False
    try:
        onnx_exportable(net)
    except ConvertError as e:
        return str(e)
    finally:
        net.exact = was
    return None


class OrtEngine:
    """``net``'s fast-arithmetic forward as an ONNX Runtime session, rebuilt when stale."""

    def __init__(self, net, threads: int | None = None):
        self.net = net
        self.threads = threads
        self._stamp = None
        self._session = None
        self._building = False

    def __getstate__(self):  # a session does not pickle or deepcopy: the copy rebuilds its own
        return {**self.__dict__, "_session": None, "_stamp": None, "_building": False}

    def _state(self):
        params = [*self.net.parameters(), *self.net.buffers()]
        return ((self.net.width, self.net.height),
                tuple((p._version, p.data_ptr()) for p in params))

    def usable(self, x: torch.Tensor) -> bool:
        """Whether this call can go to ONNX Runtime rather than the torch layers."""
        net = self.net
        return (not self._building and not net.training and not net.exact and x.device.type == "cpu"
                and not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in net.parameters())))
                and x.dtype == torch.float32)

    def _model_bytes(self) -> bytes:
        """The network as ONNX: built node by node (milliseconds), or traced by torch.onnx for
        the layer kinds the direct builder does not cover (seconds)."""
        from . import onnxgraph
        try:
            return onnxgraph.build_model(self.net).SerializeToString()
        except NotImplementedError:
            pass
        from .convert import DEFAULT_OPSET, _onnx_export
        net = self.net
        buf = io.BytesIO()
        self._building = True  # the export traces net.forward, which must take the torch layers
        try:
            with torch.no_grad():
                _onnx_export(net, torch.zeros(1, net.channels, net.height, net.width), buf, DEFAULT_OPSET,
                             ["output"], {"input": {0: "batch"}, "output": {0: "batch"}})
        finally:
            self._building = False
        return buf.getvalue()

    def _build(self):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = self.threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(self._model_bytes(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        stamp = self._state()
        if stamp != self._stamp:
            self._build()
            self._stamp = self._state()
        out = self._session.run(["output"], {"input": x.detach().contiguous().numpy()})[0]
        return torch.from_numpy(out)


def set_engine(net, engine: str = "auto", *, threads: int | None = None, quiet: bool = False) -> str:
    """Make ``net`` run its inference with ``engine`` (one of :data:`ENGINES`); returns the
    engine in use.  ``onnxruntime`` that cannot run here, and ``auto``, fall back to ``torch``
    with a one-line note (a warning), never an error."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    net.backend = None
    if engine == "exact":
        net.exact = True
        return "exact"
    net.exact = False
    if engine == "torch":
        return "torch"
    reason = ort_unavailable_reason(net)
    if reason is not None:
        # auto: a note only for a missing package; a network ONNX cannot hold just runs in torch
        if engine == "onnxruntime" or (not quiet and "not installed" in reason):
            warnings.warn(f"{net.cfg_path}: running the torch engine, not ONNX Runtime: {reason}", stacklevel=2)
        return "torch"
    net.backend = OrtEngine(net, threads)
    return "onnxruntime"
