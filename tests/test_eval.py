"""VOC AP/mAP (pydarknet.metrics) against a hand-computed case, an independent plain-Python
reference written from the VOC devkit's definition, torchmetrics (when installed), and the
valid.py -> map.py tools end to end on a tiny generated dataset."""
from __future__ import annotations

import json
import math
import random

import cv2
import numpy as np
import pytest

from pydarknet import comp4, metrics, truths, validate
from pydarknet.commands import map as map_cmd, valid as valid_cmd
from pydarknet.voc import image_id


# --------------------------------------------------------------------------- reference
def reference_voc_ap(detections, truths, iou_thresh=0.5):
    """Independent VOC AP, loop by loop after the devkit's MATLAB VOCevaldet.m / VOCap.m
    (matching) with voc_eval.py's strict '>' threshold.  Returns {class: (ap07, ap_area)} for
    classes with at least one non-difficult ground truth."""
    classes = sorted({t[1] for t in truths})
    out = {}
    for c in classes:
        gt = {}
        npos = 0
        for iid, cid, x1, y1, x2, y2, diff in truths:
            if cid != c:
                continue
            gt.setdefault(iid, []).append({"bb": (x1, y1, x2, y2), "diff": bool(diff), "det": False})
            if not diff:
                npos += 1
        if npos == 0:
            continue
        dets = [d for d in detections if d[1] == c]
        dets = sorted(dets, key=lambda d: -d[2])  # stable: ties keep input order
        tp, fp = [], []
        for iid, _cid, _score, *bb in dets:
            ovmax, jmax = -math.inf, None
            for j, g in enumerate(gt.get(iid, [])):
                bbgt = g["bb"]
                bi = (max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3]))
                iw = bi[2] - bi[0] + 1
                ih = bi[3] - bi[1] + 1
                if iw > 0 and ih > 0:
                    ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                          + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1) - iw * ih)
                    ov = iw * ih / ua
                    if ov > ovmax:
                        ovmax, jmax = ov, j
            if ovmax > iou_thresh:
                g = gt[iid][jmax]
                if g["diff"]:
                    tp.append(0)
                    fp.append(0)
                elif not g["det"]:
                    g["det"] = True
                    tp.append(1)
                    fp.append(0)
                else:
                    tp.append(0)
                    fp.append(1)
            else:
                tp.append(0)
                fp.append(1)
        rec, prec = [], []
        ctp = cfp = 0
        for a, b in zip(tp, fp):
            ctp += a
            cfp += b
            rec.append(ctp / npos)
            prec.append(ctp / max(ctp + cfp, np.finfo(float).eps))
        # VOC2007 11-point: t = 0:0.1:1 (t = k*0.1, as MATLAB's colon makes it)
        ap07 = 0.0
        for k in range(11):
            t = k * 0.1
            ps = [p for r, p in zip(rec, prec) if r >= t]
            ap07 += (max(ps) if ps else 0.0) / 11
        # VOCap: area under the monotone envelope
        mrec = [0.0] + rec + [1.0]
        mpre = [0.0] + prec + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        area = 0.0
        for i in range(1, len(mrec)):
            if mrec[i] != mrec[i - 1]:
                area += (mrec[i] - mrec[i - 1]) * mpre[i]
        out[c] = (ap07, area)
    return out


def random_case(seed, n_images=12, n_classes=3, float_boxes=False):
    rng = random.Random(seed)
    truths, dets = [], []
    for im in range(n_images):
        iid = f"img{im:03d}"
        W, H = rng.randint(200, 500), rng.randint(200, 500)
        for _ in range(rng.randint(0, 5)):
            c = rng.randrange(n_classes)
            w, h = rng.randint(10, W // 2), rng.randint(10, H // 2)
            x1, y1 = rng.randint(1, W - w), rng.randint(1, H - h)
            box = (x1, y1, x1 + w, y1 + h)
            truths.append((iid, c, *box, int(rng.random() < 0.15)))
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # hits, near misses, duplicates
                j = [rng.gauss(0, 0.15 * w), rng.gauss(0, 0.15 * h), rng.gauss(0, 0.15 * w), rng.gauss(0, 0.15 * h)]
                b = [box[0] + j[0], box[1] + j[1], box[2] + j[2], box[3] + j[3]]
                if not float_boxes:
                    b = [round(v) for v in b]
                b[2], b[3] = max(b[2], b[0] + 1), max(b[3], b[1] + 1)
                cc = c if rng.random() < 0.85 else rng.randrange(n_classes)
                dets.append((iid, cc, rng.random(), *b))
        for _ in range(rng.randint(0, 4)):  # background false positives
            w, h = rng.randint(5, W // 2), rng.randint(5, H // 2)
            x1, y1 = rng.uniform(1, W - w), rng.uniform(1, H - h)
            b = [x1, y1, x1 + w, y1 + h]
            if not float_boxes:
                b = [round(v) for v in b]
            dets.append((iid, rng.randrange(n_classes), rng.random(), *b))
    rng.shuffle(dets)
    return dets, truths


# --------------------------------------------------------------------------- hand-computed
HAND_TRUTHS = [
    ("A", 0, 1, 1, 10, 10, 0),
    ("A", 0, 21, 21, 30, 30, 1),  # difficult
    ("B", 0, 1, 1, 10, 10, 0),
    ("C", 1, 0, 0, 1, 1, 0),  # a 2x2-pixel box: the +1 convention decides its match
    ("C", 2, 5, 5, 9, 9, 1),  # class 2 has only a difficult object: no AP
]
HAND_DETS = [
    ("B", 0, 0.5, 1, 1, 10, 10),  # TP (5th by score)
    ("A", 0, 0.9, 1, 1, 10, 10),  # TP
    ("A", 0, 0.8, 1, 1, 10, 10),  # duplicate: FP
    ("A", 0, 0.7, 21, 21, 30, 30),  # matches the difficult one: ignored
    ("B", 0, 0.6, 50, 50, 60, 60),  # nothing there: FP
    ("C", 1, 0.3, 0, 0, 2, 1),  # IoU 4/6 with +1 (1/2 without): TP
    ("C", 2, 0.4, 5, 5, 9, 9),  # difficult only
]


def test_hand_computed_case():
    # class 0 in score order: TP, FP(dup), ignored, FP, TP; npos 2
    # recall .5 .5 .5 .5 1, precision 1 .5 .5 1/3 .5
    # 11-point: t = 0..0.5 -> 1 (6 points), t = .6..1 -> .5 (5 points): 8.5/11
    # area: .5 * 1 + .5 * .5 = .75
    r07 = metrics.voc_eval(HAND_DETS, HAND_TRUTHS)
    rarea = metrics.voc_eval(HAND_DETS, HAND_TRUTHS, use_07_metric=False)
    assert set(r07["ap"]) == {0, 1}
    assert r07["ap"][0] == pytest.approx(8.5 / 11, abs=1e-12)
    assert rarea["ap"][0] == pytest.approx(0.75, abs=1e-12)
    assert r07["ap"][1] == pytest.approx(1.0) and rarea["ap"][1] == pytest.approx(1.0)
    assert r07["map"] == pytest.approx((8.5 / 11 + 1) / 2, abs=1e-12)
    assert rarea["map"] == pytest.approx((0.75 + 1) / 2, abs=1e-12)
    res = metrics.evaluate(HAND_DETS, HAND_TRUTHS)
    assert res[0].tp.tolist() == [1, 0, 0, 0, 1] and res[0].fp.tolist() == [0, 1, 0, 1, 0]
    assert res[0].scores.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    at = res[0].at_threshold(0.55)  # .9 TP, .8 FP, .7 ignored, .6 FP
    assert (at["tp"], at["fp"], at["fn"]) == (1, 2, 1)
    assert at["precision"] == pytest.approx(1 / 3) and at["recall"] == pytest.approx(0.5)
    # the +1 pixel convention
    assert metrics.iou_voc(np.array([0, 0, 2, 1]), np.array([0, 0, 1, 1])) == pytest.approx(4 / 6)
    # a higher threshold turns the class-1 match into a miss
    assert metrics.voc_eval(HAND_DETS, HAND_TRUTHS, iou_thresh=0.7)["ap"][1] == 0.0
    assert reference_voc_ap(HAND_DETS, HAND_TRUTHS)[0] == pytest.approx((8.5 / 11, 0.75))


def test_voc_ap_curves():
    assert metrics.voc_ap([], [], True) == 0.0 and metrics.voc_ap([], [], False) == 0.0
    assert metrics.voc_ap([1.0], [1.0], True) == pytest.approx(1.0)
    assert metrics.voc_ap([1.0], [1.0], False) == pytest.approx(1.0)
    # one of two found at precision 1: area .5, 11-point 6/11
    assert metrics.voc_ap([0.5], [1.0], False) == pytest.approx(0.5)
    assert metrics.voc_ap([0.5], [1.0], True) == pytest.approx(6 / 11)


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_independent_reference(seed):
    dets, truths = random_case(seed, float_boxes=seed % 2 == 1)
    ref = reference_voc_ap(dets, truths)
    for use07, k in ((True, 0), (False, 1)):
        got = metrics.voc_eval(dets, truths, use_07_metric=use07)
        assert set(got["ap"]) == set(ref)
        for c, aps in ref.items():
            assert got["ap"][c] == pytest.approx(aps[k], abs=1e-4)
        assert got["map"] == pytest.approx(np.mean([a[k] for a in ref.values()]), abs=1e-4)
    # other IoU thresholds too
    got = metrics.voc_eval(dets, truths, iou_thresh=0.7, use_07_metric=False)
    ref7 = reference_voc_ap(dets, truths, 0.7)
    for c in ref7:
        assert got["ap"][c] == pytest.approx(ref7[c][1], abs=1e-4)


def test_numpy_rows_and_int_ids():
    dets, truths = random_case(3)
    ids = {f"img{i:03d}": i for i in range(100)}
    d_arr = np.array([(ids[d[0]], *d[1:]) for d in dets], dtype=np.float64)
    t_arr = np.array([(ids[t[0]], *t[1:]) for t in truths], dtype=np.float64)
    a, b = metrics.voc_eval(dets, truths), metrics.voc_eval(d_arr, t_arr)
    assert a["map"] == pytest.approx(b["map"], abs=1e-12)


def test_ground_truth_as_detections_gives_one():
    for seed in range(4):
        _, truths = random_case(seed)
        dets = [(t[0], t[1], 0.5 + 0.01 * i % 0.5, *t[2:6]) for i, t in enumerate(truths)]
        for use07 in (True, False):
            r = metrics.voc_eval(dets, truths, use_07_metric=use07)
            assert r["ap"] and r["map"] == 1.0  # exactly (the sums are exact)
            assert all(v == 1.0 for v in r["ap"].values())


def test_no_positive_classes():
    r = metrics.voc_eval([("a", 0, 0.5, 1, 1, 5, 5)], [("a", 0, 1, 1, 5, 5, 1)])
    assert r["ap"] == {} and math.isnan(r["map"])
    r = metrics.voc_eval([], [("a", 0, 1, 1, 5, 5, 0)])
    assert r == {"ap": {0: 0.0}, "map": 0.0}


def test_proposal_recall():
    truths = [("a", 0.1, 0.1, 0.5, 0.5), ("a", 0.6, 0.6, 0.9, 0.9), ("b", 0, 0, 1, 1)]
    props = [("a", 0.9, 0.1, 0.1, 0.5, 0.5), ("a", 0.2, 0.6, 0.6, 0.75, 0.9), ("c", 0.5, 0, 0, 1, 1)]
    r = metrics.proposal_recall(props, truths, 0.5, n_images=3)
    assert r["total"] == 3 and r["correct"] == 1  # the second: IoU exactly .5 is not > .5
    assert r["avg_iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert r["proposals_per_image"] == pytest.approx(1.0)


def _coco101(rec, prec):
    """COCO's 101-point interpolated AP of one curve (cocoeval.accumulate)."""
    pr = np.maximum.accumulate(prec[::-1])[::-1] if len(prec) else prec
    total = 0.0
    for t in np.linspace(0, 1, 101):
        i = np.searchsorted(rec, t, side="left")
        total += pr[i] if i < len(pr) else 0.0
    return total / 101


def test_matches_pycocotools_on_unambiguous_scenes():
    """pycocotools' COCOeval (the backend of torchmetrics' mean average precision) uses COCO's
    rules: they coincide with VOC's when no detection could match two ground truths and nothing
    is difficult, if boxes are given with +1 on the width/height (VOC's pixel convention).
    COCO interpolates at 101 recall points, so the comparison is on that interpolation of our
    TP/FP sequence (and, loosely, on the area AP)."""
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    dets, truths = [], []
    for im in range(12):
        for k in range(int(rng.integers(1, 4))):  # objects on a coarse grid: far apart
            c = int(rng.integers(2))
            x1, y1 = 1 + 200 * k, 1 + float(rng.integers(0, 100))
            box = (x1, y1, x1 + float(rng.integers(40, 120)), y1 + float(rng.integers(40, 120)))
            truths.append((im, c, *box, 0))
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 12, 4)
                dets.append((im, c if rng.random() < .9 else 1 - c, float(rng.random()),
                             *(np.array(box) + j).tolist()))
        dets.append((im, int(rng.integers(2)), float(rng.random()), 5.0, 400.0, 60.0, 470.0))

    def xywh(b):
        return [b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1]

    gt = {"images": [{"id": i, "width": 700, "height": 600} for i in range(12)],
          "categories": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": n + 1, "image_id": t[0], "category_id": t[1] + 1, "bbox": xywh(t[2:6]),
                           "area": xywh(t[2:6])[2] * xywh(t[2:6])[3], "iscrowd": 0}
                          for n, t in enumerate(truths)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        cdet = coco.loadRes([{"image_id": d[0], "category_id": d[1] + 1, "bbox": xywh(d[3:7]), "score": d[2]}
                             for d in dets])
        e = COCOeval(coco, cdet, "bbox")
        e.params.iouThrs = np.array([0.5])
        e.params.maxDets = [1000]
        e.evaluate()
        e.accumulate()
    res = metrics.evaluate(dets, truths)
    for c, r in res.items():
        p = e.eval["precision"][0, :, c, 0, 0]  # IoU .5, all recall points, class, area "all"
        theirs = float(np.mean(p[p > -1]))
        assert _coco101(r.recall, r.precision) == pytest.approx(theirs, abs=1e-4)
        assert r.ap(False) == pytest.approx(theirs, abs=0.03)


# --------------------------------------------------------------------------- tools end to end
TINY_CFG = """[net]
batch=1
subdivisions=1
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=2

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[region]
anchors=0.5,0.6, 1.2,1.0
bias_match=1
classes=2
coords=4
num=2
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
absolute=1
thresh=.6
random=0
"""


def _write_voc(root, n=4):
    from pathlib import Path

    root = Path(root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n):
        W, H = 90 + 10 * i, 70 + 5 * i
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"im{i}.png"), img)
        objs = "".join(
            f"<object><name>{name}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for name, d, x1, y1, x2, y2 in [("cat", 0, 5, 5, 40, 50), ("dog", i % 2, 30, 10, 80, 60)])
        (root / "Annotations" / f"im{i}.xml").write_text(
            f"<annotation><filename>im{i}.png</filename><size><width>{W}</width><height>{H}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")
        ids.append(f"im{i}")
    (root / "ImageSets/Main/train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "ImageSets/Main/val.txt").write_text("\n".join(ids[2:]) + "\n")


def test_valid_and_map_tools(tmp_path, capsys):
    from pydarknet import Darknet
    from pydarknet.detect import detect
    from pydarknet.voc import convert_dataset

    _write_voc(tmp_path / "voc")
    res = convert_dataset(tmp_path / "voc", labels_root=tmp_path / "work", show_progress=False)
    assert res.ok and res.classes == ["cat", "dog"]
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = Darknet(cfg)
    for layer in net.layers:  # Darknet starts rolling variances at 0; give the untrained net sane ones
        if hasattr(layer, "rolling_variance"):
            layer.rolling_variance.fill_(1)
    weights = tmp_path / "tiny.weights"
    net.save_weights(weights)
    out = tmp_path / "results"
    rc = valid_cmd.main([res.data_file, str(cfg), str(weights), "--out", str(out), "-q", "--batch", "1"])
    assert rc == 0
    manifest = json.loads((out / "valid.json").read_text())
    assert manifest["images"] == 2 and manifest["names"] == ["cat", "dog"]

    # the comp4 lines are detect()'s boxes in 1-based pixels, clamped, printed with %f
    net = Darknet(cfg, exact=False)  # valid.py's default arithmetic (plain PyTorch kernels)
    net.load_weights(weights)
    net.names = ["cat", "dog"]
    lines = {c: (out / f"comp4_det_test_{c}.txt").read_text().splitlines() for c in ("cat", "dog")}
    expect = {"cat": [], "dog": []}
    for p in open(res.list_files["val"]).read().split():
        im = cv2.imread(p)
        h, w = im.shape[:2]
        for d in detect(net, p, thresh=0.005, nms=0.45):
            x, y, bw, bh = (np.float32(v) for v in d.box)
            x, y, bw, bh = x * np.float32(w), y * np.float32(h), bw * np.float32(w), bh * np.float32(h)
            x1 = max(np.float32(float(x) - float(bw) / 2 + 1), 1)
            y1 = max(np.float32(float(y) - float(bh) / 2 + 1), 1)
            x2 = min(np.float32(float(x) + float(bw) / 2 + 1), w)
            y2 = min(np.float32(float(y) + float(bh) / 2 + 1), h)
            expect[d.name].append(comp4.format_comp4(image_id(p), d.prob, x1, y1, x2, y2).rstrip("\n"))
    assert sorted(lines["cat"]) == sorted(expect["cat"]) and lines["cat"]
    assert sorted(lines["dog"]) == sorted(expect["dog"])
    assert (out / "recall_proposals.txt").read_text().strip()
    # batched forward passes: the same lines up to float32 noise in the last digit
    out3 = tmp_path / "results3"
    assert valid_cmd.main([res.data_file, str(cfg), str(weights), "--out", str(out3), "-q", "--batch", "3"]) == 0
    for c in ("cat", "dog"):
        a = [ln.split() for ln in lines[c]]
        b = [ln.split() for ln in (out3 / f"comp4_det_test_{c}.txt").read_text().splitlines()]
        assert [r[0] for r in a] == [r[0] for r in b]
        np.testing.assert_allclose(np.array([r[1:] for r in a], float), np.array([r[1:] for r in b], float),
                                   atol=1e-4)

    capsys.readouterr()
    rc = map_cmd.main([res.data_file, "--results", str(out), "--json", "--no-plots"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["classes"]) == {"cat", "dog"}
    assert 0 <= summary["map50_voc07"] <= 1 and 0 <= summary["map50_area"] <= 1
    assert summary["recall_darknet"]["total"] == 3  # 2 cats + 1 non-difficult dog
    assert "truth.json" in summary["truth_source"]

    # ground truth written as comp4 results: mAP 1 through the files, both metrics
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    doc = json.loads(open(res.truth_files["val"]).read())
    for cid, name in enumerate(["cat", "dog"]):
        with open(perfect / f"comp4_det_test_{name}.txt", "w") as f:
            for entry in doc["images"]:
                for c, x1, y1, x2, y2, _d in entry["objects"]:
                    if c == cid:
                        f.write(comp4.format_comp4(entry["id"], 0.9, x1, y1, x2, y2))
    rc = map_cmd.main([res.data_file, "--results", str(perfect), "--json", "--no-plots"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["map50_voc07"] == pytest.approx(1) and summary["map50_area"] == pytest.approx(1)

    # the same from the VOC XML (truth found through the symlinked JPEGImages) and with a PR plot
    pytest.importorskip("matplotlib")
    rc = map_cmd.main([res.data_file, "--results", str(perfect), "--truth", res.truth_files["val"],
                      "--plots", str(tmp_path / "pr")])
    text = capsys.readouterr().out
    assert rc == 0 and "VOC2007 11-point 1.0000" in text
    assert (tmp_path / "pr" / "pr_cat.png").is_file() and (tmp_path / "pr" / "pr_dog.png").is_file()
    truth_xml = truths.load_truth(open(res.list_files["val"]).read().split(), ["cat", "dog"])
    assert truth_xml.source == "VOC XML annotations"
    assert sorted(truth_xml.rows) == sorted(
        (e["id"], *o) for e in doc["images"] for o in [tuple(x) for x in e["objects"]])


def test_nms_obj():
    torch = pytest.importorskip("torch")
    from pydarknet.boxes import Detections

    boxes = torch.tensor([[.5, .5, .2, .2], [.51, .5, .2, .2], [.1, .1, .1, .1], [.5, .5, .2, .2]])
    obj = torch.tensor([.6, .9, .3, 0.0])
    d = Detections(boxes, obj, torch.zeros(4, 1), torch.arange(4))
    assert validate.nms_obj(d, 0.4).tolist() == [False, True, True, False]
