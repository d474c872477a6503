"""JPEG decoding exactly as Darknet's stb_image (v2.19) does it, bit for bit.

Darknet reads pictures with ``stbi_load(path, &w, &h, &c, 3)``.  stb's JPEG
decoder is not libjpeg: its integer IDCT, its "fancy" chroma upsampling (only
for 2x1, 1x2 and 2x2 subsampling; nearest neighbour otherwise) and its
reduced-precision YCbCr->RGB give pixels that differ from OpenCV's by up to
tens of levels.  This module follows stb's scalar C step by step, all of it in
numba (``cache=True``, so the JIT cost is paid once per machine): markers and
tables with stb's checks and its short failure reasons ("bad huffman code",
"expected marker", ...), the entropy-coded scans (baseline and progressive,
restart intervals), the IDCT, the upsampling and the colour conversion.  Where
LLVM does not find the vector code by itself (8x8 transposes, interleaved
stores) it is written as vector IR (``_transpose8``, ``_ycc8``, ``_hv2_8``).

Like stb, bytes past the end of the file read as 0, a truncated file without
EOI is an error ("expected marker"), and a corrupt block stops the whole load.
"""

from __future__ import annotations

import sys
import threading

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["JpegError", "decode_jpeg", "is_jpeg"]

_M32 = 0xFFFFFFFF
_NONE = 0xFF  # stb's STBI__MARKER_none
_FAST_BITS = 9
_FAST_MASK = (1 << _FAST_BITS) - 1

# columns of the packed Huffman tables (one int32 row per table; stb's fast, size, values,
# maxcode and delta, and for the AC table th, its fast_ac in row th): one array, so the
# inlined helpers of the hot loops take one table array, not six
_TF, _TS, _TV, _TM, _TD, _TA = 0, 512, 769, 1025, 1043, 1061
_TCOLS = 1573

# component table columns
_H, _V, _TQ, _HD, _HA, _DC, _X, _Y, _W2, _H2, _OFF, _CW, _COFF = range(13)

_DEZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34,
     27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
     58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63] + [63] * 15, dtype=np.int64)

def _f2f(x: float) -> int:
    """stb's ``stbi__f2f``: ``(int)(x*4096 + 0.5)`` with x a float literal."""
    return int(float(np.float32(x) * np.float32(4096)) + 0.5)


def _float2fixed(x: float) -> int:
    """stb's ``stbi__float2fixed`` (all in float32), shifted left by 8."""
    return int(np.float32(x) * np.float32(4096.0) + np.float32(0.5)) << 8


_C0541, _C1847, _C0765 = _f2f(0.5411961), _f2f(-1.847759065), _f2f(0.765366865)
_C1175, _C0298, _C2053 = _f2f(1.175875602), _f2f(0.298631336), _f2f(2.053119869)
_C3072, _C1501, _C0899 = _f2f(3.072711026), _f2f(1.501321110), _f2f(-0.899976223)
_C2562, _C1961, _C0390 = _f2f(-2.562915447), _f2f(-1.961570560), _f2f(-0.390180644)
_CR_R, _CR_G = _float2fixed(1.40200), _float2fixed(0.71414)
_CB_G, _CB_B = _float2fixed(0.34414), _float2fixed(1.77200)


class JpegError(ValueError):
    """stb_image would reject this JPEG; the message is stb's failure reason."""


def is_jpeg(head: bytes) -> bool:
    """stb's ``stbi__jpeg_test``: 0xFF, any further 0xFF fill bytes, then SOI (0xD8)."""
    if not head or head[0] != 0xFF:
        return False
    rest = head[1:].lstrip(b"\xff")
    return rest[:1] == b"\xd8"


# ---------------------------------------------------------------- bit reader
# The data and the packed Huffman tables are read through their addresses (``_ld_u8``,
# ``_ld_i32``), not as arrays: each inlined helper taking an array adds a reference count
# (an atomic increment and decrement) per call, a sixth of the decoding time.  The arrays
# stay alive in the caller (``_scan``'s arguments) for the whole scan.
# The reader's state travels as locals (pos, cb, bits, nomore, marker) through
# helpers that numba inlines, so it stays in registers.  The refill's common case
# (plain bytes) is inlined; a 0xFF byte, the end of the data or a marker seen goes
# to ``_fill``, a call.  No array goes to a call in the hot loops otherwise: numba
# counts references of arrays passed to calls with atomic operations, which took a
# fifth of the decoding time.

@intrinsic
def _ld_u8(typingctx, addr, i):
    """The uint8 at byte address addr + i, as an int64."""
    def codegen(context, builder, sig, args):
        ptr = builder.inttoptr(args[0], ir.PointerType(ir.IntType(8)))
        return builder.zext(builder.load(builder.gep(ptr, [args[1]])), ir.IntType(64))
    return types.int64(addr, i), codegen


@intrinsic
def _ld_i32(typingctx, addr, i):
    """Item i of the int32 array at address addr, as an int64."""
    def codegen(context, builder, sig, args):
        ptr = builder.inttoptr(args[0], ir.PointerType(ir.IntType(32)))
        return builder.sext(builder.load(builder.gep(ptr, [args[1]])), ir.IntType(64))
    return types.int64(addr, i), codegen


# An 8x8 block of int32 as eight <8 x i32> vectors: its transposes are three rounds of
# shuffles (what LLVM does not find for a scalar transpose loop, which took most of the IDCT).
_V8 = ir.VectorType(ir.IntType(32), 8)
_B8 = ir.VectorType(ir.IntType(8), 8)


def _ir_rows(builder, addr):
    """The 8 rows of the int32 block at address addr, as vectors."""
    p = builder.inttoptr(addr, ir.PointerType(_V8))
    return [builder.load(builder.gep(p, [ir.Constant(ir.IntType(64), k)]), align=4)
            for k in range(8)]


def _ir_shuffle(builder, a, b, lanes):
    return builder.shuffle_vector(a, b, ir.Constant(_V8, [ir.Constant(ir.IntType(32), i)
                                                          for i in lanes]))


def _ir_splat(c):
    """The <8 x i32> constant with c in every lane."""
    return ir.Constant(_V8, [ir.Constant(ir.IntType(32), c)] * 8)


def _ir_bytes(builder, addr, widen=True):
    """The 8 bytes at address addr: <8 x i32> (zero-extended), or <8 x i8> as they are."""
    v = builder.load(builder.inttoptr(addr, ir.PointerType(_B8)), align=1)
    return builder.zext(v, _V8) if widen else v


def _ir_clamp_bytes(builder, v):
    """An <8 x i32> clamped to 0..255, as <8 x i8> (stb's ``stbi__clamp``)."""
    v = builder.select(builder.icmp_signed("<", v, _ir_splat(0)), _ir_splat(0), v)
    v = builder.select(builder.icmp_signed(">", v, _ir_splat(255)), _ir_splat(255), v)
    return builder.trunc(v, _B8)


def _ir_transpose(builder, rows):
    """Interleave 32-bit lanes, then 64-bit pairs, then 128-bit halves."""
    lo32, hi32 = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    lo64, hi64 = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    lo128, hi128 = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    t = []
    for k in (0, 2, 4, 6):
        t += [_ir_shuffle(builder, rows[k], rows[k + 1], lo32),
              _ir_shuffle(builder, rows[k], rows[k + 1], hi32)]
    u = []
    for a, b in ((0, 2), (4, 6)):
        u += [_ir_shuffle(builder, t[a], t[b], lo64), _ir_shuffle(builder, t[a], t[b], hi64),
              _ir_shuffle(builder, t[a + 1], t[b + 1], lo64),
              _ir_shuffle(builder, t[a + 1], t[b + 1], hi64)]
    return ([_ir_shuffle(builder, u[k], u[k + 4], lo128) for k in range(4)]
            + [_ir_shuffle(builder, u[k], u[k + 4], hi128) for k in range(4)])


@intrinsic
def _transpose8(typingctx, src, dst):
    """Transpose the 8x8 int32 block at address src into the one at dst."""
    def codegen(context, builder, sig, args):
        q = builder.inttoptr(args[1], ir.PointerType(_V8))
        for k, row in enumerate(_ir_transpose(builder, _ir_rows(builder, args[0]))):
            builder.store(row, builder.gep(q, [ir.Constant(ir.IntType(64), k)])).align = 4
        return context.get_dummy_value()
    return types.none(src, dst), codegen


@intrinsic
def _transpose8_pixels(typingctx, src, dst, stride):
    """Transpose the 8x8 int32 block at address src, clamp it to 0..255 and store row r's
    8 bytes at byte address dst + r * stride."""
    def codegen(context, builder, sig, args):
        for k, row in enumerate(_ir_transpose(builder, _ir_rows(builder, args[0]))):
            addr = builder.add(args[1], builder.mul(args[2], ir.Constant(ir.IntType(64), k)))
            builder.store(_ir_clamp_bytes(builder, row),
                          builder.inttoptr(addr, ir.PointerType(_B8))).align = 1
        return context.get_dummy_value()
    return types.none(src, dst, stride), codegen


@numba.njit(cache=True, nogil=True)
def _fill(bp, nb, pos, cb, bits, nomore, marker):
    """``stbi__grow_buffer_unsafe``: refill to more than 24 bits, stopping at a marker."""
    while True:
        b = np.int64(0)
        if not nomore:
            if pos < nb:
                b = _ld_u8(bp, pos)
                pos += 1
            if b == 0xFF:
                c = np.int64(0xFF)
                while c == 0xFF:  # fill bytes
                    c = np.int64(0)
                    if pos < nb:
                        c = _ld_u8(bp, pos)
                        pos += 1
                if c != 0:
                    return pos, cb, bits, np.int64(1), c
        cb = (cb | (b << (24 - bits))) & _M32
        bits += 8
        if bits > 24:
            return pos, cb, bits, nomore, marker


@numba.njit(cache=True, nogil=True, inline="always")
def _need(bp, nb, pos, cb, bits, nomore, marker):
    """``_fill``, its plain bytes without a call."""
    while bits <= 24:
        if nomore or pos >= nb:
            return _fill(bp, nb, pos, cb, bits, nomore, marker)
        byte = _ld_u8(bp, pos)
        if byte == 0xFF:
            return _fill(bp, nb, pos, cb, bits, nomore, marker)
        cb = cb | (byte << (24 - bits))
        pos += 1
        bits += 8
    return pos, cb, bits, nomore, marker


@numba.njit(cache=True, nogil=True, inline="always")
def _huff(bp, nb, pos, cb, bits, nomore, marker, t, hp):
    """``stbi__jpeg_huff_decode`` with table t of the packed tables at address hp:
    (symbol or -1, reader state)."""
    if bits < 16:
        pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
    k = _ld_i32(hp, t * _TCOLS + _TF + ((cb >> (32 - _FAST_BITS)) & ((1 << _FAST_BITS) - 1)))
    if k < 255:
        s = _ld_i32(hp, t * _TCOLS + _TS + k)
        if s > bits:
            return np.int64(-1), pos, cb, bits, nomore, marker
        return _ld_i32(hp, t * _TCOLS + _TV + k), pos, (cb << s) & _M32, bits - s, nomore, marker
    temp = cb >> 16
    k = _FAST_BITS + 1
    while temp >= _ld_i32(hp, t * _TCOLS + _TM + k):
        k += 1
    if k == 17:
        return np.int64(-1), pos, cb, bits - 16, nomore, marker
    if k > bits:
        return np.int64(-1), pos, cb, bits, nomore, marker
    c = ((cb >> (32 - k)) & ((1 << k) - 1)) + _ld_i32(hp, t * _TCOLS + _TD + k)
    return _ld_i32(hp, t * _TCOLS + _TV + c), pos, (cb << k) & _M32, bits - k, nomore, marker


@numba.njit(cache=True, nogil=True, inline="always")
def _receive(bp, nb, pos, cb, bits, nomore, marker, n, signed):
    """``stbi__extend_receive`` (signed) or ``stbi__jpeg_get_bits``: n >= 1 bits."""
    if bits < n:
        pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
    mask = (np.int64(1) << n) - 1
    k = ((cb << n) | (cb >> (32 - n))) & _M32
    v = k & mask
    if signed and not (cb >> 31):
        v += 1 - (np.int64(1) << n)
    return v, pos, k & ~mask & _M32, bits - n, nomore, marker


@numba.njit(cache=True, nogil=True, inline="always")
def _bit(bp, nb, pos, cb, bits, nomore, marker):
    """``stbi__jpeg_get_bit``: True for a 1 bit."""
    if bits < 1:
        pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
    return (cb & 0x80000000) != 0, pos, (cb << 1) & _M32, bits - 1, nomore, marker


# ---------------------------------------------------------------- scans

@numba.njit(cache=True, nogil=True)
def _block_list(comp, order, scan_n, mcu_x, mcu_y):
    """The blocks of a scan in stream order: component, coefficient offset and plane
    offset of each, and the blocks per MCU.

    A one-component scan covers the component's own blocks (not its MCU
    padding) and each block is an MCU; an interleaved scan goes MCU by MCU.
    """
    if scan_n == 1:
        n = order[0]
        w = (comp[n, _X] + 7) >> 3
        h = (comp[n, _Y] + 7) >> 3
        per_mcu = 1
        nb = w * h
    else:
        per_mcu = 0
        for kk in range(scan_n):
            per_mcu += comp[order[kk], _H] * comp[order[kk], _V]
        nb = mcu_x * mcu_y * per_mcu
    bcomp = np.empty(nb, np.int64)
    boff = np.empty(nb, np.int64)
    bpl = np.empty(nb, np.int64)
    b = 0
    if scan_n == 1:
        for j in range(h):
            for i in range(w):
                b = _put_block(comp, n, i, j, bcomp, boff, bpl, b)
        return bcomp, boff, bpl, per_mcu
    for j in range(mcu_y):
        for i in range(mcu_x):
            for kk in range(scan_n):
                n = order[kk]
                for y in range(comp[n, _V]):
                    for x in range(comp[n, _H]):
                        b = _put_block(comp, n, i * comp[n, _H] + x, j * comp[n, _V] + y,
                                       bcomp, boff, bpl, b)
    return bcomp, boff, bpl, per_mcu


@numba.njit(cache=True, nogil=True, inline="always")
def _put_block(comp, n, x2, y2, bcomp, boff, bpl, b):
    """Block (x2, y2) of component n as the scan's b-th block; returns b + 1."""
    bcomp[b] = n
    boff[b] = comp[n, _COFF] + 64 * (x2 + y2 * comp[n, _CW])
    bpl[b] = comp[n, _OFF] + 8 * (x2 + y2 * comp[n, _W2])
    return b + 1


@numba.njit(cache=True, nogil=True)
def _scan(buf, pos, restart, progressive, spec, bcomp, boff, bpl, per_mcu, comp, coeff,
          planes, huf, dequant):
    """``stbi__parse_entropy_coded_data``: one scan into ``coeff`` or ``planes``.

    Returns (1 or a negative error code, position, pending marker).  Baseline
    blocks are dequantised (as C shorts) and IDCT'd into ``planes`` as they are
    decoded, as stb's decode_block and idct_block do; progressive coefficients
    go to ``coeff``, dequantised at the end.  One long function on purpose: a numba
    loop over MCUs whose bit-reader state (cb, bits, nomore, marker) would otherwise be
    passed in and out of every step, as it is in stb's own C.
    """
    spec_start, spec_end, succ_high, succ_low = spec[0], spec[1], spec[2], spec[3]
    bp, nb, hp = buf.ctypes.data, buf.size, huf.ctypes.data
    cb = np.int64(0)
    bits = np.int64(0)
    nomore = np.int64(0)
    marker = np.int64(_NONE)
    eob = np.int64(0)
    todo = restart if restart else np.int64(0x7FFFFFFF)
    dcpred = np.zeros(4, np.int64)
    w = np.empty(256, np.int32)  # a baseline block and its IDCT's scratch
    for b in range(bcomp.size):
        n = bcomp[b]
        o = boff[b]
        if not progressive:
            # stbi__jpeg_decode_block
            q = comp[n, _TQ]
            if bits < 16:
                pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
            t, pos, cb, bits, nomore, marker = _huff(bp, nb, pos, cb, bits, nomore, marker,
                                                     comp[n, _HD], hp)
            if t < 0 or t > 15:  # t > 15: stb reads past its tables (corrupt file)
                return -1, pos, marker
            for z in range(64):  # no slice: a view is reference-counted
                w[z] = 0
            diff = np.int64(0)
            if t:
                diff, pos, cb, bits, nomore, marker = _receive(bp, nb, pos, cb, bits, nomore,
                                                               marker, t, True)
            dcpred[n] += diff
            w[0] = np.int16(dcpred[n] * dequant[q, 0])  # a C short: wraps
            ha = comp[n, _HA]
            nz = False
            k = 1
            while k < 64:
                if bits < 16:
                    pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
                r = _ld_i32(hp, ha * _TCOLS + _TA + ((cb >> (32 - _FAST_BITS)) & _FAST_MASK))
                if r:
                    k += (r >> 4) & 15
                    s = r & 15
                    cb = (cb << s) & _M32
                    bits -= s
                    zig = _DEZIGZAG[k]
                    k += 1
                    w[zig] = np.int16((r >> 8) * dequant[q, zig])
                    nz = True
                else:
                    rs, pos, cb, bits, nomore, marker = _huff(bp, nb, pos, cb, bits, nomore, marker,
                                                              ha + 4, hp)
                    if rs < 0:
                        return -1, pos, marker
                    s = rs & 15
                    if s == 0:
                        if rs != 0xF0:
                            break
                        k += 16
                    else:
                        k += rs >> 4
                        zig = _DEZIGZAG[k]
                        k += 1
                        v, pos, cb, bits, nomore, marker = _receive(bp, nb, pos, cb, bits, nomore,
                                                                    marker, s, True)
                        w[zig] = np.int16(v * dequant[q, zig])
                        nz = True
            if nz:
                _idct_block(w, planes, bpl[b], comp[n, _W2])
            else:
                _flat_block(w[0], planes, bpl[b], comp[n, _W2])
        elif spec_start == 0:
            # stbi__jpeg_decode_block_prog_dc
            if spec_end != 0:
                return -2, pos, marker
            if bits < 16:
                pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
            if succ_high == 0:
                for z in range(64):
                    coeff[o + z] = 0
                t, pos, cb, bits, nomore, marker = _huff(bp, nb, pos, cb, bits, nomore, marker,
                                                         comp[n, _HD], hp)
                if t < 0 or t > 15:  # undefined in stb (corrupt file): an error here
                    return -1, pos, marker
                diff = np.int64(0)
                if t:
                    diff, pos, cb, bits, nomore, marker = _receive(bp, nb, pos, cb, bits, nomore,
                                                                   marker, t, True)
                dcpred[n] += diff
                coeff[o] = dcpred[n] << succ_low
            else:
                one, pos, cb, bits, nomore, marker = _bit(bp, nb, pos, cb, bits, nomore, marker)
                if one:
                    coeff[o] = np.int64(coeff[o]) + (1 << succ_low)
        else:
            rc, eob, pos, cb, bits, nomore, marker = _prog_ac(
                bp, nb, pos, cb, bits, nomore, marker, eob, coeff, o, comp[n, _HA], spec_start,
                spec_end, succ_high, succ_low, hp)
            if rc < 0:
                return rc, pos, marker
        if (b + 1) % per_mcu == 0:
            todo -= 1
            if todo <= 0:
                if bits < 24:
                    pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
                if not (0xD0 <= marker <= 0xD7):
                    return 1, pos, marker  # stb stops here: corrupt data rather than none
                # stbi__jpeg_reset
                cb = 0
                bits = 0
                nomore = 0
                marker = _NONE
                for z in range(4):
                    dcpred[z] = 0
                todo = restart if restart else np.int64(0x7FFFFFFF)
                eob = 0
    return 1, pos, marker


@numba.njit(cache=True, nogil=True, inline="always")
def _prog_ac(bp, nb, pos, cb, bits, nomore, marker, eob, coeff, o, ha, spec_start, spec_end,
             succ_high, succ_low, hp):
    """``stbi__jpeg_decode_block_prog_ac``: first AC scans and refinement scans.  Kept as one
    numba function, like stb's C, so the bit-reader state stays in registers."""
    if succ_high == 0:
        if eob:
            return 1, eob - 1, pos, cb, bits, nomore, marker
        k = spec_start
        while k <= spec_end:
            if bits < 16:
                pos, cb, bits, nomore, marker = _need(bp, nb, pos, cb, bits, nomore, marker)
            r = _ld_i32(hp, ha * _TCOLS + _TA + ((cb >> (32 - _FAST_BITS)) & _FAST_MASK))
            if r:
                k += (r >> 4) & 15
                s = r & 15
                cb = (cb << s) & _M32
                bits -= s
                zig = _DEZIGZAG[k]
                k += 1
                coeff[o + zig] = (r >> 8) << succ_low
            else:
                rs, pos, cb, bits, nomore, marker = _huff(bp, nb, pos, cb, bits, nomore, marker,
                                                          ha + 4, hp)
                if rs < 0:
                    return -1, eob, pos, cb, bits, nomore, marker
                s = rs & 15
                r = rs >> 4
                if s == 0:
                    if r < 15:
                        eob = np.int64(1) << r
                        if r:
                            v, pos, cb, bits, nomore, marker = _receive(
                                bp, nb, pos, cb, bits, nomore, marker, r, False)
                            eob += v
                        return 1, eob - 1, pos, cb, bits, nomore, marker
                    k += 16
                else:
                    k += r
                    zig = _DEZIGZAG[k]
                    k += 1
                    v, pos, cb, bits, nomore, marker = _receive(bp, nb, pos, cb, bits, nomore,
                                                                marker, s, True)
                    coeff[o + zig] = v << succ_low
        return 1, eob, pos, cb, bits, nomore, marker
    # refinement: a correction bit for each non-zero coefficient met
    bit = np.int64(1) << succ_low
    if eob:
        for k in range(spec_start, spec_end + 1):
            z = o + _DEZIGZAG[k]
            p = np.int64(coeff[z])
            if p != 0:
                one, pos, cb, bits, nomore, marker = _bit(bp, nb, pos, cb, bits, nomore, marker)
                if one and (p & bit) == 0:
                    coeff[z] = p + bit if p > 0 else p - bit
        return 1, eob - 1, pos, cb, bits, nomore, marker
    k = spec_start
    while k <= spec_end:
        rs, pos, cb, bits, nomore, marker = _huff(bp, nb, pos, cb, bits, nomore, marker, ha + 4,
                                                  hp)
        if rs < 0:
            return -1, eob, pos, cb, bits, nomore, marker
        s = rs & 15
        r = rs >> 4
        if s == 0:
            if r < 15:
                eob = (np.int64(1) << r) - 1
                if r:
                    v, pos, cb, bits, nomore, marker = _receive(bp, nb, pos, cb, bits, nomore,
                                                                marker, r, False)
                    eob += v
                r = 64  # force end of block
        else:
            if s != 1:
                return -1, eob, pos, cb, bits, nomore, marker
            one, pos, cb, bits, nomore, marker = _bit(bp, nb, pos, cb, bits, nomore, marker)
            s = bit if one else -bit
        while k <= spec_end:
            z = o + _DEZIGZAG[k]
            k += 1
            p = np.int64(coeff[z])
            if p != 0:
                one, pos, cb, bits, nomore, marker = _bit(bp, nb, pos, cb, bits, nomore, marker)
                if one and (p & bit) == 0:
                    coeff[z] = p + bit if p > 0 else p - bit
            else:
                if r == 0:
                    coeff[z] = s
                    break
                r -= 1
    return 1, eob, pos, cb, bits, nomore, marker


# ---------------------------------------------------------------- IDCT
# stb's integer IDCT in C ints: every intermediate is cast to int32 (np.int32 wraps as
# C does), which lets LLVM keep 32-bit lanes and vectorise the 8 columns (then the 8
# rows) of a block in AVX2 registers.  The scratch w holds the block and the two passes
# at fixed offsets of one array, so the compiler sees that they do not overlap.

_I32 = np.int32
_ROUND_COL = 512
_ROUND_ROW = 65536 + (128 << 17)  # stb's rounding plus the +128 level shift


@numba.njit(cache=True, nogil=True, inline="always")
def _idct_1d(s0, s1, s2, s3, s4, s5, s6, s7):
    """stb's ``STBI__IDCT_1D`` (jidctint's islow) in int32: returns x0..x3, t0..t3."""
    p1 = _I32((s2 + s6) * _C0541)
    t2 = _I32(p1 + s6 * _C1847)
    t3 = _I32(p1 + s2 * _C0765)
    t0 = _I32((s0 + s4) * 4096)
    t1 = _I32((s0 - s4) * 4096)
    x0, x3, x1, x2 = _I32(t0 + t3), _I32(t0 - t3), _I32(t1 + t2), _I32(t1 - t2)
    p3, p4, p1, p2 = _I32(s7 + s3), _I32(s5 + s1), _I32(s7 + s1), _I32(s5 + s3)
    p5 = _I32((p3 + p4) * _C1175)
    t0, t1, t2, t3 = _I32(s7 * _C0298), _I32(s5 * _C2053), _I32(s3 * _C3072), _I32(s1 * _C1501)
    p1 = _I32(p5 + p1 * _C0899)
    p2 = _I32(p5 + p2 * _C2562)
    p3 = _I32(p3 * _C1961)
    p4 = _I32(p4 * _C0390)
    return (x0, x1, x2, x3, _I32(t0 + p1 + p3), _I32(t1 + p2 + p4), _I32(t2 + p2 + p3),
            _I32(t3 + p1 + p4))


@numba.njit(cache=True, nogil=True, inline="always")
def _idct_pass(w, i, o, rnd, shift):
    """One pass over 8 lanes: the inputs of lane c at w[i + 8k + c], outputs at w[o + 8k + c]."""
    for c in range(8):
        x0, x1, x2, x3, t0, t1, t2, t3 = _idct_1d(w[i + c], w[i + 8 + c], w[i + 16 + c],
                                                  w[i + 24 + c], w[i + 32 + c], w[i + 40 + c],
                                                  w[i + 48 + c], w[i + 56 + c])
        x0, x1, x2, x3 = _I32(x0 + rnd), _I32(x1 + rnd), _I32(x2 + rnd), _I32(x3 + rnd)
        w[o + c] = _I32(x0 + t3) >> shift
        w[o + 56 + c] = _I32(x0 - t3) >> shift
        w[o + 8 + c] = _I32(x1 + t2) >> shift
        w[o + 48 + c] = _I32(x1 - t2) >> shift
        w[o + 16 + c] = _I32(x2 + t1) >> shift
        w[o + 40 + c] = _I32(x2 - t1) >> shift
        w[o + 24 + c] = _I32(x3 + t0) >> shift
        w[o + 32 + c] = _I32(x3 - t0) >> shift


@numba.njit(cache=True, nogil=True, inline="always")
def _idct_block(w, planes, o, stride):
    """``stbi__idct_block``: the dequantised block in w[0:64] to 8x8 pixels at planes[o].

    stb's shortcut for a column without AC terms gives what the full formula gives.
    """
    wp = w.ctypes.data
    _idct_pass(w, 0, 64, _ROUND_COL, 10)  # columns
    _transpose8(wp + 4 * 64, wp + 4 * 128)
    _idct_pass(w, 128, 192, _ROUND_ROW, 17)  # rows, transposed
    _transpose8_pixels(wp + 4 * 192, planes.ctypes.data + o, stride)


@numba.njit(cache=True, nogil=True, inline="always")
def _flat_block(dc, planes, o, stride):
    """A block without AC terms: one value (what the full IDCT gives)."""
    v = min(max((dc * 4 * 4096 + _ROUND_ROW) >> 17, 0), 255)
    for r in range(8):
        q = o + r * stride
        for c in range(8):
            planes[q + c] = v


@numba.njit(cache=True, nogil=True)
def _idct_plane(coeff, coff, cw, nbx, nby, dequant, planes, off, stride):
    """The progressive finish (``stbi__jpeg_finish``): dequantise each of the component's
    nbx x nby blocks as C shorts (``stbi__jpeg_dequantize``), then IDCT it."""
    w = np.empty(256, np.int32)
    for j in range(nby):
        for i in range(nbx):
            b0 = coff + 64 * (i + j * cw)
            o = off + (j * 8) * stride + i * 8
            ac = 0
            for t in range(64):
                v = _I32(np.int16(np.int64(coeff[b0 + t]) * dequant[t]))
                w[t] = v
                if t:
                    ac |= v
            if ac == 0:
                _flat_block(w[0], planes, o, stride)
            else:
                _idct_block(w, planes, o, stride)


# ---------------------------------------------------------------- output

@intrinsic
def _hv2_8(typingctx, near, far, dst):
    """stb's ``resample_row_hv_2`` inner step for the 8 chroma samples at addresses near and
    far (the nearer and the farther row; near[-1], far[-1], near[8] and far[8] readable):
    16 pixels stored at address dst."""
    def codegen(context, builder, sig, args):
        i32, k = ir.IntType(32), _ir_splat

        def load(addr, shift):
            return _ir_bytes(builder, builder.add(addr, ir.Constant(ir.IntType(64), shift)))

        def vsum(shift):  # 3 * near + far, stb's vertical step
            return builder.add(builder.mul(load(args[0], shift), k(3)), load(args[1], shift))

        here = builder.add(builder.mul(vsum(0), k(3)), k(8))
        even = builder.ashr(builder.add(here, vsum(-1)), k(4))
        odd = builder.ashr(builder.add(here, vsum(1)), k(4))
        lanes = ir.VectorType(i32, 16)
        mix = builder.shuffle_vector(even, odd, ir.Constant(
            lanes, [ir.Constant(i32, i // 2 + 8 * (i % 2)) for i in range(16)]))
        b16 = ir.VectorType(ir.IntType(8), 16)
        builder.store(builder.trunc(mix, b16), builder.inttoptr(args[2], ir.PointerType(b16))
                      ).align = 1
        return context.get_dummy_value()
    return types.none(near, far, dst), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _resample_row(planes, kind, out, near, far, w, hs):
    """stb's ``resample_row_*`` (kind 1..4) from rows of ``planes`` into ``out`` (room for
    2w + 16 bytes).  A row of ``planes`` has a readable byte before it and 8 after it."""
    if kind == 1:  # v_2
        for i in range(w):
            out[i] = (3 * np.int32(planes[near + i]) + np.int32(planes[far + i]) + 2) >> 2
    elif kind == 2:  # h_2
        if w == 1:
            out[0] = planes[near]
            out[1] = planes[near]
            return
        a0 = np.int32(planes[near])
        out[0] = a0
        out[1] = (a0 * 3 + np.int32(planes[near + 1]) + 2) >> 2
        for i in range(1, w - 1):
            n = 3 * np.int32(planes[near + i]) + 2
            out[2 * i] = (n + np.int32(planes[near + i - 1])) >> 2
            out[2 * i + 1] = (n + np.int32(planes[near + i + 1])) >> 2
        i = w - 1
        out[2 * i] = (np.int32(planes[near + w - 2]) * 3 + np.int32(planes[near + w - 1]) + 2) >> 2
        out[2 * i + 1] = planes[near + w - 1]
    elif kind == 3:  # hv_2: 8 samples to 16 pixels a step, then the two ends
        pb, op = planes.ctypes.data, out.ctypes.data
        for i in range(0, w, 8):
            _hv2_8(pb + near + i, pb + far + i, op + 2 * i)
        out[0] = (3 * np.int32(planes[near]) + np.int32(planes[far]) + 2) >> 2
        out[2 * w - 1] = (3 * np.int32(planes[near + w - 1]) + np.int32(planes[far + w - 1])
                          + 2) >> 2
    else:  # generic: nearest neighbour
        for i in range(w):
            v = planes[near + i]
            for j in range(hs):
                out[i * hs + j] = v


@numba.njit(cache=True, nogil=True, inline="always")
def _blinn(x, y):
    """``stbi__blinn_8x8``: rounded x*y/255."""
    t = np.int64(x) * np.int64(y) + 128
    return ((t + (t >> 8)) >> 8) & 255


@intrinsic
def _ycc8(typingctx, y, cb, cr, dst):
    """``stbi__YCbCr_to_RGB_row`` (its reduced precision, in C ints) for the 8 pixels whose
    Y, Cb and Cr bytes are at addresses y, cb and cr: 24 RGB bytes stored at address dst."""
    def codegen(context, builder, sig, args):
        k, add, sub, mul = _ir_splat, builder.add, builder.sub, builder.mul
        y_fixed = add(builder.shl(_ir_bytes(builder, args[0]), k(20)), k(1 << 19))
        vb = sub(_ir_bytes(builder, args[1]), k(128))
        vr = sub(_ir_bytes(builder, args[2]), k(128))
        r = builder.ashr(add(y_fixed, mul(vr, k(_CR_R))), k(20))
        g = add(sub(y_fixed, mul(vr, k(_CR_G))), builder.and_(mul(vb, k(-_CB_G)), k(-65536)))
        g = builder.ashr(g, k(20))
        b = builder.ashr(add(y_fixed, mul(vb, k(_CB_B))), k(20))
        _ir_store_rgb(builder, *(_ir_clamp_bytes(builder, v) for v in (r, g, b)), args[3])
        return context.get_dummy_value()
    return types.none(y, cb, cr, dst), codegen


def _ir_store_rgb(builder, r, g, b, dst):
    """Interleave three <8 x i8> vectors into 24 bytes stored at address dst."""
    i32 = ir.IntType(32)
    lanes = ir.VectorType(i32, 16)
    rg = builder.shuffle_vector(r, g, ir.Constant(lanes, [ir.Constant(i32, i) for i in range(16)]))
    bb = builder.shuffle_vector(b, b, ir.Constant(lanes, [ir.Constant(i32, i % 8)
                                                          for i in range(16)]))
    mix = builder.shuffle_vector(rg, bb, ir.Constant(
        ir.VectorType(i32, 24), [ir.Constant(i32, p + 8 * c) for p in range(8) for c in range(3)]))
    rgb = ir.VectorType(ir.IntType(8), 24)
    builder.store(mix, builder.inttoptr(dst, ir.PointerType(rgb))).align = 1


@intrinsic
def _rgb8(typingctx, r, g, b, dst):
    """The 8 pixels whose R, G and B bytes are at addresses r, g and b, as 24 RGB bytes
    stored at address dst (an RGB JPEG's components, or grey given three times)."""
    def codegen(context, builder, sig, args):
        rgb = (_ir_bytes(builder, a, widen=False) for a in args[:3])
        _ir_store_rgb(builder, *rgb, args[3])
        return context.get_dummy_value()
    return types.none(r, g, b, dst), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _ycc_row(y, cb, cr, dst, count):
    """The count pixels of a row (bytes at addresses y, cb, cr) as RGB at address dst, 8 at
    a time: reads up to 7 bytes past each row, writes up to 21 bytes past the output row."""
    for i in range(0, count, 8):
        _ycc8(y + i, cb + i, cr + i, dst + 3 * i)


@numba.njit(cache=True, nogil=True)
def _to_rgb(planes, comp, decode_n, img_x, img_y, hmax, vmax, mode):
    """The resample and colour-convert loop of stb's ``load_jpeg_image`` for 3 channels.

    mode: 0 YCbCr, 1 RGB (stored as is), 2 grey, 3 CMYK (Adobe transform 0),
    4 YCCK (transform 2), 5 four components otherwise (fourth ignored).
    Rows that need no resampling are read in place from ``planes``.
    """
    n = img_y * img_x * 3
    out = np.empty(n + 24, np.uint8)  # room for the last row's 8-pixel stores
    hs = np.empty(4, np.int64)
    vs = np.empty(4, np.int64)
    ystep = np.empty(4, np.int64)
    wlo = np.empty(4, np.int64)
    ypos = np.zeros(4, np.int64)
    line0 = np.empty(4, np.int64)
    line1 = np.empty(4, np.int64)
    kind = np.empty(4, np.int64)
    src = np.empty(4, np.int64)
    for k in range(decode_n):
        hs[k] = hmax // comp[k, _H]
        vs[k] = vmax // comp[k, _V]
        ystep[k] = vs[k] >> 1
        wlo[k] = (img_x + hs[k] - 1) // hs[k]
        line0[k] = comp[k, _OFF]
        line1[k] = comp[k, _OFF]
        if hs[k] == 1 and vs[k] == 1:
            kind[k] = 0
        elif hs[k] == 1 and vs[k] == 2:
            kind[k] = 1
        elif hs[k] == 2 and vs[k] == 1:
            kind[k] = 2
        elif hs[k] == 2 and vs[k] == 2:
            kind[k] = 3
        else:
            kind[k] = 4
    rows = np.empty((4, img_x + 32), np.uint8)  # stb's line buffers
    base, pbase, rbase = out.ctypes.data, planes.ctypes.data, rows.ctypes.data
    for j in range(img_y):
        for k in range(decode_n):
            y_bot = ystep[k] >= (vs[k] >> 1)
            near = line1[k] if y_bot else line0[k]
            far = line0[k] if y_bot else line1[k]
            if kind[k] == 0:
                src[k] = pbase + near
            else:
                _resample_row(planes, kind[k], rows[k], near, far, wlo[k], hs[k])
                src[k] = rbase + k * rows.shape[1]
            ystep[k] += 1
            if ystep[k] >= vs[k]:
                ystep[k] = 0
                line0[k] = line1[k]
                ypos[k] += 1
                if ypos[k] < comp[k, _Y]:
                    line1[k] += comp[k, _W2]
        _row_to_rgb(src, mode, out, base, j * img_x * 3, img_x)
    return out[:n].reshape(img_y, img_x, 3)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_to_rgb(src, mode, out, base, o, count):
    """One output row at out[o] from the component rows at addresses src (see ``_to_rgb``)."""
    if mode == 0 or mode == 4 or mode == 5:
        _ycc_row(src[0], src[1], src[2], base + o, count)
        if mode != 4:
            return
        for i in range(count):  # YCCK: inverted, times K
            m = _ld_u8(src[3], i)
            for ch in range(3):
                out[o + 3 * i + ch] = _blinn(255 - np.int64(out[o + 3 * i + ch]), m)
        return
    if mode == 1 or mode == 2:  # RGB as stored; grey: Y three times
        g, b = (src[1], src[2]) if mode == 1 else (src[0], src[0])
        for i in range(0, count, 8):
            _rgb8(src[0] + i, g + i, b + i, base + o + 3 * i)
        return
    for i in range(count):  # CMYK: each of C, M, Y times K
        m = _ld_u8(src[3], i)
        out[o + 3 * i] = _blinn(_ld_u8(src[0], i), m)
        out[o + 3 * i + 1] = _blinn(_ld_u8(src[1], i), m)
        out[o + 3 * i + 2] = _blinn(_ld_u8(src[2], i), m)


# ---------------------------------------------------------------- tables

@numba.njit(cache=True, nogil=True)
def _build_huffman(counts, huf, t):
    """``stbi__build_huffman`` into row t of the packed tables; False on bad code lengths."""
    code = np.zeros(257, np.int64)
    k = 0
    for i in range(16):
        for _ in range(counts[i]):
            if k >= 256:
                return False
            huf[t, _TS + k] = i + 1
            k += 1
    huf[t, _TS + k] = 0
    c = 0
    k = 0
    for j in range(1, 17):
        huf[t, _TD + j] = k - c
        if huf[t, _TS + k] == j:
            while huf[t, _TS + k] == j:
                code[k] = c
                k += 1
                c += 1
            if c - 1 >= (1 << j):
                return False
        huf[t, _TM + j] = c << (16 - j)
        c <<= 1
    huf[t, _TM + 17] = 0x7FFFFFFF  # stb's 0xFFFFFFFF: above any 16 bits compared, alike
    for i in range(1 << _FAST_BITS):
        huf[t, _TF + i] = 255
    for i in range(k):
        s = np.int64(huf[t, _TS + i])
        if s <= _FAST_BITS:
            cc = code[i] << (_FAST_BITS - s)
            for j in range(1 << (_FAST_BITS - s)):
                huf[t, _TF + cc + j] = i
    return True


@numba.njit(cache=True, nogil=True)
def _build_fast_ac(huf, th):
    """``stbi__build_fast_ac``: run, length and value of small AC codes of table th in one
    lookup, kept in the row of DC table th."""
    t = th + 4
    for i in range(1 << _FAST_BITS):
        f = np.int64(huf[t, _TF + i])
        huf[th, _TA + i] = 0
        if f < 255:
            rs = np.int64(huf[t, _TV + f])
            run = (rs >> 4) & 15
            magbits = rs & 15
            ln = np.int64(huf[t, _TS + f])
            if magbits and ln + magbits <= _FAST_BITS:
                k = ((i << ln) & ((1 << _FAST_BITS) - 1)) >> (_FAST_BITS - magbits)
                if k < (1 << (magbits - 1)):
                    k += (-1 << magbits) + 1
                if -128 <= k <= 127:
                    huf[th, _TA + i] = k * 256 + run * 16 + ln + magbits


# ---------------------------------------------------------------- markers
# stb's ``stbi__jpeg`` state outside the entropy-coded data, in one int64 array that the
# helpers share (``st``); bytes past the end of the file read as 0.

_POS, _MARK, _JFIF, _APP14, _RESTART, _PROG, _IMG_X, _IMG_Y, _IMG_N, _HMAX, _VMAX, \
    _MCU_X, _MCU_Y, _RGB = range(14)
_JFIF_TAG = np.array([0x4A, 0x46, 0x49, 0x46, 0], np.int64)
_ADOBE_TAG = np.array([0x41, 0x64, 0x6F, 0x62, 0x65, 0], np.int64)
_RGB_IDS = np.array([0x52, 0x47, 0x42], np.int64)
_PAD = 16  # bytes before and after the planes


@numba.njit(cache=True, nogil=True)
def _get8(buf, st):
    p = st[_POS]
    if p < buf.size:
        st[_POS] = p + 1
        return np.int64(buf[p])
    return np.int64(0)


@numba.njit(cache=True, nogil=True)
def _get16(buf, st):
    hi = _get8(buf, st)
    return (hi << 8) | _get8(buf, st)


@numba.njit(cache=True, nogil=True)
def _tag(buf, st, tag):
    """Read len(tag) bytes; True if they are the tag."""
    same = True
    for i in range(tag.size):
        if _get8(buf, st) != tag[i]:
            same = False
    return same


@numba.njit(cache=True, nogil=True)
def _get_marker(buf, st):
    """``stbi__get_marker``: the pending marker, else 0xFF+ and the next byte, else none."""
    if st[_MARK] != _NONE:
        m = st[_MARK]
        st[_MARK] = _NONE
        return m
    x = _get8(buf, st)
    if x != 0xFF:
        return np.int64(_NONE)
    while x == 0xFF:
        x = _get8(buf, st)
    return x


@numba.njit(cache=True, nogil=True)
def _process_marker(buf, st, m, dequant, huf):
    """``stbi__process_marker``: DRI, DQT, DHT, APPn and COM; anything else is an error."""
    if m == _NONE:
        raise JpegError("expected marker")
    if m == 0xDD:
        if _get16(buf, st) != 4:
            raise JpegError("bad DRI len")
        st[_RESTART] = _get16(buf, st)
    elif m == 0xDB:
        _dqt(buf, st, dequant)
    elif m == 0xC4:
        _dht(buf, st, huf)
    elif 0xE0 <= m <= 0xEF or m == 0xFE:
        _app(buf, st, m)
    else:
        raise JpegError("unknown marker")


@numba.njit(cache=True, nogil=True)
def _dqt(buf, st, dequant):
    length = _get16(buf, st) - 2
    while length > 0:
        q = _get8(buf, st)
        p, t = q >> 4, q & 15
        if p != 0 and p != 1:
            raise JpegError("bad DQT type")
        if t > 3:
            raise JpegError("bad DQT table")
        for i in range(64):
            v = _get8(buf, st)
            if p:
                v = (v << 8) | _get8(buf, st)
            dequant[t, _DEZIGZAG[i]] = v
        length -= 129 if p else 65
    if length != 0:
        raise JpegError("bad DQT len")


@numba.njit(cache=True, nogil=True)
def _dht(buf, st, huf):
    length = _get16(buf, st) - 2
    counts = np.zeros(16, np.int64)
    while length > 0:
        q = _get8(buf, st)
        tc, th = q >> 4, q & 15
        if tc > 1 or th > 3:
            raise JpegError("bad DHT header")
        n = 0
        for i in range(16):
            counts[i] = _get8(buf, st)
            n += counts[i]
        length -= 17
        t = th + 4 * tc
        if not _build_huffman(counts, huf, t):
            raise JpegError("bad code lengths")
        for i in range(n):
            huf[t, _TV + i] = _get8(buf, st)
        if tc:
            _build_fast_ac(huf, th)
        length -= n
    if length != 0:
        raise JpegError("bad DHT len")


@numba.njit(cache=True, nogil=True)
def _app(buf, st, m):
    length = _get16(buf, st)
    if length < 2:
        if m == 0xFE:
            raise JpegError("bad COM len")
        raise JpegError("bad APP len")
    length -= 2
    if m == 0xE0 and length >= 5:
        if _tag(buf, st, _JFIF_TAG):
            st[_JFIF] = 1
        length -= 5
    elif m == 0xEE and length >= 12:
        length -= 6
        if _tag(buf, st, _ADOBE_TAG):
            _get8(buf, st)  # version
            _get16(buf, st)  # flags0
            _get16(buf, st)  # flags1
            st[_APP14] = _get8(buf, st)
            length -= 6
    # stbi__skip: a negative length jumps to the end
    st[_POS] = buf.size if length < 0 else min(st[_POS] + length, buf.size)


@numba.njit(cache=True, nogil=True)
def _frame_header(buf, st, comp, ids):
    """``stbi__process_frame_header``: sizes and components; returns the planes and the
    progressive coefficients.  stb mallocs these (uninitialised).  Baseline planes start as
    the IDCT of a zero block (128), progressive ones and coefficients as zeros: the
    never-written parts of a corrupt or scan-less file are deterministic."""
    lf = _get16(buf, st)
    if lf < 11:
        raise JpegError("bad SOF len")
    if _get8(buf, st) != 8:
        raise JpegError("only 8-bit")
    img_y = _get16(buf, st)
    if img_y == 0:
        raise JpegError("no header height")
    img_x = _get16(buf, st)
    if img_x == 0:
        raise JpegError("0 width")
    c = _get8(buf, st)
    if c != 1 and c != 3 and c != 4:
        raise JpegError("bad component count")
    if lf != 8 + 3 * c:
        raise JpegError("bad SOF len")
    for i in range(c):
        ids[i] = _get8(buf, st)
        q = _get8(buf, st)
        comp[i, _H], comp[i, _V] = q >> 4, q & 15
        if not 1 <= comp[i, _H] <= 4:
            raise JpegError("bad H")
        if not 1 <= comp[i, _V] <= 4:
            raise JpegError("bad V")
        comp[i, _TQ] = _get8(buf, st)
        if comp[i, _TQ] > 3:
            raise JpegError("bad TQ")
    if img_x * img_y * c > 0x7FFFFFFF:
        raise JpegError("too large")
    st[_RGB] = c == 3 and ids[0] == _RGB_IDS[0] and ids[1] == _RGB_IDS[1] \
        and ids[2] == _RGB_IDS[2]
    hmax = comp[:c, _H].max()
    vmax = comp[:c, _V].max()
    mcu_x = (img_x + 8 * hmax - 1) // (8 * hmax)
    mcu_y = (img_y + 8 * vmax - 1) // (8 * vmax)
    off = 0
    for i in range(c):
        comp[i, _X] = (img_x * comp[i, _H] + hmax - 1) // hmax
        comp[i, _Y] = (img_y * comp[i, _V] + vmax - 1) // vmax
        comp[i, _W2] = mcu_x * comp[i, _H] * 8
        comp[i, _H2] = mcu_y * comp[i, _V] * 8
        comp[i, _OFF] = _PAD + off
        comp[i, _CW] = comp[i, _W2] // 8
        comp[i, _COFF] = off
        off += comp[i, _W2] * comp[i, _H2]
    st[_IMG_X], st[_IMG_Y], st[_IMG_N] = img_x, img_y, c
    st[_HMAX], st[_VMAX], st[_MCU_X], st[_MCU_Y] = hmax, vmax, mcu_x, mcu_y
    planes = np.empty(off + 2 * _PAD, np.uint8)  # padded: the vector steps read past rows
    planes[:] = 0 if st[_PROG] else 128
    coeff = np.zeros(off if st[_PROG] else 0, np.int16)
    return planes, coeff


@numba.njit(cache=True, nogil=True)
def _scan_header(buf, st, comp, ids):
    """``stbi__process_scan_header``: the components of a scan and its spectral selection."""
    ls = _get16(buf, st)
    scan_n = _get8(buf, st)
    if not 1 <= scan_n <= min(4, st[_IMG_N]):
        raise JpegError("bad SOS component count")
    if ls != 6 + 2 * scan_n:
        raise JpegError("bad SOS len")
    order = np.zeros(4, np.int64)
    for i in range(scan_n):
        cid, q = _get8(buf, st), _get8(buf, st)
        which = -1
        for k in range(st[_IMG_N]):
            if ids[k] == cid and which < 0:
                which = k
        if which < 0:
            raise JpegError("bad SOS component id")
        comp[which, _HD], comp[which, _HA] = q >> 4, q & 15
        if q >> 4 > 3:
            raise JpegError("bad DC huff")
        if q & 15 > 3:
            raise JpegError("bad AC huff")
        order[i] = which
    spec = np.zeros(4, np.int64)
    spec[0], spec[1] = _get8(buf, st), _get8(buf, st)
    aa = _get8(buf, st)
    spec[2], spec[3] = aa >> 4, aa & 15
    if st[_PROG]:
        if spec[0] > 63 or spec[1] > 63 or spec[0] > spec[1] or spec[2] > 13 or spec[3] > 13:
            raise JpegError("bad SOS")
    else:
        if spec[0] != 0 or spec[2] != 0 or spec[3] != 0:
            raise JpegError("bad SOS")
        spec[1] = 63
    return order, scan_n, spec


@numba.njit(cache=True, nogil=True)
def _entropy_coded(buf, st, comp, ids, coeff, planes, huf, dequant):
    """One scan's header and entropy-coded data, then the marker that follows it."""
    order, scan_n, spec = _scan_header(buf, st, comp, ids)
    bcomp, boff, bpl, per_mcu = _block_list(comp, order, scan_n, st[_MCU_X], st[_MCU_Y])
    rc, pos, marker = _scan(buf, st[_POS], st[_RESTART], st[_PROG], spec, bcomp, boff, bpl,
                            per_mcu, comp, coeff, planes, huf, dequant)
    if rc == -1:
        raise JpegError("bad huffman code")
    if rc == -2:
        raise JpegError("can't merge dc and ac")
    st[_POS], st[_MARK] = pos, marker
    if marker == _NONE:
        # stb skips junk (e.g. zeros) after the data up to the next 0xFF
        while st[_POS] < buf.size and buf[st[_POS]] != 0xFF:
            st[_POS] += 1
        if st[_POS] < buf.size:
            st[_POS] += 1
            st[_MARK] = _get8(buf, st)


@numba.njit(cache=True, nogil=True)
def _finish(st, comp, coeff, dequant, planes):
    """``stbi__jpeg_finish``: IDCT the progressive components' own blocks (baseline blocks
    were IDCT'd as they were decoded)."""
    if not st[_PROG]:
        return
    for n in range(st[_IMG_N]):
        nbx, nby = (comp[n, _X] + 7) >> 3, (comp[n, _Y] + 7) >> 3
        _idct_plane(coeff, comp[n, _COFF], comp[n, _CW], nbx, nby, dequant[comp[n, _TQ]],
                    planes, comp[n, _OFF], comp[n, _W2])


@numba.njit(cache=True, nogil=True)
def _color_mode(st):
    """What ``load_jpeg_image`` does with the components for 3 output channels: the mode
    of ``_to_rgb`` and the number of components it reads."""
    if st[_IMG_N] == 1:
        return 2, 1
    if st[_IMG_N] == 3:
        is_rgb = st[_RGB] or (st[_APP14] == 0 and not st[_JFIF])
        return (1 if is_rgb else 0), 3
    if st[_APP14] == 0:
        return 3, 4
    return (4 if st[_APP14] == 2 else 5), 4


@numba.njit(cache=True, nogil=True)
def _decode(buf):
    """``stbi__decode_jpeg_image`` and ``load_jpeg_image``: the file's bytes to HxWx3 RGB."""
    st = np.zeros(14, np.int64)
    st[_MARK], st[_APP14] = _NONE, -1
    dequant = np.zeros((4, 64), np.int64)
    huf = np.zeros((8, _TCOLS), np.int32)
    comp = np.zeros((4, 13), np.int64)
    ids = np.zeros(4, np.int64)
    if _get_marker(buf, st) != 0xD8:
        raise JpegError("no SOI")
    m = _get_marker(buf, st)
    while m != 0xC0 and m != 0xC1 and m != 0xC2:
        _process_marker(buf, st, m, dequant, huf)
        m = _get_marker(buf, st)
        while m == _NONE:
            if st[_POS] >= buf.size:
                raise JpegError("no SOF")
            m = _get_marker(buf, st)
    st[_PROG] = m == 0xC2
    planes, coeff = _frame_header(buf, st, comp, ids)
    m = _get_marker(buf, st)
    while m != 0xD9:
        if m == 0xDA:
            _entropy_coded(buf, st, comp, ids, coeff, planes, huf, dequant)
        elif m == 0xDC:
            ld = _get16(buf, st)
            nl = _get16(buf, st)
            if ld != 4:
                raise JpegError("bad DNL len")
            if nl != st[_IMG_Y]:
                raise JpegError("bad DNL height")
        else:
            _process_marker(buf, st, m, dequant, huf)
        m = _get_marker(buf, st)
    _finish(st, comp, coeff, dequant, planes)
    mode, decode_n = _color_mode(st)
    return _to_rgb(planes, comp, decode_n, st[_IMG_X], st[_IMG_Y], st[_HMAX], st[_VMAX], mode)


_NOTE_AFTER_S = 3.0  # a first call slower than this is compiling, not loading the cache
_warm = False


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode a JPEG file's bytes as ``stbi_load(..., 3)``: HxWx3 uint8 RGB.

    Raises ``JpegError`` with stb's failure reason where stb returns NULL.  The first
    call of a process loads the cached machine code (under a second) or, once per
    machine, compiles it (about a minute): then a note says so on stderr.
    """
    global _warm
    buf = np.frombuffer(bytes(data), np.uint8)
    if _warm:
        return _decode(buf)
    note = threading.Timer(_NOTE_AFTER_S, _compiling_note)
    note.daemon = True
    note.start()
    try:
        return _decode(buf)
    finally:
        note.cancel()
        _warm = True


def _compiling_note() -> None:
    print("pydarknet: compiling the stb_image-exact JPEG decoder, once per machine (about a "
          "minute; OpenCV's decoder, PYDARKNET_DECODER=opencv, does without it)",
          file=sys.stderr, flush=True)
