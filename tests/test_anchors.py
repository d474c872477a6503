"""tools/anchors.py (pydarknet.anchors): k-means with d = 1 - IoU on the training boxes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pydarknet.commands import anchors as anchors_cmd
from pydarknet import anchors as an
from pydarknet import voc

RACCOON = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "raccoon"
CFG_DIR = Path(__file__).resolve().parents[1] / "cfg"


def voc_like_boxes(n=3000, seed=1):
    """Relative (w, h) resembling VOC's: 30% small, 40% medium, 30% large objects (side of the
    square of the same area), aspect ratio h/w log-normal around 1.1 (people are tall)."""
    rng = np.random.default_rng(seed)
    grp = rng.choice(3, n, p=[.3, .4, .3])
    s = np.where(grp == 0, rng.uniform(.04, .15, n), np.where(grp == 1, rng.uniform(.15, .45, n),
                                                              rng.uniform(.45, .9, n)))
    r = np.exp(rng.normal(np.log(1.1), .5, n))
    return np.clip(np.stack([s / np.sqrt(r), s * np.sqrt(r)], axis=1), .005, 1.0)


def hand_picked(scales, ratios):
    """Faster R-CNN style priors: each scale (side of the square of equal area) at each h/w ratio."""
    return np.array([[s / np.sqrt(q), s * np.sqrt(q)] for s in scales for q in ratios])


# Faster R-CNN's 128/256/512 px anchors on a ~800 px picture, ratios 1:2, 1:1, 2:1
SCALES = (.16, .32, .64)
HAND_9 = hand_picked(SCALES, (.5, 1, 2))
HAND_5 = np.concatenate([hand_picked(SCALES, (1,)), hand_picked((.32,), (.5, 2))])


def test_wh_iou():
    b = np.array([[1.0, 1.0], [2.0, 1.0]])
    c = np.array([[1.0, 1.0], [1.0, 2.0], [4.0, 4.0]])
    np.testing.assert_allclose(an.wh_iou(b, c), [[1, .5, 1 / 16], [.5, 1 / 3, 2 / 16]])
    assert an.avg_iou(b, c) == pytest.approx((1 + .5) / 2)


def test_kmeans_basics():
    wh = voc_like_boxes(600, seed=3)
    a = an.kmeans(wh, 5, seed=4)
    b = an.kmeans(wh, 5, seed=4)
    np.testing.assert_array_equal(a.centroids, b.centroids)  # fixed seed, same anchors
    areas = a.centroids.prod(axis=1)
    assert np.all(np.diff(areas) >= 0)  # sorted by area
    assert a.avg_iou == pytest.approx(an.avg_iou(wh, a.centroids))
    # each centroid is the mean of the boxes closest to it (a k-means fixed point)
    for j in range(5):
        np.testing.assert_allclose(a.centroids[j], wh[a.assignment == j].mean(axis=0))
    curve = an.iou_curve(wh, 8, seed=0, n_init=3)
    ious = [r.avg_iou for r in curve]
    assert [len(r.centroids) for r in curve] == list(range(1, 9))
    assert all(y > x for x, y in zip(ious, ious[1:]))
    # k = 1: one centroid, the mean box
    np.testing.assert_allclose(curve[0].centroids[0], wh.mean(axis=0))
    # k-means++ seeds are boxes of the set
    seeds = an.kmeans_pp_init(wh, 5, np.random.default_rng(0))
    assert all(any(np.array_equal(s, w) for w in wh) for s in seeds)
    with pytest.raises(ValueError, match="distinct"):
        an.kmeans(np.array([[.1, .2], [.1, .2]]), 2)


def test_grid_units():
    rel = np.array([[0.25, 0.5]])
    np.testing.assert_allclose(an.to_grid(rel, 416, 416), [[3.25, 6.5]])  # 13 cells of 32 px
    np.testing.assert_allclose(an.from_grid(an.to_grid(rel, 320, 256), 320, 256), rel)
    assert an.format_anchors(np.array([[1.08, 1.19], [3.42, 4.41]])) == "anchors = 1.08,1.19,  3.42,4.41"
    anc, w, h = an.cfg_anchors(CFG_DIR / "yolov2-voc.cfg")
    assert (w, h) == (416, 416) and anc.shape == (5, 2)
    np.testing.assert_allclose(anc[0] * 13, [1.3221, 1.73145])


def test_kmeans_beats_hand_picked_priors():
    """The paper's Table 1 on VOC-like box sizes: cluster IoU priors beat hand-picked anchor
    boxes at equal k (5 and 9), and 5 clusters already match 9 anchor boxes."""
    wh = voc_like_boxes()
    k5 = an.kmeans(wh, 5, seed=0)
    k9 = an.kmeans(wh, 9, seed=0)
    hand5, hand9 = an.avg_iou(wh, HAND_5), an.avg_iou(wh, HAND_9)
    assert k5.avg_iou > hand5 + 0.02
    assert k9.avg_iou > hand9 + 0.05
    assert k5.avg_iou > hand9  # Table 1: Cluster IoU 5 (61.0) vs Anchor Boxes 9 (60.9)


def _write_list(tmp_path, wh):
    """An image list whose label files hold these boxes (Darknet's path rule)."""
    root = tmp_path / "set"
    (root / "labels").mkdir(parents=True)
    paths = []
    for i in range(0, len(wh), 3):
        img = root / "JPEGImages" / f"{i}.jpg"
        paths.append(str(img))
        rows = wh[i:i + 3]
        Path(voc.label_path(str(img))).write_text("".join(f"0 0.5 0.5 {w} {h}\n" for w, h in rows))
    lst = tmp_path / "train.txt"
    lst.write_text("\n".join(paths) + "\n")
    return lst


def test_tool_on_synthetic_list(tmp_path, capsys):
    wh = voc_like_boxes(300, seed=2)
    lst = _write_list(tmp_path, wh)
    assert anchors_cmd.main([str(lst), "-k", "5", "--json", "--n-init", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"anchors", "avg_iou"} and len(doc["anchors"]) == 5
    ref = an.kmeans(wh, 5, seed=0, n_init=3)
    np.testing.assert_allclose(doc["anchors"], an.to_grid(ref.centroids, 416, 416))
    assert doc["avg_iou"] == pytest.approx(ref.avg_iou)
    data = tmp_path / "x.data"
    data.write_text(f"classes = 1\ntrain = {lst}\n")
    args = [str(data), "-k", "5", "--width", "320", "--height", "320", "--kmax", "6", "--n-init", "3",
            "--cfg", str(CFG_DIR / "yolov2-voc.cfg")]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(tmp_path / "fig2.png")]
    except ImportError:
        pass
    assert anchors_cmd.main(args) == 0
    out = capsys.readouterr().out
    assert "anchors = " in out and "Table 1" in out and "yolov2-voc.cfg" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("anchors = "))
    grid = np.array([float(v) for v in line[len("anchors = "):].replace(" ", "").split(",")]).reshape(-1, 2)
    np.testing.assert_allclose(grid, an.to_grid(ref.centroids, 320, 320), rtol=1e-5)
    if "--plot" in args:
        assert (tmp_path / "fig2.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def raccoon_data(tmp_path_factory):
    if not (RACCOON / "Annotations").is_dir():
        pytest.skip(f"raccoon dataset not present at {RACCOON} (third-party data, kept in ../shared only)")
    work = tmp_path_factory.mktemp("raccoon")
    res = voc.convert_dataset(RACCOON, labels_root=work, show_progress=False, report=lambda s: None)
    return res.data_file


def test_raccoon_anchors(raccoon_data, capsys):
    assert anchors_cmd.main([raccoon_data, "-k", "5", "--width", "416", "--height", "416", "--kmax", "6",
                    "--cfg", str(CFG_DIR / "yolov2-tiny-voc.cfg")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("173 boxes from 160 images")
    table = [ln.split() for ln in lines if ln[:3].strip().isdigit() and "%" in ln]
    assert [int(r[0]) for r in table] == [1, 2, 3, 4, 5, 6]
    ious = [float(r[1].rstrip("%")) for r in table]
    assert all(b > a for a, b in zip(ious, ious[1:]))
    anchors_line = next(ln for ln in lines if ln.startswith("anchors = "))
    assert len(anchors_line[len("anchors = "):].split(",  ")) == 5
    # Table 1: the clusters fit raccoon's boxes better than the VOC anchors of the cfg
    cfg_row = next(ln for ln in lines if "cfg anchors" in ln)
    km_row = next(ln for ln in lines if ln.strip().startswith("k-means (1 - IoU)"))
    assert float(km_row.split()[-1].rstrip("%")) > float(cfg_row.split()[-1].rstrip("%"))
    print(out)
