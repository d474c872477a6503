"""Result files of Darknet's ``detector valid`` (``comp4_det_test_<class>.txt``: ``image_id score
x1 y1 x2 y2`` lines, VOC pixels) and of our recall pass (``recall_proposals.txt``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from .data import DataError

__all__ = ["format_comp4", "read_comp4", "read_proposals"]


def format_comp4(image: str, prob: float, x1: float, y1: float, x2: float, y2: float) -> str:
    """One line of a comp4 results file, as Darknet's fprintf("%s %f %f %f %f %f\\n")."""
    return "%s %f %f %f %f %f\n" % (image, prob, x1, y1, x2, y2)


def read_comp4(results_dir, names: Sequence[str], prefix: str = "comp4_det_test_",
               report=None) -> list[tuple]:
    """Detection rows ``(image_id, class_id, score, x1, y1, x2, y2)`` from per-class files
    ``<results_dir>/<prefix><name>.txt`` (a missing file: no detections of that class)."""
    report = report or (lambda line: print(line, file=sys.stderr))
    rows = []
    for cid, name in enumerate(names):
        path = Path(results_dir) / f"{prefix}{name}.txt"
        try:
            text = path.read_text()
        except FileNotFoundError:
            report(f"warning: {path}: missing, no detections of {name!r}")
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise DataError(f"{path}:{lineno}: expected 'image score x1 y1 x2 y2', got {line.strip()!r}")
            try:
                rows.append((parts[0], cid, *(float(v) for v in parts[1:])))
            except ValueError:
                raise DataError(f"{path}:{lineno}: not numbers: {line.strip()!r}") from None
    return rows


def read_proposals(path) -> list[tuple]:
    """``recall_proposals.txt`` of tools/valid.py: ``image_id objectness x y w h`` lines, the box
    relative to the image (centre and size) -> rows ``(image_id, objectness, x1, y1, x2, y2)``
    relative."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise DataError(f"{path}:{lineno}: expected 'image objectness x y w h'")
        o, x, y, w, h = (float(v) for v in parts[1:])
        rows.append((parts[0], o, x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return rows
