#!/usr/bin/env python3
"""The offline demo: the shipped shapes detector on a generated scene or your pictures.

Thin entry point: the program is ``pydarknet.commands.demo`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
