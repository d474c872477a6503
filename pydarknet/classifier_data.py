"""Classifier data as Darknet's ``classifier`` verbs read it: the ``.data`` keys, each
picture's class from its path, and ``center_crop_image``.

Darknet finds a picture's class by substring: ``fill_truth`` (training) marks every label
contained in the path, ``validate_classifier_single`` takes the first one.  A picture that
matches no label or several is almost always a mistake in the label list or the folders, so
:func:`match_labels` reports it by name (training skips it; validation counts it as Darknet
does: class -1 is a miss, the first of several labels is the class).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data import DataConfig, DataError, read_list
from .image import resize
from .labels import read_label_list
from .tree import WordTree, read_tree

__all__ = ["ClassifierData", "match_labels", "center_crop"]


@dataclass
class ClassifierData:
    """A classifier ``.data`` file with ``classifier.c``'s defaults: ``classes=2``,
    ``labels=data/labels.list``, ``train``/``valid`` ``data/train.list``, ``top=1``,
    ``backup=/backup/``; ``names`` (predict's, else labels), ``tree`` optional."""
    config: DataConfig
    classes: int
    top: int

    @classmethod
    def from_file(cls, path) -> "ClassifierData":
        config = DataConfig.from_file(path)
        opts = config.options
        try:
            classes, top = int(opts.get("classes", 2)), int(opts.get("top", 1))
        except ValueError:
            raise DataError(f"{path}: classes= and top= must be integers") from None
        if classes < 1 or top < 1:
            raise DataError(f"{path}: classes={classes} and top={top} must be positive")
        return cls(config, classes, top)

    def _path(self, key: str, default: str) -> Path:
        return self.config.resolve(self.config.options.get(key, default))

    def labels(self) -> list[str]:
        path = self._path("labels", "data/labels.list")
        if not path.is_file():
            raise DataError(f"{self.config.path}: labels={path}: no such file")
        labels = read_label_list(path)
        if len(labels) < self.classes:
            raise DataError(f"{path}: {len(labels)} labels but classes={self.classes} in {self.config.path}")
        return labels

    def names(self) -> list[str]:
        key = "names" if "names" in self.config.options else "labels"
        path = self._path(key, "data/labels.list")
        if not path.is_file():
            raise DataError(f"{self.config.path}: {key}={path}: no such file")
        return read_label_list(path)

    def tree(self) -> WordTree | None:
        return read_tree(self.config.resolve(self.config.tree)) if self.config.tree else None

    def paths(self, key: str) -> list[str]:
        path = self._path(key, "data/train.list")
        paths = read_list(path)
        if not paths:
            raise DataError(f"{path}: the {key} list is empty")
        return paths

    @property
    def backup(self) -> str:
        return self.config.backup


def match_labels(path: str, labels: list[str], classes: int) -> list[int]:
    """Indices of the first ``classes`` labels contained in ``path`` (Darknet's ``strstr``)."""
    return [j for j in range(classes) if labels[j] in path]


def center_crop(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Darknet's ``center_crop_image``: the central square (side = the shorter side, offsets by
    C integer division) resized to w×h with ``resize_image``."""
    im_h, im_w = img.shape[-2:]
    m = min(im_w, im_h)
    x0, y0 = (im_w - m) // 2, (im_h - m) // 2
    return resize(img[..., y0:y0 + m, x0:x0 + m], w, h)
