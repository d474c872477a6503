"""Issue 11: Darknet's recurrent layers [rnn], [gru], [lstm], [crnn] and AlexeyAB's [conv_lstm].

The golden sets (tests/data/golden/recurrent_synth, see its README) hold Darknet's own outputs
for tiny cfgs with synthetic weights: three forward calls on one input, so that they also check
the hidden state carried from one call to the next.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.cfg import CfgError
from pydarknet.network import Darknet
from pydarknet.weights import Header, weights_bytes

GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "recurrent_synth"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
# exact=False: plain float32 kernels; the largest distance measured over all sets, relative to
# max(1, |Darknet's value|), is 8.0e-6 (ab_crnn, whose outputs reach 1.8e4)
FAST_RTOL = 8e-5


def _net(text: str, **kw) -> Darknet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Darknet("t.cfg", text=text, **kw).eval()


def _golden(name: str, exact: bool) -> tuple[Darknet, np.ndarray, np.ndarray]:
    case = MANIFEST[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = Darknet(GOLDEN / f"{name}.cfg", exact=exact, flavour=case["flavour"]).eval()
    net.load_weights(GOLDEN / f"{name}.weights")
    data = np.load(GOLDEN / f"{name}.npz")
    return net, data["input"], data["darknet"]


def _run_calls(net, x, calls):
    with torch.no_grad():
        return np.stack([net(torch.from_numpy(x)).reshape(x.shape[0], -1).numpy() for _ in range(calls)])


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_exact_forward_is_darknets_bit_for_bit(name):
    net, x, ref = _golden(name, exact=True)
    ours = _run_calls(net, x, ref.shape[0])
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref), float(np.abs(ours - ref).max())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fast_forward_is_within_float_noise(name):
    net, x, ref = _golden(name, exact=False)
    distance = np.abs(_run_calls(net, x, ref.shape[0]) - ref) / np.maximum(1, np.abs(ref))
    assert distance.max() < FAST_RTOL


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_weights_round_trip_byte_for_byte(name):
    net, _, _ = _golden(name, exact=False)
    assert weights_bytes(net) == (GOLDEN / f"{name}.weights").read_bytes()


def test_reset_state_and_batch_layout():
    net, x, ref = _golden("gru", exact=False)
    first = _run_calls(net, x, 1)[0]
    assert not np.array_equal(_run_calls(net, x, 1)[0], first)   # the state carried over
    net.reset_state()
    assert np.array_equal(_run_calls(net, x, 1)[0], first)
    with pytest.raises(ValueError, match="multiple of 3 rows"):
        net(torch.from_numpy(x[:4]))


NET = "[net]\ninputs=8\nbatch=2\ntime_steps=3\n"


@pytest.mark.parametrize("section, flavour, count", [
    # parser arithmetic: each connected sub-layer stores outputs*(inputs + 1), +3*outputs with batch norm
    ("[rnn]\noutput=5\nbatch_normalize=1", "pjreddie", 5 * (8 + 4) + 2 * 5 * (5 + 4)),
    ("[rnn]\noutput=5\nhidden=7\nlogistic=1", "alexeyab", 7 * 9 + 7 * 8 + 5 * 8),
    ("[rnn]\noutput=5\nhidden=7", "pjreddie", 5 * 9 + 2 * 5 * 6),             # pjreddie ignores hidden=
    ("[gru]\noutput=5", "pjreddie", 3 * 5 * 9 + 3 * 5 * 6),
    ("[lstm]\noutput=5\nbatch_normalize=1", "alexeyab", 4 * 5 * 12 + 4 * 5 * 9),
])
def test_weight_counts_follow_the_parser(section, flavour, count):
    net = _net(NET + section, flavour=flavour)
    assert net.flavour == flavour
    assert sum(p.numel() for p in net.layers[0].darknet_params()) == count


def test_crnn_weight_counts_and_shapes():
    text = "[net]\nwidth=5\nheight=4\nchannels=3\nbatch=1\ntime_steps=2\n"
    pj = _net(text + "[crnn]\noutput_filters=4\nhidden_filters=2\nbatch_normalize=1")
    assert pj.flavour == "pjreddie"
    assert sum(p.numel() for p in pj.layers[0].darknet_params()) == 2 * 27 + 2 * 18 + 4 * 18 + 2 * 4 + 2 * 4 + 4 * 4
    assert tuple(pj.output_shape) == (4, 5, 4)     # parse_crnn swaps height and width
    ab = _net(text + "[crnn]\noutput=4\nhidden=2\nsize=1")
    assert ab.flavour == "alexeyab"
    assert sum(p.numel() for p in ab.layers[0].darknet_params()) == 2 * 4 + 2 * 3 + 4 * 3
    assert tuple(ab.output_shape) == (4, 4, 5)
    with pytest.raises(CfgError, match=r"t.cfg:7: layer 0 \[crnn\].*stride=1 and pad=1"):
        _net(text + "[crnn]\noutput=4\nhidden=2\nsize=3")   # AlexeyAB's pad=0 default: Darknet asserts


def test_flavour_orders_the_sub_layers():
    """pjreddie's file holds [gru]'s state sub-layers first, AlexeyAB's its input ones."""
    text = "[net]\ninputs=3\ntime_steps=1\n[gru]\noutput=2"
    pj, ab = _net(text, flavour="pjreddie"), _net(text, flavour="alexeyab")
    assert pj.layers[0].darknet_params()[1] is pj.layers[0].wz.weight
    assert ab.layers[0].darknet_params()[1] is ab.layers[0].uz.weight
    lstm = "[net]\ninputs=3\ntime_steps=1\n[lstm]\noutput=2"
    assert _net(lstm, flavour="pjreddie").layers[0].order[:2] == ("wi", "wf")
    assert _net(lstm, flavour="alexeyab").layers[0].order[:2] == ("wf", "wi")


def test_old_transposed_files_transpose_the_sub_layers(tmp_path):
    net, x, ref = _golden("lstm", exact=False)
    expected = _run_calls(net, x, 3)
    old = Header(0, 1001, 0, 0)   # a version above 1000: connected matrices stored transposed
    assert old.transposed
    path = tmp_path / "old.weights"
    net.save_weights(path, header=old)
    first = net.layers[0].order[0]
    w = getattr(net.layers[0], first).weight
    stored = np.frombuffer(path.read_bytes(), "<f4", w.numel(), old.nbytes + 4 * w.shape[0])
    assert np.array_equal(stored, w.detach().T.contiguous().numpy().ravel())
    again, _, _ = _golden("lstm", exact=False)
    again.load_weights(path)
    assert np.array_equal(_run_calls(again, x, 3), expected)


def test_inputs_alone():
    net = _net("[net]\ninputs=6\n[rnn]\noutput=2")
    assert (net.channels, net.height, net.width) == (6, 1, 1)


def test_conv_lstm_weights_and_errors():
    text = "[net]\nwidth=5\nheight=4\nchannels=3\ntime_steps=2\n[conv_lstm]\noutput=4\npad=1\n"
    net = _net(text + "peephole=1\nbatch_normalize=1")
    assert net.flavour == "alexeyab" and tuple(net.output_shape) == (4, 4, 5)
    # 4 input convolutions 3->4, 4 state ones and 3 peephole ones 4->4, 3x3, each with bias and batch norm
    assert sum(p.numel() for p in net.layers[0].darknet_params()) == 4 * 4 * 27 + 7 * 4 * 36 + 11 * 4 * 4
    assert net.layers[0].order[:4] == ("vf", "vi", "vo", "wf")
    assert net.layers[0].state_constrain == 2 * 32    # time_steps*32 by default
    with pytest.raises(CfgError, match=r"t.cfg:9: \[conv_lstm\] bottleneck=1"):
        _net(text + "bottleneck=1")
    with pytest.raises(CfgError, match="lstm_activation"):
        _net(text + "lstm_activation=leaky")
    with pytest.raises(CfgError, match="stride=1 and pad=1"):
        _net(text + "stride=2")


def test_training_goes_through_autograd():
    net = _net(NET + "[rnn]\noutput=4\nbatch_normalize=1\n[lstm]\noutput=3\n[gru]\noutput=2", exact=False)
    net.train()
    x = torch.rand(6, 8, 1, 1)
    net(x).square().sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # [rnn] starts every training forward from a zero state (Darknet zeroes l.state when net.train)
    with torch.no_grad():
        assert torch.equal(net.layers[0](x), net.layers[0](x))


def test_precise_batchnorm_refuses_recurrent_layers():
    from pydarknet.precise_bn import precise_batchnorm
    net = _net(NET + "[rnn]\noutput=4\nbatch_normalize=1", exact=False)
    with pytest.raises(ValueError, match=r"layer 0 \[rnn\] \(line 5\) is a recurrent layer with batch norm"):
        precise_batchnorm(net, [torch.rand(6, 8, 1, 1)])


def test_trainer_updates_the_sub_layers():
    from pydarknet.train import Trainer
    net = _net(NET + "[rnn]\noutput=4\nlearning_rate=0\n[connected]\noutput=3\n[softmax]", exact=False)
    slots = Trainer(net, quirk_warnings=False).slots
    rnn = net.layers[0]
    assert [s.param for s in slots[:6]] == [p for sub in rnn.sub_layers() for p in (sub.bias, sub.weight)]
    assert all(s.lr_scale == 1 for s in slots[:6])   # Darknet: the sub-layers' own scale, not learning_rate=
