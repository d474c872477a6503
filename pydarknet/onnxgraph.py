"""A Darknet network's fast-arithmetic inference graph as an ONNX model, built layer by layer.

What the ONNX Runtime engine runs.  Writing the nodes directly (rather than tracing the
torch module with ``torch.onnx``) takes milliseconds instead of seconds and gives ONNX
Runtime the shapes it fuses best: ``Conv`` with batch norm folded into its kernels and
bias (as the torch fast path does), then ``LeakyRelu``.  Kinds not listed in
:data:`KINDS` make :func:`build_model` raise ``NotImplementedError``; the caller then falls
back to ``torch.onnx`` (:mod:`pydarknet.convert`).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["KINDS", "build_model"]

KINDS = {"convolutional", "maxpool", "route", "reorg", "region", "dropout"}
OPSET = 17


class _Graph:
    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits = [], []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, array, stem="c") -> str:
        name = self.name(stem)
        if array.dtype == np.float32:
            self.inits.append((name, np.ascontiguousarray(array)))
        else:
            self.nodes.append(self.helper.make_node("Constant", [], [name],
                                                    value=self.numpy_helper.from_array(array, name)))
        return name

    def op(self, kind: str, inputs, stem=None, **attrs) -> str:
        out = self.name(stem or kind.lower())
        self.nodes.append(self.helper.make_node(kind, list(inputs), [out], **attrs))
        return out


def _conv(g: _Graph, layer, x: str) -> str:
    if layer.activation not in ("leaky", "linear"):
        raise NotImplementedError(f"activation={layer.activation}")
    with torch.no_grad():
        w, b = layer._folded() if layer.batch_normalize else (layer.weight, layer.bias)
        w, b = w.detach().float().cpu().numpy(), b.detach().float().cpu().numpy()
    p = layer.padding
    y = g.op("Conv", [x, g.const(w, "w"), g.const(b, "b")], kernel_shape=[layer.size] * 2,
             strides=[layer.stride] * 2, pads=[p, p, p, p], group=layer.groups)
    return g.op("LeakyRelu", [y], alpha=.1) if layer.activation == "leaky" else y


def _maxpool(g: _Graph, layer, x: str) -> str:
    (_, h, w), o = layer.in_shapes[0], layer.out_shape
    left = layer.padding // 2
    bottom = (o.h - 1) * layer.stride + layer.size - h - left
    right = (o.w - 1) * layer.stride + layer.size - w - left
    if left < 0 or bottom < 0 or right < 0:  # Darknet crops: rare; let torch.onnx handle it
        raise NotImplementedError("maxpool with negative padding")
    return g.op("MaxPool", [x], kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2,
                pads=[left, left, bottom, right])  # ONNX pads with -inf, as Darknet's -FLT_MAX


def _reorg(g: _Graph, layer, x: str) -> str:
    if layer.reverse:
        raise NotImplementedError("reverse reorg")
    s = layer.stride
    c, h, w = layer.in_shapes[0]
    y = g.op("Reshape", [x, g.const(np.array([-1, c // (s * s), h, s, w, s], np.int64))])
    y = g.op("Transpose", [y], perm=[0, 3, 5, 1, 2, 4])
    return g.op("Reshape", [y, g.const(np.array([-1, c * s * s, h // s, w // s], np.int64))])


def _region(g: _Graph, layer, x: str) -> str:
    if layer.tree is not None or layer.background or layer.coords < 4:
        raise NotImplementedError("region with tree, background or coords < 4")
    c, h, w = layer.out_shape
    e, k = layer.entries, layer.coords
    v = g.op("Reshape", [x, g.const(np.array([-1, layer.num, e, h, w], np.int64))])

    def part(lo, hi):
        return g.op("Slice", [v, g.const(np.array([lo], np.int64)), g.const(np.array([hi], np.int64)),
                              g.const(np.array([2], np.int64))])
    cls = part(k + 1, e)
    cls = g.op("Softmax", [cls], axis=2) if layer.softmax else cls
    pieces = [g.op("Sigmoid", [part(0, 2)]), part(2, k), g.op("Sigmoid", [part(k, k + 1)]), cls]
    y = g.op("Concat", pieces, axis=2)
    return g.op("Reshape", [y, g.const(np.array([-1, c, h, w], np.int64))])


def build_model(net):
    """The ONNX ModelProto of ``net``'s inference forward (input ``input``: N×C×H×W, output
    ``output``: the last layer's output), with batch norm folded in."""
    from onnx import TensorProto, helper
    g = _Graph()
    outs: list[str] = []
    for layer in net.layers:
        if layer.kind not in KINDS:
            raise NotImplementedError(f"layer {layer.index} [{layer.kind}]")
        ins = ["input" if j < 0 else outs[j] for j in layer.sources]
        if layer.kind == "convolutional":
            y = _conv(g, layer, ins[0])
        elif layer.kind == "maxpool":
            y = _maxpool(g, layer, ins[0])
        elif layer.kind == "route":
            y = ins[0] if len(ins) == 1 else g.op("Concat", ins, axis=1)
        elif layer.kind == "reorg":
            y = _reorg(g, layer, ins[0])
        elif layer.kind == "region":
            y = _region(g, layer, ins[0])
        else:  # dropout: the identity at inference
            y = ins[0]
        outs.append(y)
    o = net.output_shape
    g.nodes.append(helper.make_node("Identity", [outs[-1]], ["output"]))
    graph = helper.make_graph(
        g.nodes, "pydarknet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             ["batch", net.channels, net.height, net.width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", o.c, o.h, o.w])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pydarknet")
    for name, array in g.inits:  # written straight into the model: one copy of the weights, not three
        t = model.graph.initializer.add()
        t.name, t.data_type = name, TensorProto.FLOAT
        t.dims.extend(array.shape)
        t.raw_data = array.astype("<f4", copy=False).tobytes()
    return model
