"""Ground truth of a validation list: a ``<set>_truth.json`` of :mod:`pydarknet.voc`, VOC XML
beside the images, or Darknet's label files (in that order of preference)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .data import class_only_mask, label_path, read_labels
from .image import ImageError, image_size
from .voc import VocError, convert_box, image_id, parse_annotation, read_truth_json, unconvert_box

__all__ = ["Truth", "load_truth"]


@dataclass
class Truth:
    """Ground truth of an image list: ``rows`` (image_id, class_id, x1, y1, x2, y2, difficult)
    in VOC pixels, image sizes, and where it came from."""
    rows: list[tuple]
    sizes: dict  # image_id -> (width, height)
    images: list[str]  # image ids, list order
    source: str
    has_difficult: bool = True

    def relative_rows(self, keep_difficult: bool = False) -> list[tuple]:
        """(image_id, x1, y1, x2, y2) relative to the image, as Darknet's label files give them
        (voc_label.py's conversion, -1 included); difficult ones left out."""
        out = []
        for iid, _c, x1, y1, x2, y2, diff in self.rows:
            if diff and not keep_difficult:
                continue
            x, y, w, h = convert_box(self.sizes[iid], (x1, x2, y1, y2))
            out.append((iid, x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        return out


def _truth_from_json(path, paths: Sequence[str], names: Sequence[str], report) -> Truth:
    doc = read_truth_json(path)
    remap = _class_remap(doc.get("classes", []), names, str(path), report)
    by_id = {}
    for entry in doc["images"]:
        by_id.setdefault(entry["id"], entry)
        by_id.setdefault(image_id(entry["path"]), entry)
    rows, sizes, images, missing = [], {}, [], 0
    for p in paths:
        iid = image_id(p)
        images.append(iid)
        entry = by_id.get(iid)
        if entry is None:
            missing += 1
            continue
        sizes[iid] = (entry["width"], entry["height"])
        for c, x1, y1, x2, y2, diff in entry["objects"]:
            if remap[c] is not None:
                rows.append((iid, remap[c], x1, y1, x2, y2, int(diff)))
    if missing:
        report(f"warning: {path}: {missing} listed images have no ground truth entry (taken as empty)")
    return Truth(rows, sizes, images, f"{path}")


def _class_remap(file_names, names, where, report) -> list:
    index = {n: i for i, n in enumerate(names)}
    remap = [index.get(n) for n in file_names]
    lost = [n for n, r in zip(file_names, remap) if r is None]
    if lost:
        report(f"warning: {where}: classes {lost} are not in the names list; their objects are ignored")
    return remap


def _truth_from_xml(paths: Sequence[str], names: Sequence[str], report) -> Truth | None:
    """VOC XML beside the images: <root>/Annotations/<stem>.xml for <root>/JPEGImages/<file>
    (symlinks resolved, so a --labels-root folder leads back to the dataset)."""
    index = {n: i for i, n in enumerate(names)}
    rows, sizes, images = [], {}, []
    unknown: set = set()
    for p in paths:
        iid = image_id(p)
        images.append(iid)
        xml = None
        for cand in (Path(p), Path(os.path.realpath(p))):
            if cand.parent.name == "JPEGImages":
                x = cand.parent.parent / "Annotations" / (cand.stem + ".xml")
                if x.is_file():
                    xml = x
                    break
        if xml is None:
            return None
        try:
            ann = parse_annotation(xml)
        except VocError as e:
            report(f"warning: {e}; taken as an image without objects")
            continue
        sizes[iid] = (ann.width, ann.height)
        for o in ann.objects:
            if o.name not in index:
                unknown.add(o.name)
                continue
            rows.append((iid, index[o.name], o.xmin, o.ymin, o.xmax, o.ymax, int(o.difficult)))
    if unknown:
        report(f"warning: classes {sorted(unknown)} in the annotations are not in the names list; ignored")
    return Truth(rows, sizes, images, "VOC XML annotations")


def _truth_from_labels(paths: Sequence[str], report) -> Truth:
    """Darknet label files (no difficult flags); pixel boxes recovered with the image sizes."""
    rows, sizes, images = [], {}, []
    for p in paths:
        iid = image_id(p)
        images.append(iid)
        try:
            size = image_size(p)
        except ImageError:
            report(f"warning: {p}: cannot read the image for its size; its labels are ignored")
            continue
        sizes[iid] = size
        rows = read_labels(label_path(p, darknet_exact=True), missing_ok=True, class_only=True)
        for c, x, y, w, h in rows[~class_only_mask(rows)].astype(float):   # class-only rows: no box
            rows.append((iid, int(c), *unconvert_box(size, (x, y, w, h)), 0))
    return Truth(rows, sizes, images, "Darknet label files (no difficult flags)", has_difficult=False)


def load_truth(paths: Sequence[str], names: Sequence[str], truth_file=None, report=None) -> Truth:
    """Ground truth of the listed images: ``truth_file`` (a ``<set>_truth.json``) if given, else
    VOC XML found beside the images, else the Darknet label files."""
    report = report or (lambda line: print(line, file=sys.stderr))
    if truth_file is not None:
        return _truth_from_json(truth_file, paths, names, report)
    t = _truth_from_xml(paths, names, report)
    if t is not None:
        return t
    report("note: no truth file and no VOC XML beside the images: ground truth from the label files, "
           "without difficult flags")
    return _truth_from_labels(paths, report)
