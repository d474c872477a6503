"""``partial``: Darknet's ``partial``, the first N layers' weights with seen = 0.

    pydarknet partial CFG WEIGHTS OUT N [--cfg-out CFG]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..convert import partial
from .common import CONVERT_ERRORS, fail, setup_command



def main(argv=None, prog: str = "partial.py") -> int:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Darknet's `partial`: copy the first N layers' weights into a new file with seen = 0 "
                    "(e.g. darknet19_448.conv.23 from a classifier, to start detection training).")
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("out")
    ap.add_argument("n", type=int, metavar="N", help="number of layers to keep")
    ap.add_argument("--cfg-out", help="also write the cfg truncated to N layers")
    args = ap.parse_args(argv)
    setup_command()
    try:
        partial(args.cfg, args.weights, args.out, args.n, cfg_out=args.cfg_out)
    except CONVERT_ERRORS as e:
        return fail(e)
    print(f"Saving weights to {args.out}: layers 0..{args.n - 1} ({Path(args.out).stat().st_size} bytes, "
          f"seen 0)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
