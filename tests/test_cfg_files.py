"""The cfg files shipped in cfg/: they build, have YOLOv2's layout and weights sizes,
and (when ../shared is present) are equivalent to Darknet's original cfg files."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import SHARED_SKIP_REASON, shared_golden_dir

from pydarknet import Darknet
from pydarknet.cfg import parse_file
from pydarknet.weights import expected_size

CFG_DIR = Path(__file__).resolve().parents[1] / "cfg"
NETWORKS = ["yolov2-voc", "yolov2-tiny-voc", "darknet19", "darknet19_448"]
# Our cfgs that have a Darknet original in ../shared/golden/cfg-original.
WITH_ORIGINAL = ["yolov2-voc", "yolov2-tiny-voc", "darknet19"]
# Sizes of these cfgs' weights files with Darknet's current 20-byte header (0.2.0). The published
# files' own headers vary (yolov2-tiny-voc.weights has the 16-byte one): see pydarknet/published.py.
OFFICIAL_WEIGHTS_BYTES = {"yolov2-voc": 202_704_264, "yolov2-tiny-voc": 63_471_560, "darknet19": 83_427_124}


def cfg(name: str) -> Path:
    return CFG_DIR / f"{name}.cfg"


def normalise(value: str):
    """An option value compared by meaning: numbers as floats, lists element-wise."""
    items = value.split(",")
    if items and items[-1] == "" and len(items) > 1:  # Darknet accepts a trailing comma
        items.pop()
    out = []
    for item in items:
        try:
            out.append(float(item))
        except ValueError:
            out.append(item)
    return tuple(out)


def layer_summary(net: Darknet):
    return ([layer.kind for layer in net.layers],
            [tuple(layer.out_shape) for layer in net.layers],
            [tuple(p.shape) for layer in net.layers for p in layer.darknet_params()])


# --- equivalence with Darknet's originals -----------------------------------------
@pytest.mark.parametrize("name", WITH_ORIGINAL)
def test_cfg_equivalent_to_darknet_original(name):
    shared = shared_golden_dir()
    if shared is None:
        pytest.skip(SHARED_SKIP_REASON)
    original = shared / "cfg-original" / f"{name}.cfg"
    if not original.is_file():
        pytest.skip(f"{original} not present")
    ours, theirs = parse_file(cfg(name)), parse_file(original)
    assert [s.kind for s in ours] == [s.kind for s in theirs]
    for i, (a, b) in enumerate(zip(ours, theirs)):
        got = {k: normalise(o.value) for k, o in a.options.items()}
        want = {k: normalise(o.value) for k, o in b.options.items()}
        assert got == want, f"section {i} [{a.kind}] (our line {a.line}, original line {b.line})"
    net, ref = Darknet(cfg(name)), Darknet(original)
    assert layer_summary(net) == layer_summary(ref)
    assert net.options == ref.options


# --- always: the files build and have the expected structure ----------------------
@pytest.mark.parametrize("name", NETWORKS)
def test_cfg_builds(name):
    net = Darknet(cfg(name))
    assert len(net.layers) > 0


def test_yolov2_voc_layout():
    net = Darknet(cfg("yolov2-voc"))
    assert (net.width, net.height, net.channels) == (416, 416, 3)
    # 23 Darknet-19 layers, 2 head convs, route, conv, reorg, route, conv, conv, region.
    assert len(net.layers) == 32
    assert tuple(net.output_shape) == (125, 13, 13)
    assert net.layers[-1].kind == "region"
    assert net.layers[16].kind == "convolutional" and tuple(net.layers[16].out_shape) == (512, 26, 26)
    assert net.layers[25].kind == "route" and net.layers[25].sources == [16]
    assert net.layers[27].kind == "reorg" and tuple(net.layers[27].out_shape) == (256, 13, 13)
    assert net.layers[28].kind == "route" and net.layers[28].sources == [27, 24]
    assert tuple(net.layers[28].out_shape) == (1280, 13, 13)
    assert tuple(net.layers[30].out_shape) == (125, 13, 13)


def test_yolov2_tiny_voc_layout():
    net = Darknet(cfg("yolov2-tiny-voc"))
    assert len(net.layers) == 16
    assert tuple(net.output_shape) == (125, 13, 13)
    assert net.layers[-1].kind == "region"
    pool = net.layers[11]
    assert pool.kind == "maxpool" and (pool.size, pool.stride) == (2, 1)
    assert tuple(net.layers[10].out_shape)[1:] == tuple(pool.out_shape)[1:] == (13, 13)


def test_darknet19_is_a_1000_class_classifier():
    net = Darknet(cfg("darknet19"))
    assert [layer.kind for layer in net.layers[-2:]] == ["avgpool", "softmax"]
    assert tuple(net.output_shape) == (1000, 1, 1)


def test_darknet19_448_shares_darknet19_weights():
    net, base = Darknet(cfg("darknet19_448")), Darknet(cfg("darknet19"))
    assert (net.width, net.height) == (448, 448)
    assert (net.options.batch, net.options.subdivisions) == (128, 4)
    assert (net.options.learning_rate, net.options.policy, net.options.power,
            net.options.max_batches) == (0.001, "poly", 4.0, 100000)
    assert tuple(net.output_shape) == (1000, 1, 1)
    assert [layer.kind for layer in net.layers] == [layer.kind for layer in base.layers]
    assert layer_summary(net)[2] == layer_summary(base)[2]
    assert expected_size(net) == expected_size(base)


@pytest.mark.parametrize("name", sorted(OFFICIAL_WEIGHTS_BYTES))
def test_weights_size_matches_official_file(name):
    # The same count as len(make_weights(cfg, seed)) in tests/data/golden/make_weights.py.
    assert expected_size(Darknet(cfg(name))) == OFFICIAL_WEIGHTS_BYTES[name]


# --- names and data files --------------------------------------------------------
VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor"]


def test_voc_names():
    assert (CFG_DIR / "voc.names").read_text().splitlines() == VOC_CLASSES


def read_data_file(path: Path) -> dict[str, str]:
    """Darknet's read_data_cfg: blanks removed, '#'/';' lines skipped, key=value otherwise."""
    options = {}
    for raw in path.read_text().splitlines():
        line = re.sub(r"\s+", "", raw)
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and key, f"not a key=value line: {raw!r}"
        options.setdefault(key, value)
    return options


def test_voc_data():
    opts = read_data_file(CFG_DIR / "voc.data")
    assert int(opts["classes"]) == 20
    assert opts["names"] == "cfg/voc.names"
    assert {"train", "valid", "backup"} <= opts.keys()
    root = CFG_DIR.parent
    names = (root / opts["names"]).read_text().splitlines()
    assert len(names) == int(opts["classes"])
