"""``anchors``: YOLOv2's dimension clusters, k-means on the training boxes with d = 1 - IoU.

    pydarknet anchors DATA -k 5 --width 416 --height 416 [--cfg CFG] [--plot fig.png]
    python tools/anchors.py DATA -k 5 ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..anchors import STRIDE, avg_iou, cfg_anchors, format_anchors, iou_curve, kmeans, load_boxes, to_grid
from ..data import DataError
from ..plots import plot_anchor_curve, pyplot
from .common import fail, setup_command


def main(argv=None, prog: str = "anchors.py") -> int:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Anchors for a [region] layer by k-means on the training boxes (d = 1 - IoU), "
                    "as YOLOv2's dimension clusters.")
    ap.add_argument("source", metavar="DATA|LIST", help=".data file (its train= list) or a list of images")
    ap.add_argument("-k", type=int, default=5, help="number of anchors (5)")
    ap.add_argument("--width", type=int, help="network width (default: --cfg's, else 416)")
    ap.add_argument("--height", type=int, help="network height (default: --cfg's, else 416)")
    ap.add_argument("--kmax", type=int, help="avg-IoU table for k = 1..KMAX (default: max(k, 10))")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0); the same seed gives the same anchors")
    ap.add_argument("--n-init", type=int, default=10, help="k-means++ restarts, the best kept (10)")
    ap.add_argument("--cfg", help="compare with this cfg's [region] anchors (Table 1 of the paper)")
    ap.add_argument("--plot", metavar="FILE.png", help="write Figure 2 (avg IoU vs k) here (needs matplotlib)")
    ap.add_argument("--json", action="store_true",
                    help='print only {"anchors": [[w, h], ...], "avg_iou": x} (grid units)')
    args = ap.parse_args(argv)
    setup_command()
    try:
        cfg_rel = None
        width, height = args.width, args.height
        if args.cfg:
            cfg_rel, cw, ch = cfg_anchors(args.cfg)
            width, height = width or cw, height or ch
        width, height = width or 416, height or 416
        wh, info = load_boxes(args.source)
        if len(wh) == 0:
            raise DataError(f"{args.source}: no boxes in the label files")
        best = kmeans(wh, args.k, args.seed, args.n_init)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    grid = to_grid(best.centroids, width, height)
    if args.json:
        print(json.dumps({"anchors": grid.tolist(), "avg_iou": best.avg_iou}))
        return 0
    kmax = args.kmax or max(args.k, 10)
    curve = iou_curve(wh, kmax, args.seed, args.n_init)
    curve = [best if len(r.centroids) == args.k else r for r in curve]
    print(f"{info['boxes']} boxes from {info['images']} images ({info['list']})"
          + (f"; {info['missing_labels']} without labels" if info["missing_labels"] else ""))
    print("  k  avg IoU")
    for r in curve:
        print(f"{len(r.centroids):3d}  {100 * r.avg_iou:6.2f}%{'   <-' if len(r.centroids) == args.k else ''}")
    print(f"k-means anchors, k={args.k}, seed {args.seed}, for a {width}x{height} network "
          f"(grid cells of {STRIDE} px), avg IoU {100 * best.avg_iou:.2f}%:")
    print(format_anchors(grid))
    cfg_point = None
    if cfg_rel is not None:
        cfg_iou = avg_iou(wh, cfg_rel)
        n = len(cfg_rel)
        same_k = next((r for r in curve if len(r.centroids) == n), None)
        print("\nTable 1 (avg IoU of the boxes with their closest prior):")
        print(f"  {'prior generation':<38} {'#':>3}  avg IoU")
        print(f"  {'cfg anchors (' + Path(args.cfg).name + ')':<38} {n:3d}  {100 * cfg_iou:6.2f}%")
        print(f"  {'k-means (1 - IoU)':<38} {args.k:3d}  {100 * best.avg_iou:6.2f}%")
        if same_k is not None and n != args.k:
            print(f"  {'k-means (1 - IoU)':<38} {n:3d}  {100 * same_k.avg_iou:6.2f}%")
        cfg_point = (n, cfg_iou, Path(args.cfg).name)
    if args.plot:
        if pyplot() is None:
            return fail("--plot needs matplotlib: pip install matplotlib")
        plot_anchor_curve(curve, args.plot, args.k, cfg_point, title=f"{Path(info['list']).name}: avg IoU vs k")
        print(f"figure: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
