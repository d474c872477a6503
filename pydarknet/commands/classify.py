"""``classifier predict`` / ``classify``: Darknet's top-k lines per picture, optional JSON.

    pydarknet classifier predict DATA CFG WEIGHTS IMAGE... [options]   (Darknet's order)
    python tools/classify.py CFG WEIGHTS IMAGE... [--data F.data | --names F] [--top K] [--json]

IMAGE may be files, folders (every picture inside) or .txt lists of paths.  Each picture's
lines go to stdout (``14.18%: malamute``, Darknet's ``%5.2f%%: name``) and Darknet's
``PATH: Predicted in S seconds.`` to stderr.  With --json, stdout carries one object per
picture, ``{"image", "predictions": [{"class_id", "name", "prob"}]}``, and the lines go to
stderr.  Names come from --names, else the .data file's ``names=``, else its ``labels=`` (as
``predict_classifier`` reads them), else a ``.names`` file beside the cfg.  The number of
lines is --top, else the .data file's ``top=`` (Darknet's default 1), else 5 (Darknet's
``classify`` verb).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import data as datamod
from ..classify import classify
from ..image import ImageError, load_image
from ..network import Darknet
from .common import USER_ERRORS, expand_inputs, fail, setup_command


def build_parser(prog: str, with_data: bool) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="Darknet `classifier predict` in PyTorch.")
    if with_data:
        ap.add_argument("data", help=".data file (names= or labels=, top=)")
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="pictures, folders or .txt lists")
    if not with_data:
        src = ap.add_mutually_exclusive_group()
        src.add_argument("--data", help=".data file whose names= (else labels=) gives the class names")
        src.add_argument("--names", help="file with one class name per line")
    ap.add_argument("-t", "--top", type=int, help="how many classes to print (Darknet's -t)")
    ap.add_argument("--json", action="store_true", help="one JSON object per picture on stdout")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--fast", action="store_true",
                    help="plain PyTorch arithmetic: several times faster, within ~1e-5 of Darknet "
                         "instead of bit-identical")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print Darknet's layer table")
    return ap


def classifier_names(args) -> list[str] | None:
    """--names, else the .data file's ``names=``, else its ``labels=``, else ``<cfg>.names``."""
    if args.names:
        return datamod.read_names(args.names)
    if args.data:
        data = datamod.DataConfig.from_file(args.data)
        key = next((k for k in ("names", "labels") if k in data.options), None)
        if key is None:
            raise datamod.DataError(f"{args.data}: neither names= nor labels= is set")
        return datamod.read_names(data.resolve(data.options[key]))
    beside = Path(args.cfg).with_suffix(".names")
    return datamod.read_names(beside) if beside.is_file() else None


def _top(args) -> int:
    if args.top is not None:
        return args.top
    if args.data:
        value = datamod.DataConfig.from_file(args.data).options.get("top", "1")
        try:
            return int(value)
        except ValueError:
            raise datamod.DataError(f"{args.data}: top={value!r} is not an integer") from None
    return 5


def _classify_one(net, path: str, top: int, as_json: bool, text_out) -> bool:
    try:
        img = load_image(path)
    except ImageError as e:
        print(f"error: cannot read image {e}", file=sys.stderr)
        return False
    start = time.perf_counter()
    found = classify(net, img, top)
    print(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.", file=sys.stderr)
    for p in found:
        print(p.darknet_line(), file=text_out)
    if as_json:
        print(json.dumps({"image": path, "predictions": [p.to_dict() for p in found]}), flush=True)
    return True


def run(args) -> int:
    setup_command()
    try:
        net = Darknet(args.cfg, exact=not args.fast)
        if not args.quiet:
            print(net.summary(), file=sys.stderr)
        net.load_weights(args.weights)
        net.names = classifier_names(args)
        top = _top(args)
        paths = expand_inputs(args.images)
    except USER_ERRORS as e:
        return fail(e)
    if net.detection_layer is not None:
        return fail(f"{args.cfg} ends in a [{net.detection_layer.kind}] layer: it is a detector (use detect)")
    outputs = net.output_shape.numel
    if net.names is not None and len(net.names) < outputs:
        return fail(f"{len(net.names)} class names for the network's {outputs} outputs")
    if top < 1:
        return fail(f"--top must be positive, not {top}")
    if not paths:
        return fail("no pictures found")
    net.eval().to(args.device)
    text_out = sys.stderr if args.json else sys.stdout
    failed = sum(not _classify_one(net, p, top, args.json, text_out) for p in paths)
    return 1 if failed else 0


def main(argv=None, prog: str = "classify.py") -> int:
    """``tools/classify.py`` / ``pydarknet classify``: CFG WEIGHTS IMAGE..."""
    return run(build_parser(prog, with_data=False).parse_args(argv))


def classifier_predict(argv=None, prog: str = "pydarknet classifier predict") -> int:
    """``pydarknet classifier predict DATA CFG WEIGHTS IMAGE...``, Darknet's argument order."""
    args = build_parser(prog, with_data=True).parse_args(argv)
    args.names = None
    return run(args)
