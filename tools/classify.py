#!/usr/bin/env python3
"""Classify pictures, as `./darknet classifier predict` does.

Thin entry point: the program is ``pydarknet.commands.classify`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.classify import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
