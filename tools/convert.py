#!/usr/bin/env python3
"""Convert a model between Darknet .weights, PyTorch .pt, .safetensors and ONNX.

    python tools/convert.py SRC DST [--cfg CFG] [--to weights|pt|safetensors|onnx]
                            [--names FILE] [--with-boxes] [--opset 17] [--batch dynamic|N] [--no-check]

The output format comes from DST's extension unless --to is given; the source format is
read from the file itself.  A .weights source needs --cfg; .pt and .safetensors files
written by pydarknet carry their cfg, header and class names.  Examples:

    python tools/convert.py yolov2-voc.weights yolov2-voc.pt --cfg cfg/yolov2-voc.cfg --names cfg/voc.names
    python tools/convert.py yolov2-voc.pt back.weights            # byte-identical to the original
    python tools/convert.py yolov2-voc.pt yolov2-voc.onnx --with-boxes

Exit status 2 (and a message, no traceback) for a file that does not fit its cfg, a
checkpoint of another architecture, or a network ONNX cannot express.  See
pydarknet/convert.py for the checkpoint format and the ONNX output layout.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.convert import convert_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(convert_main())
