#!/usr/bin/env python3
"""Download Darknet's published weights, checked (see pydarknet/commands/download.py).

    python tools/download_weights.py NAME... [--dir weights] [--sha256 HEX]
    python tools/download_weights.py --list
    python tools/download_weights.py --check FILE...
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.commands.download import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
