#!/usr/bin/env python3
"""VOC mAP of ``tools/valid.py`` results: AP per class (VOC2007 11-point and all-point area),
mAP, precision/recall at a score threshold, Darknet's ``detector recall``, PR-curve PNGs.

    python tools/map.py DATA [--results DIR] [--truth FILE.json] [--iou 0.5] [--thresh 0.25]
                        [--plots DIR | --no-plots] [--json]

Ground truth: ``--truth``, else the .data file's ``valid_truth=`` (written by
tools/voc_label.py, difficult objects included), else VOC XML beside the images, else the
Darknet label files.  VOC devkit (voc_eval.py) semantics; see pydarknet/eval.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.eval import map_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(map_main())
