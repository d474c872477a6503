#!/usr/bin/env python3
"""VOC XML -> Darknet label files, image lists, ``.names`` and ``.data`` (Darknet's voc_label.py).

    python tools/voc_label.py VOC_ROOT [--out DIR] [--labels-root DIR] [--classes a,b,...]
                              [--sets train,val] [--name NAME] [--clip] [--ignore-unknown]

Labels go to ``<root>/labels/<id>.txt`` (where Darknet looks: JPEGImages -> labels); with
``--labels-root DIR`` (for a read-only dataset) DIR gets symlinks to the images and the labels.
Difficult objects are left out of the labels and kept in ``<set>_truth.json`` for evaluation.
Exit status 1 when a file or object had to be skipped (each is named on stderr).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydarknet.voc import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
