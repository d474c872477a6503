#!/usr/bin/env python3
"""Anchors for a ``[region]`` layer by k-means on the training boxes (YOLOv2's dimension clusters).

    python tools/anchors.py DATA|LIST -k 5 --width 416 --height 416 [--json] [--seed N]
                            [--kmax K] [--plot FILE.png] [--cfg CFG]

Prints the avg IoU with the closest centroid for k = 1..K, the anchors in Darknet's cfg units
(grid cells of 32 px) ready to paste as ``anchors = ...``, and with ``--cfg`` the paper's
Table 1 comparison with that cfg's anchors.  ``--json`` prints
``{"anchors": [[w, h], ...], "avg_iou": x}`` (grid units) only.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.anchors import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
