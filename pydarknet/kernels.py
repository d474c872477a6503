"""Darknet's exact convolution arithmetic at near-GEMM speed (numba, optional).

Darknet's ``gemm_nn`` adds, for every output, the products ``a[m,k]*b[k,n]`` one at a time
in k order, in float32, starting from 0, each product rounded before the addition (the
reference build has no FMA).  Only each output's own sum is ordered; nothing orders the
sums of different outputs.  So this kernel computes a 6×16 tile of outputs at once in
eight-lane AVX vectors (``fmul`` then ``fadd``, never contracted: the vector intrinsics below
carry no fast-math flags), keeps each lane's k-loop in Darknet's order and splits k into
blocks only by storing the float32 partial sum and reloading it, which changes nothing.
The result is bit for bit ``pydarknet.exact``'s sequential sum.

The batch norm, bias and leaky/linear activation of ``[convolutional]`` run in the same
pass over the output (``conv_layer``), with Darknet's float/double mix.

Everything here needs numba; :data:`AVAILABLE` says whether it imported, and callers
(``pydarknet.exact``) fall back to the torch implementation otherwise.  Compiled code is
cached on disk (``cache=True``): the first call of a fresh install compiles for ~20 s.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
import torch

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic, models, register_model
    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only without numba
    AVAILABLE = False

__all__ = ["AVAILABLE", "gemm", "conv_layer", "packed_weights", "ACTIVATIONS"]

MR, NR = 6, 16     # micro-tile: 6 rows of A × 16 columns of B (two 8-lane vectors)
KC = 256           # k block: a 16-column slice of B is 16 KiB, in L1
MC = 96            # rows of A per task (16 micro-tiles)
NC = 64            # columns of B per task (4 micro-tiles)
PANELS_UP_TO = 400  # output positions up to which B is stored in panels (13×13, 19×19)
ACTIVATIONS = {"linear": 0, "leaky": 1}   # done in the fused epilogue; others by exact.activate

if AVAILABLE:
    class _F32x8Type(types.Type):
        def __init__(self):
            super().__init__(name="f32x8")

    _f32x8 = _F32x8Type()
    _VEC = ir.VectorType(ir.FloatType(), 8)

    @register_model(_F32x8Type)
    class _F32x8Model(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, _VEC)

    def _vec_ptr(context, builder, aryty, ary, idx):
        data = context.make_array(aryty)(context, builder, ary).data
        return builder.bitcast(builder.gep(data, [idx]), _VEC.as_pointer())

    @intrinsic
    def _vload(typingctx, arr, idx):
        """Eight floats of a flat float32 array from index ``idx`` (unaligned load)."""
        def codegen(context, builder, sig, args):
            return builder.load(_vec_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)
        return _f32x8(arr, idx), codegen

    @intrinsic
    def _vstore(typingctx, arr, idx, v):
        def codegen(context, builder, sig, args):
            builder.store(args[2], _vec_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)
            return context.get_dummy_value()
        return types.none(arr, idx, v), codegen

    @intrinsic
    def _vbroadcast(typingctx, x):
        def codegen(context, builder, sig, args):
            v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined),
                                          ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))
        return _f32x8(types.float32), codegen

    @intrinsic
    def _vzero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(_VEC, [0.0] * 8)
        return _f32x8(), codegen

    @intrinsic
    def _vmuladd(typingctx, c, a, b):
        """c + a*b, the product rounded to float before the sum (fmul, fadd: no FMA)."""
        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], builder.fmul(args[1], args[2]))
        return _f32x8(_f32x8, _f32x8, _f32x8), codegen

    @njit(fastmath=False, cache=True, inline="always")
    def _micro(ap, a0, b, ldb, b0, c, ldc, c0, k0, k1):
        """C[6×16 at c0] (+)= sum over k in [k0, k1), in order, of A(packed at a0) × B(at b0).

        ``ap`` holds A packed as [k][6]; at k0 = 0 the sums start from +0 as Darknet's
        zeroed output does, otherwise from the float32 partial sums stored in C."""
        if k0 == 0:
            s00 = _vzero(); s01 = _vzero(); s10 = _vzero(); s11 = _vzero(); s20 = _vzero(); s21 = _vzero()
            s30 = _vzero(); s31 = _vzero(); s40 = _vzero(); s41 = _vzero(); s50 = _vzero(); s51 = _vzero()
        else:
            o = c0
            s00 = _vload(c, o); s01 = _vload(c, o + 8); o += ldc
            s10 = _vload(c, o); s11 = _vload(c, o + 8); o += ldc
            s20 = _vload(c, o); s21 = _vload(c, o + 8); o += ldc
            s30 = _vload(c, o); s31 = _vload(c, o + 8); o += ldc
            s40 = _vload(c, o); s41 = _vload(c, o + 8); o += ldc
            s50 = _vload(c, o); s51 = _vload(c, o + 8)
        for k in range(k0, k1):
            p = b0 + k * ldb
            v0 = _vload(b, p)
            v1 = _vload(b, p + 8)
            q = a0 + k * MR
            x = _vbroadcast(ap[q]);     s00 = _vmuladd(s00, x, v0); s01 = _vmuladd(s01, x, v1)
            x = _vbroadcast(ap[q + 1]); s10 = _vmuladd(s10, x, v0); s11 = _vmuladd(s11, x, v1)
            x = _vbroadcast(ap[q + 2]); s20 = _vmuladd(s20, x, v0); s21 = _vmuladd(s21, x, v1)
            x = _vbroadcast(ap[q + 3]); s30 = _vmuladd(s30, x, v0); s31 = _vmuladd(s31, x, v1)
            x = _vbroadcast(ap[q + 4]); s40 = _vmuladd(s40, x, v0); s41 = _vmuladd(s41, x, v1)
            x = _vbroadcast(ap[q + 5]); s50 = _vmuladd(s50, x, v0); s51 = _vmuladd(s51, x, v1)
        o = c0
        _vstore(c, o, s00); _vstore(c, o + 8, s01); o += ldc
        _vstore(c, o, s10); _vstore(c, o + 8, s11); o += ldc
        _vstore(c, o, s20); _vstore(c, o + 8, s21); o += ldc
        _vstore(c, o, s30); _vstore(c, o + 8, s31); o += ldc
        _vstore(c, o, s40); _vstore(c, o + 8, s41); o += ldc
        _vstore(c, o, s50); _vstore(c, o + 8, s51)

    @njit(parallel=True, fastmath=False, cache=True)
    def _pack_a(a):
        """A (M, K) -> flat [M/6 blocks][K][6], rows past M zero."""
        m, k = a.shape
        mb = (m + MR - 1) // MR
        out = np.zeros(mb * k * MR, np.float32)
        for i in prange(mb):
            for r in range(MR):
                row = i * MR + r
                if row < m:
                    base = i * k * MR + r
                    for j in range(k):
                        out[base + j * MR] = a[row, j]
        return out

    @njit(parallel=True, fastmath=False, cache=True)
    def _gemm_packed(ap, m, k, b, ldb, c, kstride, pstride):
        """C (mp × ldb, flat) = A·B with A packed by _pack_a and B (k × ldb, ldb % 16 == 0) with
        element (k, col) at (col // 16) * pstride + k * kstride + col % 16: row-major is
        (ldb, 16), panels of 16 columns (:func:`_im2col_panels`) are (16, k * 16).

        Tasks of MC rows × NC columns run in parallel; within one, a KC-row slice of its B
        columns (64 KiB) stays in L2 while every 6-row block of A passes over it."""
        mb = (m + MR - 1) // MR
        n_mc = (mb * MR + MC - 1) // MC
        n_nc = (ldb + NC - 1) // NC
        for t in prange(n_mc * n_nc):
            im = t % n_mc
            jn = t // n_mc
            i_end = min(mb, (im + 1) * (MC // MR))
            j_end = min(ldb, (jn + 1) * NC)
            for k0 in range(0, k, KC):
                k1 = min(k, k0 + KC)
                for i in range(im * (MC // MR), i_end):
                    for j in range(jn * NC, j_end, NR):
                        _micro(ap, i * k * MR, b, kstride, (j // NR) * pstride, c, ldb, i * MR * ldb + j, k0, k1)

    @njit(parallel=True, fastmath=False, cache=True)
    def _im2col(x, size, stride, pad, out_h, out_w, ldb, out):
        """Darknet's im2col_cpu for one image (c, h, w) into ``out``, flat (c*size*size) × ldb:
        rows ordered (c, ky, kx), columns (row, col), zeros where the kernel overhangs the image
        and in the columns past out_h*out_w."""
        c, h, w = x.shape
        hw = out_h * out_w
        for r in prange(c * size * size):
            kx = r % size
            ky = (r // size) % size
            ch = r // (size * size)
            base = r * ldb
            out[base + hw:base + ldb] = 0
            lo = (pad - kx + stride - 1) // stride if pad > kx else 0  # first ox inside the image
            hi = min(out_w, max(0, (w - 1 - kx + pad) // stride + 1))  # one past the last
            lo = min(lo, hi)
            for oy in range(out_h):
                o = base + oy * out_w
                iy = oy * stride + ky - pad
                if iy < 0 or iy >= h:
                    out[o:o + out_w] = 0
                    continue
                out[o:o + lo] = 0
                out[o + hi:o + out_w] = 0
                if stride == 1:
                    out[o + lo:o + hi] = x[ch, iy, lo + kx - pad:hi + kx - pad]
                else:
                    for ox in range(lo, hi):
                        out[o + ox] = x[ch, iy, ox * stride + kx - pad]

    @njit(parallel=True, fastmath=False, cache=True)
    def _im2col_panels(x, size, stride, pad, out_h, out_w, ldb, out):
        """:func:`_im2col` stored in panels of 16 columns, element (r, col) at
        (col // 16) * rows * 16 + r * 16 + col % 16: the micro-kernel then reads its B tile in
        order, which pays where the matrix is narrow (13×13 outputs) and deep."""
        c, h, w = x.shape
        hw = out_h * out_w
        rows = c * size * size
        panel = rows * NR
        zero = np.float32(0)
        for r in prange(rows):
            kx = r % size
            ky = (r // size) % size
            ch = r // (size * size)
            base = r * NR
            col = 0
            for oy in range(out_h):
                iy = oy * stride + ky - pad
                inside = iy >= 0 and iy < h
                for ox in range(out_w):
                    ix = ox * stride + kx - pad
                    v = x[ch, iy, ix] if inside and ix >= 0 and ix < w else zero
                    out[(col >> 4) * panel + base + (col & 15)] = v
                    col += 1
            for col in range(hw, ldb):
                out[(col >> 4) * panel + base + (col & 15)] = zero

    @njit(parallel=True, fastmath=False, cache=True)
    def _epilogue(c, ldc, out, bias, mean, divisor, scales, mode, act):
        """out (M, N, flat) from C (row stride ldc).  mode 0: C as is; 1: + bias (add_bias);
        2: Darknet's normalize_cpu (the division in double), scale_bias, add_bias.  Then the
        activation: 0 linear, 1 leaky (``x > 0 ? x : .1*x`` with the double literal .1)."""
        m = bias.shape[0]
        n = out.shape[0] // m
        zero = np.float32(0)
        for i in prange(m):
            src = c[i * ldc:i * ldc + n]
            dst = out[i * n:(i + 1) * n]
            if mode == 2:
                mu = mean[i]
                den = divisor[i]
                sc = scales[i]
                b = bias[i]
                for j in range(n):
                    dst[j] = np.float32(np.float64(src[j] - mu) / den) * sc + b
            elif mode == 1:
                b = bias[i]
                for j in range(n):
                    dst[j] = src[j] + b
            else:
                dst[:] = src
            if act == 1:
                for j in range(n):
                    y = dst[j]
                    dst[j] = y if y > zero else np.float32(0.1 * np.float64(y))


    @njit(fastmath=False, cache=True)
    def _resize_columns(img, ix, dx, out):
        """Darknet's resize_image, first pass: out[..., x] = (1-dx)*img[ix] + dx*img[ix+1] in
        float32 for every column but the last, which copies the source's last column."""
        c, h, in_w = img.shape
        w = out.shape[2]
        one = np.float32(1)
        for r in prange(c * h):
            k = r // h
            y = r % h
            for x in range(w - 1):
                i = ix[x]
                out[k, y, x] = (one - dx[x]) * img[k, y, i] + dx[x] * img[k, y, i + 1]
            out[k, y, w - 1] = img[k, y, in_w - 1]

    @njit(fastmath=False, cache=True)
    def _resize_rows(part, iy, dy, out):
        """Second pass: (1-dy)*row[iy] + dy*row[iy+1], the last row without its second term."""
        c, h, w = out.shape
        one = np.float32(1)
        for r in prange(c * h):
            k = r // h
            y = r % h
            a = one - dy[y]
            if y < h - 1:
                b = dy[y]
                for x in range(w):
                    out[k, y, x] = a * part[k, iy[y], x] + b * part[k, iy[y] + 1, x]
            else:
                for x in range(w):
                    out[k, y, x] = a * part[k, iy[y], x]


def resize(img: torch.Tensor, w: int, h: int, positions) -> torch.Tensor:
    """``pydarknet.image.resize`` of a (C, H, W) float32 CPU image with both sides > 1, in
    two compiled passes (one thread: a picture is a few milliseconds of work, less than a
    thread pool's wake-ups on a busy machine); ``positions(n_in, n_out, count)`` gives Darknet's source indices and
    fractions (the caller's, so that both implementations share them)."""
    src = img.contiguous().numpy()
    c, in_h, in_w = src.shape
    ix, dx = (t.numpy() for t in positions(in_w, w, w - 1))
    iy, dy = (t.numpy() for t in positions(in_h, h, h))
    part = np.empty((c, in_h, w), np.float32)
    _resize_columns(src, ix, dx, part)
    out = np.empty((c, h, w), np.float32)
    _resize_rows(part, iy, dy, out)
    return torch.from_numpy(out)


_THREADS_SET = False


def _start_threads() -> None:
    """Start numba's thread pool with torch's thread count, once.  Starting it (OpenMP
    layer) resets the OpenMP thread count that torch shares, so torch's is put back."""
    global _THREADS_SET
    if not _THREADS_SET:
        import numba
        n = torch.get_num_threads()
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
        torch.set_num_threads(n)
        _THREADS_SET = True


def _ldb(n: int) -> int:
    return (n + NR - 1) // NR * NR


def gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) @ b (K, N), each output summed over k in order in float32 (Darknet's gemm_nn)."""
    _start_threads()
    a = np.ascontiguousarray(a.detach().float().cpu().numpy())
    b = b.detach().float().cpu().numpy()
    m, k = a.shape
    n = b.shape[1]
    if k == 0:
        return torch.zeros(m, n)
    ldb = _ldb(n)
    bp = np.zeros((k, ldb), np.float32)
    bp[:, :n] = b
    c = np.empty(((m + MR - 1) // MR * MR) * ldb, np.float32)
    _gemm_packed(_pack_a(a), m, k, bp.reshape(-1), ldb, c, ldb, NR)
    out = np.empty(m * n, np.float32)
    zero = np.zeros(m, np.float32)
    _epilogue(c, ldb, out, zero, zero, zero.astype(np.float64), zero, 0, 0)
    return torch.from_numpy(out).view(m, n)


class PackedWeights:
    """A conv layer's kernels packed for the micro-kernel, one block per group."""

    def __init__(self, weight: torch.Tensor, groups: int):
        w = weight.detach().float().cpu().numpy()
        m = w.shape[0]
        flat = w.reshape(groups, m // groups, -1)
        self.parts = [_pack_a(np.ascontiguousarray(flat[g])) for g in range(groups)]
        self.m, self.k, self.groups = m // groups, flat.shape[2], groups


_PACKED: dict[int, tuple] = {}


def packed_weights(weight: torch.Tensor, groups: int) -> PackedWeights:
    """The packed form of ``weight``, cached until the tensor is written to (its version counter
    moves) or freed; kept outside the tensor so that nothing extra is pickled with it."""
    key = id(weight)
    hit = _PACKED.get(key)
    stamp = (weight._version, weight.data_ptr(), groups)
    if hit is not None and hit[0]() is weight and hit[1] == stamp:
        return hit[2]
    packed = PackedWeights(weight, groups)
    _PACKED[key] = (weakref.ref(weight, lambda _, key=key: _PACKED.pop(key, None)), stamp, packed)
    return packed


def conv_layer(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, groups: int,
               bias: torch.Tensor | None = None, bn: tuple | None = None,
               activation: str = "linear") -> torch.Tensor:
    """forward_convolutional_layer in Darknet's arithmetic: im2col, the ordered gemm, then batch
    norm (``bn`` = (mean, variance, scales), with ``bias``) or the bias alone (or nothing when
    ``bias`` is None), then linear or leaky."""
    _start_threads()
    packed = packed_weights(weight, groups)
    size = weight.shape[-1]
    n, c, h, w = x.shape
    out_h = (h + 2 * padding - size) // stride + 1
    out_w = (w + 2 * padding - size) // stride + 1
    hw = out_h * out_w
    ldb = _ldb(hw)
    xs = x.detach().float().contiguous().numpy()
    cg = c // groups
    m = groups * packed.m
    zero = np.zeros(m, np.float32)
    as_np = lambda t: zero if t is None else np.ascontiguousarray(t.detach().float().numpy())  # noqa: E731
    mean, scales = (as_np(t) for t in ((bn[0], bn[2]) if bn else (None, None)))
    divisor = np.ascontiguousarray(bn[1].detach().double().numpy()) if bn else zero.astype(np.float64)
    b_ = as_np(bias)
    mode = 2 if bn else 1 if bias is not None else 0
    out = np.empty((n, groups, packed.m * hw), np.float32)
    cbuf = _scratch("c", ((packed.m + MR - 1) // MR * MR) * ldb)
    cols = _scratch("cols", packed.k * ldb)
    # narrow outputs: B in panels (read in order); wide ones: row-major (a cheaper im2col)
    im2col, strides = (_im2col_panels, (NR, packed.k * NR)) if ldb <= PANELS_UP_TO else (_im2col, (ldb, NR))
    for i in range(n):
        for g in range(groups):
            im2col(xs[i, g * cg:(g + 1) * cg], size, stride, padding, out_h, out_w, ldb, cols)
            _gemm_packed(packed.parts[g], packed.m, packed.k, cols, ldb, cbuf, *strides)
            r = slice(g * packed.m, (g + 1) * packed.m)
            _epilogue(cbuf, ldb, out[i, g], b_[r], mean[r], divisor[r], scales[r], mode, ACTIVATIONS[activation])
    return torch.from_numpy(out).view(n, m, out_h, out_w)


_SCRATCH = threading.local()


def _scratch(name: str, size: int) -> np.ndarray:
    """A float32 work buffer of at least ``size`` values, kept per thread and reused, so that
    a forward does not map fresh pages for its im2col and gemm buffers on every layer."""
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, np.float32)
        setattr(_SCRATCH, name, buf)
    return buf[:size]
