"""``detector test`` / ``detect``: Darknet's lines per picture, the annotated pictures, optional JSON.

    pydarknet detector test DATA CFG WEIGHTS IMAGE... [options]     (Darknet's order)
    pydarknet detect CFG WEIGHTS IMAGE... [--data F.data | --names F.names] [options]
    python tools/detect.py CFG WEIGHTS IMAGE... [options]

IMAGE may be files, folders (every picture inside) or .txt lists of paths.  Each picture's
lines go to stdout (``dog: 82%``), its annotated copy to ``predictions.jpg`` (or
``DIR/<name>.jpg`` with --out).  With --json, stdout carries one JSON object per picture and
Darknet's lines go to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

from ..detect import detect
from ..draw import draw_detections
from ..image import ImageError, load_image, to_uint8
from ..backends import ENGINES
from ..network import Darknet, load_network
from ..outputs import result_names
from .common import USER_ERRORS, class_names, expand_inputs, fail, setup_command


def build_parser(prog: str, with_data: bool) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="Darknet `detector test` in PyTorch.")
    if with_data:
        ap.add_argument("data", help=".data file whose names= gives the class names")
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="pictures, folders or .txt lists")
    if not with_data:
        src = ap.add_mutually_exclusive_group()
        src.add_argument("--data", help=".data file whose names= gives the class names")
        src.add_argument("--names", help=".names file (one class name per line)")
    ap.add_argument("--thresh", type=float, default=.5, help="probability threshold (Darknet's -thresh, .5)")
    ap.add_argument("--hier", type=float, default=.5, help="WordTree threshold (Darknet's -hier, .5)")
    ap.add_argument("--nms", type=float, default=.45, help="NMS IoU threshold (0 disables)")
    ap.add_argument("--out", help="folder for the annotated pictures (default: ./predictions.jpg)")
    ap.add_argument("--json", action="store_true", help="one JSON object per picture on stdout")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--flavour", choices=("pjreddie", "alexeyab"),
                    help="detect as this Darknet does (default: guessed from the cfg)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--engine", choices=ENGINES, default="auto",
                      help="auto (default): ONNX Runtime if installed, else PyTorch; both within ~1e-5 "
                           "of Darknet, the same detections up to ~1e-6 ties")
    mode.add_argument("--exact", dest="engine", action="store_const", const="exact",
                      help="Darknet's own float arithmetic, bit-identical detections (a few times slower)")
    mode.add_argument("--fast", dest="engine", action="store_const", const="torch", help=argparse.SUPPRESS)
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print Darknet's layer table")
    return ap


def _load(args) -> tuple[Darknet, list[str]]:
    net = load_network(args.cfg, args.weights, engine=args.engine, device=args.device, flavour=args.flavour)
    if not args.quiet:
        print(net.summary(), file=sys.stderr)
    net.names = class_names(args, net)
    return net, expand_inputs(args.images)


def _targets(out_dir: Path | None, paths: list[str]) -> list[Path]:
    """One result file per input, never the same for two (good.jpg/good.png, a/x.jpg/b/x.jpg)."""
    if out_dir:
        return [out_dir / name for name in result_names(paths)]
    if len(paths) == 1:
        return [Path("predictions.jpg")]
    return [Path(f"predictions_{i:04d}_{Path(p).stem}.jpg") for i, p in enumerate(paths)]


def _detect_one(net, args, path: str, target: Path, text_out) -> bool:
    """Detect in one picture, print its lines, write its annotated copy; False if unreadable."""
    try:
        img = load_image(path)
    except ImageError as e:
        print(f"error: cannot read image {e}", file=sys.stderr)
        return False
    start = time.perf_counter()
    found = detect(net, img, args.thresh, args.hier, args.nms)
    print(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.", file=text_out)
    for d in found:
        print(d.printed_line(net.flavour, img.shape[2], img.shape[1]), file=text_out)
    picture = draw_detections(to_uint8(img), found, net.detection_layer.classes)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        print(f"error: cannot write {target}", file=sys.stderr)
        return False
    print(f"wrote {target}", file=sys.stderr)
    if args.json:
        print(json.dumps({"image": path, "width": int(img.shape[2]), "height": int(img.shape[1]),
                          "detections": [d.to_dict() for d in found]}), flush=True)
    return True


def run(args) -> int:
    setup_command()
    try:
        net, paths = _load(args)
    except USER_ERRORS as e:
        return fail(e)
    if net.detection_layer is None:
        return fail(f"{args.cfg} has no detection layer: it is not a detector")
    if not paths:
        return fail("no pictures found")
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    text_out = sys.stderr if args.json else sys.stdout
    failed = sum(not _detect_one(net, args, p, target, text_out) for p, target in zip(paths, _targets(out_dir, paths)))
    return 1 if failed else 0


def main(argv=None, prog: str = "detect.py") -> int:
    """``tools/detect.py`` / ``pydarknet detect``: CFG WEIGHTS IMAGE..."""
    return run(build_parser(prog, with_data=False).parse_args(argv))


def detector_test(argv=None, prog: str = "pydarknet detector test") -> int:
    """``pydarknet detector test DATA CFG WEIGHTS IMAGE...``, Darknet's argument order."""
    args = build_parser(prog, with_data=True).parse_args(argv)
    args.names = None
    return run(args)
