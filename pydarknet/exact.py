"""Darknet's own float arithmetic, step for step, for bit-exact parity.

The fast path (plain torch ops) agrees with Darknet to float32 noise, about 1e-6 of
each layer's range.  That is invisible in detections except through ``exp``: a box
width of 60 image widths (common with untrained weights) differs by ~1e-4.  These
functions instead follow the reference build (``-O2``, SSE2, no FMA) operation by
operation: every conv sums its k = (c, ky, kx) products one at a time in float32,
starting from 0, as Darknet's ``gemm_nn`` does; batch norm, the activations and the
softmax mix float and double exactly where the C code does.  Each step is still a
vectorised torch op over all outputs; only the reduction order is sequential, so it is
slow (tens of seconds for yolov2-voc at 416) and meant for verification.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import kernels

__all__ = ["conv2d", "conv_layer", "linear", "add_bias", "batch_norm", "activate", "logistic", "softmax",
           "group_softmax", "mean_hw", "sequential_sum", "sum_array"]

_EPS = float(torch.tensor(1e-6, dtype=torch.float32))  # the float literal .000001f, widened


def sequential_sum(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sums along ``dim`` added left to right in float32, as Darknet's loops add (``dim`` removed).

    numpy's add.accumulate is strictly sequential (its reduce is pairwise, torch's CPU cumsum
    accumulates in double), so its last element is Darknet's float sum.  On a GPU an accurate
    sum is taken instead (float32 noise, no longer bit-exact).
    """
    if values.device.type != "cpu":
        return values.sum(dim=dim)
    acc = np.add.accumulate(values.detach().movedim(dim, -1).float().numpy(), axis=-1, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(acc[..., -1]))


def sum_array(values) -> float:
    """Darknet's ``sum_array``: every element, in memory order, added one at a time in float32."""
    flat = torch.as_tensor(values).detach().reshape(-1).cpu()
    return float(sequential_sum(flat, -1)) if flat.numel() else 0.0


def _use_kernels(*tensors: torch.Tensor) -> bool:
    return kernels.AVAILABLE and all(t.device.type == "cpu" for t in tensors)


def _sequential_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M,K) @ b (..., K, N), summing over k in order in float32: Darknet's gemm_nn."""
    if b.dim() == 2 and _use_kernels(a, b):
        return kernels.gemm(a, b)
    return _torch_sequential_matmul(a, b)


def _torch_sequential_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same sum as one vectorised torch op per k (any device, any batch shape).
    Inference arithmetic: no gradient flows through it (training uses the plain kernels)."""
    a, b = a.detach().float(), b.detach().float()
    out = torch.zeros(*b.shape[:-2], a.shape[0], b.shape[-1], dtype=torch.float32, device=b.device)
    prod = torch.empty_like(out)
    for k in range(a.shape[1]):
        torch.mul(a[:, k:k + 1], b[..., k:k + 1, :], out=prod)  # product rounded to float
        out.add_(prod)                                          # then the sum, a second rounding
    return out


def conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, groups: int) -> torch.Tensor:
    """Convolution as im2col + Darknet's sequential gemm, per group."""
    if _use_kernels(x, weight):
        return kernels.conv_layer(x, weight, stride, padding, groups)
    return _torch_conv2d(x, weight, stride, padding, groups)


def _torch_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, groups: int) -> torch.Tensor:
    """The reference implementation: F.unfold + the torch sequential sum (any device)."""
    n, c, h, w = x.shape
    m, cg, k, _ = weight.shape
    out_h = (h + 2 * padding - k) // stride + 1
    out_w = (w + 2 * padding - k) // stride + 1
    cols = F.unfold(x, k, padding=padding, stride=stride)  # rows ordered (c, ky, kx) like im2col_cpu
    cols = cols.view(n, groups, cg * k * k, out_h * out_w)
    wg = weight.reshape(groups, m // groups, cg * k * k)
    parts = [_torch_sequential_matmul(wg[g], cols[:, g]) for g in range(groups)]
    return torch.cat(parts, dim=1).view(n, m, out_h, out_w)


def conv_layer(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, groups: int,
               bias: torch.Tensor, bn: tuple | None, activation: str) -> torch.Tensor:
    """forward_convolutional_layer: the conv, batch norm (``bn`` = (mean, divisor, scales), the
    divisor from :func:`bn_divisor`) or
    the bias, then the activation; one fused pass when numba is there and the activation is
    linear or leaky, the separate steps otherwise (the same bits)."""
    if _use_kernels(x, weight) and activation in kernels.ACTIVATIONS:
        return kernels.conv_layer(x, weight, stride, padding, groups, bias, bn, activation)
    y = conv2d(x, weight, stride, padding, groups)
    y = batch_norm(y, *bn[:2], bn[2], bias) if bn is not None else add_bias(y, bias)
    return activate(y, activation)


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Darknet's connected layer product, (N, inputs) -> (N, outputs), summed in order."""
    return _sequential_matmul(x, weight.t())


def add_bias(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x + bias.view(1, -1, 1, 1)


_AB_EPS = torch.tensor(1e-5, dtype=torch.float32)   # AlexeyAB's .00001f


def bn_divisor(variance: torch.Tensor, flavour: str = "pjreddie") -> torch.Tensor:
    """normalize_cpu's divisor, in double as C computes it: pjreddie ``sqrt(var) + .000001f``;
    AlexeyAB ``sqrt(var + .00001f)`` (the sum in float, inside the root), which differs a lot
    for channels of small variance."""
    if flavour == "alexeyab":
        return (variance.float() + _AB_EPS.to(variance.device)).double().sqrt()
    return variance.double().sqrt() + _EPS


def batch_norm(x, mean, divisor, scales, biases) -> torch.Tensor:
    """normalize_cpu, scale_bias, add_bias: the division (by :func:`bn_divisor`, double) runs in
    double, the rest in float."""
    view = (1, -1, 1, 1)
    centred = x - mean.view(view)
    x = (centred.double() / divisor.view(view)).float()
    return x * scales.view(view) + biases.view(view)


def logistic(x: torch.Tensor) -> torch.Tensor:
    """1./(1.+exp(-x)) in double, stored as float."""
    return (1. / (1. + torch.exp(-x.double()))).float()


_EXPF = []


def expf(x: torch.Tensor) -> torch.Tensor:
    """C's ``expf`` on float32 values (AlexeyAB's activations): numba's float32 exp calls the C
    library's, as Darknet does; without numba, exp in double rounded once to float, which
    differs from glibc's in the last bit for about one value in 2000."""
    if not _EXPF:
        try:
            import math

            import numba

            @numba.vectorize(["float32(float32)"], cache=True)
            def _expf(v):
                return math.exp(v)
            _EXPF.append(_expf)
        except ImportError:  # pragma: no cover - exercised only without numba
            _EXPF.append(None)
    if _EXPF[0] is None or x.requires_grad or x.device.type != "cpu":
        return torch.exp(x.double()).float()
    import numpy as np
    with np.errstate(over="ignore"):
        return torch.from_numpy(_EXPF[0](x.detach().float().contiguous().numpy()))


def activate(x: torch.Tensor, name: str) -> torch.Tensor:
    """The activations whose C literals are doubles; the others are exact in float already."""
    if name == "linear":
        return x
    if name == "leaky":
        return torch.where(x > 0, x, (.1 * x.double()).float())
    if name == "relie":
        return torch.where(x > 0, x, (.01 * x.double()).float())
    if name == "logistic":
        return logistic(x)
    if name == "relu":
        return x * (x > 0)
    from .layers.activations import ALEXEYAB_ACTIVATIONS, ACTIVATIONS
    if name in ALEXEYAB_ACTIVATIONS:  # AlexeyAB computes these in float: the torch ops are its arithmetic
        return ACTIVATIONS[name](x)
    raise NotImplementedError(f"exact arithmetic for activation={name} is not implemented")


def softmax(x: torch.Tensor, dim: int, temperature: float = 1.) -> torch.Tensor:
    """Darknet's softmax(): subtract the max, exp in double stored as float, a sequential
    float sum, then a float division."""
    x = x.movedim(dim, -1)
    t = torch.tensor(temperature, dtype=torch.float32)
    largest = x.max(dim=-1, keepdim=True).values
    e = torch.exp((x / t - largest / t).double()).float()
    return (e / sequential_sum(e, -1).unsqueeze(-1)).movedim(-1, dim)


def mean_hw(x: torch.Tensor) -> torch.Tensor:
    """Average pool: a sequential float sum over the h*w positions, then a float division."""
    n, c, h, w = x.shape
    total = sequential_sum(x.reshape(n, c, h * w), -1)
    return (total / torch.tensor(float(h * w), dtype=torch.float32)).view(n, c, 1, 1)


def group_softmax(x: torch.Tensor, tree, temperature: float = 1.) -> torch.Tensor:
    """Darknet's softmax() within each tree group of the last dim: float max, exp in double of
    the float difference, a sequential float sum in group order, a float division."""
    t = torch.tensor(temperature, dtype=torch.float32)
    seg = tree.group_index().to(x.device)
    shape = (*x.shape[:-1], tree.groups)
    mx = torch.full(shape, float("-inf"), dtype=x.dtype, device=x.device)
    mx = mx.scatter_reduce(-1, seg.expand_as(x), x, "amax", include_self=True)
    e = torch.exp((x / t - mx.index_select(-1, seg) / t).double()).float()
    offsets = torch.tensor(tree.group_offset, device=x.device)
    sizes = torch.tensor(tree.group_size, device=x.device)
    total = torch.zeros(shape, dtype=torch.float32, device=x.device)
    for i in range(int(sizes.max()) if len(sizes) else 0):
        g = torch.nonzero(sizes > i).flatten()
        total[..., g] = total[..., g] + e[..., offsets[g] + i]
    return e / total.index_select(-1, seg)
