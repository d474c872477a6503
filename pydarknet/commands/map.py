"""``detector map``: VOC AP per class (VOC2007 11-point and area), mAP, precision/recall at a
threshold, Darknet's ``detector recall`` and PR curves, from ``detector valid``'s result files.

    pydarknet detector map DATA [CFG WEIGHTS] [--results DIR]   (with CFG WEIGHTS: valid first)
    python tools/map.py DATA [--results DIR]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ..comp4 import read_comp4, read_proposals
from ..data import DataError
from ..metrics import evaluate, map_summary, proposal_recall
from ..plots import plot_pr, pyplot
from ..truths import Truth, load_truth
from ..validate import validation_set
from .common import fail, setup_command


def build_parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="VOC AP per class (VOC2007 11-point and all-point area), mAP, precision/recall at a "
                    "threshold, Darknet's `detector recall`, PR curves; from tools/valid.py's results.")
    ap.add_argument("data", metavar="DATA", help=".data file (valid=, names=, optional valid_truth= / results=)")
    ap.add_argument("--results", metavar="DIR", help="folder of the comp4 files (default: results= of DATA, "
                                                     "else ./results)")
    ap.add_argument("--prefix", default="comp4_det_test_", help="results file prefix (comp4_det_test_)")
    ap.add_argument("--truth", help="ground truth JSON (default: valid_truth= of DATA, else VOC XML beside "
                                    "the images, else the label files)")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU threshold for a match (0.5)")
    ap.add_argument("--thresh", type=float, default=0.25, help="score threshold for precision/recall (0.25)")
    ap.add_argument("--plots", metavar="DIR", help="PR-curve PNGs here (default: RESULTS/pr_curves when "
                                                  "matplotlib is installed)")
    ap.add_argument("--no-plots", action="store_true", help="no PR-curve PNGs")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return ap


def _read_inputs(args, report):
    data, names, paths = validation_set(Path(args.data))
    results = Path(args.results or data.options.get("results", "results"))
    truth_file = args.truth or (str(data.resolve(data.options["valid_truth"]))
                                if "valid_truth" in data.options else None)
    truth = load_truth(paths, names, truth_file, report)
    return names, results, truth, read_comp4(results, names, args.prefix, report)


def _listed_only(dets: list, truth: Truth, notes: list[str]) -> list:
    listed = set(truth.images)
    if len(listed) != len(truth.images):
        notes.append("some listed images share an id (file name up to the first dot); their results mix")
    stray = sum(1 for r in dets if r[0] not in listed)
    if stray:
        notes.append(f"{stray} detections name images that are not in the valid list; ignored")
    return [r for r in dets if r[0] in listed]


def darknet_recall(results: Path, dets: list, truth: Truth) -> dict:
    """Darknet's ``detector recall``: from valid's proposals, else from the class detections."""
    rel_truth = truth.relative_rows()
    prop_file = results / "recall_proposals.txt"
    if prop_file.is_file():
        rec = proposal_recall(read_proposals(prop_file), rel_truth, 0.5, len(truth.images))
        rec["source"] = f"{prop_file} (objectness > .001 after NMS .4 on the resized image, as `detector recall`)"
        return rec
    rows = []
    for iid, _c, score, x1, y1, x2, y2 in dets:
        if iid in truth.sizes:
            W, H = truth.sizes[iid]
            # comp4 corners (1-based, clipped) back to Darknet's relative box
            rows.append((iid, score, (x1 - 1) / W, (y1 - 1) / H, (x2 - 1) / W, (y2 - 1) / H))
    rec = proposal_recall(rows, rel_truth, 0.5, len(truth.images))
    rec["source"] = "class detections of the comp4 files (no recall_proposals.txt: an approximation)"
    return rec


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


def _plots(args, res: dict, names, results: Path) -> Path | None:
    if args.no_plots or pyplot() is None:
        return None
    plots_dir = Path(args.plots) if args.plots else results / "pr_curves"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for c, r in res.items():
        plot_pr(r, names[c], plots_dir / f"pr_{_safe(names[c])}.png", args.thresh)
    return plots_dir


def _print_table(args, summary: dict, res: dict, names, truth: Truth) -> None:
    w = max([len(n) for n in names] + [5])
    print(f"{len(truth.images)} images, ground truth from {truth.source}, IoU > {args.iou:g}")
    print(f"{'class':<{w}}  {'AP07':>7} {'AP area':>7}  {'P@' + format(args.thresh, 'g'):>7} "
          f"{'R@' + format(args.thresh, 'g'):>7}  {'GT':>5} {'dets':>7}")
    for c, r in res.items():
        pc = summary["classes"][names[c]]
        if r.npos == 0:
            print(f"{names[c]:<{w}}  {'-':>7} {'-':>7}  {'-':>7} {'-':>7}  {0:5d} {pc['detections']:7d}  (no ground truth)")
            continue
        print(f"{names[c]:<{w}}  {pc['ap_voc07']:7.4f} {pc['ap_area']:7.4f}  {pc['precision']:7.4f} "
              f"{pc['recall']:7.4f}  {r.npos:5d} {pc['detections']:7d}")
    tp, fp, npos, rec = summary["tp"], summary["fp"], summary["npos"], summary["recall_darknet"]
    print(f"mAP@{args.iou:g}: VOC2007 11-point {summary['map_voc07']:.4f}, all-point (area) {summary['map_area']:.4f}")
    print(f"at score > {args.thresh:g}: precision {summary['precision']:.4f}, recall {summary['recall']:.4f} "
          f"(TP {tp}, FP {fp}, FN {npos - tp})")
    print(f"Darknet recall (IoU > .5): {100 * rec['recall']:.2f}% ({rec['correct']}/{rec['total']}), "
          f"avg IoU {100 * rec['avg_iou']:.2f}%, RPs/img {rec['proposals_per_image']:.2f}  [{rec['source']}]")
    if "plots" in summary:
        print(f"PR curves: {summary['plots']}/pr_<class>.png")


def run(args) -> int:
    setup_command()
    notes: list[str] = []

    def report(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        names, results, truth, dets = _read_inputs(args, report)
    except (DataError, OSError) as e:
        return fail(e)
    dets = _listed_only(dets, truth, notes)
    res = evaluate(dets, truth.rows, args.iou, classes=range(len(names)))
    summary = map_summary(res, names, args.iou, args.thresh)
    summary.update(images=len(truth.images), truth_source=truth.source, results=str(results),
                   recall_darknet=darknet_recall(results, dets, truth))
    plots_dir = _plots(args, res, names, results)
    if plots_dir is not None:
        summary["plots"] = str(plots_dir)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=1, default=float))
    else:
        _print_table(args, summary, res, names, truth)
    return 0


def main(argv=None, prog: str = "map.py") -> int:
    return run(build_parser(prog).parse_args(argv))


def detector_map(argv=None, prog: str = "pydarknet detector map") -> int:
    """``detector map DATA [CFG WEIGHTS]``: with a model, run ``detector valid`` first."""
    ap = build_parser(prog)
    ap.add_argument("cfg", nargs="?", metavar="CFG")
    ap.add_argument("weights", nargs="?", metavar="WEIGHTS")
    args = ap.parse_args(argv)
    if args.cfg and not args.weights:
        ap.error("CFG needs WEIGHTS")
    if args.cfg:
        from .valid import main as valid_main
        out = ["--out", args.results] if args.results else []
        code = valid_main([args.data, args.cfg, args.weights, *out, "--prefix", args.prefix], prog=prog)
        if code == 2:
            return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
