"""The .weights format: byte-identical round trips, old headers, partial files, clear errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import golden_dir, make_recipe_weights, manifest, set_cfg

from pydarknet import Darknet, WeightsError
from pydarknet.weights import Header, read_header

SETS = ["mini_yolov2_synth", "tiny160_synth", "darknet19_64_synth", "minitree_classifier_synth"]


def recipe(name):
    m = manifest(name)
    return set_cfg(name), make_recipe_weights(set_cfg(name), m["weights"]["seed"]), m


@pytest.mark.parametrize("name", SETS)
def test_round_trip_is_byte_identical(name, tmp_path):
    cfg, data, m = recipe(name)
    assert len(data) == m["weights"]["bytes"]
    src = tmp_path / "in.weights"
    src.write_bytes(data)
    net = Darknet(cfg)
    net.load_weights(src)
    net.save_weights(tmp_path / "out.weights")
    assert (tmp_path / "out.weights").read_bytes() == data


def test_training_fixture_files_round_trip(tmp_path):
    """The weights files Darknet itself wrote after training updates (seen = 2, 4, 6)."""
    z = np.load(golden_dir() / "mini_yolov2_train_synth" / "burnin0_gpusem.npz")
    cfg = golden_dir() / "mini_yolov2_train_synth" / "mini-yolov2-train_burnin0.cfg"
    for k, blob in enumerate(z["weights_file"]):
        data = blob.tobytes()
        (tmp_path / "w").write_bytes(data)
        net = Darknet(cfg)
        net.load_weights(tmp_path / "w")
        assert net.seen == 2 * (k + 1)
        net.save_weights(tmp_path / "o")
        assert (tmp_path / "o").read_bytes() == data


def old_format(data: bytes, seen: int = 12345) -> bytes:
    """The same parameters behind a 2016-style header: minor 1, 32-bit seen."""
    return np.array([0, 1, 0, seen], "<i4").tobytes() + data[20:]


def test_old_header_is_read_and_written_back_in_its_own_format(tmp_path):
    cfg, data, _ = recipe("mini_yolov2_synth")
    old = old_format(data)
    (tmp_path / "old.weights").write_bytes(old)
    net = Darknet(cfg)
    header = net.load_weights(tmp_path / "old.weights")
    assert (header.major, header.minor, header.seen) == (0, 1, 12345) and not header.seen_is_64bit
    assert net.seen == 12345
    net.save_weights(tmp_path / "same.weights")
    assert (tmp_path / "same.weights").read_bytes() == old
    net.save_weights(tmp_path / "current.weights", header="current")
    cur = (tmp_path / "current.weights").read_bytes()
    assert read_header(cur) == Header(0, 2, 0, 12345) and cur[20:] == data[20:]


def test_parameters_land_in_the_right_tensors(tmp_path):
    """Darknet file order per conv layer: biases, scales, rolling mean, rolling variance, kernels."""
    cfg, data, _ = recipe("mini_yolov2_synth")
    (tmp_path / "w").write_bytes(data)
    net = Darknet(cfg)
    net.load_weights(tmp_path / "w")
    floats = np.frombuffer(data, "<f4", offset=20)
    first = net.layers[0]  # 8 filters, 3x3x3, batch norm
    n = 8
    assert np.array_equal(first.bias.detach().numpy(), floats[:n])
    assert np.array_equal(first.scales.detach().numpy(), floats[n:2 * n])
    assert np.array_equal(first.rolling_mean.numpy(), floats[2 * n:3 * n])
    assert np.array_equal(first.rolling_variance.numpy(), floats[3 * n:4 * n])
    assert np.array_equal(first.weight.detach().numpy().ravel(), floats[4 * n:4 * n + n * 27])


def test_file_cut_short_by_one_byte_is_a_clear_error(tmp_path):
    cfg, data, _ = recipe("mini_yolov2_synth")
    (tmp_path / "short.weights").write_bytes(data[:-1])
    with pytest.raises(WeightsError, match=rf"expected {len(data)} bytes, found {len(data) - 1}"):
        Darknet(cfg).load_weights(tmp_path / "short.weights")


def test_file_for_another_cfg_is_a_clear_error(tmp_path):
    """tiny160's weights (larger) into the mini cfg, and the mini weights (smaller) into tiny."""
    mini_cfg, mini, _ = recipe("mini_yolov2_synth")
    tiny_cfg, tiny, _ = recipe("tiny160_synth")
    (tmp_path / "tiny.weights").write_bytes(tiny)
    (tmp_path / "mini.weights").write_bytes(mini)
    with pytest.raises(WeightsError, match=r"not for .*mini-yolov2.cfg.*expected 401512 bytes"):
        Darknet(mini_cfg).load_weights(tmp_path / "tiny.weights")
    with pytest.raises(WeightsError, match=r"expected 63471560 bytes, found 401512"):
        Darknet(tiny_cfg).load_weights(tmp_path / "mini.weights")


def test_trailing_bytes_are_an_error_unless_allowed(tmp_path):
    cfg, data, _ = recipe("mini_yolov2_synth")
    (tmp_path / "long.weights").write_bytes(data + b"\0" * 8)
    with pytest.raises(WeightsError, match="not for .*8 bytes more than it needs"):
        Darknet(cfg).load_weights(tmp_path / "long.weights")
    with pytest.warns(UserWarning, match="8 trailing bytes"):
        Darknet(cfg).load_weights(tmp_path / "long.weights", allow_trailing=True)


def test_missing_file_is_a_clear_error(tmp_path):
    cfg, _, _ = recipe("mini_yolov2_synth")
    with pytest.raises(WeightsError, match="no such weights file"):
        Darknet(cfg).load_weights(tmp_path / "nope.weights")


def test_cutoff_saves_and_loads_the_first_layers(tmp_path):
    cfg, data, _ = recipe("mini_yolov2_synth")
    (tmp_path / "w").write_bytes(data)
    net = Darknet(cfg)
    net.load_weights(tmp_path / "w")
    net.save_weights(tmp_path / "part", cutoff=5)
    part = (tmp_path / "part").read_bytes()
    sizes = [sum(p.numel() for p in layer.darknet_params()) for layer in net.layers[:5]]
    assert part == data[:20 + 4 * sum(sizes)]

    fresh = Darknet(cfg)
    before = fresh.layers[5].weight.detach().clone()
    with pytest.raises(WeightsError, match="first 5 of the 23 layers .* a partial file; load it with partial=True"):
        fresh.load_weights(tmp_path / "part")
    with pytest.warns(UserWarning, match="fills the first 5 of the 23 layers"):
        fresh.load_weights(tmp_path / "part", partial=True)
    assert torch.equal(fresh.layers[4].weight, net.layers[4].weight)
    assert torch.equal(fresh.layers[5].weight, before)  # not in the file: left as initialised
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Darknet(cfg).load_weights(tmp_path / "part", cutoff=5)  # explicit cutoff: no warning
        Darknet(cfg).load_weights(tmp_path / "w", cutoff=5)  # longer file with cutoff: no warning


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path):
    cfg, data, _ = recipe("mini_yolov2_synth")
    (tmp_path / "w").write_bytes(data)
    net = Darknet(cfg)
    net.load_weights(tmp_path / "w")
    net.save_weights(tmp_path / "w")  # overwrite in place
    assert (tmp_path / "w").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_connected_layer_order_and_transposed_old_files(tmp_path):
    text = ("[net]\nwidth=4\nheight=4\nchannels=2\n[connected]\noutput=3\nactivation=linear\n"
            "[connected]\noutput=2\nbatch_normalize=1\nactivation=leaky\n")
    net = Darknet("conn.cfg", text=text)
    rng = np.random.default_rng(0)
    body = rng.uniform(0.5, 1.5, 3 + 3 * 32 + 2 + 2 * 3 + 2 * 3).astype("<f4")
    new = Header(0, 2, 0, 7).to_bytes() + body.tobytes()
    (tmp_path / "new").write_bytes(new)
    net.load_weights(tmp_path / "new")
    w = body[3:3 + 96].reshape(3, 32)
    assert np.array_equal(net.layers[0].weight.detach().numpy(), w)
    # biases, weights, then scales / rolling mean / rolling variance
    assert np.array_equal(net.layers[1].scales.detach().numpy(), body[3 + 96 + 2 + 6:3 + 96 + 2 + 6 + 2])
    # A transposed old file (minor > 1000) stores (inputs, outputs) matrices.
    old_body = body.copy()
    old_body[3:3 + 96] = w.T.ravel()
    old_body[3 + 96 + 2:3 + 96 + 2 + 6] = body[3 + 96 + 2:3 + 96 + 2 + 6].reshape(2, 3).T.ravel()
    old = Header(0, 1001, 0, 7).to_bytes() + old_body.tobytes()
    (tmp_path / "old").write_bytes(old)
    net2 = Darknet("conn.cfg", text=text)
    net2.load_weights(tmp_path / "old")
    assert torch.equal(net2.layers[0].weight, net.layers[0].weight)
    net2.save_weights(tmp_path / "old2")
    assert (tmp_path / "old2").read_bytes() == old


def test_stale_temporaries_of_a_killed_writer_are_cleaned(tmp_path):
    import os
    import time
    cfg, data, _ = recipe("mini_yolov2_synth")
    (tmp_path / "w").write_bytes(data)
    net = Darknet(cfg)
    net.load_weights(tmp_path / "w")
    old, fresh = tmp_path / "w.abc123.tmp", tmp_path / "w.def456.tmp"
    old.write_bytes(b"half a file")
    fresh.write_bytes(b"another writer, still busy")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    net.save_weights(tmp_path / "w")
    assert not old.exists() and fresh.exists()
    assert (tmp_path / "w").read_bytes() == data
    assert oct((tmp_path / "w").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    import os
    m = os.umask(0)
    os.umask(m)
    return m
