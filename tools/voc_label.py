#!/usr/bin/env python3
"""VOC XML annotations to Darknet labels, lists, .names and .data.

Thin entry point: the program is ``pydarknet.commands.voc_label`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.voc_label import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
