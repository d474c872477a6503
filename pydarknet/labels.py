"""Classifier truth rows as Darknet builds them from image paths (``load_labels_paths``).

``fill_truth`` marks with 1 **every** label that is a substring of the image path (so a label
list must not hold names contained in one another's directories, and an empty label matches
every path); ``fill_hierarchy`` (with a WordTree) then sets every ancestor of a 1 to 1 and
fills each group that holds no 1 with ``SECRET_NUM = -1234``, which the softmax loss masks.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .tree import WordTree

__all__ = ["SECRET_NUM", "read_label_list", "classifier_truth", "classifier_truths"]

SECRET_NUM = -1234.0


def read_label_list(path) -> list[str]:
    """Darknet's ``get_labels``: one label per line, only the trailing newline removed."""
    text = Path(path).read_text()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, lab in enumerate(lines, 1):
        if lab == "" or lab != lab.strip():
            warnings.warn(f"{path}:{i}: label {lab!r} has blank characters; Darknet matches it as is "
                          f"(an empty label is a substring of every path)", stacklevel=2)
    return lines


def classifier_truth(path: str, labels, tree: WordTree | None = None, classes: int | None = None,
                     *, warn: bool = True) -> torch.Tensor:
    """``fill_truth`` (+ ``fill_hierarchy`` when ``tree`` is given) for one image path:
    a float32 row of ``classes`` values (default: the tree's size, else ``len(labels)``)."""
    k = classes if classes is not None else (tree.n if tree is not None else len(labels))
    if k > len(labels):
        raise ValueError(f"{k} classes but only {len(labels)} labels")
    if tree is not None and k != tree.n:
        raise ValueError(f"{k} classes but the tree has {tree.n} nodes")
    t = [0.0] * k
    count = 0
    for i in range(k):
        if labels[i] in path:
            t[i] = 1.0
            count += 1
    if warn and count != 1 and (k != 1 or count != 0):
        warnings.warn(f"Too many or too few labels: {count}, {path}", stacklevel=2)
    if tree is not None:
        for j in range(k):
            if t[j]:
                parent = tree.parent[j]
                while parent >= 0:
                    t[parent] = 1.0
                    parent = tree.parent[parent]
        for off, size in zip(tree.group_offset, tree.group_size):
            if not any(t[off:off + size]):
                t[off:off + size] = [SECRET_NUM] * size
    return torch.tensor(t, dtype=torch.float32)


def classifier_truths(paths, labels, tree: WordTree | None = None, classes: int | None = None,
                      *, warn: bool = True) -> torch.Tensor:
    """``load_labels_paths``: one truth row per path, (len(paths), classes)."""
    return torch.stack([classifier_truth(p, labels, tree, classes, warn=warn) for p in paths])
