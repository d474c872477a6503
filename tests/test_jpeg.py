"""Darknet's pixels from picture files: ``load_image`` against stb_image's own output.

References: ``tests/data/stb_pictures`` (our small synthetic pictures, with the SHA-256 of
what stb_image v2.19 returns for each) and, when present, ``../shared/real/golden/stb``
(stb's bytes for real photos and the raccoon/hymenoptera JPEGs) and the Tiny Darknet lines
Darknet prints for the JPEG photos.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import pydarknet
from pydarknet import image, imagefile
from pydarknet.image import ImageError

HERE = Path(__file__).resolve().parent
PICTURES = HERE / "data" / "stb_pictures"
SHARED = Path(__file__).resolve().parents[2] / "shared"
STB_GOLDEN = SHARED / "real" / "golden" / "stb"
TINY = SHARED / "real" / "tiny"

OURS = json.loads((PICTURES / "manifest.json").read_text())


def _rgb_sha(img: torch.Tensor) -> str:
    return hashlib.sha256(image.to_uint8(img).tobytes()).hexdigest()


def _shared_manifest() -> dict:
    path = STB_GOLDEN / "manifest.json"
    if not path.exists():
        pytest.skip(f"stb golden manifest not found ({path}); ../shared is not present")
    return json.loads(path.read_text())


# --- stb's bytes ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, e in OURS.items() if "sha256_rgb" in e))
def test_our_pictures_decode_as_stb(name):
    if name.endswith((".gif", ".tga")):
        pytest.importorskip("PIL", reason="GIF and TGA files are decoded with Pillow")
    entry = OURS[name]
    img = image.load_image(PICTURES / name)
    assert list(img.shape[1:]) == entry["shape"][:2]
    assert _rgb_sha(img) == entry["sha256_rgb"]


@pytest.mark.parametrize("name", sorted(n for n, e in OURS.items() if "error" in e))
def test_files_stb_rejects_are_errors(name):
    with pytest.raises(ImageError, match=name) as info:
        image.load_image(PICTURES / name)
    reason = OURS[name]["error"]
    if reason is not None:  # None: stb returns NULL without setting a reason (a length check)
        assert reason in str(info.value)  # stb's own reason


def test_shared_manifest_bit_exact():
    manifest = _shared_manifest()
    bad = []
    for rel, entry in manifest.items():
        path = SHARED / rel
        if not path.exists():
            pytest.skip(f"{path} listed in the stb manifest is missing")
        img = image.load_image(path)
        if list(img.shape[1:]) != entry["shape"][:2] or _rgb_sha(img) != entry["sha256_rgb"]:
            bad.append(rel)
    assert not bad, f"{len(bad)} of {len(manifest)} differ from stb_image: {bad[:5]}"


@pytest.mark.parametrize("name", ["person", "eagle", "person_progressive", "person_411"])
def test_shared_photo_arrays(name):
    npz = STB_GOLDEN / f"{name}.npz"
    if not npz.exists():
        pytest.skip(f"{npz} not found; ../shared is not present")
    expected = np.load(npz)["rgb"]
    img = image.load_image(SHARED / "real" / "photos" / f"{name}.jpg")
    np.testing.assert_array_equal(image.to_uint8(img), expected)
    # float pixels are Darknet's byte/255 in float32
    np.testing.assert_array_equal(img.numpy(), (expected.transpose(2, 0, 1) / 255.0).astype(np.float32))


# --- the decoder option ----------------------------------------------------------


def test_opencv_decoder_gives_opencv_pixels():
    path = PICTURES / "s420_base.jpg"
    fast = image.load_image(path, decoder="opencv")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(image.to_uint8(fast), bgr[:, :, ::-1])
    exact = image.load_image(path)
    assert _rgb_sha(exact) == OURS["s420_base.jpg"]["sha256_rgb"]
    # the two decoders really differ on this file (else the option would be pointless)
    assert not torch.equal(fast, exact)


def test_set_decoder_switches_the_default():
    path = PICTURES / "s420_base.jpg"
    try:
        imagefile.set_decoder("opencv")
        assert imagefile.get_decoder() == "opencv"
        got = image.load_image(path)
    finally:
        imagefile.set_decoder("stb")
    np.testing.assert_array_equal(got.numpy(), image.load_image(path, decoder="opencv").numpy())
    with pytest.raises(ValueError, match="unknown image decoder"):
        imagefile.set_decoder("libjpeg")


def test_environment_selects_decoder():
    code = ("import pydarknet.imagefile as f; print(f.get_decoder())")
    env = dict(os.environ, PYDARKNET_DECODER="opencv", PYTHONPATH=str(HERE.parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "opencv"


def test_stb_rejects_formats_it_does_not_read(tmp_path):
    path = tmp_path / "picture.tiff"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="picture.tiff"):
        image.load_image(path)
    assert image.load_image(path, decoder="opencv").shape == (3, 4, 4)


def test_jpeg_with_exif_orientation_is_not_rotated(tmp_path):
    """stb ignores EXIF orientation: the stored pixels come back as stored."""
    src = PICTURES / "s444_base.jpg"
    data = src.read_bytes()
    # an APP1 Exif segment saying "rotate 90" (orientation 6), right after SOI
    tiff = b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data[:2] + seg + data[2:])
    assert cv2.imread(str(path)).shape[:2] == (61, 45)  # the tag is read: OpenCV would rotate
    assert _rgb_sha(image.load_image(path)) == OURS["s444_base.jpg"]["sha256_rgb"]


def test_decoding_is_repeatable_after_other_sizes():
    """A decode must not see the previous picture, whose freed memory its buffers often reuse."""
    first = image.load_image(PICTURES / "s420_prog.jpg")
    image.load_image(PICTURES / "tiny1x1_420.jpg")
    image.load_image(PICTURES / "scmyk.jpg")
    assert torch.equal(image.load_image(PICTURES / "s420_prog.jpg"), first)


def test_slow_first_decode_says_it_is_compiling(monkeypatch, capsys):
    """A first call that outlasts the note's delay (numba compiling, once per machine) prints
    one note on stderr; a warm call prints nothing."""
    from pydarknet import stb_jpeg

    data = (PICTURES / "s420_base.jpg").read_bytes()
    stb_jpeg.decode_jpeg(data)  # compiled or loaded from the cache
    capsys.readouterr()
    real = stb_jpeg._decode

    def slow(buf):
        time.sleep(0.5)
        return real(buf)

    monkeypatch.setattr(stb_jpeg, "_decode", slow)
    monkeypatch.setattr(stb_jpeg, "_NOTE_AFTER_S", 0.05)
    monkeypatch.setattr(stb_jpeg, "_warm", False)
    first = stb_jpeg.decode_jpeg(data)
    assert "compiling the stb_image-exact JPEG decoder" in capsys.readouterr().err
    assert np.array_equal(stb_jpeg.decode_jpeg(data), first)  # warm now: no second note
    assert capsys.readouterr().err == ""


# --- Darknet's classifier on the JPEG photos -------------------------------------


def _tiny_lines(photo: Path, exact: bool) -> list[str]:
    net = pydarknet.Darknet(str(TINY / "tiny.cfg"))
    net.load_weights(str(TINY / "tiny.weights"))
    net.eval()
    net.exact = exact
    names = (TINY / "imagenet.shortnames.list").read_text().splitlines()
    x = pydarknet.letterbox(pydarknet.load_image(photo), net.width, net.height)[None]
    with torch.no_grad():
        probs = net(x).reshape(-1)
    top = torch.argsort(probs, descending=True, stable=True)[:5]
    return ["%5.2f%%: %s" % (probs[i].item() * 100, names[i]) for i in top.tolist()]


def _tiny_cases():
    return [pytest.param(p, id=p) for p in ("eagle", "person", "scream")]


def _tiny_paths(name):
    photo = SHARED / "real" / "photos" / f"{name}.jpg"
    golden = SHARED / "real" / "golden" / "pj_tiny" / f"{name}.jpg.txt"
    for p in (photo, golden, TINY / "tiny.weights"):
        if not p.exists():
            pytest.skip(f"{p} not found; ../shared is not present")
    return photo, golden.read_text().splitlines()


@pytest.mark.parametrize("name", _tiny_cases())
def test_tiny_darknet_prints_darknets_lines_on_jpegs(name):
    # Fast kernels are within ~1e-5 of Darknet: far below the printed 0.01%.
    photo, golden = _tiny_paths(name)
    assert _tiny_lines(photo, exact=False) == golden


@pytest.mark.slow
@pytest.mark.parametrize("name", _tiny_cases())
def test_tiny_darknet_exact_on_jpegs(name):
    photo, golden = _tiny_paths(name)
    assert _tiny_lines(photo, exact=True) == golden
