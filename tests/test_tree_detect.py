"""YOLO9000 (WordTree) detection against Darknet: hierarchy_top_prediction, get_network_boxes
with a tree (one node per box, prob = objectness) and do_nms_sort (golden set minitree_synth,
the GPU-semantics runs, which our region layer's tree softmax implements)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import golden_dir, manifest, set_dir

import pydarknet
from pydarknet import boxes as boxmod
from pydarknet.detect import detect_tensor
from pydarknet.tree import hierarchy_predictions, hierarchy_top_prediction, read_tree

SET = "minitree_synth"
RUNS = ["synth1_gpusem", "synth2_gpusem"]


def _classes(region: np.ndarray, classes: int) -> torch.Tensor:
    """(num, 5+classes, H, W) region output -> (num*H*W, classes), rows in detection order."""
    t = torch.from_numpy(region)
    return t[:, 5:].permute(0, 2, 3, 1).reshape(-1, classes)


@pytest.fixture(scope="module")
def tree():
    return read_tree(set_dir(SET) / "mini.tree")


@pytest.mark.parametrize("run", RUNS)
def test_hierarchy_predictions_matches_darknet(run, tree):
    z = np.load(set_dir(SET) / f"{run}.npz")
    got = hierarchy_predictions(_classes(z["region_output"], tree.n), tree, False)
    assert torch.equal(got, _classes(z["region_hier"], tree.n))


@pytest.mark.parametrize("run", RUNS)
def test_hierarchy_top_prediction_all_thresholds(run, tree):
    z = np.load(set_dir(SET) / f"{run}.npz")
    hier = _classes(z["region_hier"], tree.n)
    for k, th in enumerate(z["top_hier"]):
        got = hierarchy_top_prediction(hier, tree, float(th)).numpy()
        assert np.array_equal(got, z["top_class"][k]), f"hier_thresh {th}"


def test_hierarchy_top_prediction_rules(tree):
    # hand-made rows: root below threshold still returned; ties keep the first; a failed deeper
    # test returns the group's parent; all-zero root group returns node 0
    p = torch.zeros(3, tree.n)
    p[0, 1] = .3  # best root 1, .3 < .5
    p[1, 0], p[1, 1] = .9, .9  # tie: node 0 first; its children all 0 -> parent of group = 0
    result = hierarchy_top_prediction(p, tree, .5)
    assert result.tolist() == [1, 0, 0]


def _decode(net, z, m, tree):
    layer = net.detection_layer
    out = torch.from_numpy(z["region_output"]).reshape(-1, *z["region_output"].shape[2:])
    w, h = (int(v) for v in z["image_wh"])
    return boxmod.decode_region_tree(out, layer.anchors, layer.num, tree, layer.coords, m["thresh"],
                                     m["hier_thresh"], w, h, net.width, net.height)


def _check_rows(rows, z, prefix):
    assert np.array_equal(rows.pos.numpy(), z[f"{prefix}_pos"])
    assert np.array_equal(rows.index.numpy(), z[f"{prefix}_index"])
    assert np.array_equal(rows.cls.numpy(), z[f"{prefix}_class"])
    assert np.array_equal(rows.prob.numpy(), z[f"{prefix}_prob"])
    assert np.array_equal(rows.box.numpy(), z[f"{prefix}_box"])
    assert np.array_equal(rows.objectness.numpy(), z[f"{prefix}_objectness"])


@pytest.mark.parametrize("run", RUNS)
def test_tree_boxes_before_and_after_nms(run, golden_net, tree):
    m = manifest(SET)["thresholds"]
    z = np.load(set_dir(SET) / f"{run}.npz")
    net = golden_net(SET, True)
    dets = _decode(net, z, m, tree)
    assert np.array_equal(dets.boxes.numpy(), z["all_box"])
    assert np.array_equal(dets.objectness.numpy(), z["all_objectness"])
    assert ((dets.probs != 0).sum(dim=1) <= 1).all()
    _check_rows(boxmod.detection_rows(dets), z, "prenms")
    _check_rows(boxmod.detection_rows(boxmod.nms_sort(dets, tree.n, m["nms"])), z, "det")


@pytest.mark.parametrize("run", RUNS)
def test_detect_yolo9000_matches_darknet(run, golden_net):
    m = manifest(SET)
    th = m["thresholds"]
    z = np.load(set_dir(SET) / f"{run}.npz")
    net = golden_net(SET, True)
    assert net.detection_layer.tree is not None
    png = golden_dir() / "images" / f"{run.split('_')[0]}.png"
    img = pydarknet.load_image(png)
    x = pydarknet.letterbox(img, 128, 128)
    assert torch.equal(x, torch.from_numpy(z["input"]))
    with torch.no_grad():
        out = net(x[None])[0]
    got, ref = out.reshape(z["region_output"].shape), torch.from_numpy(z["region_output"])
    # every entry bit for bit, the tree softmax included (exact arithmetic)
    assert torch.equal(got, ref)
    found = pydarknet.detect(net, png, thresh=th["thresh"], hier_thresh=th["hier_thresh"], nms=th["nms"])
    assert len(found) == len(z["det_class"])
    assert np.array_equal([d.class_id for d in found], z["det_class"])
    assert np.array_equal([d.det_index for d in found], z["det_index"])
    assert np.array_equal(np.array([d.prob for d in found], np.float32), z["det_prob"])
    assert np.array_equal(np.array([d.objectness for d in found], np.float32), z["det_objectness"])
    assert np.array_equal(np.array([d.box for d in found], np.float32), z["det_box"])
    assert all(d.prob == d.objectness for d in found)
    same = detect_tensor(net, out, img.shape[2], img.shape[1], th["thresh"], th["hier_thresh"], th["nms"])
    assert same == found
