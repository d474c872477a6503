"""Inference engines (pydarknet.backends): the default load_network + detect path gives the
exact mode's detections on every golden fixture; fallbacks and staleness."""
from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from conftest import inference_cases, manifest, set_cfg, set_dir

import pydarknet
from pydarknet.backends import set_engine

DETECTION_CASES = [c for c in inference_cases() if not (c.values[0] or "").startswith("darknet19")]
try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    HAS_ORT = True
except ImportError:
    HAS_ORT = False


def _load(name, engine, recipe_weights):
    cfg = set_cfg(name)
    return pydarknet.load_network(cfg, recipe_weights(cfg, manifest(name)["weights"]["seed"]), engine=engine)


@pytest.fixture(scope="module")
def nets(recipe_weights):
    """nets(set, engine) -> the set's network loaded by load_network (one per module)."""
    cache = {}

    def get(name, engine):
        if (name, engine) not in cache:
            cache[name, engine] = _load(name, engine, recipe_weights)
        return cache[name, engine]
    return get


def assert_same_detections(got, ref):
    """The same (class, box index) rows in the same order, except two adjacent rows whose
    probabilities differ by < 1e-6; values within float32 noise (the fast path's tolerances,
    tests/test_detect.py: probabilities 1e-5, boxes 1e-5 absolute or 5e-5 relative)."""
    assert len(got) == len(ref)
    key = [(d.class_id, d.det_index) for d in got]
    ref_key = [(d.class_id, d.det_index) for d in ref]
    for i, k in enumerate(key):
        if k != ref_key[i]:
            j = ref_key.index(k)
            assert abs(j - i) == 1 and abs(ref[j].prob - got[i].prob) < 1e-6, f"row {i} differs from exact mode"
    order = [ref_key.index(k) for k in key]
    gp = np.array([d.prob for d in got], np.float32)
    rp = np.array([ref[j].prob for j in order], np.float32)
    assert np.abs(gp - rp).max(initial=0) <= 1e-5
    gb = np.array([d.box for d in got], np.float32).reshape(-1, 4)
    rb = np.array([ref[j].box for j in order], np.float32).reshape(-1, 4)
    assert (np.abs(gb - rb) <= np.maximum(1e-5, 5e-5 * np.abs(rb))).all()


@pytest.mark.parametrize("name,run", DETECTION_CASES)
def test_default_path_gives_the_exact_detections(name, run, nets):
    """load_network's default engine (ONNX Runtime when installed, else the torch kernels)."""
    m = manifest(name)["runs"][run]
    fast, exact = nets(name, "auto"), nets(name, "exact")
    assert fast.exact is False and exact.exact is True
    assert (fast.backend is not None) == HAS_ORT
    img = set_dir(name) / m["image"]["file"]
    kw = dict(thresh=m["thresh"], hier_thresh=m["hier_thresh"], nms=m["nms"])
    ref = pydarknet.detect(exact, img, **kw)
    assert len(ref) > 0
    assert_same_detections(pydarknet.detect(fast, img, **kw), ref)
    # Darknet's own rows (the fixture) are the exact mode's
    z = np.load(set_dir(name) / f"{run}.npz")
    assert [d.det_index for d in ref] == list(z["det_index"])


def test_auto_falls_back_to_torch_with_a_note(monkeypatch, recipe_weights):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.warns(UserWarning, match="torch engine.*onnxruntime is not installed"):
        net = _load("mini_yolov2_synth", "auto", recipe_weights)
    assert net.backend is None and not net.exact
    with pytest.warns(UserWarning, match="not installed"):
        assert set_engine(net, "onnxruntime") == "torch"
    with pytest.raises(ValueError, match="engine must be one of"):
        set_engine(net, "tensorrt")


@pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed")
def test_onnxruntime_engine_follows_the_network(recipe_weights):
    net = _load("mini_yolov2_synth", "onnxruntime", recipe_weights)
    x = torch.rand(2, 3, net.height, net.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = net(x)
        ref = net._run(x, keep=False)[-1]  # the torch layers
        assert (first - ref).abs().max() <= 1e-4  # measured 2e-6 (raw w, h up to ~10)
        net.layers[0].weight.mul_(.5)  # a write: the engine re-exports
        second = net(x)
        assert (second - net._run(x, keep=False)[-1]).abs().max() <= 1e-4
        assert (second - first).abs().max() > 1e-3
        # exact mode and training take the torch layers
        net.exact = True
        assert torch.equal(net(x), net.layer_outputs(x)[-1])
    net.exact = False
    clone = copy.deepcopy(net)  # the copy builds its own session
    with torch.no_grad():
        assert torch.equal(clone(x), second)
    net.train()
    assert net.backend.usable(x) is False
