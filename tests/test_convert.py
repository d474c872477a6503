"""Conversions (issue #5): .weights <-> .pt / .safetensors byte-identical, ONNX export checked
with ONNX Runtime, Darknet's `partial`, a classifier backbone into a detector, clear errors."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import golden_dir, make_recipe_weights, manifest, set_cfg

from pydarknet import Darknet
from pydarknet.boxes import decode_region
from pydarknet.commands.convert import main as convert_main
from pydarknet.commands.partial import main as partial_main
from pydarknet.convert import (ConvertError, RegionBoxes, convert, export_onnx, load_checkpoint,
                               load_safetensors, partial, save_checkpoint, save_safetensors,
                               truncate_cfg_text)
from pydarknet.weights import Header, WeightsError, read_header, weights_bytes

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "cfg"
MINI = set_cfg("mini_yolov2_synth")
TINY160 = set_cfg("tiny160_synth")
VOC_NAMES = CFG / "voc.names"


def net_of(cfg, **kw) -> Darknet:
    return Darknet(cfg, exact=False, **kw)


def recipe_bytes(name: str) -> bytes:
    return make_recipe_weights(set_cfg(name), manifest(name)["weights"]["seed"])


def body_size(cfg, n: int) -> int:
    """Bytes of the first n layers' parameters, counted from the layer modules."""
    net = net_of(cfg)
    return 4 * sum(p.numel() for layer in net.layers[:n] for p in layer.darknet_params())


def old_header(data: bytes, seen: int = 12345) -> bytes:
    """The same parameters behind a 2016-style header: minor 1 and a 32-bit seen."""
    return np.array([0, 1, 0, seen], "<i4").tobytes() + data[20:]


def with_seen(data: bytes, seen: int) -> bytes:
    return Header(0, 2, 0, seen).to_bytes() + data[20:]


CONNECTED_CFG = ("[net]\nwidth=4\nheight=4\nchannels=2\n[connected]\noutput=3\nactivation=linear\n"
                 "[connected]\noutput=2\nbatch_normalize=1\nactivation=leaky\n")


def connected_file(major_minor) -> bytes:
    rng = np.random.default_rng(0)
    body = rng.uniform(0.5, 1.5, 3 + 3 * 32 + 2 + 2 * 3 + 2 * 3).astype("<f4")
    return Header(major_minor[0], major_minor[1], 0, 7).to_bytes() + body.tobytes()


def _train_file(k: int):
    def make(_recipe):
        z = np.load(golden_dir() / "mini_yolov2_train_synth" / "burnin0_gpusem.npz")
        return z["weights_file"][k].tobytes()
    return make


def _recipe(name: str):
    return set_cfg(name), manifest(name)["weights"]["seed"]


# Every fixture weights file: name -> (cfg, recipe seed, variant).  variant None: the recipe
# file itself; else a function of the recipe bytes (None without a seed) giving the file.
# cfg None: the connected net's inline cfg (CONNECTED_CFG), new and transposed old format.
FILES = {
    "mini": (*_recipe("mini_yolov2_synth"), None),
    "mini-old-header": (*_recipe("mini_yolov2_synth"), old_header),
    "mini-seen-2^40": (*_recipe("mini_yolov2_synth"), lambda d: with_seen(d, 2 ** 40 + 3)),
    "tiny160": (*_recipe("tiny160_synth"), None),
    "darknet19_64": (*_recipe("darknet19_64_synth"), None),
    "minitree-classifier": (*_recipe("minitree_classifier_synth"), None),
    "mini-yolo9000": (*_recipe("minitree_synth"), None),
    **{f"darknet-trained-seen{2 * (k + 1)}": (golden_dir() / "mini_yolov2_train_synth" /
                                             "mini-yolov2-train_burnin0.cfg", None, _train_file(k))
       for k in range(3)},
    "connected": (None, None, lambda _: connected_file((0, 2))),
    "connected-transposed": (None, None, lambda _: connected_file((0, 1001))),
}
# Our full cfgs: yolov2-tiny-voc.cfg, darknet19.cfg and darknet19_448.cfg have the layers of
# tiny160 and darknet19_64 (the same recipe files); yolov2-voc's 203 MB file, the only new
# one, is in test_yolov2_voc_round_trip (it shares the loaded network with the ONNX test).
VOC = CFG / "yolov2-voc.cfg"
VOC_SEED = 3


@pytest.fixture
def fixture_file(request, tmp_path, recipe_weights):
    cfg, seed, variant = FILES[request.param]
    if cfg is None:
        cfg = tmp_path / "connected.cfg"
        cfg.write_text(CONNECTED_CFG)
    if variant is None:
        return cfg, Path(recipe_weights(cfg, seed))
    src = tmp_path / "src.weights"
    src.write_bytes(variant(Path(recipe_weights(cfg, seed)).read_bytes() if seed is not None else None))
    return cfg, src


# --- .weights <-> .pt / .safetensors ----------------------------------------------------
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("fixture_file", list(FILES), indirect=True)
def test_round_trip_is_byte_identical(fixture_file, fmt, tmp_path):
    if fmt == "safetensors":
        pytest.importorskip("safetensors", reason="safetensors is not installed (pip install safetensors)")
    cfg, src = fixture_file
    mid = tmp_path / f"model.{fmt}"
    convert(src, mid, cfg)
    back = tmp_path / "back.weights"
    convert(mid, back)  # no cfg: the checkpoint carries it
    assert back.read_bytes() == src.read_bytes()


def test_yolov2_voc_round_trip(voc_net, recipe_weights, tmp_path):
    data = Path(recipe_weights(VOC, VOC_SEED)).read_bytes()
    save_checkpoint(voc_net, tmp_path / "voc.pt")
    assert weights_bytes(load_checkpoint(tmp_path / "voc.pt", exact=False)) == data
    (tmp_path / "voc.pt").unlink()
    pytest.importorskip("safetensors", reason="safetensors is not installed (pip install safetensors)")
    save_safetensors(voc_net, tmp_path / "voc.safetensors")
    assert weights_bytes(load_safetensors(tmp_path / "voc.safetensors", exact=False)) == data


def test_checkpoint_is_self_describing_and_loads_weights_only(tmp_path):
    data = old_header(recipe_bytes("mini_yolov2_synth"), seen=777)
    (tmp_path / "w").write_bytes(data)
    convert(tmp_path / "w", tmp_path / "m.pt", MINI, names=VOC_NAMES)
    ck = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ck["format"] == "pydarknet-checkpoint" and ck["version"] == 1
    assert ck["cfg"] == MINI.read_text()
    assert ck["header"] == {"major": 0, "minor": 1, "revision": 0, "seen": 777}
    assert ck["names"] == VOC_NAMES.read_text().split()
    ref = net_of(MINI)
    ref.load_weights(tmp_path / "w")
    assert ck["state_dict"].keys() == ref.state_dict().keys()
    assert all(torch.equal(ck["state_dict"][k], v) for k, v in ref.state_dict().items())

    net = load_checkpoint(tmp_path / "m.pt", exact=False).eval()
    assert net.seen == 777 and net.header == (0, 1, 0) and net.names == ck["names"]
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(net(x), ref.eval()(x))


def test_save_checkpoint_and_bare_state_dict(tmp_path):
    (tmp_path / "w").write_bytes(recipe_bytes("mini_yolov2_synth"))
    net = net_of(MINI)
    net.load_weights(tmp_path / "w")
    save_checkpoint(net, tmp_path / "a.pt")
    assert torch.equal(load_checkpoint(tmp_path / "a.pt").layers[21].weight, net.layers[21].weight)
    # A plain torch.save(net.state_dict()) reads back with its cfg.
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ConvertError, match="bare state_dict: give its cfg"):
        load_checkpoint(tmp_path / "bare.pt")
    convert(tmp_path / "bare.pt", tmp_path / "bare.weights", MINI)
    assert (tmp_path / "bare.weights").read_bytes() == (tmp_path / "w").read_bytes()


def test_safetensors_metadata(tmp_path):
    safetensors = pytest.importorskip("safetensors", reason="safetensors is not installed")
    (tmp_path / "w").write_bytes(with_seen(recipe_bytes("mini_yolov2_synth"), 64))
    convert(tmp_path / "w", tmp_path / "m.safetensors", MINI, names=VOC_NAMES)
    with safetensors.safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pydarknet-checkpoint" and meta["cfg"] == MINI.read_text()
    net = load_safetensors(tmp_path / "m.safetensors")
    assert net.seen == 64 and net.names[0] == "aeroplane"


def test_missing_safetensors_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ConvertError, match="pip install safetensors"):
        convert(golden_dir() / "nope.weights", tmp_path / "m.safetensors", MINI)  # checked before reading
    net = net_of(MINI)
    with pytest.raises(ConvertError, match="pip install safetensors"):
        save_safetensors(net, tmp_path / "m.safetensors")


# --- ONNX ---------------------------------------------------------------------------------
def _ort():
    pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")


def _session(ort, path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# Measured max |ORT - PyTorch| on the raw last layer: yolov2-voc 416 2.1e-4 (onnxruntime 1.32;
# 7.2e-5 with 1.16), tiny-voc 4.8e-6; float32 noise of layers whose outputs reach ~1e2.
ONNX_TOL = 1e-3


@pytest.fixture(scope="module")
def voc_net(recipe_weights):
    """yolov2-voc with its recipe weights (built once: 50 M parameters)."""
    net = net_of(VOC)
    net.load_weights(recipe_weights(VOC, VOC_SEED))
    return net.eval()


@pytest.fixture(scope="module", params=["yolov2-voc", "yolov2-tiny-voc"])
def exported(request, recipe_weights, tmp_path_factory):
    ort = _ort()
    if request.param == "yolov2-voc":
        net = request.getfixturevalue("voc_net")
    else:
        net = net_of(CFG / "yolov2-tiny-voc.cfg")
        net.load_weights(recipe_weights(CFG / "yolov2-tiny-voc.cfg", 1))
        net.eval()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    export_onnx(net, path, check=False)  # the test below is the check
    yield net, _session(ort, path)
    path.unlink()


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_runtime_matches_pytorch(exported, batch):
    net, session = exported
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"]
    x = torch.rand(batch, 3, net.height, net.width, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        ref = net(x).numpy()
    (got,) = session.run(None, {"input": x.numpy()})
    assert got.shape == ref.shape == (batch, *net.output_shape)
    diff = float(np.abs(got - ref).max())
    assert diff <= ONNX_TOL, f"ONNX Runtime differs from PyTorch by {diff}"


def test_onnx_with_boxes_equals_decode_region(tmp_path):
    ort = _ort()
    net = net_of(MINI)
    (tmp_path / "w").write_bytes(recipe_bytes("mini_yolov2_synth"))
    net.load_weights(tmp_path / "w")
    net.names = VOC_NAMES.read_text().split()
    export_onnx(net, tmp_path / "boxes.onnx", with_boxes=True)  # with its own ONNX Runtime check
    assert net.training  # the net's mode is left as it was
    net.eval()
    region = net.layers[-1]
    session = _session(ort, tmp_path / "boxes.onnx")
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores"]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["pydarknet.cfg"] == MINI.read_text() and "aeroplane" in meta["pydarknet.names"]

    x = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    boxes, scores = session.run(None, {"input": x.numpy()})
    rows = region.num * region.out_shape.h * region.out_shape.w
    assert boxes.shape == (3, rows, 4) and scores.shape == (3, rows, region.classes)
    with torch.inference_mode():
        out = net(x)
        tb, ts = RegionBoxes(net).eval()(x)
    for i in range(3):
        dets = decode_region(out[i], region.anchors, region.num, region.classes, region.coords, thresh=0.0)
        assert torch.equal(dets.index, torch.arange(rows))
        np.testing.assert_allclose(boxes[i], dets.boxes.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scores[i], dets.probs.numpy(), rtol=1e-5, atol=1e-6)
        # the PyTorch wrapper itself decodes as decode_region does (to float rounding)
        np.testing.assert_allclose(tb[i].numpy(), dets.boxes.numpy(), rtol=1e-6, atol=0)
        assert torch.equal(ts[i], dets.probs)


def test_onnx_errors(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed")
    exact = Darknet(MINI, exact=True)
    with pytest.raises(ConvertError, match="exact-arithmetic mode"):
        export_onnx(exact, tmp_path / "a.onnx")
    tree = net_of(set_cfg("minitree_synth"))
    with pytest.raises(ConvertError, match=r"layer 24 \[region\] uses a WordTree"):
        export_onnx(tree, tmp_path / "b.onnx")
    with pytest.raises(ConvertError, match=r"with_boxes needs a \[region\] last layer"):
        export_onnx(net_of(set_cfg("darknet19_64_synth")), tmp_path / "c.onnx", with_boxes=True)
    with pytest.raises(ConvertError, match="opset 17 or later"):
        export_onnx(net_of(MINI), tmp_path / "d.onnx", opset=11)
    assert not list(tmp_path.iterdir())


# The other layer kinds, and maxpool's corner cases: a crop (negative pad) and a 3x3/1 pool.
OTHER_LAYERS_CFG = """[net]
width=9
height=9
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky
[maxpool]
size=2
stride=2
padding=0
[convolutional]
filters=4
size=1
activation=linear
[maxpool]
size=3
stride=1
[reorg]
stride=2
[reorg]
stride=2
reverse=1
[upsample]
stride=2
[shortcut]
from=-6
activation=leaky
[upsample]
stride=-2
[route]
layers=-1,-7
[avgpool]
[connected]
output=10
batch_normalize=1
activation=relu
[dropout]
probability=.5
[softmax]
groups=2
[cost]
"""


@pytest.mark.parametrize("batch", ["dynamic", 3])
def test_onnx_other_layer_kinds(batch, tmp_path):
    ort = _ort()
    net = Darknet("other.cfg", text=OTHER_LAYERS_CFG, exact=False)
    export_onnx(net, tmp_path / "o.onnx", batch=batch)
    session = _session(ort, tmp_path / "o.onnx")
    assert session.get_inputs()[0].shape == ["batch" if batch == "dynamic" else 3, 3, 9, 9]
    x = torch.rand(3, 3, 9, 9, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        ref = net.eval()(x).numpy()
    assert float(np.abs(session.run(None, {"input": x.numpy()})[0] - ref).max()) <= 1e-6


# --- partial --------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 5, 14, 23])
def test_partial_is_the_first_layers_with_seen_reset(n, tmp_path):
    data = with_seen(recipe_bytes("mini_yolov2_synth"), 123456)
    (tmp_path / "src.weights").write_bytes(data)
    partial(MINI, tmp_path / "src.weights", tmp_path / "part", n)
    part = (tmp_path / "part").read_bytes()
    assert read_header(part) == Header(0, 2, 0, 0)
    assert part == Header(0, 2, 0, 0).to_bytes() + data[20:20 + body_size(MINI, n)]


def test_partial_of_an_old_header_file_writes_the_current_header(tmp_path):
    old = old_header(recipe_bytes("mini_yolov2_synth"), seen=999)
    (tmp_path / "old.weights").write_bytes(old)
    partial(MINI, tmp_path / "old.weights", tmp_path / "part", 14)
    assert (tmp_path / "part").read_bytes() == Header(0, 2, 0, 0).to_bytes() + old[16:16 + body_size(MINI, 14)]


def test_partial_cli_and_opencv_reads_the_result(tmp_path):
    cv2 = pytest.importorskip("cv2")
    data = recipe_bytes("mini_yolov2_synth")
    (tmp_path / "src.weights").write_bytes(data)
    n = 14
    argv = [MINI, tmp_path / "src.weights", tmp_path / "part.weights", n, "--cfg-out", tmp_path / "part.cfg"]
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "partial.py"), *map(str, argv)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    part_cfg = tmp_path / "part.cfg"
    assert part_cfg.read_text() == truncate_cfg_text(MINI.read_text(), n)
    ours = net_of(part_cfg).eval()
    assert len(ours.layers) == n
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the partial file fits the truncated cfg exactly
        ours.load_weights(tmp_path / "part.weights")

    blob = np.random.default_rng(1).random((2, 3, 128, 128), dtype=np.float32)

    def opencv(weights):
        cvnet = cv2.dnn.readNetFromDarknet(str(part_cfg), str(weights))
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        cvnet.enableWinograd(False)
        cvnet.setInput(blob)
        return np.array(cvnet.forward())

    got = opencv(tmp_path / "part.weights")
    # OpenCV reads the same model from our partial file as from the start of the source file
    assert np.array_equal(got, opencv(tmp_path / "src.weights"))
    with torch.inference_mode():
        ref = ours(torch.from_numpy(blob)).numpy()
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 5e-5  # OpenCV's batch norm differs (see test_opencv_interop)


def test_opencv_reads_a_file_converted_back_from_a_checkpoint(tmp_path):
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "src.weights").write_bytes(old_header(recipe_bytes("mini_yolov2_synth")))
    convert(tmp_path / "src.weights", tmp_path / "m.pt", MINI)
    convert(tmp_path / "m.pt", tmp_path / "back.weights")
    ours = net_of(MINI)
    cfg = tmp_path / "noregion.cfg"  # the raw last convolution, not OpenCV's decoded region output
    cfg.write_text(truncate_cfg_text(MINI.read_text(), len(ours.layers) - 1))
    cvnet = cv2.dnn.readNetFromDarknet(str(cfg), str(tmp_path / "back.weights"))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.enableWinograd(False)
    blob = np.random.default_rng(2).random((2, 3, 128, 128), dtype=np.float32)
    cvnet.setInput(blob)
    got = np.array(cvnet.forward())
    ours = load_checkpoint(tmp_path / "m.pt", exact=False).eval()
    with torch.inference_mode():
        ref = ours.layer_outputs(torch.from_numpy(blob))[-2].numpy()
    assert float(np.abs(got - ref).max()) <= 5e-5


def test_partial_errors(tmp_path, recipe_weights):
    tiny = recipe_weights(*_recipe("tiny160_synth"))
    with pytest.raises(WeightsError, match=r"more than .*mini-yolov2.cfg needs \(expected 401512 bytes"):
        partial(MINI, tiny, tmp_path / "out", 5)
    (tmp_path / "mini.weights").write_bytes(recipe_bytes("mini_yolov2_synth"))
    with pytest.raises(ConvertError, match="has only 23 layers"):
        partial(MINI, tmp_path / "mini.weights", tmp_path / "out", 24)
    partial(MINI, tmp_path / "mini.weights", tmp_path / "p10", 10)
    partial(MINI, tmp_path / "p10", tmp_path / "p8", 8)  # a partial of a partial file
    with pytest.raises(WeightsError, match=r"first 10 layers .* only .*at least 12 layers"):
        partial(MINI, tmp_path / "p10", tmp_path / "out", 12)
    assert not (tmp_path / "out").exists()


# --- a classifier backbone into a detector --------------------------------------------
def test_darknet19_448_conv23_fills_the_first_23_layers_of_yolov2_voc(tmp_path, recipe_weights):
    cls_cfg = CFG / "darknet19_448.cfg"
    # darknet19_64's recipe file is also one for darknet19_448 (same layers, another input size)
    partial(cls_cfg, recipe_weights(*_recipe("darknet19_64_synth")), tmp_path / "darknet19_448.conv.23", 23)
    classifier = net_of(cls_cfg)
    with pytest.warns(UserWarning, match="fills the first 23 of the 26 layers"):
        classifier.load_weights(tmp_path / "darknet19_448.conv.23", partial=True)
    det = net_of(CFG / "yolov2-voc.cfg")
    before = {k: v.clone() for k, v in det.state_dict().items()}
    with pytest.raises(WeightsError, match="first 23 of the 32 layers"):
        det.load_weights(tmp_path / "darknet19_448.conv.23")   # inference refuses a backbone file
    with pytest.warns(UserWarning, match="fills the first 23 of the 32 layers"):
        header = det.load_weights(tmp_path / "darknet19_448.conv.23", partial=True)
    assert header == Header(0, 2, 0, 0) and det.seen == 0
    for k, v in det.state_dict().items():
        i = int(k.split(".")[1])
        if i < 23:
            assert torch.equal(v, classifier.state_dict()[k]), k
        else:
            assert torch.equal(v, before[k]), k  # left as initialised
    later = det.layers[23]
    assert torch.equal(later.bias, torch.zeros_like(later.bias))
    assert torch.equal(later.scales, torch.ones_like(later.scales))


# --- user errors ------------------------------------------------------------------------------
def _run_cli(main, argv, capsys):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.err


def test_cli_wrong_cfg_and_wrong_architecture_exit_2(tmp_path, capsys, recipe_weights):
    (tmp_path / "mini.weights").write_bytes(recipe_bytes("mini_yolov2_synth"))
    tiny = recipe_weights(*_recipe("tiny160_synth"))
    rc, err = _run_cli(convert_main, [tiny, tmp_path / "x.pt", "--cfg", MINI], capsys)
    assert rc == 2 and "error:" in err and "expected 401512 bytes, found 63471560" in err
    rc, err = _run_cli(convert_main, [tmp_path / "mini.weights", tmp_path / "x.pt", "--cfg", TINY160], capsys)
    assert rc == 2 and "is not for" in err and "found 401512" in err

    assert convert_main([str(tmp_path / "mini.weights"), str(tmp_path / "mini.pt"), "--cfg", str(MINI)]) == 0
    rc, err = _run_cli(convert_main, [tmp_path / "mini.pt", tmp_path / "x.weights", "--cfg", TINY160], capsys)
    assert rc == 2 and "holds a different architecture than" in err
    assert "layers.0.weight: expected shape (16, 3, 3, 3), found (8, 3, 3, 3)" in err

    partial(MINI, tmp_path / "mini.weights", tmp_path / "p14", 14)
    rc, err = _run_cli(convert_main, [tmp_path / "p14", tmp_path / "x.pt", "--cfg", MINI], capsys)
    assert rc == 2 and "first 14 layers" in err and "a partial file" in err
    rc, err = _run_cli(convert_main, [tmp_path / "mini.weights", tmp_path / "x.pt"], capsys)
    assert rc == 2 and "needs its cfg (--cfg)" in err
    rc, err = _run_cli(convert_main, [tmp_path / "mini.pt", tmp_path / "x.bin"], capsys)
    assert rc == 2 and "cannot tell the format" in err
    rc, err = _run_cli(convert_main, [tmp_path / "mini.pt", tmp_path / "x.pt", "--with-boxes"], capsys)
    assert rc == 2 and "ONNX output only" in err
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not a zip")
    rc, err = _run_cli(convert_main, [tmp_path / "junk.pt", tmp_path / "x.weights"], capsys)
    assert rc == 2 and "not a PyTorch checkpoint" in err
    rc, err = _run_cli(partial_main, [MINI, tiny, tmp_path / "x.weights", 3], capsys)
    assert rc == 2 and "expected 401512 bytes" in err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("x.")]


def test_cli_script_user_error_has_no_traceback(tmp_path):
    pytest.importorskip("onnx", reason="onnx is not installed")
    (tmp_path / "tree.weights").write_bytes(recipe_bytes("minitree_synth"))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "convert.py"), str(tmp_path / "tree.weights"),
                        str(tmp_path / "tree.onnx"), "--cfg", str(set_cfg("minitree_synth"))],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "uses a WordTree" in r.stderr
    assert not (tmp_path / "tree.onnx").exists()
