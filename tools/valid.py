#!/usr/bin/env python3
"""Darknet's `detector valid`: comp4 result files of a .data file's valid= list.

Thin entry point: the program is ``pydarknet.commands.valid`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.valid import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
