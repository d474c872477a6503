#!/usr/bin/env python3
"""Darknet's `partial`: the first N layers' weights of a model, for transfer learning.

    python tools/partial.py CFG WEIGHTS OUT N [--cfg-out TRUNCATED.cfg]

As `./darknet partial CFG WEIGHTS OUT N`: OUT holds the weights of layers 0..N-1 behind
Darknet's current header (version 0.2.0) with `seen` reset to 0, e.g.

    python tools/partial.py cfg/darknet19_448.cfg darknet19_448.weights darknet19_448.conv.23 23

then `Darknet("cfg/yolov2-voc.cfg").load_weights("darknet19_448.conv.23", partial=True)` (or
`tools/train.py ... darknet19_448.conv.23`) fills the first
23 layers and leaves the rest as initialised.  --cfg-out writes the cfg cut to N layers,
which reads OUT on its own (OpenCV's readNetFromDarknet, for one).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.convert import partial_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(partial_main())
