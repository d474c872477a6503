#!/usr/bin/env python3
"""Darknet's `partial`: the first N layers' weights with seen = 0.

Thin entry point: the program is ``pydarknet.commands.partial`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.partial import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
