#!/usr/bin/env python3
"""Train a detector, as ``./darknet detector train`` does.

    python tools/train.py DATA CFG [WEIGHTS] [--clear] [--gpus 0,1 | --procs N]
                          [--max-batches N] [--backup DIR] [--workers N] [--threads N]
                          [--seed N] [--checkpoint-every N] [--exact] [--no-progress]

Prints Darknet's lines (``Learning Rate: ...``, ``Resizing`` for ``random=1``, ``Loaded: ...``
and ``N: loss, avg avg, rate rate, S seconds, I images`` per iteration), keeps a CSV log and a
loss-curve PNG in the backup folder, and writes Darknet's checkpoints (``<cfg>.backup`` every
100 iterations, ``<cfg>_<N>.weights``, ``<cfg>_final.weights``), each atomically.

Ctrl-C finishes the current iteration, saves ``<cfg>.backup`` and exits with status 130;
pass that file as WEIGHTS to continue where it stopped (``--clear`` restarts the schedule).
Exit status: 0 done, 130 interrupted (checkpoint saved), 2 bad input, 1 training failed
(a non-finite loss, a crashed training process).

``--procs N`` (CPU, gloo) or ``--gpus 0,1`` (NCCL) trains data-parallel in one process per
device, with Darknet's multi-GPU learning-rate scaling; see ``pydarknet.trainloop``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
