#!/usr/bin/env python3
"""Train a classifier, as `./darknet classifier train`.

Thin entry point: the program is ``pydarknet.commands.train_classifier`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.train_classifier import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
