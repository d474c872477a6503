"""Detection from an ImageNet backbone: cfg/tinydarknet-yolov2.cfg takes exactly the layers that
``partial`` cuts from Tiny Darknet, the recipe's decisions follow from the training data, Darknet's
``stopbackward`` freezes what it should, and a short fine-tuning run lowers the loss.

Tiny Darknet's real cfg and weights come from ``../shared/real/tiny`` when present; otherwise
the classifier is our cfg's first 19 layers plus Tiny Darknet's 1000-way head, with random
weights (the same layer layout, so ``partial`` and the loading are tested the same way).
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.convert import load_weights_checked, partial, truncate_cfg_text
from pydarknet.finetune import BASE_CFG, matching_layers
from pydarknet.network import Darknet
from pydarknet.recipe import decide, fit_to_time, frozen_layer, holdout_split, input_size, schedule, \
    write_cfg
from pydarknet.weights import expected_size, read_header

SHARED = Path(os.environ.get("PYDARKNET_SHARED") or Path(__file__).resolve().parents[2] / "shared")
TINY = SHARED / "real" / "tiny"
BACKBONE_LAYERS = 19   # Tiny Darknet's layers before its 1000-filter classifier convolution


def _classifier_cfg(tmp_path: Path) -> Path:
    """Tiny Darknet's layout: our backbone layers, then its classifier head."""
    text = truncate_cfg_text(BASE_CFG.read_text(), BACKBONE_LAYERS)
    text += ("\n[convolutional]\nfilters=1000\nsize=1\nstride=1\npad=1\nactivation=linear\n\n"
             "[avgpool]\n\n[softmax]\ngroups=1\n")
    path = tmp_path / "tiny-like.cfg"
    path.write_text(text)
    return path


def _random_classifier(tmp_path: Path) -> tuple[Path, Path]:
    cfg = _classifier_cfg(tmp_path)
    net = Darknet(cfg, exact=False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in list(net.parameters()) + [b for n, b in net.named_buffers() if "rolling" in n]:
            t.copy_(torch.rand(t.shape, generator=gen) + .1)
    weights = tmp_path / "tiny-like.weights"
    net.save_weights(weights)
    return cfg, weights


def _backbone_files(tmp_path: Path) -> tuple[Path, Path]:
    if (TINY / "tiny.weights").is_file() and (TINY / "tiny.cfg").is_file():
        return TINY / "tiny.cfg", TINY / "tiny.weights"
    return _random_classifier(tmp_path)


# --- the backbone cfg and partial --------------------------------------------------------
def test_random_classifier_partial_fills_exactly_the_backbone(tmp_path):
    cfg, weights = _random_classifier(tmp_path)
    _check_partial(tmp_path, cfg, weights)


@pytest.mark.skipif(not (TINY / "tiny.weights").is_file(), reason=f"no Tiny Darknet weights in {TINY}")
def test_tiny_darknet_partial_fills_exactly_the_backbone(tmp_path):
    _check_partial(tmp_path, TINY / "tiny.cfg", TINY / "tiny.weights")


def _check_partial(tmp_path, cfg, weights):
    base = BASE_CFG.read_text()
    assert matching_layers(cfg, base) == BACKBONE_LAYERS
    out = tmp_path / "backbone.conv.19"
    partial(cfg, weights, out, BACKBONE_LAYERS)
    det = Darknet(BASE_CFG, exact=False)
    header = read_header(out.read_bytes()[:20])
    assert out.stat().st_size == expected_size(det, BACKBONE_LAYERS, header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_weights_checked(det, out, min_layers=BACKBONE_LAYERS)   # exactly the first 19 layers, or raises
        classifier = Darknet(cfg, exact=False)
        classifier.load_weights(weights)
    for i in range(BACKBONE_LAYERS):
        for (name, a), (_, b) in zip(classifier.layers[i].state_dict().items(),
                                     det.layers[i].state_dict().items()):
            assert torch.equal(a, b), (i, name)
    assert det.seen == 0


# --- the recipe ---------------------------------------------------------------------------
def test_input_size_follows_the_small_boxes():
    rng = np.random.default_rng(0)
    big = rng.uniform(.3, .9, (200, 2))          # raccoon-like: 10th percentile ~0.36 -> 224 (the least)
    small = rng.uniform(.08, .12, (200, 2))      # 32 px / ~0.085 -> 384
    tiny = rng.uniform(.01, .03, (200, 2))
    assert input_size(big) == 224
    assert input_size(big, lo=128) == 128
    assert input_size(small) == 32 * int(np.ceil(32 / np.percentile(np.sqrt(small.prod(1)), 10) / 32))
    assert 320 <= input_size(small) <= 416
    assert input_size(tiny) == 416
    assert input_size(np.zeros((0, 2))) == 224


def test_holdout_split_is_seeded_disjoint_and_bounded():
    paths = [f"img{i}.jpg" for i in range(160)]
    train, held = holdout_split(paths)
    assert len(held) == 16 and len(train) == 144 and not set(train) & set(held)
    assert sorted(train + held) == sorted(paths)
    assert holdout_split(paths) == (train, held)
    assert holdout_split(paths, seed=1)[1] != held
    assert len(holdout_split(paths[:20])[1]) == 4            # never more than a fifth
    assert len(holdout_split(paths * 10)[1]) == 50           # at most 50


def test_schedule_and_time_cut():
    assert schedule(144) == (1080, 54, (864, 972))
    assert schedule(3)[0] == 23
    wh = np.random.default_rng(1).uniform(.3, .9, (100, 2))
    r = decide([f"{i}.jpg" for i in range(100)], wh, 2, BASE_CFG.read_text())
    assert (r.size, r.classes, len(r.anchors), len(r.holdout)) == (224, 2, 5, 10)
    assert decide([f"{i}.jpg" for i in range(100)], wh, 2, BASE_CFG.read_text(), min_size=160).size == 160
    assert r.max_batches == schedule(90)[0] and r.steps == schedule(90)[2]
    assert r.freeze == 7 and len(r.reasons) >= 5
    fit_to_time(r, done=10, seconds_per_batch=2., seconds_left=100.)   # 50 more iterations fit
    assert r.max_batches == 60 and r.steps == (48, 54) and r.burn_in == min(schedule(90)[1], 5)
    fit_to_time(r, done=20, seconds_per_batch=1., seconds_left=100.)   # faster: grows back (before a step)
    assert r.max_batches == 120 and r.steps == (96, 108)
    fit_to_time(r, done=100, seconds_per_batch=.1, seconds_left=1000.)  # past the first step: no growth
    assert r.max_batches == 120
    fit_to_time(r, done=100, seconds_per_batch=1., seconds_left=10.)    # but cut when time runs out
    assert r.max_batches == 110


def test_frozen_layer_is_the_stride_4_stem():
    assert frozen_layer(BASE_CFG.read_text()) == 7
    assert frozen_layer("[net]\n[convolutional]\nfilters=4\nsize=3\nstride=8\n") == -1


def test_write_cfg_builds_the_dataset_network():
    wh = np.random.default_rng(2).uniform(.05, .4, (60, 2))
    r = decide([f"{i}.jpg" for i in range(60)], wh, 3, BASE_CFG.read_text())
    net = Darknet("x.cfg", text=write_cfg(BASE_CFG.read_text(), r), exact=False)
    region = net.detection_layer
    assert (net.width, net.height) == (r.size, r.size)
    assert region.classes == 3 and region.num == 5
    assert np.allclose(np.asarray(region.anchors).reshape(-1, 2), r.anchors, atol=1e-4)
    assert net.layers[-2].filters == 5 * (5 + 3)
    assert [i for i, layer in enumerate(net.layers) if layer.stopbackward] == [7]
    o = net.options
    assert (o.max_batches, o.burn_in, list(o.steps)) == (r.max_batches, r.burn_in, list(r.steps))


# --- stopbackward -------------------------------------------------------------------------
def test_stopbackward_freezes_that_layer_and_all_before_it():
    text = ("[net]\nbatch=2\nwidth=8\nheight=8\nchannels=3\n"
            "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
            "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\nstopbackward=1\n"
            "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
            "[route]\nlayers=-1,0\n"
            "[convolutional]\nfilters=2\nsize=1\nstride=1\npad=1\nactivation=linear\n")
    net = Darknet("x.cfg", text=text, exact=False).train()
    net(torch.rand(2, 3, 8, 8)).sum().backward()
    grads = [layer.weight.grad for layer in net.layers if hasattr(layer, "weight")]
    # layers 0 and 1 frozen (layer 0 even though the route reads it), 2 and 4 learn
    assert grads[0] is None and grads[1] is None
    assert grads[2] is not None and grads[3] is not None
    net.eval()   # inference is unchanged
    with torch.no_grad():
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 2, 8, 8)


# --- a short fine-tuning run --------------------------------------------------------------
@pytest.mark.slow
def test_finetune_from_the_backbone_lowers_the_loss(tmp_path):
    """The whole workflow on 40 generated pictures (8 held out) at 96x96 for 24 iterations of 8:
    the average loss ends below 90 % of the first iteration's, held-out and validation mAPs are
    computed and the summary is written."""
    from pydarknet.commands.finetune import main
    from pydarknet.shapes import write_dataset
    cfg, weights = _backbone_files(tmp_path)
    data = write_dataset(tmp_path / "shapes", n_train=40, n_val=6, sizes=((128, 96), (96, 128)))
    torch.set_num_threads(1)
    work = tmp_path / "work"
    rc = main([str(data), "--backbone", str(weights), "--backbone-cfg", str(cfg), "--work", str(work),
               "--size", "96", "--epochs", "6", "--minutes", "5", "--workers", "0", "--lr", "0.002"])
    assert rc == 0
    summary = json.loads((work / "finetune.json").read_text())
    assert summary["iterations"] == 24
    with next((work / "backup").glob("*_log.csv")).open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    first, last = float(rows[0]["loss"]), float(rows[-1]["avg_loss"])
    assert last < .9 * first, (first, last)     # measured 38.1 -> 28.8 (tiny.weights, 2 cores)
    assert summary["history"] and 0 <= summary["map50_voc07"] <= 1
    assert (work / "best.weights").is_file()


# --- precise batch-norm statistics ----------------------------------------------------------
def test_precise_batchnorm_sets_the_mean_of_the_batch_statistics():
    from pydarknet.precise_bn import precise_batchnorm
    text = ("[net]\nbatch=4\nwidth=8\nheight=8\nchannels=3\n"
            "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
            "[convolutional]\nbatch_normalize=1\nfilters=2\nsize=1\nstride=1\npad=1\nactivation=linear\n")
    net = Darknet("x.cfg", text=text, exact=False).eval()
    gen = torch.Generator().manual_seed(3)
    batches = [torch.rand(4, 3, 8, 8, generator=gen) * (k + 1) for k in range(3)]
    conv = net.layers[0]
    expected_mean, expected_var = [], []
    for b in batches:
        y = torch.nn.functional.conv2d(b, conv.weight, None, 1, 1)
        var, mean = torch.var_mean(y, dim=(0, 2, 3), correction=1)
        expected_mean.append(mean)
        expected_var.append(var)
    assert precise_batchnorm(net, batches) == 3
    assert not net.training
    # float rounding of .01 * stat * 100: measured ~1e-7 relative
    assert torch.allclose(conv.rolling_mean, torch.stack(expected_mean).mean(0), rtol=1e-5, atol=1e-6)
    assert torch.allclose(conv.rolling_variance, torch.stack(expected_var).mean(0), rtol=1e-5, atol=1e-6)
    before = [t.clone() for t in (conv.rolling_mean, conv.rolling_variance)]
    assert precise_batchnorm(net, []) == 0                                   # nothing to measure: unchanged
    assert all(torch.equal(a, b) for a, b in zip(before, (conv.rolling_mean, conv.rolling_variance)))
