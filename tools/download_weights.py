#!/usr/bin/env python3
"""Download Darknet's published weights (needs internet; nothing else in pydarknet downloads).

    python tools/download_weights.py NAME [--dir weights] [--sha256 HEX]
    python tools/download_weights.py --list

Each file is checked against the byte size its cfg implies and loaded into that cfg before it
is kept; its SHA-256 is recorded in DIR/SHA256SUMS and checked on later downloads.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.published import PUBLISHED, download  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="download_weights.py", description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", help="e.g. yolov2-voc.weights")
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parents[1] / "weights"))
    ap.add_argument("--sha256", help="expected SHA-256 of the file")
    ap.add_argument("--list", action="store_true", help="list the known files")
    args = ap.parse_args(argv)
    if args.list or not args.name:
        for p in PUBLISHED.values():
            print(f"{p.name:26s} cfg/{p.cfg:22s} {p.url}")
        return 0

    def progress(done, total):
        if sys.stderr.isatty():
            pct = f"{100 * done / total:5.1f}%" if total else ""
            print(f"\r{args.name}: {done / 1e6:8.1f} MB {pct}", end="", file=sys.stderr)
    try:
        path = download(args.name, args.dir, args.sha256, progress)
    except (KeyError, ValueError, OSError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
