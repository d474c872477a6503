"""``classifier valid``: top-1 and top-k accuracy over the .data file's valid= list.

    pydarknet classifier valid DATA CFG WEIGHTS [options]
    python tools/valid_classifier.py DATA CFG WEIGHTS [options]

Darknet's ``validate_classifier_single``: centre crop, resize, forward, top_k over
``classes`` with k = ``top=``.  A progress bar on stderr (on a terminal), then a JSON summary
on stdout (``images``, ``top1``, ``topK``, ``seconds``, ``images_per_second`` and the pictures
with no label, several labels, or unreadable); ``--lines`` prints Darknet's two lines per
picture instead of the bar.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..classifier_data import ClassifierData
from ..classifier_valid import validate_classifier
from ..network import Darknet
from .common import USER_ERRORS, fail, setup_command


def _darknet_lines(i, path, cls, idx, probs, res):
    print(f"{path}, {cls}, {float(probs[0]):f}, {float(probs[1]) if len(probs) > 1 else 0.:f}, ")
    print(f"{i}: top 1: {res.top1:f}, top {res.k}: {res.topk:f}", flush=True)


def main(argv=None, prog: str = "valid_classifier.py") -> int:
    """``tools/valid_classifier.py`` / ``pydarknet classifier valid``: DATA CFG WEIGHTS."""
    ap = argparse.ArgumentParser(prog=prog, description="Darknet's `classifier valid`: top-1 / top-k accuracy.")
    ap.add_argument("data", metavar="DATA")
    ap.add_argument("cfg", metavar="CFG")
    ap.add_argument("weights", metavar="WEIGHTS")
    ap.add_argument("--top", type=int, help="k of top-k (default: the .data file's top=, else 1)")
    ap.add_argument("--batch", type=int, default=8, help="pictures per forward pass (8)")
    ap.add_argument("--out", help="also write the JSON summary to this file")
    ap.add_argument("--lines", action="store_true", help="Darknet's two lines per picture on stdout")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--exact", action="store_true", help="Darknet's own float arithmetic (slow)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    setup_command()
    try:
        data = ClassifierData.from_file(args.data)
        labels, paths = data.labels(), data.paths("valid")
        net = Darknet(args.cfg, exact=args.exact)
        net.load_weights(args.weights)
        outputs = net.output_shape.numel
        if data.classes > outputs:
            return fail(f"{args.data}: classes={data.classes} but {args.cfg} has {outputs} outputs")
        net.to(args.device)
        res = validate_classifier(net, paths, labels, data.classes, args.top or data.top, batch=max(1, args.batch),
                                  show_progress=False if args.quiet or args.lines else None,
                                  on_row=_darknet_lines if args.lines else None)
    except USER_ERRORS as e:
        return fail(e)
    summary = {"data": args.data, "cfg": args.cfg, "weights": args.weights, **res.summary()}
    for what, items in (("match no label (counted as misses)", res.unmatched),
                        ("match several labels (the first is used)", res.ambiguous),
                        ("cannot be read (skipped)", res.failed)):
        if items:
            print(f"warning: {len(items)} pictures {what}: " + "; ".join(items[:10]), file=sys.stderr)
    text = json.dumps(summary, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 1 if res.failed or not res.images else 0
