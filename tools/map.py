#!/usr/bin/env python3
"""VOC AP per class, mAP, precision/recall and Darknet's recall from valid's result files.

Thin entry point: the program is ``pydarknet.commands.map`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.map import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
