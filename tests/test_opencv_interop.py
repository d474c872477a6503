"""OpenCV's Darknet reader as an independent check of our weights writer and forward.

For each cfg: build our network, load the recipe weights (``make_weights.py``), write
them back with our ``save_weights``, and let OpenCV (``cv2.dnn.readNetFromDarknet``)
read the cfg and *our* file.  Then both run the same batch of two images (a resized
synthetic picture and uniform noise) and we compare

1. the raw output of the last convolution (OpenCV ``conv_<i>``; our ``layer_outputs``),
2. OpenCV's region output, which is *decoded*, not Darknet's memory layout:
   an ``N × (H·W·num) × (5+classes)`` array (a plain 2-D array when N == 1), row
   ``(row·W + col)·num + anchor``, columns
   ``[(col+σ(tx))/W, (row+σ(ty))/H, exp(tw)·anchor_w/W, exp(th)·anchor_h/H, σ(obj),
   σ(obj)·softmax(classes) zeroed where ≤ thresh]``, after which OpenCV runs a greedy
   per-class NMS with IoU 0.4 (``RegionLayer``'s default; the Darknet importer gives no
   way to change it) on those class scores.  ``thresh`` is the ``[region]`` section's
   ``thresh=`` (a training-only option for Darknet), so the cfg handed to OpenCV is a
   copy with ``thresh=0.01``.  We rebuild columns 0–4 from our output and check the
   class columns as a greedy NMS result: every score OpenCV kept equals ours, no kept
   box is overlapped (IoU > 0.4) by a higher-scoring kept box of its class, and every
   candidate OpenCV dropped is.
3. OpenCV reading the recipe file and reading our re-written file give bit-identical
   outputs (the writer produced what an independent reader takes for the same model).

OpenCV is run with its own CPU backend and ``enableWinograd(False)``: its default
Winograd 3×3 convolution alone differs from a direct convolution by ~5e-6 relative per
layer.  What is left comes mostly from OpenCV's batch norm, which it computes as
``(x-mean)/sqrt(var+1e-6)`` folded into the convolution, where Darknet (and we) use
``(x-mean)/(sqrt(var)+1e-6)``: emulating OpenCV's formula in our net brings the mini net's
raw difference from ~2e-5 down to ~4e-6.  The differences grow with depth and with the
size of the activations (yolov2-voc's last conv reaches |x| ≈ 42 with recipe weights).

Our forward is checked in both modes: ``exact=True`` (the default, Darknet's own float
arithmetic) and ``exact=False`` (plain torch kernels).  Measured max abs differences
(torch 2.13 CPU, OpenCV 4.14; the fast mode gives the same at 1 and 2 threads):

==============  =====  ========  ===========  ==============  ================
case            mode   raw conv  x, y, obj    log(w), log(h)  kept class score
==============  =====  ========  ===========  ==============  ================
mini 128        exact  2.1e-5    1.7e-6       1.5e-5          1.5e-6
mini 128        fast   2.1e-5    1.6e-6       1.4e-5          1.6e-6
tiny-voc 160    exact  4.1e-5    3.0e-6       2.9e-5          4.9e-6
tiny-voc 160    fast   3.1e-5    1.7e-6       1.9e-5          3.5e-6
yolov2-voc 416  exact  5.6e-4    3.6e-5       3.5e-4          3.9e-5
yolov2-voc 416  fast   4.4e-4    1.5e-5       2.8e-4          2.3e-5
==============  =====  ========  ===========  ==============  ================

Tolerances (both modes): raw conv and log(w, h) ≤ 5e-5 / 6e-5 / 1e-3 (mini / tiny-voc /
yolov2-voc); x, y, objectness and class scores ≤ 5e-6 / 8e-6 / 6e-5.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import golden_dir, shared_golden_dir
from pydarknet import Darknet

cv2 = pytest.importorskip("cv2")

NMS_IOU = 0.4           # OpenCV RegionLayer's nms_threshold default
REGION_THRESH = 0.01    # the thresh= written into OpenCV's copy of the cfg


def _original_cfg(name: str) -> Path | None:
    shared = shared_golden_dir()
    path = shared / "cfg-original" / name if shared is not None else None
    return path if path is not None and path.is_file() else None


_VOC = _original_cfg("yolov2-voc.cfg")

# (cfg, recipe seed, tol raw & log(w,h), tol x/y/obj & class scores, id, marks)
_NETS = [
    (golden_dir() / "mini_yolov2_synth" / "mini-yolov2.cfg", 2, 5e-5, 5e-6, "mini-yolov2-128", []),
    (golden_dir() / "tiny160_synth" / "yolov2-tiny-voc_160.cfg", 1, 6e-5, 8e-6, "yolov2-tiny-voc-160", []),
    (_VOC, 3, 1e-3, 6e-5, "yolov2-voc-416", [
        pytest.mark.slow,
        pytest.mark.skipif(_VOC is None, reason="../shared/golden/cfg-original/yolov2-voc.cfg not present "
                                                "(Darknet's original cfgs are third-party and not committed)")]),
]
CASES = [pytest.param(cfg, seed, tol_raw, tol_prob, exact, id=f"{name}-{'exact' if exact else 'fast'}", marks=marks)
         for cfg, seed, tol_raw, tol_prob, name, marks in _NETS for exact in (True, False)]


def _recipe_weights(cfg: Path, seed: int) -> bytes:
    import sys
    sys.path.insert(0, str(golden_dir()))
    try:
        from make_weights import make_weights
    finally:
        sys.path.pop(0)
    return make_weights(str(cfg), seed)


def _inputs(net: Darknet) -> np.ndarray:
    """Two images at the net's size, RGB 0..1: a resized synthetic picture and uniform noise."""
    bgr = cv2.imread(str(golden_dir() / "images" / "synth1.png"), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(bgr, (net.width, net.height), interpolation=cv2.INTER_LINEAR),
                       cv2.COLOR_BGR2RGB)
    picture = rgb.transpose(2, 0, 1).astype(np.float32) / 255
    noise = np.random.default_rng(5).random((3, net.height, net.width), dtype=np.float32)
    return np.ascontiguousarray(np.stack([picture, noise]))


def _opencv_net(cfg_path: Path, weights: Path):
    net = cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableWinograd(False)
    return net


def _opencv_forward(cvnet, blob, names):
    cvnet.setInput(blob)
    return [np.array(o) for o in cvnet.forward(names)]


def _decode_like_opencv(out: np.ndarray, region) -> np.ndarray:
    """Our region output (Darknet layout) rearranged/decoded into OpenCV's rows, before thresholding."""
    n, _, h, w = out.shape
    num, classes = region.num, region.classes
    v = out.astype(np.float64).reshape(n, num, 5 + classes, h, w).transpose(0, 3, 4, 1, 2)  # n,row,col,a,e
    anchors = np.asarray(region.anchors, np.float64).reshape(num, 2)
    col = np.arange(w, dtype=np.float64)[None, None, :, None]
    row = np.arange(h, dtype=np.float64)[None, :, None, None]
    dec = np.empty_like(v)
    dec[..., 0] = (col + v[..., 0]) / w
    dec[..., 1] = (row + v[..., 1]) / h
    dec[..., 2] = np.exp(v[..., 2]) * anchors[:, 0] / w
    dec[..., 3] = np.exp(v[..., 3]) * anchors[:, 1] / h
    dec[..., 4] = v[..., 4]
    dec[..., 5:] = v[..., 4:5] * v[..., 5:]
    return dec.reshape(n, h * w * num, 5 + classes)


def _iou(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of centre-size boxes, as OpenCV's NMSBoxes computes it on Rect2d."""
    x0, y0 = boxes[:, 0] - boxes[:, 2] / 2, boxes[:, 1] - boxes[:, 3] / 2
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inter = iw * ih
    area = boxes[:, 2] * boxes[:, 3]
    return inter / (area[:, None] + area[None] - inter)


def _check_nms(theirs: np.ndarray, ours: np.ndarray, tol: float, iou_tol: float = 1e-4) -> tuple[int, int]:
    """OpenCV's class columns (one image) are the greedy per-class NMS of our scores.

    Returns (candidates, kept) summed over classes, for the record."""
    iou = _iou(ours[:, :4])
    np.fill_diagonal(iou, 0)
    n_cand = n_kept = 0
    for k in range(ours.shape[1] - 5):
        s_cv, s = theirs[:, 5 + k], ours[:, 5 + k]
        kept = s_cv > 0
        # Every kept score is ours (and above the threshold, within tolerance).
        assert np.abs(s_cv[kept] - s[kept]).max(initial=0) <= tol, f"class {k}: kept scores differ"
        assert (s[kept] > REGION_THRESH - tol).all(), f"class {k}: OpenCV kept a score ours puts below thresh"
        # A kept box has no higher-scoring kept box of its class overlapping it.
        over = (iou[np.ix_(kept, kept)] > NMS_IOU + iou_tol) & (s[kept][None, :] > s[kept][:, None] + tol)
        assert not over.any(), f"class {k}: OpenCV kept a box that a better kept box overlaps"
        # A clear candidate that OpenCV dropped is overlapped by a kept box scoring at least as high.
        dropped = (s > REGION_THRESH + tol) & ~kept
        cover = (iou[np.ix_(dropped, kept)] > NMS_IOU - iou_tol) & (s[kept][None, :] >= s[dropped][:, None] - tol)
        assert cover.any(axis=1).all(), f"class {k}: OpenCV dropped a candidate that no kept box suppresses"
        n_cand += int((s > REGION_THRESH).sum())
        n_kept += int(kept.sum())
    return n_cand, n_kept


@pytest.mark.parametrize("cfg, seed, tol_raw, tol_prob, exact", CASES)
def test_opencv_reads_our_weights_and_agrees(cfg, seed, tol_raw, tol_prob, exact, tmp_path):
    net = Darknet(cfg, exact=exact).eval()
    region = net.layers[-1]
    assert region.kind == "region"
    recipe = tmp_path / "recipe.weights"
    recipe.write_bytes(_recipe_weights(cfg, seed))
    net.load_weights(recipe)
    ours_file = tmp_path / "ours.weights"
    net.save_weights(ours_file)

    # OpenCV gets a copy of the cfg with a low region thresh (see the module docstring).
    text = Path(cfg).read_text()
    cv_cfg = tmp_path / "opencv.cfg"
    cv_cfg.write_text(re.sub(r"(?m)^[ \t]*thresh[ \t]*=.*$", f"thresh={REGION_THRESH}", text))
    assert f"thresh={REGION_THRESH}" in cv_cfg.read_text()

    blob = _inputs(net)
    conv_name = f"conv_{len(net.layers) - 2}"
    cvnet = _opencv_net(cv_cfg, ours_file)
    assert conv_name in cvnet.getLayerNames()
    assert cvnet.getUnconnectedOutLayersNames() == ("detection_out",)
    cv_raw, cv_det = _opencv_forward(cvnet, blob, [conv_name, "detection_out"])

    # 3. Same outputs whether OpenCV reads the recipe file or the file we wrote.
    ref_raw, ref_det = _opencv_forward(_opencv_net(cv_cfg, recipe), blob, [conv_name, "detection_out"])
    assert np.array_equal(cv_raw, ref_raw) and np.array_equal(cv_det, ref_det), \
        "OpenCV sees a different model in our saved file than in the recipe file"

    with torch.inference_mode():
        outs = net.layer_outputs(torch.from_numpy(blob))
    raw, out = outs[-2].numpy(), outs[-1].numpy()

    # 1. The raw last convolution.
    assert cv_raw.shape == raw.shape
    raw_diff = float(np.abs(cv_raw - raw).max())
    assert raw_diff <= tol_raw, f"raw conv differs by {raw_diff}"

    # 2. The decoded region output.
    n, _, h, w = out.shape
    rows = h * w * region.num
    assert cv_det.shape == (n, rows, 5 + region.classes)
    expect = _decode_like_opencv(out, region)
    cols_xy_obj = [0, 1, 4]
    xy_obj_diff = float(np.abs(cv_det[..., cols_xy_obj] - expect[..., cols_xy_obj]).max())
    assert xy_obj_diff <= tol_prob, f"x, y or objectness differ by {xy_obj_diff}"
    wh_diff = float(np.abs(np.log(cv_det[..., 2:4]) - np.log(expect[..., 2:4])).max())
    assert wh_diff <= tol_raw, f"log(w), log(h) differ by {wh_diff}"
    for b in range(n):
        n_cand, n_kept = _check_nms(cv_det[b], expect[b], tol_prob)
        # The comparison must not be vacuous: plenty of candidates, and NMS did something.
        assert n_kept >= rows // 10 and n_cand > n_kept, (n_cand, n_kept)
