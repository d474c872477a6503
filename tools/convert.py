#!/usr/bin/env python3
"""Convert a model between .weights, .pt, .safetensors and ONNX.

Thin entry point: the program is ``pydarknet.commands.convert`` (also ``pydarknet ...``); run with
``--help`` for its options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing

from pydarknet.commands.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
