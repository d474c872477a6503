#!/usr/bin/env python3
"""YOLO9000 class-only label files for a folder-of-classes dataset (joint training).

Thin entry point: the program is ``pydarknet.commands.class_labels`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.class_labels import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
