"""Whole Darknet training iterations (train_network_datum + update_network) against the reference.

The fixtures are three iterations of Darknet's GPU training semantics run on the CPU
(``gpusem``: the region delta times the logistic gradient is back-propagated), batch 2, with
``burn_in`` 0 and 10.  Seen and the learning rate are equal; the loss and the weight update
(after - before: the whole weights file, and each layer's vector) are compared by relative
difference, with tolerances 10x the largest distance measured over the four fixtures (synthetic
and photo, burn_in 0 and 10) with torch on 1 and on 2 threads: iteration 1 loss 1.7e-6, update
relative L2 1.5e-4, worst layer 5.4e-4; iteration 2 2.8e-5 / 4.4e-3 / 7.0e-3; iteration 3
2.0e-3 / 7.4e-3 / 1.8e-2.  Iteration 1 is Darknet's to float32 noise (batch norm sums its
statistics in Darknet's float order); after it the convolutions' float32 noise, which depends
on torch's thread count, is amplified by each update.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import SHARED_SKIP_REASON, golden_dir, make_recipe_weights, shared_golden_dir

from pydarknet import Darknet
from pydarknet.network import NetOptions
from pydarknet.train import Trainer, learning_rate


def train_sets():
    params = []
    for variant in ("burnin0_gpusem", "burnin10_gpusem"):
        params.append(pytest.param(golden_dir() / "mini_yolov2_train_synth", variant, id=f"synth-{variant}"))
        shared = shared_golden_dir()
        params.append(pytest.param(shared / "mini_yolov2_train" if shared else None, variant,
                                   id=f"photo-{variant}",
                                   marks=[] if shared else [pytest.mark.skip(reason=SHARED_SKIP_REASON)]))
    return params


# (loss, whole update, each layer's update) relative tolerances per iteration: 10x measured
TOLERANCES = {0: (2e-5, 1.5e-3, 5.4e-3), 1: (3e-4, 4.4e-2, 7e-2), 2: (2e-2, 7.4e-2, 1.8e-1)}


def weights_body(data: bytes) -> np.ndarray:
    return np.frombuffer(data[20:], "<f4").astype(np.float64)


@pytest.mark.parametrize("folder,variant", train_sets())
def test_three_iterations_match_darknet(folder, variant, tmp_path):
    z = np.load(folder / f"{variant}.npz")
    inputs = np.load(folder / "inputs.npz")
    cfg = folder / f"mini-yolov2-train_{variant.split('_')[0]}.cfg"
    start = make_recipe_weights(cfg, 2)
    (tmp_path / "start.weights").write_bytes(start)
    net = Darknet(cfg)
    net.load_weights(tmp_path / "start.weights")
    trainer = Trainer(net)
    images, truths = torch.from_numpy(inputs["input"]), torch.from_numpy(inputs["truth"])
    ours_prev, ref_prev = weights_body(start), weights_body(start)
    for it in range(3):
        loss = trainer.step(images, truths)
        assert net.seen == z["seen"][it]
        assert np.float32(trainer.last_rate) == z["learning_rate"][it]
        loss_tol, update_tol, layer_tol = TOLERANCES[min(it, 2)]
        assert loss == pytest.approx(float(z["train_network_return"][it]), rel=loss_tol)
        net.save_weights(tmp_path / "w")
        saved = (tmp_path / "w").read_bytes()
        assert saved[:20] == z["weights_file"][it].tobytes()[:20]  # header, seen included
        ours, ref = weights_body(saved), weights_body(z["weights_file"][it].tobytes())
        du, dr = ours - ours_prev, ref - ref_prev
        assert np.linalg.norm(du - dr) <= update_tol * np.linalg.norm(dr), f"iteration {it + 1} update"
        for row in z["conv_table"]:
            n, c, size = row[0], row[1], row[2]
            lo, hi = row[4], row[8] + n * c * size * size
            u, r = du[lo:hi], dr[lo:hi]
            assert np.linalg.norm(u - r) <= layer_tol * np.linalg.norm(r), \
                f"iteration {it + 1}, layer at float {lo}: update vector differs"
        ours_prev, ref_prev = ours, ref


def test_region_delta_of_the_training_forward(tmp_path):
    """The first iteration's training forward (batch-norm on batch statistics) and its region
    delta, against Darknet's: delta within 1e-4 of its range (the forward's float32 noise)."""
    folder = golden_dir() / "mini_yolov2_train_synth"
    z = np.load(folder / "burnin0_gpusem.npz")
    inputs = np.load(folder / "inputs.npz")
    cfg = folder / "mini-yolov2-train_burnin0.cfg"
    (tmp_path / "w").write_bytes(make_recipe_weights(cfg, 2))
    net = Darknet(cfg)
    net.load_weights(tmp_path / "w")
    net.train()
    with torch.no_grad():
        out = net(torch.from_numpy(inputs["input"]))
        delta, cost = net.detection_layer.delta(out, torch.from_numpy(inputs["truth"]), 2)
    ref = z["region_delta"][0]
    assert np.abs(delta.numpy().reshape(ref.shape) - ref).max() <= 1e-4 * np.abs(ref).max()
    assert float(cost) == pytest.approx(float(z["region_cost"][0]), rel=1e-5)


def options(**kw) -> NetOptions:
    o = NetOptions(learning_rate=.001)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_learning_rate_policies():
    f32 = np.float32
    # burn_in: lr * (batch/burn_in)^power
    assert learning_rate(options(burn_in=10, policy="steps", steps=[2, 3], scales=[.5, .1]), 1) == \
        pytest.approx(1e-7, rel=1e-6)
    assert learning_rate(options(policy="steps", steps=[2, 3], scales=[.5, .1]), 2) == float(f32(5e-4))
    assert learning_rate(options(policy="steps", steps=[2, 3], scales=[.5, .1]), 3) == float(f32(f32(5e-4) * f32(.1)))
    # Darknet's unsigned comparison: a step of -1 is never reached, so the rate never changes.
    quirky = options(policy="steps", steps=[-1, 100, 20000], scales=[.1, 10, .1])
    assert {learning_rate(quirky, b) for b in (0, 1, 150, 30000)} == {float(f32(.001))}
    # poly, as darknet19.cfg: the rates Darknet used in the E4 fixture
    poly = options(learning_rate=.1, policy="poly", power=4, max_batches=100)
    z = np.load(golden_dir() / "darknet19_train_synth" / "cpu.npz")
    assert [f32(learning_rate(poly, b)) for b in (1, 2, 3)] == list(z["learning_rate"])
    assert learning_rate(options(policy="step", step=10, scale=.5), 25) == pytest.approx(.00025)
    assert learning_rate(options(policy="exp", gamma=.9), 2) == pytest.approx(.00081)
    assert learning_rate(options(policy="constant"), 12345) == float(f32(.001))
    # sigmoid: Darknet's unsigned subtraction makes the rate 0 before `step`
    sig = options(policy="sigmoid", gamma=.1, step=100)
    assert learning_rate(sig, 50) == 0.0 and learning_rate(sig, 100) == pytest.approx(.0005)
    r = learning_rate(options(policy="random", power=1), 5)
    assert 0 <= r <= .001


def test_quirks_are_warned(tmp_path):
    text = ("[net]\nbatch=2\nwidth=32\nheight=32\nchannels=3\npolicy=steps\nsteps=-1,100\nscales=.1,10\n"
            "[convolutional]\nfilters=30\nsize=1\nactivation=linear\n[region]\nnum=1\nclasses=25\n")
    net = Darknet("quirk.cfg", text=text)
    with pytest.warns(UserWarning, match="unsigned"):
        Trainer(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(net, quirk_warnings=False)


def test_subdivisions_update_once_per_batch():
    """batch=4, subdivisions=2: two mini-batches of 2, one update after the second."""
    text = ("[net]\nbatch=4\nsubdivisions=2\nwidth=32\nheight=32\nchannels=3\nlearning_rate=0.1\n"
            "[convolutional]\nfilters=30\nsize=1\nactivation=linear\n[region]\nnum=1\nclasses=25\n")
    net = Darknet("sub.cfg", text=text)
    trainer = Trainer(net)
    w0 = net.layers[0].weight.detach().clone()
    truths = torch.zeros(4, 30, 5)
    truths[:, 0] = torch.tensor([.5, .5, .2, .3, 1.])
    calls = []
    orig = trainer.update
    trainer.update = lambda: (calls.append(net.seen), orig())
    loss = trainer.step(torch.rand(4, 3, 32, 32), truths)
    assert calls == [4] and net.seen == 4 and loss > 0
    assert not torch.equal(net.layers[0].weight, w0)
    with pytest.raises(ValueError, match="multiple of the mini-batch 2"):
        trainer.step(torch.rand(3, 3, 32, 32), truths[:3])
