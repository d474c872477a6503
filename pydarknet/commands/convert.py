"""``convert``: a model between Darknet .weights, PyTorch .pt, .safetensors and ONNX.

    pydarknet convert SRC DST --cfg CFG [--to weights|pt|safetensors|onnx] [--with-boxes]
"""
from __future__ import annotations

import argparse
import sys

from ..convert import DEFAULT_OPSET, FORMATS, ConvertError, convert, header_dict, target_format
from .common import CONVERT_ERRORS, fail, setup_command



def main(argv=None, prog: str = "convert.py") -> int:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Convert a model between Darknet .weights, PyTorch .pt, .safetensors and ONNX. "
                    "The output format comes from DST's extension unless --to is given.")
    ap.add_argument("src", help=".weights (needs --cfg), .pt or .safetensors file")
    ap.add_argument("dst", help="output file (.weights, .pt, .safetensors or .onnx)")
    ap.add_argument("--cfg", help="Darknet cfg (required for a .weights source; for a checkpoint it replaces "
                                  "the embedded cfg, e.g. to export at another input size)")
    ap.add_argument("--to", choices=FORMATS, help="output format (default: from DST's extension)")
    ap.add_argument("--names", help=".names file to embed (one class name per line)")
    ap.add_argument("--with-boxes", action="store_true",
                    help="ONNX: output decoded region boxes and scores instead of the raw last layer")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    ap.add_argument("--batch", default="dynamic", help="ONNX batch size: 'dynamic' (default) or a number")
    ap.add_argument("--no-check", action="store_true",
                    help="ONNX: do not compare ONNX Runtime's output with PyTorch's before writing")
    args = ap.parse_args(argv)
    setup_command()
    try:
        fmt = target_format(args.dst, args.to)
        if fmt != "onnx" and (args.with_boxes or args.batch != "dynamic" or args.opset != DEFAULT_OPSET):
            raise ConvertError("--with-boxes, --opset and --batch apply to ONNX output only")
        opts = dict(with_boxes=args.with_boxes, opset=args.opset, batch=args.batch,
                    check=not args.no_check) if fmt == "onnx" else {}
        net = convert(args.src, args.dst, args.cfg, to=fmt, names=args.names, **opts)
    except CONVERT_ERRORS as e:
        return fail(e)
    h = header_dict(net)
    print(f"{args.src} -> {args.dst} ({fmt}): {len(net.layers)} layers, header "
          f"{h['major']}.{h['minor']}.{h['revision']}, seen {h['seen']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
