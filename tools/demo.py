#!/usr/bin/env python3
"""The offline demo: the shipped shapes detector on a generated scene or on your pictures.

    python tools/demo.py [IMAGE...] [--seed N] [--thresh 0.5] [--out DIR]

Without IMAGE it draws a new scene (circles, squares, triangles on a random background)
into demo_scene.jpg, detects the shapes and writes predictions.jpg; nothing is downloaded.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.demo import demo_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(demo_main())
