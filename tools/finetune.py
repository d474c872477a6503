#!/usr/bin/env python3
"""A detector for a small VOC-format dataset from an ImageNet backbone, in one command.

    python tools/finetune.py DATA|VOC_DIR --backbone tiny.weights [--minutes 25] [--work DIR]

partial of the classifier -> a cfg decided from the training data (input size, k-means
anchors, schedule, frozen stem) -> training within the time budget, keeping the checkpoint
best on a held-out part of the training list -> valid -> VOC mAP on the valid= list.
See pydarknet/recipe.py and pydarknet/finetune.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.commands.finetune import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
