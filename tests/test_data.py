"""pydarknet.data and pydarknet.augment: .data files, labels, Darknet's augmentation, the loader."""

from __future__ import annotations

import json
import math
import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import golden_dir
from pydarknet import augment as aug
from pydarknet import image as imagemod
from pydarknet.data import (DataConfig, DataError, DataWarning, DetectionDataset, MultiScale, SampleKey,
                            detection_loader, label_path, multiscale_size, read_labels)

F32 = np.float32
RACCOON = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "raccoon"


# --- helpers ------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _one_thread():
    """Per-sample augmentation runs in single-threaded loader workers; on a busy machine
    torch's intra-op threads only slow these small images down."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def make_sample(root: Path, name: str, w=64, h=48, labels="0 0.5 0.5 0.25 0.5\n", seed=0) -> str:
    """An image under root/images/ with its label under root/labels/; returns the image path."""
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = write_png(root / "images" / f"{name}.png", rgb)
    if labels is not None:
        lab = root / "labels" / f"{name}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(labels)
    return str(img)


# --- .data files ----------------------------------------------------------------------------

def test_data_config_defaults(tmp_path):
    f = tmp_path / "x.data"
    f.write_text("classes = 3\n# comment\ntrain = list.txt\n")
    cfg = DataConfig.from_file(f)
    assert cfg.classes == 3 and cfg.train == "list.txt"
    assert cfg.valid == "data/train.list" and cfg.names == "data/names.list"
    assert cfg.backup == "/backup/" and cfg.results == "results" and cfg.eval == "voc"
    assert cfg.map is None and cfg.tree is None
    assert DataConfig().classes == 20


def test_data_config_paths_and_errors(tmp_path, monkeypatch):
    d = tmp_path / "cfgdir"
    d.mkdir()
    (d / "names.txt").write_text("cat\ndog\n")
    (d / "list.txt").write_text("a.png\n\nb.png\n")
    f = d / "x.data"
    f.write_text("classes=2\ntrain=list.txt\nnames=names.txt\nbackup=bk/\nmap=m.map\n")
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig.from_file(f)
    assert cfg.class_names() == ["cat", "dog"]           # found beside the .data file
    assert cfg.train_list() == ["a.png", "b.png"]
    assert cfg.resolve("bk/") == Path("bk/")               # nowhere: as given
    assert cfg.map == "m.map" and cfg.options["backup"] == "bk/"
    (tmp_path / "names.txt").write_text("x\n")             # the working directory wins, as in Darknet
    assert cfg.resolve("names.txt") == Path("names.txt")
    f.write_text("classes = many\n")
    with pytest.raises(DataError, match="classes"):
        DataConfig.from_file(f)
    with pytest.raises(DataError, match="no such"):
        DataConfig.from_file(d / "missing.data")


# --- label files ---------------------------------------------------------------------------

@pytest.mark.parametrize("image, label", [
    ("VOCdevkit/VOC2007/JPEGImages/000001.jpg", "VOCdevkit/VOC2007/labels/000001.txt"),
    ("coco/images/train2014/COCO_1.jpg", "coco/labels/train2014/COCO_1.txt"),
    ("data/raw/x.png", "data/labels/x.txt"),
    ("/d/images/a.JPEG", "/d/labels/a.txt"),
    ("/d/images/a.JPG", "/d/labels/a.txt"),
    ("images/images/a.jpg", "labels/images/a.txt"),        # only the first occurrence
    ("/srv/rawdata/images/a.jpg", "/srv/labelsdata/labels/a.txt"),
    ("x/JPEGImages/y.jpeg", "x/labels/y.txt"),             # Darknet would keep .jpeg (see below)
    ("x/JPEGImages/y.bmp", "x/labels/y.txt"),
])
def test_label_path(image, label):
    assert label_path(image) == label


def test_label_path_darknet_exact():
    assert label_path("x/JPEGImages/y.jpeg", darknet_exact=True) == "x/labels/y.jpeg"
    assert label_path("x/JPEGImages/y.jpg", darknet_exact=True) == "x/labels/y.txt"
    assert label_path(Path("a/images/b.png")) == os.path.join("a", "labels", "b.txt")


def test_read_labels_ok(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("\ufeff3 0.5 0.25 0.1 1\n\n  0 1 0 0 0.5  \n")
    got = read_labels(f, classes=4)
    assert got.dtype == np.float32 and got.shape == (2, 5)
    np.testing.assert_array_equal(got, np.array([[3, .5, .25, .1, 1], [0, 1, 0, 0, .5]], F32))
    (tmp_path / "e.txt").write_text("")
    assert read_labels(tmp_path / "e.txt").shape == (0, 5)


@pytest.mark.parametrize("text, line, what", [
    ("0 .5 .5 .1 .1\n4 .5 .5 .1 .1\n", 2, "class 4 out of range"),
    ("-1 .5 .5 .1 .1\n", 1, "class -1 out of range"),
    ("0 .5 .5 .1 .1\n\n1 .5 1.2 .1 .1\n", 3, "y outside 0..1"),
    ("0 .5 .5 -.1 nan\n", 1, "w, h outside 0..1"),
    ("0 .5 .5 .1\n", 1, "expected 'class x y w h'"),
    ("0 .5 .5 .1 .1 7\n", 1, "expected 'class x y w h'"),
    ("1.0 .5 .5 .1 .1\n", 1, "not an integer"),
    ("1 .5 a .1 .1\n", 1, "not numbers"),
    ("1 0 0 .1 .1\n", 1, "x=0, y=0"),
])
def test_read_labels_errors(tmp_path, text, line, what):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(DataError, match=rf"bad\.txt:{line}: .*{what}"):
        read_labels(f, classes=4)


def test_missing_label_file_and_empty_list(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt: no such label file"):
        read_labels(tmp_path / "nope.txt")
    empty = tmp_path / "train.list"
    empty.write_text("\n \n")
    with pytest.raises(DataError, match=r"train\.list: list file has no image paths"):
        DetectionDataset(empty, 32, 32)
    with pytest.raises(DataError, match="no such list file"):
        DetectionDataset(tmp_path / "absent.list", 32, 32)
    img = make_sample(tmp_path, "nolabel", labels=None)
    ds = DetectionDataset([img], 32, 32, augment=False)
    with pytest.raises(DataError, match=r"nolabel\.txt: no such label file \(for image .*nolabel\.png\)"):
        ds.load(0)


# --- Darknet's random numbers and draws ----------------------------------------------------------

def test_placement_distributions():
    rng = np.random.default_rng(1)
    ow, oh, w, h, jitter = 300, 200, 416, 416, .3
    ps = [aug.draw_placement(ow, oh, w, h, jitter, .1, 1.5, 1.4, rng) for _ in range(4000)]
    flips = np.array([p.flip for p in ps])
    assert abs(flips.mean() - .5) < .03
    hue = np.array([p.hue for p in ps])
    assert hue.min() >= -.1 and hue.max() <= .1 and abs(hue.mean()) < .005
    assert abs(np.mean(np.abs(hue)) - .05) < .003                       # uniform on [-.1, .1]
    for vals, s in (([p.saturation for p in ps], 1.5), ([p.exposure for p in ps], 1.4)):
        v = np.array(vals)
        assert v.min() >= 1 / s - 1e-6 and v.max() <= s + 1e-6
        assert abs((v > 1).mean() - .5) < .03                           # U(1,s) or its inverse
        up = v[v >= 1]
        assert abs(up.mean() - (1 + s) / 2) < .01
    nw, nh = np.array([p.nw for p in ps]), np.array([p.nh for p in ps])
    # Scale 1: one side always fills the input; the aspect ratio stays in Darknet's jitter range.
    assert np.all((nw == w) | (nh == h))
    ar = nw / nh
    lo, hi = ow * (1 - jitter) / (oh * (1 + jitter)), ow * (1 + jitter) / (oh * (1 - jitter))
    assert ar.min() >= lo - 1e-4 and ar.max() <= hi + 1e-4
    assert ar.min() < 1 < ar.max() and abs(np.median(ar) - 1.5) < .05
    dx, dy = np.array([p.dx for p in ps]), np.array([p.dy for p in ps])
    slack_x, slack_y = w - nw, h - nh
    # dx ~ U(0, w - nw), in either order of the bounds.
    assert np.all(dx * np.sign(slack_x) >= -1e-4) and np.all(np.abs(dx) <= np.abs(slack_x) + 1e-3)
    assert np.all(dy * np.sign(slack_y) >= -1e-4) and np.all(np.abs(dy) <= np.abs(slack_y) + 1e-3)
    frac = dy[slack_y > 1] / slack_y[slack_y > 1]
    assert abs(frac.mean() - .5) < .02 and frac.min() < .02 and frac.max() > .98


def test_rand_helpers():
    rng = np.random.default_rng(2)
    u = np.array([aug.rand_uniform(rng, 3, -1) for _ in range(2000)])   # reversed bounds are swapped
    assert u.dtype == np.float32 and u.min() >= -1 and u.max() <= 3 and abs(u.mean() - 1) < .1
    assert aug.rand_scale(rng, 1) == 1


def test_multiscale_schedule():
    rng = np.random.default_rng(3)
    dims = [multiscale_size(0, 10000, rng)[0] for _ in range(3000)]
    assert set(dims) == set(range(320, 609, 32))
    assert multiscale_size(9801, 10000, rng) == (608, 608)
    s = MultiScale(416, 416, 10000, random=True, seed=5)
    sizes = [s.size(k) for k in range(40)]
    for k in range(40):
        assert sizes[k] == sizes[k - k % 10] and sizes[k][0] == sizes[k][1]
        assert s.changes_at(k) == (k % 10 == 0)
    assert len({sizes[k] for k in range(0, 40, 10)}) > 1
    end = MultiScale(416, 416, 1000, random=True, start_batch=795, seed=5)
    assert [end.size(k) for k in (5, 10, 15)] == [end.size(0), (608, 608), (608, 608)]  # 805+200 > 1000
    assert MultiScale(416, 320, 1000, random=False).size(7) == (416, 320)


# --- pixels: Darknet-exact given the draws --------------------------------------------------

def _ref_get(im, x, y, c):
    return im[c, y, x] if 0 <= x < im.shape[2] and 0 <= y < im.shape[1] else F32(0)


def ref_place_image(im, w, h, dx, dy, canvas):
    """Scalar float32 transcription of Darknet's place_image semantics."""
    out = canvas.copy()
    for c in range(im.shape[0]):
        for y in range(h):
            for x in range(w):
                rx = (F32(x) / F32(w)) * F32(im.shape[2])
                ry = (F32(y) / F32(h)) * F32(im.shape[1])
                ix, iy = int(math.floor(rx)), int(math.floor(ry))
                fx, fy = rx - F32(ix), ry - F32(iy)
                one = F32(1)
                val = ((one - fy) * (one - fx) * _ref_get(im, ix, iy, c)
                       + fy * (one - fx) * _ref_get(im, ix, iy + 1, c)
                       + (one - fy) * fx * _ref_get(im, ix + 1, iy, c)
                       + fy * fx * _ref_get(im, ix + 1, iy + 1, c))
                if 0 <= x + dx < out.shape[2] and 0 <= y + dy < out.shape[1]:
                    out[c, y + dy, x + dx] = val
    return out


def ref_distort(im, hue, sat, val):
    """Scalar float32 transcription of Darknet's distort_image (rgb_to_hsv, scale, shift, hsv_to_rgb)."""
    out = im.copy()
    hue, sat, val = F32(hue), F32(sat), F32(val)
    for j in range(im.shape[1]):
        for i in range(im.shape[2]):
            r, g, b = im[:, j, i]
            mx, mn = max(r, g, b), min(r, g, b)
            delta = mx - mn
            if mx == 0:
                h = s = F32(0)
            else:
                s = delta / mx
                if delta == 0:
                    h = F32(0)
                elif r == mx:
                    h = (g - b) / delta
                elif g == mx:
                    h = F32(2) + (b - r) / delta
                else:
                    h = F32(4) + (r - g) / delta
                if h < 0:
                    h = h + F32(6)
                h = h / F32(6)
            s, v = s * sat, mx * val
            h = h + hue
            if h > 1:
                h = h - F32(1)
            if h < 0:
                h = h + F32(1)
            if s == 0:
                rgb = (v, v, v)
            else:
                h6 = F32(6) * h
                k = int(math.floor(h6))
                f = h6 - F32(k)
                p, q, t = v * (F32(1) - s), v * (F32(1) - s * f), v * (F32(1) - s * (F32(1) - f))
                rgb = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v)}.get(k, (v, p, q))
            out[:, j, i] = [min(max(x, F32(0)), F32(1)) for x in rgb]
    return out


@pytest.mark.parametrize("w, h, dx, dy", [(20, 13, 0, 3), (17, 23, -4, 2), (9, 7, 6, -1), (23, 19, 0, 0)])
def test_place_image_matches_scalar_reference(w, h, dx, dy):
    im = np.random.default_rng(4).random((3, 11, 14)).astype(F32)
    canvas = np.full((3, 18, 21), .5, F32)
    got = aug.place_image(torch.from_numpy(im), w, h, dx, dy, torch.from_numpy(canvas.copy())).numpy()
    np.testing.assert_array_equal(got, ref_place_image(im, w, h, dx, dy, canvas))


@pytest.mark.parametrize("hue, sat, val", [(.1, 1.5, .7), (-.1, .6, 1.4), (0, 1, 1), (.5, 2, 1)])
def test_distort_matches_scalar_reference(hue, sat, val):
    rng = np.random.default_rng(5)
    im = rng.random((3, 9, 10)).astype(F32)
    im[:, 0, :3] = [[0, .5, 1], [0, .5, 1], [0, .5, 1]]                # black, grey, white
    im[:, 1, 0] = [1, 0, 0]
    im[:, 1, 1] = [.2, .9, .9]
    im[:, 1, 2] = [.3, .1, .3]
    got = aug.distort_image(torch.from_numpy(im), hue, sat, val).numpy()
    np.testing.assert_array_equal(got, ref_distort(im, hue, sat, val))


def test_flip_and_hsv_roundtrip():
    im = torch.rand(3, 5, 7)
    assert torch.equal(aug.flip_image(im)[:, :, 0], im[:, :, -1])
    assert torch.allclose(aug.hsv_to_rgb(aug.rgb_to_hsv(im)), im, atol=1e-6)
    hsv = aug.rgb_to_hsv(torch.tensor([[[0.]], [[1.]], [[0.]]]))      # pure green: hue 1/3
    assert abs(hsv[0].item() - 1 / 3) < 1e-7 and hsv[1].item() == 1 and hsv[2].item() == 1


# --- boxes ----------------------------------------------------------------------------------

def test_correct_boxes_clip_flip_drop():
    labels = np.array([[1, .5, .5, .2, .2],       # stays inside
                       [2, .05, .5, .2, .2],      # crosses the left edge: clipped
                       [3, .5, .5, .2, .2]], F32)
    # Shift right by 0.45 of the width (dx = -.45): box 0 moves to .95 and is clipped at 1.
    out = aug.correct_boxes(labels, -.45, 0, 1, 1, flip=False)
    np.testing.assert_allclose(out[0], [1, .925, .5, .15, .2], atol=1e-6)
    np.testing.assert_allclose(out[1], [2, .5, .5, .2, .2], atol=1e-6)
    # Shift left by half: box 1 leaves entirely (w 0 after clipping) and is dropped by fill_truth.
    out = aug.correct_boxes(labels, .5, 0, 1, 1, flip=True)
    np.testing.assert_allclose(out[0], [1, .95, .5, .1, .2], atol=1e-6)  # mirrored, then clipped
    assert out[1, 3] == 0
    truth = aug.fill_truth(out, 30)
    assert truth.shape == (30, 5) and truth.dtype == torch.float32
    np.testing.assert_allclose(truth[:2].numpy(), out[[0, 2]][:, [1, 2, 3, 4, 0]], atol=0)
    assert not truth[2:].any()
    # Scaling: sx = sy = .5, offsets .25 -> centre stays, size halves.
    out = aug.correct_boxes(labels[:1], -.25, -.25, .5, .5, flip=False)
    np.testing.assert_allclose(out[0], [1, .5, .5, .1, .1], atol=1e-6)


def test_fill_truth_limits_then_drops():
    rows = np.tile(np.array([[1, .5, .5, .2, .2]], F32), (35, 1))
    rows[:, 0] = np.arange(35)
    rows[3, 3] = .0009                            # narrower than .001: dropped
    rows[5, 4] = .001                             # exactly .001: kept
    truth = aug.fill_truth(rows, 30).numpy()
    # Darknet looks at the first 30 rows only, then drops: 29 truths.
    assert (truth[:, 2] > 0).sum() == 29
    assert list(truth[:29, 4]) == [i for i in range(30) if i != 3]


def test_randomize_boxes_is_a_permutation():
    rows = np.arange(40, dtype=F32).reshape(8, 5)
    rng = np.random.default_rng(6)
    out = aug.randomize_boxes(rows, rng)
    assert sorted(map(tuple, out)) == sorted(map(tuple, rows)) and not np.array_equal(out, rows)
    # Darknet's swap-with-any-position shuffle: every row reaches every slot.
    firsts = {aug.randomize_boxes(rows, rng)[0, 0] for _ in range(200)}
    assert len(firsts) == 8


def _white_extent(img):
    mask = (img.min(0).values > .75).numpy()
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_augmented_box_follows_the_pixels():
    """A white rectangle on black: after augmentation its truth box is where its pixels are.

    Darknet places the pixels at the truncated size and offset (``place_image``
    takes ints) but moves the boxes with the float ones, so the two may differ
    by up to ~2 pixels at the far edges; the pixels themselves are within a
    pixel of the rectangle mapped through the integer placement.
    """
    W, H = 160, 120
    rgb = np.zeros((H, W, 3), np.uint8)
    x0, y0, x1, y1 = 30, 20, 91, 101                  # pixel edges
    rgb[y0:y1, x0:x1] = 255
    img = imagemod.image_from_array(rgb)
    labels = np.array([[7, (x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H]], F32)
    rng = np.random.default_rng(7)
    checked = flips = 0
    for _ in range(150):
        w, h = (96, 96) if rng.random() < .5 else (128, 96)
        out, truth, p = aug.augment_detection(img, labels, w, h, jitter=.3, rng=rng)
        ext = _white_extent(out)
        t = truth[0].numpy()
        if ext is None or t[2] * w < 3 or t[3] * h < 3:
            continue
        assert t[4] == 7
        box = ((t[0] - t[2] / 2) * w, (t[1] - t[3] / 2) * h, (t[0] + t[2] / 2) * w, (t[1] + t[3] / 2) * h)
        assert np.allclose(box, ext, atol=2.5), (box, ext, p)
        nw, nh, dx, dy = p.pixels
        l, r = x0 / W * nw + dx, x1 / W * nw + dx
        if p.flip:
            l, r = w - r, w - l
        mapped = np.clip([l, y0 / H * nh + dy, r, y1 / H * nh + dy], 0, [w, h, w, h])
        assert np.allclose(mapped, ext, atol=1.0), (mapped, ext, p)
        checked += 1
        flips += p.flip
    assert checked > 100 and 0 < flips < checked


def test_jitter_zero_geometry():
    """jitter=0: the aspect ratio is kept, one side fills the input, the other is placed at random."""
    img = torch.rand(3, 50, 100)
    labels = np.array([[0, .5, .5, .5, .5]], F32)
    rng = np.random.default_rng(8)
    dys = []
    for _ in range(50):
        out, truth, p = aug.augment_detection(img, labels, 64, 64, jitter=0, rng=rng)
        assert p.nw == 64 and p.nh == 32 and p.dx == 0 and 0 <= p.dy <= 32
        dys.append(p.dy)
        top = int(p.dy)
        assert torch.all(out[:, :top] == .5) and torch.all(out[:, top + 32:] == .5)
        np.testing.assert_allclose(truth[0].numpy(), [.5, (p.dy + 16) / 64, .5, .25, 0], atol=1e-6)
    assert np.std(dys) > 5
    # Same aspect as the input: the whole canvas is the image, the boxes do not move.
    out, truth, p = aug.augment_detection(img, labels, 128, 64, jitter=0, rng=rng)
    assert (p.nw, p.nh, p.dx, p.dy) == (128, 64, 0, 0)
    np.testing.assert_array_equal(truth[0].numpy(), [.5, .5, .5, .5, 0])


def test_no_augmentation_path_is_exact():
    img = torch.rand(3, 37, 53)
    labels = np.array([[2, .25, .5, .5, .4], [1, .6, .6, .2, .2]], F32)
    out, truth = aug.fit_detection(img, labels, 40, 30, fit="resize")
    assert torch.equal(out, imagemod.resize(img, 40, 30))
    # Boxes go through Darknet's edges-and-back arithmetic: equal up to float32 rounding.
    np.testing.assert_allclose(truth[:2].numpy(), labels[:, [1, 2, 3, 4, 0]], atol=1e-7)
    out, truth = aug.fit_detection(img, labels, 64, 64, fit="letterbox")
    assert torch.equal(out, imagemod.letterbox(img, 64, 64))
    nw, nh, dx, dy = imagemod.letterbox_geometry(53, 37, 64, 64)
    np.testing.assert_allclose(truth[0, 1].item(), (.5 * nh + dy) / 64, atol=1e-6)
    np.testing.assert_allclose(truth[0, 3].item(), .4 * nh / 64, atol=1e-6)


def test_letterbox_path_matches_golden_training_inputs(tmp_path):
    """The committed golden training batch: letterboxed synth images and their truth."""
    root = golden_dir() / "mini_yolov2_train_synth"
    man = json.loads((root / "manifest.json").read_text())
    ref = np.load(root / "inputs.npz")
    paths = []
    for k, entry in enumerate(man["inputs"]["truth_boxes"]):
        src = golden_dir() / "images" / entry["image"]
        (tmp_path / "images").mkdir(exist_ok=True)
        dst = tmp_path / "images" / entry["image"]
        dst.write_bytes(src.read_bytes())
        iw, ih = entry["image_wh"]
        lines = [f"{c} {(l + r) / 2 / iw} {(t + b) / 2 / ih} {(r - l) / iw} {(b - t) / ih}"
                 for l, t, r, b, c in entry["boxes_pixels_ltrb_class"]]
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / dst.with_suffix(".txt").name).write_text("\n".join(lines) + "\n")
        paths.append(str(dst))
    ds = DetectionDataset(paths, 128, 128, classes=20, augment=False)
    for k in range(len(paths)):
        image, truth = ds[k]
        assert torch.equal(image, torch.from_numpy(ref["input"][k]))
        np.testing.assert_allclose(truth.numpy(), ref["truth"][k], atol=1e-6)


# --- dataset and loader -------------------------------------------------------------------------

def test_loader_shapes_workers_and_reproducibility(tmp_path):
    paths = [make_sample(tmp_path, f"s{i}", w=40 + 7 * i, h=30 + 5 * i, seed=i,
                         labels=f"{i % 3} 0.5 0.5 0.3 0.4\n1 0.3 0.3 0.2 0.2\n") for i in range(6)]
    lst = tmp_path / "train.list"
    lst.write_text("\n".join(os.path.relpath(p, tmp_path) for p in paths) + "\n")  # relative to the list
    kw = dict(classes=3, jitter=.2, hue=.1, saturation=1.5, exposure=1.5, seed=11, batch_size=4,
              random=True, max_batches=1000, iterations=12)
    # Small multi-scale sizes keep the test fast: the schedule's sizes are divided by 8.
    batches = []
    for workers in (2, 0):
        loader = detection_loader(lst, 416, 416, num_workers=workers, **kw)
        loader.schedule.size = _small(loader.schedule.size)
        batches.append(list(loader))
        assert loader.skipped == 0 and len(loader) == 12
    for (ia, ta), (ib, tb) in zip(*batches):
        assert torch.equal(ia, ib) and torch.equal(ta, tb)   # independent of the worker count
    sizes = [b[0].shape for b in batches[0]]
    for k, (images, truths) in enumerate(batches[0]):
        assert images.dtype == torch.float32 and images.shape[:2] == (4, 3)
        assert truths.shape == (4, 30, 5) and truths.dtype == torch.float32
        assert sizes[k] == sizes[k - k % 10]
        assert (truths[:, :, 2] > 0).sum(1).max() <= 2 and (truths[:, 2:] == 0).all()
        assert images.min() >= 0 and images.max() <= 1
    assert len(set(sizes)) > 1


def _small(size_fn):
    def f(k):
        w, h = size_fn(k)
        return w // 8, h // 8
    return f


def test_bad_samples_are_skipped_and_counted(tmp_path):
    good = [make_sample(tmp_path, f"g{i}", seed=i) for i in range(2)]
    bad_class = make_sample(tmp_path, "badclass", labels="0 .5 .5 .1 .1\n9 .5 .5 .1 .1\n")
    no_label = make_sample(tmp_path, "nolabel", labels=None)
    (tmp_path / "labels" / "corrupt.txt").write_text("0 .5 .5 .1 .1\n")
    corrupt = tmp_path / "images" / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    missing = str(tmp_path / "images" / "gone.png")
    (tmp_path / "labels" / "gone.txt").write_text("")
    paths = good + [bad_class, no_label, str(corrupt), missing]
    loader = detection_loader(paths, 32, 32, classes=3, seed=3, batch_size=8, num_workers=2, iterations=6)
    with pytest.warns(DataWarning) as record:
        batches = list(loader)
    assert len(batches) == 6 and all(b[0].shape == (8, 3, 32, 32) for b in batches)
    # each bad sample is reported once however often it is drawn (skipped counts every draw)
    assert loader.skipped >= 8 and len(record) == 4
    assert set(loader.bad_samples) == {bad_class, no_label, str(corrupt), missing}
    msgs = " ".join(str(r.message) for r in record)
    assert "badclass.txt:2: class 9 out of range" in msgs and "cannot decode" in msgs
    assert "nolabel.txt: no such label file" in msgs
    # Indexing the dataset directly: a bad index is replaced by a good sample, with a warning.
    ds = loader.dataset
    before = ds.skipped
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        image, truth = ds[2]
    assert all("badclass" in str(r.message) for r in rec) and len(rec) <= 1   # at most once
    assert image.shape == (3, 32, 32) and ds.skipped > before   # every bad draw counted
    # Nothing loadable at all: a clear error instead of an endless loop.
    ds = DetectionDataset([missing, no_label], 32, 32, max_retries=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="5 samples in a row"):
            ds[0]


def test_dataset_sample_key_and_relative_list(tmp_path, monkeypatch):
    p = make_sample(tmp_path / "d", "a", w=50, h=40)
    lst = tmp_path / "d" / "l.list"
    lst.write_text("images/a.png\n")
    monkeypatch.chdir(tmp_path)
    ds = DetectionDataset(lst, 48, 32, classes=1, seed=1)
    assert ds.image_path(0) == str(Path(p))
    a = ds[SampleKey(0, 64, 48, (1, 2))]
    b = ds[SampleKey(0, 64, 48, (1, 2))]
    assert a[0].shape == (3, 48, 64) and a[2] == [] and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.skipif(not (RACCOON / "Annotations").is_dir(), reason="../shared/datasets/raccoon not present")
def test_raccoon_jpegs(tmp_path):
    """A few real JPEGs (VOC layout, labels made from the XML into tmp_path)."""
    paths = []
    for name in sorted(os.listdir(RACCOON / "Annotations"))[:4]:
        root = ET.parse(RACCOON / "Annotations" / name).getroot()
        iw, ih = int(root.find("size/width").text), int(root.find("size/height").text)
        lines = []
        for obj in root.iter("object"):
            bb = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            lines.append(f"0 {(bb[0] + bb[2]) / 2 / iw} {(bb[1] + bb[3]) / 2 / ih} "
                         f"{(bb[2] - bb[0]) / iw} {(bb[3] - bb[1]) / ih}")
        img = tmp_path / "JPEGImages" / root.find("filename").text
        img.parent.mkdir(exist_ok=True)
        os.symlink(RACCOON / "JPEGImages" / img.name, img)
        (tmp_path / "labels").mkdir(exist_ok=True)
        Path(label_path(img)).write_text("\n".join(lines) + "\n")
        paths.append(str(img))
    loader = detection_loader(paths, 96, 96, classes=1, jitter=.2, hue=.1, saturation=1.5, exposure=1.5,
                              seed=0, batch_size=4, num_workers=0, iterations=2)
    for images, truths in loader:
        assert images.shape == (4, 3, 96, 96) and (truths[:, 0, 2] > 0).all()
    assert loader.skipped == 0
