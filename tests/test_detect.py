"""detect() and tools/detect.py against Darknet's detections (get_network_boxes + do_nms_sort)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_dir, inference_cases, manifest, set_dir

import pydarknet

REPO = Path(__file__).resolve().parents[1]
DETECTION_CASES = [c for c in inference_cases() if not (c.values[0] or "").startswith("darknet19")]


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
@pytest.mark.parametrize("name,run", DETECTION_CASES)
def test_detect_matches_darknet_after_nms(name, run, exact, golden_net):
    """Fast arithmetic: probabilities within 1e-5; boxes within 1e-5 absolute where |box| <= 1,
    and 5e-5 relative beyond.  Width and height are exp(tw)·anchor, so the float32 noise the
    raw tw may carry (the issue allows 1e-4·max|tw|) becomes a relative error of the box:
    measured up to 1.3e-5 (tiny160 synth2), on untrained boxes up to 90 image widths wide.
    Exact arithmetic: the same rows in the same order with identical values."""
    m = manifest(name)["runs"][run]
    z = np.load(set_dir(name) / f"{run}.npz")
    net = golden_net(name, exact)
    found = pydarknet.detect(net, set_dir(name) / m["image"]["file"], thresh=m["thresh"],
                             hier_thresh=m["hier_thresh"], nms=m["nms"])
    assert len(found) == len(z["det_class"])
    got_cls = np.array([d.class_id for d in found])
    got_idx = np.array([d.det_index for d in found])
    got_prob = np.array([d.prob for d in found], np.float32)
    got_box = np.array([d.box for d in found], np.float32)
    # Same rows in the same order; two rows whose probabilities differ by < 1e-6 may swap.
    if exact:
        assert np.array_equal(got_cls, z["det_class"]) and np.array_equal(got_idx, z["det_index"])
        assert np.array_equal(got_prob, z["det_prob"]) and np.array_equal(got_box, z["det_box"])
        return
    mismatch = np.nonzero((got_cls != z["det_class"]) | (got_idx != z["det_index"]))[0]
    for i in mismatch:
        j = np.nonzero((z["det_class"] == got_cls[i]) & (z["det_index"] == got_idx[i]))[0]
        assert len(j) == 1 and abs(int(j[0]) - int(i)) == 1 and abs(z["det_prob"][j[0]] - got_prob[i]) < 1e-6, \
            f"row {i} differs from Darknet's"
    order = np.array([np.nonzero((z["det_class"] == c) & (z["det_index"] == k))[0][0]
                      for c, k in zip(got_cls, got_idx)])
    assert np.abs(got_prob - z["det_prob"][order]).max() <= 1e-5
    ref_box = z["det_box"][order]
    assert (np.abs(got_box - ref_box) <= np.maximum(1e-5, 5e-5 * np.abs(ref_box))).all()
    assert np.abs(np.array([d.objectness for d in found]) - z["det_objectness"][order]).max() <= 1e-5


def test_detect_accepts_paths_arrays_and_tensors(golden_net):
    net = golden_net("mini_yolov2_synth")
    png = golden_dir() / "images" / "synth1.png"
    img = pydarknet.load_image(png)
    u8 = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    a = pydarknet.detect(net, png, thresh=.3)
    assert a == pydarknet.detect(net, img, thresh=.3) == pydarknet.detect(net, u8, thresh=.3)
    assert all(d.prob > .3 and d.name is None for d in a)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / "tools" / "detect.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def mini(tmp_path_factory, recipe_weights):
    cfg = golden_dir() / "mini_yolov2_synth" / "mini-yolov2.cfg"
    names = tmp_path_factory.mktemp("names") / "voc.names"
    names.write_text("\n".join(f"class{i}" for i in range(20)) + "\n")
    return cfg, recipe_weights(cfg, 2), names


def test_cli_prints_darknet_lines_and_writes_picture(mini, golden_net, tmp_path):
    cfg, weights, names = mini
    png = golden_dir() / "images" / "synth3.png"
    r = run_cli(cfg, weights, png, "--names", names, "--thresh", ".25", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{png}: Predicted in ")
    net = golden_net("mini_yolov2_synth")
    expected = [f"class{d.class_id}: {np.float32(d.prob) * np.float32(100):.0f}%"
                for d in pydarknet.detect(net, png, thresh=.25)]
    assert expected and lines[1:] == expected
    assert (tmp_path / "predictions.jpg").is_file()


def test_cli_json_folder_and_bad_image(mini, tmp_path):
    cfg, weights, names = mini
    pics = tmp_path / "pics"
    pics.mkdir()
    for k in (1, 3):
        (pics / f"synth{k}.png").write_bytes((golden_dir() / "images" / f"synth{k}.png").read_bytes())
    (pics / "broken.jpg").write_bytes(b"not a picture")
    r = run_cli(cfg, weights, pics, "--names", names, "--thresh", ".25", "--json", "--out", tmp_path / "out",
                cwd=tmp_path)
    assert r.returncode == 1  # one unreadable picture
    assert "broken.jpg" in r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(o["image"]).name for o in objs] == ["synth1.png", "synth3.png"]
    assert objs[1]["width"] == 320 and objs[1]["height"] == 240
    for d in objs[1]["detections"]:
        assert set(d) == {"class_id", "name", "prob", "objectness", "box"} and len(d["box"]) == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["synth1.jpg", "synth3.jpg"]


def test_cli_reports_user_errors_without_traceback(mini, tmp_path):
    cfg, weights, _ = mini
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=x\n")
    r = run_cli(bad, weights, golden_dir() / "images" / "synth1.png", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:6" in r.stderr and "filters=x" in r.stderr
    r = run_cli(cfg, tmp_path / "missing.weights", golden_dir() / "images" / "synth1.png", cwd=tmp_path)
    assert r.returncode == 2 and "no such weights file" in r.stderr and "Traceback" not in r.stderr
