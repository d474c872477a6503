"""The paper's high-resolution step as commands: train at one size, continue at twice the size
from those weights with --clear (the schedule restarts), then ``partial`` the backbone."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from pydarknet.commands import main as pydarknet
from pydarknet.network import Darknet

NET = """[net]
batch=4
subdivisions=1
width={size}
height={size}
channels=3
learning_rate={lr}
policy=poly
power=4
max_batches={max_batches}
max_crop={crop}

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=2
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
"""


@pytest.mark.slow
def test_train_low_resolution_then_high_then_partial(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for label in ("red", "blue"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 60, (40, 50, 3), dtype=np.uint8)
            pixels[:, :, 2 if label == "red" else 0] += 180
            cv2.imwrite(str(tmp_path / label / f"{i}.png"), pixels)
            paths.append(str(tmp_path / label / f"{i}.png"))
    (tmp_path / "train.list").write_text("\n".join(paths) + "\n")
    (tmp_path / "labels.list").write_text("red\nblue\n")
    data = tmp_path / "c.data"
    data.write_text(f"classes=2\ntrain={tmp_path / 'train.list'}\nvalid={tmp_path / 'train.list'}\n"
                    f"labels={tmp_path / 'labels.list'}\nbackup={tmp_path / 'backup'}\n")
    low, high = tmp_path / "small.cfg", tmp_path / "small_64.cfg"
    low.write_text(NET.format(size=32, lr=0.1, max_batches=3, crop=48))
    high.write_text(NET.format(size=64, lr=0.001, max_batches=2, crop=96))
    common = ["--workers", "0", "--no-progress", "-q", "--seed", "0"]
    assert pydarknet(["classifier", "train", str(data), str(low), *common]) == 0
    assert "\n3, 2.000: " in capsys.readouterr().out
    first = tmp_path / "backup" / "small_final.weights"
    net = Darknet(low)
    net.load_weights(first)
    assert net.seen == 12
    # without --clear the 224 run's `seen` is already past the 448 cfg's max_batches: Darknet would
    # run no iteration and write _final.weights; pydarknet says so and suggests --clear
    assert pydarknet(["classifier", "train", str(data), str(high), str(first), *common]) == 1
    captured = capsys.readouterr()
    assert not re.search(r"^\d+, \d", captured.out, re.M) and "use --clear" in captured.err
    assert pydarknet(["classifier", "train", str(data), str(high), str(first), "--clear", *common]) == 0
    out = capsys.readouterr().out
    assert "\n1, 0.667: " in out and "\n2, 1.333: " in out
    hi = Darknet(high)
    hi.load_weights(tmp_path / "backup" / "small_64_final.weights")
    assert hi.seen == 8
    assert pydarknet(["partial", str(high), str(tmp_path / "backup" / "small_64_final.weights"),
                      str(tmp_path / "small.conv.2"), "2"]) == 0
    back = Darknet(high)
    back.load_weights(tmp_path / "small.conv.2", partial=True)
    assert back.seen == 0 and np.array_equal(back.layers[0].weight.detach(), hi.layers[0].weight.detach())
    assert pydarknet(["classifier", "valid", str(data), str(high), str(tmp_path / "backup" / "small_64_final.weights"),
                      "-q"]) == 0
