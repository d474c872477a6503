"""Region loss (``Region.delta`` / ``region_delta``) against Darknet's golden training fixtures.

The fixtures store ``l.delta`` as ``forward_region_layer`` leaves it (before backward) and
``*l.cost``.  Our delta and cost are bit-identical to them on every iteration of every set
(A3s, A3 when ../shared is present, E2 including its NaN-ridden ``cpu`` mode); the
tolerance tests state the issue's acceptance bounds, the ``exact`` tests the equality.

Options the fixtures never use (softmax=0, bias_match=0, background, rescore=0,
seen >= 12800, several truths in one cell, overlapping tree paths, coords > 4) are checked
against a scalar model written here from the README's description of Darknet's rules.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import SHARED_SKIP_REASON, golden_dir, shared_golden_dir
from pydarknet import Darknet
from pydarknet.region_loss import read_map, region_cost, region_delta
from pydarknet.tree import read_tree, resolve_data_path

f4, f8 = np.float32, np.float64
VARIANTS = [f"burnin{b}_{m}" for b in (0, 10) for m in ("cpu", "gpusem")]
TREE_SET = golden_dir() / "minitree_train_synth"


@lru_cache(maxsize=None)
def _layer(cfg: str):
    return Darknet(cfg).detection_layer


def _iterations(folder: Path, npz: str, cfg: str):
    """(layer, output (B,C,H,W), truth, seen, ref delta, ref cost) for each stored iteration."""
    z = np.load(folder / npz)
    truth = torch.from_numpy(np.load(folder / "inputs.npz")["truth"])
    layer = _layer(str(folder / cfg))
    for k in range(len(z["seen"])):
        ro = z["region_output"][k]
        out = torch.from_numpy(ro.reshape(ro.shape[0], -1, *ro.shape[-2:]))
        yield k, layer, out, truth, int(z["seen"][k]), z["region_delta"][k].reshape(out.shape), z["region_cost"][k]


def _check_close(folder: Path, npz: str, cfg: str) -> None:
    for k, layer, out, truth, seen, ref, ref_cost in _iterations(folder, npz, cfg):
        delta, cost = layer.delta(out, truth, seen)
        assert delta.shape == out.shape and delta.dtype == torch.float32
        d = delta.numpy()
        ok = ~np.isnan(ref)
        assert np.array_equal(np.isnan(d), ~ok), f"it{k + 1}: NaN pattern"
        err = np.abs(d[ok] - ref[ok]).max()
        assert err <= 1e-5 * np.abs(ref[ok]).max(), f"it{k + 1}: max|delta diff| {err}"
        if np.isnan(ref_cost):
            assert np.isnan(float(cost))
        else:
            assert abs(float(cost) - float(ref_cost)) <= 1e-5 * abs(float(ref_cost)), f"it{k + 1}: cost"


def _check_exact(folder: Path, npz: str, cfg: str) -> None:
    for k, layer, out, truth, seen, ref, ref_cost in _iterations(folder, npz, cfg):
        delta, cost = region_delta(layer, out, truth, seen)
        # same bits (signed zeros included); NaN positions equal
        d = delta.numpy()
        same = (d.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(d) & np.isnan(ref))
        assert same.all(), f"it{k + 1}: {int((~same).sum())} delta values differ"
        assert cost.dtype == torch.float32
        assert np.array_equal(np.float32(cost.item()), ref_cost, equal_nan=True), f"it{k + 1}: cost"


# --- golden fixtures ---------------------------------------------------------------

def _photo_dir() -> Path | None:
    shared = shared_golden_dir()
    return None if shared is None else shared / "mini_yolov2_train"


def _cfg(variant: str) -> str:
    return f"mini-yolov2-train_{variant.split('_')[0]}.cfg"


@pytest.mark.parametrize("variant", VARIANTS)
def test_synth_delta_and_cost_within_tolerance(variant):
    _check_close(golden_dir() / "mini_yolov2_train_synth", variant + ".npz", _cfg(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_synth_delta_and_cost_bit_exact(variant):
    _check_exact(golden_dir() / "mini_yolov2_train_synth", variant + ".npz", _cfg(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_photo_delta_and_cost(variant):
    folder = _photo_dir()
    if folder is None or not folder.is_dir():
        pytest.skip(SHARED_SKIP_REASON)
    _check_close(folder, variant + ".npz", _cfg(variant))
    _check_exact(folder, variant + ".npz", _cfg(variant))


@pytest.mark.parametrize("mode", ["gpusem", "cpu"])
def test_tree_delta_and_cost(mode):
    """E2: map= on box truths, a class-only image, the hierarchical class delta.

    ``cpu`` is Darknet's broken CPU tree softmax (NaN over part of the output): the delta
    is NaN exactly where Darknet's is and equal elsewhere.
    """
    _check_close(TREE_SET, mode + ".npz", "mini-yolo9000-train.cfg")
    _check_exact(TREE_SET, mode + ".npz", "mini-yolo9000-train.cfg")


def test_tree_onlyclass_location():
    """The class-only image: objectness delta 0 only at Darknet's chosen location, classes set there."""
    z = np.load(TREE_SET / "gpusem.npz")
    for k, layer, out, truth, seen, ref, _ in _iterations(TREE_SET, "gpusem.npz", "mini-yolo9000-train.cfg"):
        d = layer.delta(out, truth, seen)[0].numpy().reshape(2, layer.num, layer.entries, -1)
        loc = int(z["onlyclass_location"][k])
        n, cell = divmod(loc, d.shape[-1])
        obj = d[1, :, layer.coords]
        assert obj[n, cell] == 0 and np.count_nonzero(obj) == obj.size - 1
        assert np.count_nonzero(d[1, :, layer.coords + 1:]) == np.count_nonzero(d[1, n, layer.coords + 1:, cell])
        assert not d[1, :, :layer.coords].any()


# --- Darknet's rules on options the fixtures do not cover -----------------------------

def _iou(a, b):
    """box_iou of (x, y, w, h) float32 scalars, as box.c computes it."""
    def overlap(x1, w1, x2, w2):
        l1, l2 = f4(x1 - f4(w1 / f4(2))), f4(x2 - f4(w2 / f4(2)))
        r1, r2 = f4(x1 + f4(w1 / f4(2))), f4(x2 + f4(w2 / f4(2)))
        return f4((r1 if r1 < r2 else r2) - (l1 if l1 > l2 else l2))
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = f4(0) if (w < 0 or h < 0) else f4(w * h)
    return f4(inter / f4(f4(f4(a[2] * a[3]) + f4(b[2] * b[3])) - inter))


def scalar_model(L, out, truth, seen):
    """Darknet's forward_region_layer delta, one value at a time. out (B, num, E, H, W)."""
    B, num, E, H, W = out.shape
    co, o = L.coords, out
    d = np.zeros_like(out)
    anc = [f4(a) for a in L.anchors]
    s = {k: f4(getattr(L, k)) for k in ("noobject_scale", "object_scale", "class_scale", "coord_scale", "thresh")}
    tree = L.tree
    cmap = read_map(resolve_data_path(L.map_file, L.path)) if L.map_file else None

    def pred_box(b, n, j, i, ci, cj):
        return (f4(f4(ci + o[b, n, 0, j, i]) / f4(W)), f4(f4(cj + o[b, n, 1, j, i]) / f4(H)),
                f4(np.exp(f8(o[b, n, 2, j, i])) * f8(anc[2 * n]) / W),
                f4(np.exp(f8(o[b, n, 3, j, i])) * f8(anc[2 * n + 1]) / H))

    def box_delta(b, n, j, i, t, scale):
        p = pred_box(b, n, j, i, i, j)
        tv = (f4(f4(t[0] * f4(W)) - f4(i)), f4(f4(t[1] * f4(H)) - f4(j)),
              f4(np.log(f8(f4(f4(t[2] * f4(W)) / anc[2 * n])))),
              f4(np.log(f8(f4(f4(t[3] * f4(H)) / anc[2 * n + 1])))))
        for k in range(4):
            d[b, n, k, j, i] = f4(scale * f4(tv[k] - o[b, n, k, j, i]))
        return _iou(p, t)

    def class_delta(b, n, j, i, c):
        cs = s["class_scale"]
        if tree is not None:
            while c >= 0:
                g = tree.group[c]
                for e in range(tree.group_offset[g], tree.group_offset[g] + tree.group_size[g]):
                    d[b, n, co + 1 + e, j, i] = f4(cs * f4(f4(0) - o[b, n, co + 1 + e, j, i]))
                d[b, n, co + 1 + c, j, i] = f4(cs * f4(f4(1) - o[b, n, co + 1 + c, j, i]))
                c = tree.parent[c]
            return
        if d[b, n, co + 1, j, i] != 0 and not L.softmax:
            d[b, n, co + 1 + c, j, i] = f4(cs * f4(f4(1) - o[b, n, co + 1 + c, j, i]))
            return
        for e in range(L.classes):
            d[b, n, co + 1 + e, j, i] = f4(cs * f4(f4(e == c) - o[b, n, co + 1 + e, j, i]))

    for b in range(B):
        rows = []
        for t in truth[b][:30]:
            if t[0] == 0:
                break
            rows.append(t)
        if tree is not None:
            oc = [t for t in rows if t[0] > 100000 and t[1] > 100000]
            if oc:
                c, best_p, best_loc = int(oc[0][co]), f4(0), 0
                for n in range(num):
                    for j in range(H):
                        for i in range(W):
                            d[b, n, co, j, i] = f4(s["noobject_scale"] * f4(f4(0) - o[b, n, co, j, i]))
                            p, cc = f4(1), c
                            while cc >= 0:
                                p, cc = f4(p * o[b, n, co + 1 + cc, j, i]), tree.parent[cc]
                            p = f4(o[b, n, co, j, i] * p)
                            if p > best_p:
                                best_p, best_loc = p, (n, j, i)
                class_delta(b, *best_loc, c)
                d[(b, best_loc[0], co) + best_loc[1:]] = 0
                continue
        for j in range(H):
            for i in range(W):
                for n in range(num):
                    p = pred_box(b, n, j, i, i, j)
                    best = f4(0)
                    for t in rows:
                        v = _iou(p, t)
                        if v > best:
                            best = v
                    d[b, n, co, j, i] = f4(s["noobject_scale"] * f4(f4(L.background) - o[b, n, co, j, i]))
                    if best > s["thresh"]:
                        d[b, n, co, j, i] = 0
                    if seen < 12800:
                        prior = (f4((i + .5) / W), f4((j + .5) / H), f4(anc[2 * n] / f4(W)), f4(anc[2 * n + 1] / f4(H)))
                        box_delta(b, n, j, i, prior, f4(.01))
        for t in rows:
            i, j = int(f4(t[0] * f4(W))), int(f4(t[1] * f4(H)))
            best, best_n = f4(0), 0
            for n in range(num):
                if L.bias_match:
                    sw, sh = f4(anc[2 * n] / f4(W)), f4(anc[2 * n + 1] / f4(H))
                else:
                    sw, sh = pred_box(b, n, j, i, i, j)[2:]
                v = _iou((f4(0), f4(0), sw, sh), (f4(0), f4(0), t[2], t[3]))
                if v > best:
                    best, best_n = v, n
            n = best_n
            v = box_delta(b, n, j, i, t, f4(s["coord_scale"] * f4(f4(2) - f4(t[2] * t[3]))))
            for k in range(co - 4):
                d[b, n, 4 + k, j, i] = f4(f4(int(L.mask_scale)) * f4(t[5 + k] - o[b, n, 4 + k, j, i]))
            target = f4(0) if L.background else (v if L.rescore else f4(1))
            d[b, n, co, j, i] = f4(s["object_scale"] * f4(target - o[b, n, co, j, i]))
            c = int(t[co])
            class_delta(b, n, j, i, cmap[c] if cmap else c)
    return d


def _layer_ns(**kw):
    base = dict(classes=6, coords=4, num=3, softmax=True, background=False, rescore=True, bias_match=True,
                thresh=.6, noobject_scale=1., object_scale=5., class_scale=1., coord_scale=1., mask_scale=1.,
                anchors=[0.7, 1.1, 2.0, 1.5, 3.2, 3.9], tree=None, map_file=None, path=None)
    base.update(kw)
    return SimpleNamespace(**base)


def _random_case(L, B=3, H=4, W=5, seed=0, rows=None):
    g = np.random.default_rng(seed)
    E = L.coords + 1 + L.classes
    out = g.standard_normal((B, L.num, E, H, W)).astype(f4)
    sig = (1 / (1 + np.exp(-out))).astype(f4)
    out[:, :, 0:2], out[:, :, L.coords] = sig[:, :, 0:2], sig[:, :, L.coords]
    out[:, :, 4:L.coords] = sig[:, :, 4:L.coords]
    out[:, :, L.coords + 1:] = g.uniform(0, 1, (B, L.num, L.classes, H, W)).astype(f4)
    truth = np.zeros((B, 30, L.coords + 1), f4)
    for b in range(B):
        for t, r in enumerate(rows[b] if rows else []):
            truth[b, t, :len(r)] = r
    return out, truth


def _compare(L, out, truth, seen):
    B, num, E, H, W = out.shape
    ref = scalar_model(L, out, truth, seen)
    delta, cost = region_delta(L, torch.from_numpy(out.reshape(B, -1, H, W)), torch.from_numpy(truth), seen)
    d = delta.numpy().reshape(out.shape)
    diff = np.argwhere(d.view(np.uint32) != ref.view(np.uint32))
    assert diff.size == 0, f"{len(diff)} values differ, first {tuple(diff[0])}: {d[tuple(diff[0])]} vs {ref[tuple(diff[0])]}"
    assert float(cost) == float(region_cost(ref))
    return d


# Rows [x, y, w, h, class] on a 5x4 grid: rows 0 and 1 share a cell and a shape (same anchor),
# row 2 shares the cell with another shape, row 3 repeats row 0's cell and shape last, then a
# zero row and a row Darknet never reads.
ROWS = [
    [[.31, .40, .20, .30, 2], [.35, .45, .22, .28, 4], [.32, .41, .80, .90, 1], [.30, .42, .21, .29, 5],
     [.85, .85, .30, .30, 0], [0, 0, 0, 0, 0], [.5, .5, .5, .5, 3]],
    [[.10, .90, .40, .10, 3], [.6, .3, .05, .08, 1]],
    [],
]


@pytest.mark.parametrize("opts,seen", [
    ({}, 100),
    ({}, 12800),
    ({"softmax": False}, 100),
    ({"bias_match": False}, 20000),
    ({"background": True}, 100),
    ({"rescore": False, "thresh": .05}, 100),
    ({"object_scale": 2.5, "noobject_scale": .5, "class_scale": 3., "coord_scale": 1.7}, 64),
], ids=["default", "seen12800", "logistic-classes", "no-bias-match", "background", "no-rescore", "scales"])
def test_options_match_scalar_model(opts, seen):
    L = _layer_ns(**opts)
    out, truth = _random_case(L, rows=ROWS, seed=len(opts) + seen)
    _compare(L, out, truth, seen)


def test_later_truth_overwrites_and_rows_stop_at_zero():
    L = _layer_ns()
    out, truth = _random_case(L, rows=ROWS, seed=7)
    d = _compare(L, out, truth, 100)
    # rows 0, 1 and 3 hit the same cell and anchor: only row 3's class (5) is the target
    cls = d[0, 0, 5:, 1, 1]                       # anchor 0, cell (row 1, col 1)
    assert cls[5] > 0 and (cls[:5] <= 0).all()
    # the row after the zero row (x=y=.5, cell (2, 2)) is ignored
    truth2 = truth.copy()
    truth2[0, 6] = 0
    d2 = region_delta(L, torch.from_numpy(out.reshape(3, -1, 4, 5)), torch.from_numpy(truth2), 100)[0]
    assert np.array_equal(d2.numpy().reshape(d.shape), d)


def test_mask_coords():
    """coords > 4: delta_region_mask reads truth values 5.. and truncates mask_scale to an int."""
    L = _layer_ns(coords=6, mask_scale=2.7)
    rows = [[[.31, .40, .20, .30, .25, .75, 2], [.7, .6, .5, .4, .1, .2, 1]], [[.5, .5, .3, .3, .9, .8, 0]], []]
    out, truth = _random_case(L, rows=rows, seed=3)
    _compare(L, out, truth, 100)


def test_tree_overlapping_paths_and_map(tmp_path):
    """Two truths at one cell and anchor with different tree paths: each group keeps the
    value of the last truth that wrote it.  map= applies to box rows, not to class-only rows."""
    tree = read_tree(TREE_SET / "mini.tree")
    mp = tmp_path / "m.map"
    mp.write_text("20\n3\n1\n13\n 22xyz\n")        # taxi, dog, vehicle, train, van (atoi)
    L = _layer_ns(classes=tree.n, tree=tree, map_file=str(mp))
    rows = [
        # one cell and anchor: taxi, train, then vehicle (whose path is a prefix of the others')
        [[.31, .40, .20, .30, 0], [.33, .42, .21, .31, 3], [.7, .7, .5, .4, 4], [.34, .44, .20, .30, 2]],
        [[.5, .5, .3, .3, 1], [999999, 999999, 999999, 999999, 17], [.2, .2, .2, .2, 0]],
        [[999999, 999999, 999999, 999999, 21], [999999, 999999, 999999, 999999, 3]],
    ]
    out, truth = _random_case(L, rows=rows, seed=11)
    d = _compare(L, out, truth, 100)
    _compare(L, out, truth, 20000)
    cls = d[0, 0, 5:, 1, 1]                       # anchor 0, cell (row 1, col 1)
    p = out[0, 0, 5:, 1, 1]
    assert cls[1] == f4(1 - p[1]) and cls[20] == f4(1 - p[20])   # vehicle (last row), taxi (first)
    assert cls[13] == f4(1 - p[13]) and cls[9] == f4(0 - p[9])   # train's group survives: car is 0 there


def test_layer_method_and_map_resolution():
    """Region.delta delegates to region_delta; the cfg's map= is found beside the cfg."""
    L = _layer(str(TREE_SET / "mini-yolo9000-train.cfg"))
    assert L.map_file and L.tree is not None
    out, truth = _random_case(L, B=2, H=4, W=4, seed=5,
                              rows=[[[.4, .6, .3, .2, 8], [.7, .2, .3, .5, 0]], [[.5, .5, .3, .3, 9]]])
    x = torch.from_numpy(out.reshape(2, -1, 4, 4))
    a = L.delta(x, torch.from_numpy(truth), 4)
    b = region_delta(L, x, truth, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert read_map(TREE_SET / "mini.map") == [3, 4, 5, 9, 10, 11, 7, 6, 20, 1]
    _compare(L, out, truth, 4)


def test_bad_truths_raise():
    L = _layer_ns()
    out, truth = _random_case(L, rows=[[[.5, .5, .2, .2, 9]], [], []], seed=1)
    with pytest.raises(ValueError, match="class 9"):
        region_delta(L, torch.from_numpy(out.reshape(3, -1, 4, 5)), truth, 100)
    out, truth = _random_case(L, rows=[[], [[1.0, 1.0, .2, .2, 1]], []], seed=1)
    with pytest.raises(ValueError, match="outside the 5x4 grid"):
        region_delta(L, torch.from_numpy(out.reshape(3, -1, 4, 5)), truth, 100)


def test_cost_is_sequential_float32():
    """mag_array's sum runs in order in float32: a pairwise or float64 sum gives another value."""
    g = np.random.default_rng(0)
    d = (g.standard_normal(100_000) * np.exp(g.uniform(-8, 3, 100_000))).astype(f4)
    s = f4(0)
    for v in d[:2000]:
        s = f4(s + f4(v * v))
    m = f4(np.sqrt(f8(s)))
    assert float(region_cost(d[:2000])) == float(f4(f8(m) * f8(m)))
    seq = float(region_cost(d))
    assert seq != float(f4(np.sum(d.astype(f8) ** 2)))
