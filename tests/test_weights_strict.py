"""Hostile weights files are errors before any parameter changes; partial, trailing and
non-finite files load only when asked for (bench/reliability/weights_variants.py has 200+ variants)."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.network import Darknet
from pydarknet.weights import WeightsError, layer_boundaries, read_header

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "cfg" / "shapes-tiny.cfg"
WEIGHTS = ROOT / "weights" / "shapes-tiny.weights"


@pytest.fixture(scope="module")
def data() -> bytes:
    return WEIGHTS.read_bytes()


@pytest.fixture
def net():
    return Darknet(CFG, exact=False)


def write(tmp_path, blob: bytes, name="w.weights") -> Path:
    (tmp_path / name).write_bytes(blob)
    return tmp_path / name


def state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_a_file_for_another_cfg_is_an_error_whichever_way_the_size_differs(tmp_path, data, net):
    for other in (CFG.read_text().replace("filters=16", "filters=32", 1),          # larger
                  CFG.read_text().replace("filters=256", "filters=128", 1)):       # smaller
        o = Darknet("other.cfg", text=other, exact=False)
        o.save_weights(tmp_path / "o.weights")
        with pytest.raises(WeightsError, match="not for .*shapes-tiny.cfg"):
            net.load_weights(tmp_path / "o.weights")
        with pytest.raises(WeightsError, match="not for .*shapes-tiny.cfg"):
            net.load_weights(tmp_path / "o.weights", partial=True)


def test_trailing_bytes_are_an_error_unless_allowed(tmp_path, data, net):
    path = write(tmp_path, data + bytes(8))
    with pytest.raises(WeightsError, match="8 bytes more than it needs"):
        net.load_weights(path)
    with pytest.warns(UserWarning, match="8 trailing bytes"):
        net.load_weights(path, allow_trailing=True)


def test_a_file_cut_at_a_layer_boundary_loads_only_with_partial(tmp_path, data, net):
    sizes = layer_boundaries(net, read_header(data[:20]))
    path = write(tmp_path, data[:sizes[3]])       # conv, maxpool, conv (and the next maxpool, which stores nothing)
    before = state(net)
    with pytest.raises(WeightsError, match=r"first 4 of the 13 layers .* a partial file; load it with partial=True"):
        net.load_weights(path)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.warns(UserWarning, match=r"fills the first 4 of the 13 layers"):
        net.load_weights(path, partial=True)
    with pytest.raises(WeightsError, match="ends inside layer 4"):
        net.load_weights(write(tmp_path, data[:sizes[5] - 12]), partial=True)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_errors_naming_the_layer(tmp_path, data, net, value):
    sizes = layer_boundaries(net, read_header(data[:20]))
    blob = bytearray(data)
    at = sizes[2] + 4                                            # the second value of layer 2's biases
    blob[at:at + 4] = np.float32(value).tobytes()
    path = write(tmp_path, bytes(blob))
    before = state(net)
    with pytest.raises(WeightsError, match=r"non-finite values in layer 2 \[convolutional\] \(line \d+\) bias"):
        net.load_weights(path)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())   # nothing half loaded
    with pytest.warns(UserWarning, match="loaded non-finite values in layer 2"):
        net.load_weights(path, allow_nonfinite=True)
    assert not torch.isfinite(net.layers[2].bias).all()


def test_a_nan_variance_is_reported_as_non_finite_not_negative(tmp_path, data, net):
    sizes = layer_boundaries(net, read_header(data[:20]))
    n = net.layers[0].filters
    blob = bytearray(data)
    at = sizes[0] + 4 * 3 * n                                    # bias, scales, mean, then variance
    blob[at:at + 4] = np.float32(np.nan).tobytes()
    with pytest.raises(WeightsError, match=r"layer 0 .* rolling_variance: 1 NaN") as e:
        net.load_weights(write(tmp_path, bytes(blob)))
    assert "negative" not in str(e.value)


@pytest.mark.parametrize("fields, what", [((1, 2, 0, 0), "version 1.2.0"), ((0, 3, 0, 0), "version 0.3.0"),
                                          ((0, 2, -1, 0), "version 0.2.-1"), ((0, 2, 0, 2**63), "2^48"),
                                          ((0, 2, 0, 2**48), "2^48")])
def test_impossible_headers_are_errors(tmp_path, data, net, fields, what):
    with pytest.raises(WeightsError, match=what.replace("^", r"\^")):
        net.load_weights(write(tmp_path, struct.pack("<iiiQ", *fields) + data[20:]))


def test_darknet_headers_load(tmp_path, data, net):
    net.load_weights(write(tmp_path, struct.pack("<iiiQ", 0, 2, 5, 12345) + data[20:]))   # AlexeyAB's 0.2.5
    assert net.seen == 12345
    net.load_weights(write(tmp_path, struct.pack("<iiii", 0, 1, 0, 7) + data[20:]))        # 0.1, 32-bit seen
    assert net.seen == 7


def test_special_files_are_clear_errors(tmp_path, net):
    import os
    (tmp_path / "d").mkdir()
    with pytest.raises(WeightsError, match="is a directory"):
        net.load_weights(tmp_path / "d")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(WeightsError, match="not a regular file"):
            net.load_weights(tmp_path / "fifo")
    with pytest.raises(WeightsError, match="not a regular file"):
        net.load_weights("/dev/zero")


def test_detect_refuses_a_partial_file_saying_how_many_layers_it_fills(tmp_path, data, capsys):
    from pydarknet.commands.detect import main as detect_main
    net = Darknet(CFG, exact=False)
    sizes = layer_boundaries(net, read_header(data[:20]))
    path = write(tmp_path, data[:sizes[6]])
    rc = detect_main([str(CFG), str(path), str(ROOT / "tests" / "nothing.jpg"), "--fast"])
    err = capsys.readouterr().err
    assert rc == 2 and "first 6 of the" in err and "partial file" in err


def test_training_from_weights_past_max_batches_is_an_error_not_zero_iterations(tmp_path):
    from pydarknet.shapes import write_dataset
    from pydarknet.trainloop import TrainConfig, TrainingError, train_detector
    data = write_dataset(tmp_path / "shapes", n_train=4, n_val=0, seed=0, sizes=((96, 80),))
    text = CFG.read_text().replace("max_batches=2000", "max_batches=10")
    (tmp_path / "s.cfg").write_text(text)
    net = Darknet(tmp_path / "s.cfg", exact=False)
    net.seen = 2**40
    net.save_weights(tmp_path / "done.weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingError, match="has already seen 1099511627776 images.*nothing to train.*--clear"):
            train_detector(TrainConfig(str(data), str(tmp_path / "s.cfg"), str(tmp_path / "done.weights"),
                                       backup=str(tmp_path / "b"), workers=0, progress=False), out=lambda _: None)
    assert not (tmp_path / "b" / "s_final.weights").exists()
