"""Inference and training on a CUDA device (skipped without one)."""
from __future__ import annotations

import pytest
import torch
from conftest import golden_dir, manifest, set_cfg

import pydarknet
from pydarknet.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_detect_and_exact_forward_on_cuda(recipe_weights):
    name = "mini_yolov2_synth"
    cfg = set_cfg(name)
    weights = recipe_weights(cfg, manifest(name)["weights"]["seed"])
    cpu = pydarknet.load_network(cfg, weights, engine="exact")
    gpu = pydarknet.load_network(cfg, weights, engine="auto", device="cuda")
    assert gpu.backend is None  # ONNX Runtime's CPU engine steps aside for a CUDA network
    png = golden_dir() / "images" / "synth1.png"
    ref = pydarknet.detect(cpu, png, thresh=.3)
    got = pydarknet.detect(gpu, png, thresh=.3)
    assert [(d.class_id, d.det_index) for d in got] == [(d.class_id, d.det_index) for d in ref]
    x = torch.rand(1, 3, cpu.height, cpu.width)
    gpu.exact = True  # Darknet's arithmetic with the torch sequential sums on the GPU
    with torch.no_grad():
        # the sums are the same; CUDA's exp (logistic, softmax) may differ from glibc's in the last bit
        # (not yet measured on a GPU: 1e-6 is a bound of a few float32 ulps of values <= 1)
        assert (gpu(x.cuda()).cpu() - cpu(x)).abs().max() <= 1e-6


def test_training_step_on_cuda(recipe_weights):
    cfg = set_cfg("mini_yolov2_synth")
    net = pydarknet.Darknet(cfg, exact=False)
    net.load_weights(recipe_weights(cfg, 2))
    net.options.batch, net.options.subdivisions = 2, 1
    net.cuda().train()
    truths = torch.zeros(2, 30, 5, device="cuda")
    truths[:, 0] = torch.tensor([.5, .5, .3, .4, 1.])
    loss = Trainer(net, quirk_warnings=False).step(torch.rand(2, 3, net.height, net.width, device="cuda"), truths)
    assert loss == loss and loss > 0
