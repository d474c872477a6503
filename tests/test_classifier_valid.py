"""``classifier valid``: Darknet's centre crop, its class-from-path rule and its top-1/top-k counts."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pydarknet.classifier_data import ClassifierData, center_crop, match_labels
from pydarknet.classifier_valid import validate_classifier
from pydarknet.commands.valid_classifier import main as valid_main
from pydarknet.image import resize
from pydarknet.network import Darknet

CFG = """[net]
width=8
height=8
channels=3

[convolutional]
filters=2
size=1
stride=1
activation=linear

[avgpool]

[softmax]
"""


def test_center_crop_takes_the_central_square_then_resizes():
    img = torch.rand(3, 5, 9)
    assert torch.equal(center_crop(img, 5, 5), img[:, :, 2:7])
    assert torch.equal(center_crop(img, 4, 4), resize(img[:, :, 2:7], 4, 4))
    tall = torch.rand(3, 8, 3)
    assert torch.equal(center_crop(tall, 3, 3), tall[:, 2:5, :])


def test_match_labels_is_a_substring_search_over_the_first_classes():
    assert match_labels("/d/train/ants/1.jpg", ["ants", "bees"], 2) == [0]
    assert match_labels("/d/bees/ants/1.jpg", ["ants", "bees"], 2) == [0, 1]
    assert match_labels("/d/bees/1.jpg", ["ants", "bees"], 1) == []


@pytest.fixture
def colour_set(tmp_path):
    """Red pictures are class 0 and blue ones class 1 for a 1x1 conv that reads R and B."""
    net = Darknet("c.cfg", text=CFG)
    conv = net.layers[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0], conv.weight[1, 2] = 4., 4.
    paths = []
    for folder, colour, n in (("ants", 2, 3), ("bees", 0, 2), ("ants", 0, 1), ("other", 2, 1)):
        (tmp_path / folder).mkdir(exist_ok=True)
        for i in range(n):
            bgr = np.zeros((10, 14, 3), np.uint8)
            bgr[:, :, colour] = 255
            p = tmp_path / folder / f"{colour}_{i}.png"
            cv2.imwrite(str(p), bgr)
            paths.append(str(p))
    (tmp_path / "valid.list").write_text("\n".join(paths) + "\n")
    (tmp_path / "labels.list").write_text("ants\nbees\n")
    return net, paths, tmp_path


def test_validate_counts_as_darknet(colour_set):
    net, paths, _ = colour_set
    res = validate_classifier(net, paths, ["ants", "bees"], 2, k=2, show_progress=False)
    # 3 red ants right, 2 blue bees right, 1 blue ant wrong, 1 unmatched (class -1): a miss
    assert res.images == 7 and res.top1 == pytest.approx(5 / 7) and res.topk == pytest.approx(6 / 7)
    assert res.unmatched == [paths[-1]] and not res.ambiguous
    assert [r[1] for r in res.rows] == [0, 0, 0, 1, 1, 0, -1]


def test_valid_command_prints_a_json_summary(colour_set, capsys, monkeypatch):
    net, paths, d = colour_set
    net.save_weights(d / "c.weights")
    (d / "c.cfg").write_text(CFG)
    (d / "v.data").write_text(f"classes=2\nvalid={d / 'valid.list'}\nlabels={d / 'labels.list'}\ntop=1\n")
    (d / "missing.png").write_bytes(b"")
    with (d / "valid.list").open("a") as f:
        f.write(str(d / "missing.png") + "\n")
    rc = valid_main([str(d / "v.data"), str(d / "c.cfg"), str(d / "c.weights"), "-q"])
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert rc == 1 and summary["failed"] == [str(d / "missing.png")] and summary["images"] == 7
    assert summary["top1"] == pytest.approx(5 / 7) and "1 pictures match no label" in out.err
    assert ClassifierData.from_file(d / "v.data").top == 1
