"""pydarknet.image against Darknet's own numbers (golden fixtures) and a scalar oracle."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import golden_dir
from pydarknet import image
from pydarknet.image import ImageError

SYNTH_SETS = ("tiny160_synth", "mini_yolov2_synth", "darknet19_64_synth")
# (set, image) pairs of the photo-based fixtures, read from ../shared/golden only.
PHOTO_RUNS = (
    ("tiny160", "dog"),
    ("mini_yolov2", "dog"),
    ("mini_yolov2", "horses"),
    ("darknet19_64", "eagle"),
)


def _runs(root, set_name):
    manifest = json.loads((root / set_name / "manifest.json").read_text())
    return manifest["runs"]


def _synth_cases():
    return [
        pytest.param(s, name, id=f"{s}-{name}")
        for s in SYNTH_SETS
        for name in _runs(golden_dir(), s)
    ]


def _check_letterbox_run(root, set_name, run_name):
    run = _runs(root, set_name)[run_name]
    img = image.load_image(root / set_name / run["image"]["file"])
    assert list(img.shape[::-1][:2]) == run["image_wh"]
    net_w, net_h = run["net_wh"]
    expected = np.load(root / set_name / run["npz"])["input"]
    got = image.letterbox(img, net_w, net_h)
    assert got.dtype == torch.float32
    assert tuple(got.shape) == expected.shape
    # Bit-exact: the same float32 operations in the same order as Darknet.
    np.testing.assert_array_equal(got.numpy(), expected)


# --- Darknet's letterboxed network inputs -----------------------------------


@pytest.mark.parametrize("set_name, run_name", _synth_cases())
def test_letterbox_matches_darknet_synth(set_name, run_name):
    _check_letterbox_run(golden_dir(), set_name, run_name)


@pytest.mark.parametrize("set_name, run_name", [pytest.param(*r, id="-".join(r)) for r in PHOTO_RUNS])
def test_letterbox_matches_darknet_photos(shared_golden, set_name, run_name):
    _check_letterbox_run(shared_golden, set_name, run_name)


def test_eagle_near_black_last_row(shared_golden):
    # 773x512 -> 64x42 at dy=11: Darknet's last resized row (y=52) is nearly black.
    expected = np.load(shared_golden / "darknet19_64" / "eagle.npz")["input"]
    got = image.letterbox(image.load_image(shared_golden / "images" / "eagle.png"), 64, 64).numpy()
    assert expected[:, 52, :].max() < 1e-4
    assert expected[:, 51, :].max() > 0.1
    np.testing.assert_array_equal(got[:, 52, :], expected[:, 52, :])


def test_last_row_quirk_without_fixtures():
    # Same geometry as the eagle, on a white image: the skipped add on the last
    # row leaves only (1-dy)*row[510] with dy just below 1.
    out = image.resize(torch.ones(1, 512, 3), 3, 42)
    assert out[0, -1].max().item() < 1e-4
    assert torch.allclose(out[0, :-1], torch.ones(41, 3), atol=1e-6)


@pytest.mark.parametrize(
    "im_wh, net_wh, expected",
    [
        ((768, 576), (160, 160), (160, 120, 0, 20)),
        ((773, 512), (64, 64), (64, 42, 0, 11)),
        ((97, 131), (160, 160), (118, 160, 21, 0)),  # synth2 upscaled for tiny160
        ((97, 131), (128, 128), (94, 128, 17, 0)),
        ((97, 131), (64, 64), (47, 64, 8, 0)),
        ((200, 150), (160, 160), (160, 120, 0, 20)),
        ((100, 100), (64, 32), (32, 32, 16, 0)),
    ],
)
def test_letterbox_geometry(im_wh, net_wh, expected):
    assert image.letterbox_geometry(*im_wh, *net_wh) == expected


def test_letterbox_too_thin_is_grey():
    # 1000x1 into 64x64: new_h = 64/1000 = 0 rows, Darknet leaves the grey canvas.
    out = image.letterbox(torch.rand(3, 1, 1000), 64, 64)
    assert torch.equal(out, torch.full((3, 64, 64), 0.5))


# --- loading ------------------------------------------------------------------


def test_u8_to_float_is_darknet_division():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([u8, u8[::-1], u8.T], axis=2)
    got = image.image_from_array(rgb).numpy()
    expected = (rgb.transpose(2, 0, 1).astype(np.float64) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
    # ...and Darknet's truncating save gives the bytes back.
    np.testing.assert_array_equal(image.to_uint8(torch.from_numpy(got)), rgb)


@pytest.mark.parametrize("name", ["synth1", "synth2", "synth3"])
def test_load_png_exact(name):
    path = golden_dir() / "images" / f"{name}.png"
    img = image.load_image(path)
    assert img.dtype == torch.float32 and img.dim() == 3 and img.shape[0] == 3
    u8 = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    expected = (u8.transpose(2, 0, 1) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(img.numpy(), expected)
    # The manifests record the sha256 of the recipe's uint8 HxWx3 pixels.
    runs = {r["image"]["file"]: r["image"] for s in SYNTH_SETS for r in _runs(golden_dir(), s).values()}
    info = runs[f"../images/{name}.png"]
    assert list(img.shape[:0:-1]) == info["wh"]
    assert hashlib.sha256(image.to_uint8(img).tobytes()).hexdigest() == info["pixels_sha256"]


def test_load_grey_and_rgba(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    img = image.load_image(tmp_path / "grey.png")
    assert tuple(img.shape) == (3, 5, 7)
    for c in range(3):
        np.testing.assert_array_equal(img[c].numpy(), (grey / 255.0).astype(np.float32))

    rgba = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba[:, :, [2, 1, 0, 3]])  # OpenCV writes BGRA
    img = image.load_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(image.to_uint8(img), rgba[:, :, :3])


def test_missing_file_raises(tmp_path):
    path = tmp_path / "no_such_image.png"
    with pytest.raises(ImageError, match="no_such_image.png") as info:
        image.load_image(path)
    assert isinstance(info.value, OSError)
    assert info.value.filename == str(path)


@pytest.mark.parametrize("content", [b"", b"this is not an image"])
def test_unreadable_file_raises(tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="broken.jpg"):
        image.load_image(path)


def test_to_uint8_clamps_and_truncates():
    img = torch.tensor([-0.5, 0.0, 0.999, 1.0, 2.0, float("nan")]).reshape(1, 1, 6)
    assert image.to_uint8(img).ravel().tolist() == [0, 0, 254, 255, 255, 0]


# --- resize ---------------------------------------------------------------------


def _reference_resize(src: np.ndarray, w: int, h: int) -> np.ndarray:
    """Scalar float32 oracle of resize_image, one pixel at a time (small inputs only)."""
    f32 = np.float32
    c_, in_h, in_w = src.shape
    part = np.zeros((c_, in_h, w), np.float32)
    w_scale = f32(in_w - 1) / f32(w - 1) if w > 1 else None
    for k in range(c_):
        for r in range(in_h):
            for c in range(w):
                if c == w - 1 or in_w == 1:
                    part[k, r, c] = src[k, r, in_w - 1]
                else:
                    sx = f32(c) * w_scale
                    ix = int(sx)
                    dx = sx - f32(ix)
                    part[k, r, c] = (f32(1) - dx) * src[k, r, ix] + dx * src[k, r, ix + 1]
    out = np.zeros((c_, h, w), np.float32)
    h_scale = f32(in_h - 1) / f32(h - 1) if h > 1 else f32(0)
    for k in range(c_):
        for r in range(h):
            sy = f32(r) * h_scale
            iy = int(sy)
            dy = sy - f32(iy)
            for c in range(w):
                out[k, r, c] = (f32(1) - dy) * part[k, iy, c]
                if r != h - 1 and in_h != 1:
                    out[k, r, c] = out[k, r, c] + dy * part[k, iy + 1, c]
    return out


@pytest.mark.parametrize(
    "src_wh, dst_wh",
    [
        ((13, 9), (7, 5)),
        ((7, 5), (19, 11)),
        ((31, 29), (12, 23)),
        ((1, 6), (4, 9)),  # 1-pixel-wide source
        ((6, 1), (9, 4)),  # 1-pixel-tall source
        ((8, 6), (1, 3)),  # 1-pixel-wide target
        ((2, 2), (5, 5)),
    ],
)
def test_resize_matches_scalar_reference(src_wh, dst_wh):
    rng = np.random.default_rng(sum(src_wh + dst_wh))
    src = rng.random((3, src_wh[1], src_wh[0]), dtype=np.float32)
    got = image.resize(torch.from_numpy(src), *dst_wh)
    assert tuple(got.shape) == (3, dst_wh[1], dst_wh[0])
    np.testing.assert_array_equal(got.numpy(), _reference_resize(src, *dst_wh))


def test_resize_same_size_is_identity():
    src = torch.rand(3, 17, 23)
    assert torch.equal(image.resize(src, 23, 17), src)


def test_resize_one_pixel_wide():
    src = torch.rand(3, 10, 1)
    out = image.resize(src, 5, 4)
    assert tuple(out.shape) == (3, 4, 5)
    assert torch.isfinite(out).all()
    # Every output column is a copy of the single source column, resized vertically.
    assert torch.equal(out, out[..., :1].expand(3, 4, 5))


def test_resize_and_letterbox_batched():
    batch = torch.rand(2, 3, 21, 34)
    out = image.resize(batch, 16, 11)
    for i in range(2):
        assert torch.equal(out[i], image.resize(batch[i], 16, 11))
    boxed = image.letterbox(batch, 32, 32)
    assert torch.equal(boxed[1], image.letterbox(batch[1], 32, 32))


def test_resize_rejects_bad_sizes():
    with pytest.raises(ValueError):
        image.resize(torch.rand(3, 4, 4), 0, 4)
    with pytest.raises(TypeError):
        image.resize(torch.zeros(3, 4, 4, dtype=torch.uint8), 2, 2)
