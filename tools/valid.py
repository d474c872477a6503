#!/usr/bin/env python3
"""Darknet's ``detector valid``: run a detector over the ``valid=`` list of a .data file.

    python tools/valid.py DATA CFG WEIGHTS [--out DIR] [--thresh 0.005] [--nms 0.45]
                          [--batch 8] [--no-recall] [--device cuda:0]

Each picture is letterboxed to the network; boxes with class prob > thresh, per-class NMS
(.45), are written to ``DIR/comp4_det_test_<class>.txt`` as ``id prob xmin ymin xmax ymax``
(1-based pixels), DIR defaulting to the .data file's ``results=`` (else ./results).  A second
pass writes ``DIR/recall_proposals.txt`` for Darknet's ``detector recall`` numbers
(``--no-recall`` skips it).  Then: ``python tools/map.py DATA --results DIR``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.eval import valid_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(valid_main())
