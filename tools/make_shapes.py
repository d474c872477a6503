#!/usr/bin/env python3
"""Generate a VOC-layout dataset of synthetic shape scenes (circle, square, triangle).

    python tools/make_shapes.py OUT [--train 1000] [--val 100] [--seed 0]

Writes OUT/JPEGImages, Annotations (VOC XML), labels (Darknet), ImageSets/Main, train.txt,
val.txt, shapes.names and shapes.data, ready for tools/train.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.shapes import write_dataset  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="make_shapes.py", description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = write_dataset(args.out, args.train, args.val, args.seed)
    print(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
