"""The offline demo: the shipped shapes model finds the objects of freshly generated scenes,
and the README's main command works without any download."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pydarknet
from pydarknet.shapes import CLASSES, make_scene

REPO = Path(__file__).resolve().parents[1]
CFG, WEIGHTS, NAMES = REPO / "cfg" / "shapes-tiny.cfg", REPO / "weights" / "shapes-tiny.weights", \
    REPO / "cfg" / "shapes.names"


def iou(a, b) -> float:
    ix = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_shipped_model_is_small_and_loads_exactly():
    assert WEIGHTS.stat().st_size <= 10 * 2**20
    net = pydarknet.Darknet(CFG)
    net.load_weights(WEIGHTS)
    assert net.detection_layer.classes == len(CLASSES) == len(pydarknet.data.read_names(NAMES))


def test_demo_model_finds_fresh_generated_objects():
    """Recall >= 0.9 at IoU 0.5 (right class, prob > .25) on 50 scenes the model never saw."""
    net = pydarknet.Darknet(CFG)
    net.load_weights(WEIGHTS)
    net.eval()
    rng = np.random.default_rng(20261122)  # not the training seed
    found = total = 0
    for _ in range(50):
        w, h = [(320, 240), (240, 320), (300, 300), (400, 300)][int(rng.integers(4))]
        pixels, truth = make_scene(rng, w, h)
        dets = pydarknet.detect(net, pixels, thresh=.25)
        boxes = [(d.class_id, (d.box[0] - d.box[2] / 2) * w, (d.box[1] - d.box[3] / 2) * h,
                  (d.box[0] + d.box[2] / 2) * w, (d.box[1] + d.box[3] / 2) * h) for d in dets]
        for cls, *box in truth:
            total += 1
            found += any(c == cls and iou(box, b) > .5 for c, *b in boxes)
    assert total > 100 and found / total >= .9, f"recall {found}/{total}"


def test_readme_main_command_runs_offline(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--seed", "7"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo_scene.png").is_file() and (tmp_path / "predictions.jpg").is_file()
    lines = r.stdout.splitlines()
    assert lines[0].startswith("generated demo_scene.png (seed 7)")
    assert any(line.split(":")[0] in CLASSES and line.endswith("%") for line in lines[2:])
