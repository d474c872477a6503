"""``detector valid``: run a detector over the valid= list of a .data file, writing comp4 files.

    pydarknet detector valid DATA CFG WEIGHTS [--out DIR]
    python tools/valid.py DATA CFG WEIGHTS [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cfg import CfgError
from ..data import DataError
from ..network import Darknet
from ..validate import run_valid, validation_set
from ..weights import WeightsError
from .common import setup_command


def main(argv=None, prog: str = "valid.py") -> int:
    """``tools/valid.py DATA CFG WEIGHTS``: Darknet's ``detector valid``."""
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Darknet's `detector valid`: run a detector over the valid= list of a .data file and "
                    "write per-class comp4 result files (then run tools/map.py).")
    ap.add_argument("data", metavar="DATA")
    ap.add_argument("cfg", metavar="CFG")
    ap.add_argument("weights", metavar="WEIGHTS")
    ap.add_argument("--out", metavar="DIR", help="results folder (default: results= of DATA, else ./results)")
    ap.add_argument("--thresh", type=float, default=0.005, help="class probability threshold (.005)")
    ap.add_argument("--nms", type=float, default=0.45, help="per-class NMS IoU threshold (.45; 0 disables)")
    ap.add_argument("--prefix", default="comp4_det_test_", help="results file prefix (comp4_det_test_)")
    ap.add_argument("--batch", type=int, default=8, help="pictures per forward pass (8)")
    ap.add_argument("--no-recall", action="store_true",
                    help="skip the second pass for Darknet's `detector recall` proposals")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--exact", action="store_true", help="Darknet's own float arithmetic (slow)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    setup_command()
    try:
        data_file = Path(args.data)
        data, names, paths = validation_set(data_file)
        out_dir = Path(args.out or data.options.get("results", "results"))
        net = Darknet(args.cfg, exact=args.exact)
        net.load_weights(args.weights)
        net.names = names
        net.eval().to(args.device)
        summary = run_valid(net, paths, out_dir, names, args.thresh, args.nms, args.prefix,
                            recall=not args.no_recall, batch=max(1, args.batch),
                            show_progress=False if args.quiet else None)
    except (DataError, CfgError, WeightsError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary.update({"data": str(data_file), "cfg": args.cfg, "weights": args.weights,
                    "names": list(names), "valid": data.options["valid"]})
    (out_dir / "valid.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['images']} images in {summary['seconds']:.2f} s ({summary['images_per_second']:.2f} images/s); "
          f"results in {out_dir}/{args.prefix}<class>.txt", file=sys.stderr)
    print(f"Total Detection Time: {summary['seconds']:f} Seconds", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
