"""``classify``: Darknet's ``classifier predict`` (letterbox, forward, tree, top_k, its lines).

The acceptance check runs pjreddie's Tiny Darknet (real ImageNet weights from ``../shared/real``)
on the PNG photos and compares with the lines Darknet printed for them, exactly.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pydarknet.classify import Prediction, classify, classify_tensor, top_k
from pydarknet.data import read_names
from pydarknet.network import Darknet
from pydarknet.tree import read_tree

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
TINY = REAL / "tiny"
PHOTOS = sorted((REAL / "photos").glob("*.png"))
needs_real = pytest.mark.skipif(not (TINY / "tiny.weights").is_file() or not PHOTOS,
                                reason="../shared/real (Tiny Darknet weights, photos) not present: third-party data")


def test_top_k_is_darknets_order():
    v = torch.tensor([.1, .5, .2, .5, float("nan"), .5, 0.])
    assert top_k(v, 3) == [1, 3, 5]            # ties: the lower index first
    assert top_k(v, 5) == [1, 3, 5, 2, 0]
    assert top_k(v, 100)[-1] == 4              # a NaN never wins
    assert top_k(v, 0) == []


def test_darknet_line_formats_the_float_product():
    assert Prediction(3, "malamute", .14176).darknet_line() == "14.18%: malamute"
    assert Prediction(3, None, .0229).darknet_line() == " 2.29%: 3"


def test_tree_networks_rank_leaves_by_absolute_probability(tmp_path):
    # root group {a, b}; b's children {c, d}: internal node b is zeroed, c = .6*.9
    (tmp_path / "t.tree").write_text("a -1\nb -1\nc 1\nd 1\n")
    tree = read_tree(tmp_path / "t.tree")
    net = SimpleNamespace(layers=[SimpleNamespace(kind="softmax", tree=tree)], names=list("abcd"))
    out = classify_tensor(net, torch.tensor([.4, .6, .9, .1]), top=4)
    assert [p.name for p in out] == ["c", "a", "d", "b"]
    assert out[0].prob == pytest.approx(.54) and out[3].prob == 0


def _tiny(exact: bool) -> Darknet:
    net = Darknet(TINY / "tiny.cfg", exact=exact)
    net.load_weights(TINY / "tiny.weights")
    net.names = read_names(TINY / "imagenet.shortnames.list")
    return net.eval()


def _golden(photo: Path) -> list[str]:
    return (REAL / "golden" / "pj_tiny" / f"{photo.name}.txt").read_text().splitlines()


@needs_real
def test_tiny_darknet_fast_mode_prints_darknets_lines():
    net = _tiny(exact=False)
    photo = PHOTOS[0]
    assert [p.darknet_line() for p in classify(net, photo)] == _golden(photo)
    first = classify(net, photo, top=1)[0]
    assert first.class_id == net.names.index(first.name)


@needs_real
@pytest.mark.slow
@pytest.mark.parametrize("photo", PHOTOS, ids=[p.name for p in PHOTOS])
def test_tiny_darknet_matches_darknet_line_for_line(photo):
    net = _tiny(exact=True)
    assert [p.darknet_line() for p in classify(net, photo)] == _golden(photo)


@needs_real
def test_classifier_predict_command_prints_lines_and_json(tmp_path, capsys):
    from pydarknet.commands import main as pydarknet_main
    from pydarknet.commands.classify import main as classify_main
    data = tmp_path / "tiny.data"
    data.write_text(f"classes=1000\nlabels = {TINY / 'imagenet.shortnames.list'}\ntop=3\n")
    photo = PHOTOS[0]
    rc = pydarknet_main(["classifier", "predict", str(data), str(TINY / "tiny.cfg"), str(TINY / "tiny.weights"),
                         str(photo), "--fast", "-q"])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == _golden(photo)[:3]     # labels= when names= is absent
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    rc = classify_main([str(TINY / "tiny.cfg"), str(TINY / "tiny.weights"), str(photo), str(bad), "--json",
                        "--names", str(TINY / "imagenet.shortnames.list"), "--top", "1", "--fast", "-q"])
    captured = capsys.readouterr()
    assert rc == 1 and f"cannot read image {bad}" in captured.err
    import json
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["image"] for r in rows] == [str(photo)]
    assert rows[0]["predictions"][0]["name"] + "" == _golden(photo)[0].split(": ", 1)[1]


@needs_real
def test_opencv_reads_our_copy_of_tiny_darknet_and_agrees(tmp_path):
    """cv2.dnn.readNetFromDarknet on tiny.cfg + the weights *we* wrote, on our letterboxed input.

    Measured (OpenCV 4.14, its CPU backend, Winograd off; torch 2.13): our saved file is byte
    for byte tiny.weights; max |p_opencv - p_ours| over the 1000 probabilities of the three
    PNG photos is 1.2e-5 (exact mode) and 9.7e-6 (fast mode), and the top 5 agree.  Tolerance
    5e-5 (about 4x the measured distance)."""
    cv2 = pytest.importorskip("cv2")
    from pydarknet.image import letterbox, load_image
    net = _tiny(exact=False)
    ours = tmp_path / "tiny.weights"
    net.save_weights(ours)
    assert ours.read_bytes() == (TINY / "tiny.weights").read_bytes()
    cvnet = cv2.dnn.readNetFromDarknet(str(TINY / "tiny.cfg"), str(ours))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    if hasattr(cvnet, "enableWinograd"):
        cvnet.enableWinograd(False)
    for photo in PHOTOS:
        x = letterbox(load_image(photo), net.width, net.height)[None]
        cvnet.setInput(x.numpy())
        theirs = torch.from_numpy(cvnet.forward().reshape(-1).copy())
        with torch.no_grad():
            mine = net(x).reshape(-1)
        assert (theirs - mine).abs().max().item() < 5e-5, photo.name
        assert top_k(theirs, 5) == top_k(mine, 5), photo.name
