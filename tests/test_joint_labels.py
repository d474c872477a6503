"""YOLO9000 joint training data: class-only label files (``pydarknet class_labels``), read and
augmented as Darknet does (x = y = 0 in the file -> a 999999 truth row), and the region loss
on a mixed list: a class-only picture moves only the class part of its region delta (plus the
objectness push to 0 that Darknet's class-only branch gives every other prediction)."""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pydarknet import Darknet
from pydarknet.commands import main as dispatch
from pydarknet.commands.class_labels import main as class_labels
from pydarknet.data import (DataError, DataWarning, DetectionDataset, class_only_mask, detection_loader,
                            detection_options, label_path, read_labels)

# the tree: two roots, two children each; box classes 0, 1 map to dog and car
TREE = "animal -1\nvehicle -1\ndog 0\ncat 0\ncar 1\nbus 1\n"
PARENT = [-1, -1, 0, 0, 1, 1]
GROUPS = [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5]]   # the group of each node
BOX_MAP = "2\n4\n"
CFG = """[net]
batch=10
subdivisions=1
width=64
height=64
channels=3
hue=.1
saturation=1.5
exposure=1.5
max_batches=10

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=8
stride=8

[convolutional]
filters=22
size=1
stride=1
pad=1
activation=linear

[region]
anchors=1,1,3,2
bias_match=1
classes=6
coords=4
num=2
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
thresh=.6
random=0
tree=mini.tree
map=mini.map
"""
NUM, E, CLASSES = 2, 11, 6


def _picture(path: Path, seed: int, w: int = 48, h: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def joint(tmp_path):
    """A detection set (boxes, classes 0/1 through map=), a folder of classes labelled by
    class_labels, their joint list and the cfg."""
    (tmp_path / "mini.tree").write_text(TREE)
    (tmp_path / "mini.map").write_text(BOX_MAP)
    (tmp_path / "mini.cfg").write_text(CFG)
    det = []
    for i in range(4):
        img = tmp_path / "coco" / "images" / f"d{i}.jpg"
        _picture(img, i)
        Path(label_path(img)).parent.mkdir(parents=True, exist_ok=True)
        Path(label_path(img)).write_text(f"{i % 2} .5 .5 .4 .3\n0 .3 .7 .2 .2\n")
        det.append(str(img))
    for k, name in enumerate(["dog", "cat", "bus"]):
        for i in range(2):
            _picture(tmp_path / "inet" / name / f"{name}{i}.jpg", 10 + 2 * k + i, 50 + 4 * i, 36)
    rc = class_labels([str(tmp_path / "inet"), "--tree", str(tmp_path / "mini.tree"), "--labels-root",
                       str(tmp_path / "out"), "-q"])
    assert rc == 0
    cls_list = (tmp_path / "out" / "class_only.list").read_text().split()
    joint = tmp_path / "joint.list"
    joint.write_text("".join(p + "\n" for p in det + cls_list))
    return tmp_path, det, cls_list, joint


def test_class_labels_writes_darknets_marker(joint):
    tmp_path, _, cls_list, _ = joint
    assert len(cls_list) == 6
    want = {"dog": 2, "cat": 3, "bus": 5}
    for p in cls_list:
        assert p.startswith(str(tmp_path / "out" / "images")) and Path(p).is_file()
        lp = Path(label_path(p))
        assert lp.parent.parent == tmp_path / "out" / "labels"
        assert lp.read_text() == f"{want[lp.parent.name]} 0 0 0 0\n"
    assert not list((tmp_path / "inet").rglob("*.txt"))       # the dataset is left as it was
    # a second run finds everything in place
    assert class_labels([str(tmp_path / "inet"), "--tree", str(tmp_path / "mini.tree"), "--labels-root",
                         str(tmp_path / "out"), "-q"]) == 0


def test_label_reading_and_augmentation_keep_class_only_rows(joint):
    tmp_path, det, cls_list, _ = joint
    lp = label_path(cls_list[0])
    with pytest.raises(DataError, match=r"x=0, y=0.*tree="):
        read_labels(lp)
    rows = read_labels(lp, 6, class_only=True)
    assert class_only_mask(rows).tolist() == [True] and rows[0, 0] == 5     # bus, the first folder
    ds = DetectionDataset([cls_list[0], det[0]], 64, 64, 6, jitter=.3, hue=.1, seed=3, class_only=True)
    for k in range(8):         # crops and flips of several kinds: the class-only row stays Darknet's 999999
        _, truth = ds[0]
        assert truth[0].tolist() == [999999] * 4 + [5] and not truth[1:].any()
        _, truth = ds[1]
        assert 0 < float(truth[0, 0]) < 1 and int((truth[:, 2] > 0).sum()) == 2
    assert ds.skipped == 0


def test_mixed_batch_class_only_moves_only_the_class(joint):
    tmp_path, det, cls_list, joint_list = joint
    net = Darknet(str(tmp_path / "mini.cfg"))
    opts = detection_options(net)
    assert opts["class_only"] and opts["batch_size"] == 10
    opts.update(num_workers=0, seed=5, replacement=False, iterations=1)
    loader = detection_loader(str(joint_list), **opts)
    images, truths = next(iter(loader))
    assert loader.skipped == 0
    only = truths[:, 0, 0] > 100000
    assert int(only.sum()) == 6                                   # every picture drawn once
    net.train()
    layer = net.detection_layer
    out = net.layer_outputs(images)[-1].detach()
    delta, cost = layer.delta(out, truths, 10)                    # what Trainer.forward_backward calls
    d = delta.reshape(10, NUM, E, -1)
    o = out.reshape(10, NUM, E, -1)
    assert float(cost) > 0
    for b in range(10):
        if only[b]:
            _check_class_only(d[b], o[b], int(truths[b, 0, 4]))
        else:
            assert d[b, :, :4].abs().sum() > 0                   # boxes: the coordinates move
    # one full training step on the mixed batch runs and changes the weights
    from pydarknet.train import Trainer
    w0 = [p.detach().clone() for p in net.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cost = Trainer(net).step(images, truths)
    assert np.isfinite(cost) and any(not torch.equal(a, p) for a, p in zip(w0, net.parameters()))


def _check_class_only(d: torch.Tensor, o: torch.Tensor, cls: int) -> None:
    """Darknet's class-only branch (region_layer.c): no coordinate delta; objectness 0 - obj
    (noobject_scale 1) everywhere but the location with the largest obj * P(class), where it is 0;
    class deltas only there, on the groups of the class's path: 1 - p on the path, -p beside it."""
    assert not d[:, :4].any()
    prob = o[:, 4].clone()
    node = cls
    while node >= 0:
        prob = prob * o[:, 5 + node]
        node = PARENT[node]
    n, cell = divmod(int(torch.argmax(prob.reshape(-1))), o.shape[-1])
    obj = d[:, 4].clone()
    assert obj[n, cell] == 0
    obj[n, cell] = -o[n, 4, cell]
    assert torch.equal(obj, -o[:, 4])
    want = torch.zeros(CLASSES)
    node = cls
    while node >= 0:
        for k in GROUPS[node]:
            want[k] = (1.0 if k == node else 0.0) - o[n, 5 + k, cell]
        node = PARENT[node]
    cls_delta = d[:, 5:].clone()
    assert torch.allclose(cls_delta[n, :, cell], want, atol=1e-6)    # float32 1 - p: exact or 1 ulp
    cls_delta[n, :, cell] = 0
    assert not cls_delta.any()


def test_without_a_tree_class_only_samples_are_skipped_and_counted(joint):
    tmp_path, det, cls_list, _ = joint
    ds = DetectionDataset([cls_list[0], det[0]], 64, 64, 6, seed=1)       # class_only=False
    with pytest.warns(DataWarning, match=r"x=0, y=0.*tree="):
        for _ in range(4):
            ds[0]
    assert ds.skipped >= 1 and label_path(cls_list[0]) in ds.bad_samples[cls_list[0]]


def test_rows_beyond_100000_in_a_file_stay_errors(tmp_path):
    lp = tmp_path / "x.txt"
    lp.write_text("1 .5 .5 .2 .2\n3 999999 999999 999999 999999\n")
    with pytest.raises(DataError, match=r"x\.txt:2: x, y, w, h outside 0\.\.1 \(Darknet drops this row"):
        read_labels(lp, 6, class_only=True)
    lp.write_text("3 0 0 999999 7\n")          # Darknet never reads a class-only row's w and h
    assert read_labels(lp, 6, class_only=True)[:, :3].tolist() == [[3, 0, 0]]
    with pytest.raises(DataError, match=r"x\.txt:1: .*x=0, y=0"):
        read_labels(lp, 6)


def test_bad_input(tmp_path, capsys):
    (tmp_path / "mini.tree").write_text(TREE)
    for name in ("dog", "zebra"):
        for i in range(2):
            _picture(tmp_path / "inet" / name / f"{name}{i}.jpg", i)
    (tmp_path / "inet" / "dog" / "broken.jpg").write_bytes(b"not a picture")
    (tmp_path / "inet" / "loose.jpg").write_bytes((tmp_path / "inet" / "dog" / "dog0.jpg").read_bytes())
    args = [str(tmp_path / "inet"), "--tree", str(tmp_path / "mini.tree"), "--labels-root", str(tmp_path / "o")]
    assert dispatch(["class_labels", *args]) == 1
    err = capsys.readouterr()
    assert "skipped 2 pictures of class 'zebra'" in err.err and "broken.jpg: cannot read the picture" in err.err
    assert "loose.jpg: is not in a class subfolder" in err.err
    assert "2 pictures of 1 classes labelled" in err.out and "4 skipped, 2 of them of 1 unknown" in err.out
    assert len((tmp_path / "o" / "class_only.list").read_text().split()) == 2
    # an empty list, a missing source, no id source: one line, status 2
    (tmp_path / "empty.list").write_text("\n")
    assert class_labels([str(tmp_path / "empty.list"), "--tree", str(tmp_path / "mini.tree")]) == 2
    assert class_labels([str(tmp_path / "nowhere.list"), "--tree", str(tmp_path / "mini.tree")]) == 2
    assert class_labels([str(tmp_path / "inet")]) == 2
    assert class_labels([*args[:3], "--labels-root", str(tmp_path / "inet" / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["error"] * 4
    assert "inside the pictures' folder" in err[3] and not (tmp_path / "inet" / "out").exists()
    assert "empty.list: the list has no picture paths" in err[0] and "nowhere.list" in err[1]
    # a label file holding boxes is not overwritten
    dog = tmp_path / "o" / "labels" / "dog" / "dog0.txt"
    dog.write_text("0 .5 .5 .2 .2\n")
    assert class_labels([*args, "-q"]) == 1 and dog.read_text() == "0 .5 .5 .2 .2\n"


def test_list_with_classifier_labels_and_map(tmp_path):
    """A list of pictures, the class found as `classifier train` finds it, ids through a .map."""
    (tmp_path / "mini.tree").write_text(TREE)
    (tmp_path / "inet.labels").write_text("n001dog\nn002bus\n")
    (tmp_path / "inet9k.map").write_text("2\n5\n")
    pics = []
    for name in ("n001dog", "n002bus", "n003cat"):
        p = tmp_path / "train" / f"{name}_1.JPEG"
        _picture(p, 1)
        pics.append(str(p))
    (tmp_path / "train.list").write_text("\n".join(pics) + "\n")
    rc = class_labels([str(tmp_path / "train.list"), "--labels", str(tmp_path / "inet.labels"), "--map",
                       str(tmp_path / "inet9k.map"), "--tree", str(tmp_path / "mini.tree"),
                       "--list", str(tmp_path / "cls.list"), "-q"])
    assert rc == 1                                              # n003cat matches no label
    listed = (tmp_path / "cls.list").read_text().split()
    assert [Path(label_path(p)).read_text() for p in listed] == ["2 0 0 0 0\n", "5 0 0 0 0\n"]


def test_class_ids_lookup():
    from pydarknet.joint_labels import ClassIds
    ids = ClassIds(names=["animal", "crane", "crane", "dog"], limit=4, where="9k.names")
    assert ids.lookup("dog") == (3, "")
    assert ids.lookup("crane")[0] is None and "more than once in 9k.names" in ids.lookup("crane")[1]
    assert ids.lookup("zebra")[0] is None and "not in 9k.names" in ids.lookup("zebra")[1]
    mapped = ClassIds(mapping=[3, 7, 0], labels=["a", "b", "c", "d"], limit=4)
    assert mapped.lookup("a") == (3, "") and mapped.lookup("c") == (0, "")
    assert "outside 0..3" in mapped.lookup("b")[1] and "map file has 3 lines" in mapped.lookup("d")[1]
    with pytest.raises(DataError, match="label list"):
        ClassIds(mapping=[1])
    with pytest.raises(DataError, match="names list"):
        ClassIds()
