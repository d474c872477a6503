"""The cfgs of Darknet's published models (cfg/): each builds, holds the float count its
published weights file has, and (with ../shared) has the graph and options of pjreddie's
original cfg; coco.names, coco.data and imagenet1k.data follow Darknet's conventions."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest
import torch
from test_cfg_files import layer_summary, normalise, read_data_file

from pydarknet import Darknet
from pydarknet.cfg import parse_file
from pydarknet.published import PUBLISHED, shipped_cfg_dir
from pydarknet.tree import DATA_ENV
from pydarknet.weights import Header, expected_size

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared, or where $PYDARKNET_SHARED points (as conftest.shared_golden_dir reads it)."""
    env = os.environ.get("PYDARKNET_SHARED")
    base = Path(env) if env else ROOT.parent / "shared"
    return base.parent if base.name == "golden" else base


ZOO = shared_dir() / "cfg-zoo" / "pjreddie"
CFGS = sorted({p.cfg for p in PUBLISHED.values()})


def synthetic_tree(folder: Path, n: int = 9418) -> Path:
    """A flat WordTree of n root nodes: enough to build yolo9000.cfg (the tree changes the
    softmax, not the weights) without Darknet's 9k.tree."""
    (folder / "9k.tree").write_text("".join(f"node{i} -1\n" for i in range(n)))
    return folder


@pytest.fixture
def tree_env(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(synthetic_tree(tmp_path)))


def build(cfg: Path, meta: bool = True) -> Darknet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pjreddie's yolo9000.cfg repeats batch= (first wins)
        if not meta:
            return Darknet(cfg, exact=False)
        with torch.device("meta"):
            return Darknet(cfg, exact=False)


def test_shipped_cfg_dir_is_the_repository_cfg_folder():
    assert shipped_cfg_dir() == ROOT / "cfg"
    assert all((shipped_cfg_dir() / c).is_file() for c in CFGS)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_file_holds_what_its_cfg_needs(name, tree_env):
    item = PUBLISHED[name]
    net = build(item.cfg_path)
    for size, head in zip(item.sizes, [item.header] if item.header else [16, 20]):
        header = Header(0, 1, 0) if head == 16 else Header(0, 2, 0)
        assert header.nbytes == head
        assert expected_size(net, item.cutoff, header) == size


@pytest.mark.parametrize("cfg", CFGS)
def test_cfg_equivalent_to_pjreddie_original(cfg, monkeypatch):
    original = ZOO / "cfg" / cfg
    if not original.is_file():
        pytest.skip(f"{original} not present (third-party cfgs are read from ../shared, never committed)")
    monkeypatch.setenv(DATA_ENV, str(ZOO))  # tree=data/9k.tree -> ../shared/cfg-zoo/pjreddie/data/9k.tree
    ours, theirs = parse_file(shipped_cfg_dir() / cfg), parse_file(original)
    assert [s.kind for s in ours] == [s.kind for s in theirs]
    for i, (a, b) in enumerate(zip(ours, theirs)):
        got = {k: normalise(o.value) for k, o in a.options.items()}
        want = {k: normalise(o.value) for k, o in b.options.items()}
        assert got == want, f"section {i} [{a.kind}] (our line {a.line}, original line {b.line})"
    net, ref = build(shipped_cfg_dir() / cfg), build(original)
    assert layer_summary(net) == layer_summary(ref)
    assert net.options == ref.options
    assert expected_size(net) == expected_size(ref)


def test_yolov2_coco_layout():
    net = build(shipped_cfg_dir() / "yolov2.cfg")
    voc = build(shipped_cfg_dir() / "yolov2-voc.cfg")
    assert (net.width, net.height) == (608, 608)
    assert tuple(net.output_shape) == (425, 19, 19)
    assert net.layers[-1].classes == 80 and net.layers[-1].num == 5
    # the same graph as the VOC model up to the prediction conv
    assert [layer.kind for layer in net.layers] == [layer.kind for layer in voc.layers]
    assert layer_summary(net)[2][:-2] == layer_summary(voc)[2][:-2]


def test_yolo9000_needs_its_tree_and_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match=r"yolo9000.cfg:\d+: .*tree=data/9k.tree.*pjreddie/darknet.*PYDARKNET_DATA"):
        build(shipped_cfg_dir() / "yolo9000.cfg")
    monkeypatch.setenv(DATA_ENV, str(synthetic_tree(tmp_path)))
    net = build(shipped_cfg_dir() / "yolo9000.cfg")
    assert tuple(net.output_shape) == (28269, 17, 17)
    assert net.layers[-1].tree.n == 9418


# --- names and data files --------------------------------------------------------
def test_coco_names():
    names = (shipped_cfg_dir() / "coco.names").read_text().splitlines()
    assert len(names) == len(set(names)) == 80
    # Darknet's spellings (VOC's where the classes overlap), in its class order
    assert names[:5] == ["person", "bicycle", "car", "motorbike", "aeroplane"]
    assert names[-1] == "toothbrush" and "diningtable" in names and "tvmonitor" in names
    assert names.index("hair drier") == 78
    other = shared_dir() / "real" / "yolo-fastest-1.1" / "coco.names"
    if other.is_file():
        assert names == other.read_text().splitlines()


def test_coco_data_follows_voc_data():
    coco, voc = read_data_file(shipped_cfg_dir() / "coco.data"), read_data_file(shipped_cfg_dir() / "voc.data")
    assert int(coco["classes"]) == 80 and coco["eval"] == "coco"
    assert coco.keys() >= voc.keys()
    assert coco["names"] == "cfg/coco.names" and (ROOT / coco["names"]).is_file()
    detectors = [p for p in PUBLISHED.values() if p.classes == 80]
    assert {p.cfg for p in detectors} == {"yolov2.cfg", "yolov2-tiny.cfg"}
    for p in detectors:
        assert re.search(r"^classes=80$", p.cfg_path.read_text(), re.M)


def test_imagenet1k_data():
    opts = read_data_file(shipped_cfg_dir() / "imagenet1k.data")
    assert int(opts["classes"]) == 1000 and int(opts["top"]) == 5
    assert {"train", "valid", "labels", "names", "backup"} <= opts.keys()
    for p in PUBLISHED.values():
        if p.classes == 1000 and not p.cutoff:
            net = build(p.cfg_path)
            assert tuple(net.output_shape) == (1000, 1, 1), p.cfg
            assert net.layers[-1].kind == "softmax"
