"""pydarknet.boxes against Darknet's get_network_boxes / do_nms_sort outputs and hand-made cases."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from conftest import SHARED_SKIP_REASON, golden_dir, shared_golden_dir
from pydarknet.image import letterbox_geometry
from pydarknet.boxes import (
    Detections,
    _compaction_order,
    box_iou,
    decode_region,
    detection_rows,
    nms_sort,
    printed,
)

TOL = 1e-5
SWAP_TOL = 1e-6
SYNTH_RUNS = [
    ("tiny160_synth", "synth1"),
    ("tiny160_synth", "synth2"),
    ("mini_yolov2_synth", "synth1"),
    ("mini_yolov2_synth", "synth2"),
    ("mini_yolov2_synth", "synth3"),
]
PHOTO_RUNS = [("tiny160", "dog"), ("mini_yolov2", "dog"), ("mini_yolov2", "horses")]


def _cases():
    cases = [pytest.param(golden_dir(), s, i, id=f"{s}-{i}") for s, i in SYNTH_RUNS]
    shared = shared_golden_dir()
    skip = [] if shared is not None else [pytest.mark.skip(reason=SHARED_SKIP_REASON)]
    cases += [pytest.param(shared, s, i, id=f"{s}-{i}", marks=skip) for s, i in PHOTO_RUNS]
    return cases


def _region_options(cfg_text: str) -> dict:
    """anchors/classes/num/coords of the [region] section (a stand-in for the cfg parser)."""
    section = cfg_text[cfg_text.index("[region]"):]

    def opt(key):
        return re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", section, re.M).group(1)

    return {
        "anchors": [float(v) for v in opt("anchors").split(",")],
        "classes": int(opt("classes")),
        "num": int(opt("num")),
        "coords": int(opt("coords")),
    }


def _load(root, set_name, image):
    folder = root / set_name
    run = json.loads((folder / "manifest.json").read_text())["runs"][image]
    opts = _region_options(next(folder.glob("*.cfg")).read_text())
    z = np.load(folder / run["npz"])
    num, entries, h, w = z["region_output"].shape
    im_w, im_h = (int(v) for v in run["image_wh"])
    net_w, net_h = (int(v) for v in run["net_wh"])
    dets = decode_region(
        torch.from_numpy(z["region_output"]).reshape(num * entries, h, w),
        opts["anchors"], opts["num"], opts["classes"], opts["coords"], thresh=run["thresh"],
        im_w=im_w, im_h=im_h, net_w=net_w, net_h=net_h,
    )
    return dets, z, run, opts


def _assert_rows_match(rows, z, prefix, allow_swaps):
    ref_index, ref_class, ref_prob = z[prefix + "index"], z[prefix + "class"], z[prefix + "prob"]
    index, cls, prob = rows.index.numpy(), rows.cls.numpy(), rows.prob.numpy()
    assert len(index) == len(ref_index), f"{prefix}: {len(index)} rows, darknet has {len(ref_index)}"
    ref_keys = list(zip(ref_index.tolist(), ref_class.tolist()))
    keys = list(zip(index.tolist(), cls.tolist()))
    where = {k: i for i, k in enumerate(ref_keys)}
    assert set(keys) == set(ref_keys), f"{prefix}: different (index, class) rows"
    for i in np.flatnonzero([k != r for k, r in zip(keys, ref_keys)]):
        # only two rows of near-equal probability may trade places
        j = where[keys[i]]
        msg = f"{prefix}: row {i} is {keys[i]}, darknet has {ref_keys[i]}"
        assert allow_swaps and keys[j] == ref_keys[i], msg
        assert abs(float(ref_prob[i]) - float(ref_prob[j])) < SWAP_TOL, f"{prefix}: rows {i},{j} swapped"
    perm = np.array([where[k] for k in keys], dtype=np.int64)
    np.testing.assert_allclose(prob, ref_prob[perm], rtol=0, atol=TOL)
    np.testing.assert_allclose(rows.box.numpy(), z[prefix + "box"][perm], rtol=0, atol=TOL)
    np.testing.assert_array_equal(rows.objectness.numpy(), z[prefix + "objectness"][perm])
    if prefix == "det_" and not allow_swaps:
        np.testing.assert_array_equal(rows.pos.numpy(), z["det_pos"])


@pytest.mark.parametrize("root,set_name,image", _cases())
def test_decode_matches_darknet(root, set_name, image):
    dets, z, _, _ = _load(root, set_name, image)
    np.testing.assert_allclose(dets.boxes.numpy(), z["all_box"], rtol=0, atol=TOL)
    np.testing.assert_array_equal(dets.objectness.numpy(), z["all_objectness"])
    np.testing.assert_array_equal(dets.index.numpy(), np.arange(len(z["all_box"])))


@pytest.mark.parametrize("root,set_name,image", _cases())
def test_decode_is_bit_exact(root, set_name, image):
    dets, z, _, _ = _load(root, set_name, image)
    assert np.array_equal(dets.boxes.numpy(), z["all_box"])
    rows = detection_rows(dets)
    assert np.array_equal(rows.prob.numpy(), z["prenms_prob"])


@pytest.mark.parametrize("root,set_name,image", _cases())
def test_prenms_rows_match_darknet(root, set_name, image):
    dets, z, _, _ = _load(root, set_name, image)
    rows = detection_rows(dets)
    np.testing.assert_array_equal(rows.index.numpy(), z["prenms_index"])
    np.testing.assert_array_equal(rows.cls.numpy(), z["prenms_class"])
    np.testing.assert_array_equal(rows.pos.numpy(), z["prenms_pos"])
    _assert_rows_match(rows, z, "prenms_", allow_swaps=False)


@pytest.mark.parametrize("root,set_name,image", _cases())
def test_nms_matches_darknet(root, set_name, image):
    dets, z, run, opts = _load(root, set_name, image)
    after = nms_sort(dets, opts["classes"], run["nms"])
    _assert_rows_match(detection_rows(after), z, "det_", allow_swaps=True)


@pytest.mark.parametrize("root,set_name,image", _cases())
def test_nms_order_is_exact(root, set_name, image):
    dets, z, run, opts = _load(root, set_name, image)
    rows = detection_rows(nms_sort(dets, opts["classes"], run["nms"]))
    _assert_rows_match(rows, z, "det_", allow_swaps=False)
    assert np.array_equal(rows.box.numpy(), z["det_box"])


@pytest.mark.parametrize("image", ["synth1_cpu", "synth1_gpusem", "synth2_cpu", "synth2_gpusem"])
def test_nms_on_tree_detections_with_dead_boxes(image):
    """E1's detections (one class per box; the cpu mode has 16 dead boxes) through do_nms_sort."""
    z = np.load(golden_dir() / "minitree_synth" / f"{image}.npz")
    k, classes = len(z["all_objectness"]), 24
    probs = np.zeros((k, classes), np.float32)
    probs[z["prenms_index"], z["prenms_class"]] = z["prenms_prob"]
    dets = Detections(torch.from_numpy(z["all_box"]), torch.from_numpy(z["all_objectness"]),
                      torch.from_numpy(probs), torch.arange(k))
    rows = detection_rows(nms_sort(dets, classes, 0.45))
    _assert_rows_match(rows, z, "det_", allow_swaps=False)


def _swap_to_tail_reference(objectness):
    """Plain re-statement of do_nms_sort's first scan, on a list of ids."""
    ids = list(range(len(objectness)))
    i, k = 0, len(ids) - 1
    while i <= k:
        if objectness[ids[i]] == 0:
            ids[i], ids[k] = ids[k], ids[i]
            k -= 1
        else:
            i += 1
    return ids


def test_compaction_permutation_matches_scan():
    gen = torch.Generator().manual_seed(0)
    sizes, fractions = (1, 2, 3, 7, 40, 125), (0.0, 0.2, 0.5, 0.8, 1.0)
    masks = [torch.rand(n, generator=gen) < p for n in sizes for p in fractions for _ in range(8)]
    for live in masks:
        expected = _swap_to_tail_reference(live.float().tolist())
        assert _compaction_order(live).tolist() == expected, live.int().tolist()


def test_nms_hand_made():
    # A and B overlap (IoU ~0.82), C is far away; input order B, C, A.
    a, b, c = [0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]
    dets = Detections(
        boxes=torch.tensor([b, c, a]),
        objectness=torch.tensor([0.8, 0.7, 0.9]),
        probs=torch.tensor([[0.8, 0.0], [0.7, 0.6], [0.9, 0.0]]),
        index=torch.tensor([0, 1, 2]),
    )
    out = nms_sort(dets, classes=2, nms_thresh=0.45)
    # class 0 sorts A, B, C and A suppresses B; class 1's sort then moves C first (ties stay in order)
    assert out.index.tolist() == [1, 2, 0]
    assert torch.equal(out.probs, torch.tensor([[0.7, 0.6], [0.9, 0.0], [0.0, 0.0]]))
    rows = detection_rows(out)
    triples = list(zip(rows.pos.tolist(), rows.index.tolist(), rows.cls.tolist()))
    assert triples == [(0, 1, 0), (0, 1, 1), (1, 2, 0)]
    assert [(p.pos, p.cls) for p in printed(out, 0.65)] == [(0, 0), (1, 0)]
    assert dets.probs[0, 0] == torch.tensor(0.8)  # input left untouched


def test_nms_dead_detections_stay_behind():
    dets = Detections(
        boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2]]),
        objectness=torch.tensor([0.0, 0.6, 0.9]),
        probs=torch.tensor([[0.0], [0.6], [0.9]]),
        index=torch.tensor([0, 1, 2]),
    )
    out = nms_sort(dets, classes=1, nms_thresh=0.45)
    assert out.index.tolist() == [2, 1, 0]
    assert out.probs[:, 0].tolist() == pytest.approx([0.9, 0.6, 0.0])


def test_box_iou_float32():
    a = np.array([0.5, 0.5, 0.2, 0.2], np.float32)
    b = np.array([0.52, 0.5, 0.2, 0.2], np.float32)
    half = np.float32(2)
    ow = min(a[0] + a[2] / half, b[0] + b[2] / half) - max(a[0] - a[2] / half, b[0] - b[2] / half)
    oh = min(a[1] + a[3] / half, b[1] + b[3] / half) - max(a[1] - a[3] / half, b[1] - b[3] / half)
    inter = ow * oh
    expected = inter / (a[2] * a[3] + b[2] * b[3] - inter)
    got = box_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert got.dtype == torch.float32 and got.item() == expected
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]])
    m = box_iou(boxes[:, None], boxes[None])
    assert m[0, 1] == 0 and m[1, 0] == 0
    # float rounding: a box's IoU with itself is not exactly 1 in Darknet either
    assert m.diagonal().tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


def test_letterbox_geometry_used_for_boxes():
    assert letterbox_geometry(97, 131, 160, 160)[:2] == (118, 160)
    assert letterbox_geometry(97, 131, 128, 128)[:2] == (94, 128)
    assert letterbox_geometry(200, 150, 128, 128)[:2] == (128, 96)


def test_decode_absolute_boxes():
    dets, _, run, opts = _load(golden_dir(), "mini_yolov2_synth", "synth2")
    z = np.load(golden_dir() / "mini_yolov2_synth" / "synth2.npz")
    num, entries, h, w = z["region_output"].shape
    im_w, im_h = run["image_wh"]
    pix = decode_region(
        torch.from_numpy(z["region_output"]).reshape(num * entries, h, w),
        opts["anchors"], opts["num"], opts["classes"], thresh=run["thresh"],
        im_w=im_w, im_h=im_h, net_w=run["net_wh"][0], net_h=run["net_wh"][1], relative=False,
    )
    scale = torch.tensor([im_w, im_h, im_w, im_h], dtype=torch.float32)
    assert torch.equal(pix.boxes, dets.boxes * scale)
    assert torch.equal(pix.probs, dets.probs)
