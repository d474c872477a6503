#!/usr/bin/env python3
"""Train a detector, as ``./darknet detector train`` does.

    python tools/train.py DATA CFG [WEIGHTS] [--clear] [--gpus 0,1 | --procs N]
                          [--max-batches N] [--backup DIR] [--workers N] [--seed N]

Prints Darknet's line per iteration (``N: loss, avg loss, rate, seconds, images``), keeps a
CSV log and a loss-curve PNG in the backup folder, and writes Darknet's checkpoints
(``<cfg>.backup``, ``<cfg>_<N>.weights``, ``<cfg>_final.weights``).  Ctrl-C saves
``<cfg>.backup``; pass that file as WEIGHTS to continue where it stopped.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
