"""Command-line front ends (the scripts in tools/ are thin wrappers around these)."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import cv2

from . import data as datamod
from .cfg import CfgError
from .data import IMAGE_SUFFIXES, DataError
from .detect import detect
from .draw import draw_detections
from .image import ImageError, load_image, to_uint8
from .network import Darknet
from .weights import WeightsError

USER_ERRORS = (CfgError, WeightsError, DataError, ImageError, FileNotFoundError)


def _warn_to_stderr(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given, folders as their pictures (sorted), .txt files as lists of paths."""
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix.lower() == ".txt" and p.is_file():
            paths += datamod.read_list(p)
        else:
            paths.append(item)
    return paths


def class_names(args, net) -> list[str] | None:
    if args.names:
        return datamod.read_names(args.names)
    if args.data:
        opts = datamod.read_data_file(args.data)
        names = opts.get("names")
        if names is None:
            raise DataError(f"{args.data}: no names= entry")
        p = Path(names)
        if not p.is_file() and (Path(args.data).parent / p).is_file():
            p = Path(args.data).parent / p
        return datamod.read_names(p)
    beside = Path(args.cfg).with_suffix(".names")
    return datamod.read_names(beside) if beside.is_file() else None


def detect_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="detect.py", description="Darknet `detector test` in PyTorch.")
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="pictures, folders or .txt lists")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", help=".data file whose names= gives the class names")
    src.add_argument("--names", help=".names file (one class name per line)")
    ap.add_argument("--thresh", type=float, default=.5, help="probability threshold (Darknet's -thresh, .5)")
    ap.add_argument("--hier", type=float, default=.5, help="WordTree threshold (Darknet's -hier, .5)")
    ap.add_argument("--nms", type=float, default=.45, help="NMS IoU threshold (0 disables)")
    ap.add_argument("--out", help="folder for the annotated pictures (default: ./predictions.jpg)")
    ap.add_argument("--json", action="store_true", help="one JSON object per picture on stdout")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--fast", action="store_true",
                    help="plain PyTorch arithmetic: several times faster, within ~1e-5 of Darknet "
                         "instead of bit-identical")
    args = ap.parse_args(argv)
    warnings.showwarning = _warn_to_stderr
    text_out = sys.stderr if args.json else sys.stdout

    try:
        net = Darknet(args.cfg, exact=not args.fast)
        net.load_weights(args.weights)
        net.names = class_names(args, net)
        net.eval().to(args.device)
        paths = expand_inputs(args.images)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if net.detection_layer is None:
        print(f"error: {args.cfg} has no [region] layer: it is not a detector", file=sys.stderr)
        return 2
    if not paths:
        print("error: no pictures found", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, path in enumerate(paths):
        try:
            img = load_image(path)
        except ImageError as e:
            print(f"error: cannot read image {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        start = time.perf_counter()
        found = detect(net, img, args.thresh, args.hier, args.nms)
        print(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.", file=text_out)
        for d in found:
            print(d.darknet_line(), file=text_out)
        picture = draw_detections(to_uint8(img), found, net.detection_layer.classes)
        if out_dir:
            target = out_dir / (Path(path).stem + ".jpg")
        else:
            target = Path("predictions.jpg" if len(paths) == 1 else f"predictions_{i:04d}_{Path(path).stem}.jpg")
        cv2.imwrite(str(target), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if args.json:
            print(json.dumps({"image": path, "width": int(img.shape[2]), "height": int(img.shape[1]),
                              "detections": [d.to_dict() for d in found]}), flush=True)
    return 1 if failed else 0
