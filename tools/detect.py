#!/usr/bin/env python3
"""Detect objects in pictures, as ``./darknet detector test`` does.

    python tools/detect.py CFG WEIGHTS IMAGE... [--data FILE.data | --names FILE.names]
                           [--thresh 0.5] [--hier 0.5] [--nms 0.45] [--out DIR] [--json]

IMAGE may be files, folders (every picture inside) or .txt lists of paths.
For each picture it prints Darknet's lines (``dog: 82%``) and writes the picture with
labelled boxes (``predictions.jpg``, or ``DIR/<name>.jpg`` with --out).  With --json,
stdout carries one JSON object per picture and Darknet's lines go to stderr.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.cli import detect_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(detect_main())
