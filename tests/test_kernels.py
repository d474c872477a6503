"""The numba kernels (pydarknet.kernels) give exactly the bits of the torch reference of
Darknet's arithmetic (pydarknet.exact's sequential sums, image.resize's two passes)."""
from __future__ import annotations

import pytest
import torch

from pydarknet import exact, image, kernels

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 5, 3), (13, 600, 37), (6, 300, 16), (125, 1024, 169)])
def test_gemm_is_the_sequential_sum(m, k, n):
    a, b = _rand(m, k, seed=1), _rand(k, n, seed=2)
    assert torch.equal(kernels.gemm(a, b), exact._torch_sequential_matmul(a, b))


def test_gemm_keeps_signed_zeros_and_non_finite_values():
    a = torch.tensor([[-0., 1., float("inf")], [1e30, 1e30, -1e30], [0., 0., 0.]])
    b = torch.tensor([[1., -1.], [-0., 0.], [0., 2.]])
    got, ref = kernels.gemm(a, b), exact._torch_sequential_matmul(a, b)
    assert torch.equal(got.isnan(), ref.isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(ref))
    assert torch.equal(torch.signbit(got), torch.signbit(ref))


@pytest.mark.parametrize("c,m,size,stride,pad,groups,h,w", [
    (3, 16, 3, 1, 1, 1, 20, 21), (8, 12, 3, 2, 1, 2, 17, 17), (16, 10, 1, 1, 0, 1, 13, 13),
    (2, 6, 3, 2, 0, 1, 9, 10), (2, 6, 5, 3, 2, 1, 11, 12), (3, 7, 1, 2, 0, 1, 8, 9), (2, 6, 3, 1, 3, 1, 4, 5)])
@pytest.mark.parametrize("bn", [False, True], ids=["bias", "bn"])
@pytest.mark.parametrize("act", ["linear", "leaky"])
def test_conv_layer_matches_the_torch_steps(c, m, size, stride, pad, groups, h, w, bn, act):
    x, weight = _rand(2, c, h, w, seed=3), _rand(m, c // groups, size, size, seed=4)
    bias, mean, scales = _rand(m, seed=5), _rand(m, seed=6), _rand(m, seed=7)
    variance = _rand(m, seed=8).abs()
    stats = (mean, variance, scales) if bn else None
    got = kernels.conv_layer(x, weight, stride, pad, groups, bias, stats, act)
    ref = exact._torch_conv2d(x, weight, stride, pad, groups)
    ref = exact.batch_norm(ref, mean, variance, scales, bias) if bn else exact.add_bias(ref, bias)
    assert torch.equal(got, exact.activate(ref, act))
    assert torch.equal(kernels.conv_layer(x, weight, stride, pad, groups),
                       exact._torch_conv2d(x, weight, stride, pad, groups))


def test_packed_weights_follow_writes():
    x, weight = _rand(1, 4, 6, 6, seed=1), _rand(8, 4, 3, 3, seed=2)
    first = kernels.conv_layer(x, weight, 1, 1, 1)
    with torch.no_grad():
        weight.mul_(2)
    assert torch.equal(kernels.conv_layer(x, weight, 1, 1, 1), exact._torch_conv2d(x, weight, 1, 1, 1))
    assert not torch.equal(first, kernels.conv_layer(x, weight, 1, 1, 1))


@pytest.mark.parametrize("src,dst", [((424, 640), (275, 416)), ((50, 30), (416, 416)), ((512, 512), (42, 42)),
                                     ((7, 9), (3, 2)), ((2, 2), (5, 5)), ((333, 251), (416, 313))])
def test_resize_matches_the_torch_passes(src, dst):
    img = torch.rand(3, *src, generator=torch.Generator().manual_seed(0))
    (h, w) = dst
    ref = image._resize_rows(image._resize_columns(img, w), h)
    assert torch.equal(kernels.resize(img, w, h, image._positions), ref)
    assert torch.equal(image.resize(img, w, h), ref)
