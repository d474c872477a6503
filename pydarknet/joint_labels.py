"""YOLO9000 joint training data: class-only label files for classification pictures.

YOLO9000 trains on detection pictures (boxes) and classification pictures (a class, no box)
in one list.  Darknet marks a classification picture by a label row centred at x = 0, y = 0:
``correct_boxes`` turns it into a 999999 box and the ``[region]`` layer with a WordTree
trains only the class part of that picture (``data.class_only_mask``).  The class id in such
a row is a WordTree node (e.g. a line of ``9k.names``/``9k.labels``): the region layer's
class-only branch does not apply ``map=`` (which maps box classes, e.g. ``coco9k.map``).

:func:`write_class_labels` writes, for each picture of a folder-of-classes dataset or a
list, the label file Darknet reads (``data.label_path``) holding one row ``ID 0 0 0 0``
(w and h are not read by Darknet; 0 says "no box").  The class of a picture is its
subfolder, or the one label of a classifier label list contained in its path (Darknet's
``fill_truth`` rule, ``classifier_data.match_labels``); it becomes a tree id through a
``.map`` file (line i: the id of label i, the format of Darknet's ``coco9k.map`` and
``inet9k.map``) or by name in a names list (``9k.labels`` for WordNet-id folders such as
ImageNet's, ``9k.names``) or the tree file.  Pictures
that cannot be used are reported by name, skipped and counted.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .classifier_data import match_labels
from .data import IMAGE_SUFFIXES, DataError, label_path, read_list, read_names
from .image import ImageError, image_size
from .progress import progress

__all__ = ["ClassLabelsResult", "class_only_line", "ClassIds", "find_pictures", "write_class_labels",
           "read_names_or_tree"]


def class_only_line(class_id: int) -> str:
    """The label line of a class-only picture: x = y = 0 is Darknet's marker, w = h = 0."""
    return f"{int(class_id)} 0 0 0 0\n"


@dataclass
class ClassLabelsResult:
    """What ``write_class_labels`` did: label files written / already as wanted, the pictures
    listed (ready for a detection ``train=`` list), and every picture skipped with its reason."""
    written: int = 0
    unchanged: int = 0
    listed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)     # class name -> pictures skipped
    classes: Counter = field(default_factory=Counter)     # tree id -> pictures listed
    notes: list[str] = field(default_factory=list)
    list_file: Path | None = None


class ClassIds:
    """Class name (or label index) -> WordTree id, by a ``.map`` file or a names list.

    ``mapping`` (``region_loss.read_map``'s list) is indexed by the position of the class in
    ``labels``; ``names`` are looked up by exact name, a name listed twice is ambiguous.
    ``limit``: ids must be below it (the tree's nodes, else the names' count).
    """

    def __init__(self, *, names: list[str] | None = None, mapping: list[int] | None = None,
                 labels: list[str] | None = None, limit: int | None = None, where: str = ""):
        if mapping is not None and labels is None:
            raise DataError("a .map file gives the ids of a label list's lines: give the label list too")
        if mapping is None and names is None:
            raise DataError("give a names list, a tree file or a .map file to find the tree ids")
        self.mapping, self.labels, self.where = mapping, labels, where
        self.limit = limit if limit is not None else (len(names) if names is not None else None)
        self.index: dict[str, int] = {}
        self.ambiguous: set[str] = set()
        for i, name in enumerate(names or []):
            if name in self.index:
                self.ambiguous.add(name)
            self.index.setdefault(name, i)
        self.label_index = {lab: i for i, lab in reversed(list(enumerate(labels or [])))}

    def lookup(self, name: str) -> tuple[int | None, str]:
        """(tree id, '') or (None, why not)."""
        if self.mapping is not None:
            i = self.label_index.get(name)
            if i is None:
                return None, f"class {name!r} is not in the label list"
            if i >= len(self.mapping):
                return None, f"class {name!r} is label {i} but the map file has {len(self.mapping)} lines"
            cid = self.mapping[i]
        elif name in self.ambiguous:
            return None, f"class {name!r} is listed more than once in {self.where or 'the names'}"
        elif name not in self.index:
            return None, f"class {name!r} is not in {self.where or 'the names'}"
        else:
            cid = self.index[name]
        if cid < 0 or (self.limit is not None and cid >= self.limit):
            return None, f"class {name!r} maps to {cid}, outside 0..{self.limit - 1 if self.limit else 0}"
        return cid, ""


def find_pictures(source) -> tuple[list[str], Path | None]:
    """(picture paths, dataset root): a folder's pictures in its class subfolders (sorted, any
    depth), or a list file's lines (root None)."""
    source = Path(source)
    if source.is_dir():
        pics = sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not pics:
            raise DataError(f"{source}: no pictures ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in its subfolders")
        return pics, source
    paths = read_list(source)
    if not paths:
        raise DataError(f"{source}: the list has no picture paths")
    return [_beside(p, source) for p in paths], None


def _beside(path: str, list_file: Path) -> str:
    if os.path.isabs(path) or os.path.exists(path):
        return path
    beside = list_file.parent / path
    return str(beside) if beside.exists() else path


def _class_name(path: str, root: Path | None, labels: list[str] | None) -> tuple[str | None, str]:
    """The picture's class: the one label contained in its path (relative to the dataset root),
    else its class subfolder (the parent folder for a list)."""
    rel = os.path.relpath(path, root) if root is not None else path
    if labels is not None:
        found = match_labels(rel, labels, len(labels))
        if len(found) == 1:
            return labels[found[0]], ""
        if not found:
            return None, "matches no label"
        return None, f"matches {len(found)} labels (" + ", ".join(labels[j] for j in found) + ")"
    parts = Path(rel).parts
    if root is not None and len(parts) < 2:
        return None, "is not in a class subfolder"
    return Path(path).parent.name if root is None else parts[0], ""


def _labels_root(lroot: Path, pics_root: Path) -> Path:
    """``lroot/images`` -> the pictures' folder (a symlink), checked so that Darknet's label rule
    maps ``lroot/images/...`` to ``lroot/labels/...``."""
    link = lroot / "images"
    probe = label_path(str(link / "x.jpg"))
    if probe != str(lroot / "labels" / "x.txt"):
        raise DataError(f"{lroot}: Darknet replaces the first 'images', 'JPEGImages' or 'raw' of a picture's "
                        f"path by 'labels', so it would look for the labels of {link / 'x.jpg'} at {probe}; "
                        f"choose a labels root whose path contains none of them")
    inside = os.path.realpath(lroot) + os.sep
    if inside.startswith(os.path.realpath(pics_root) + os.sep):
        raise DataError(f"{lroot}: the labels root is inside the pictures' folder {pics_root}; choose one outside")
    lroot.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if Path(os.path.realpath(link)) != Path(os.path.realpath(pics_root)):
            raise DataError(f"{link}: already a link to {os.readlink(link)}, not to {pics_root}; "
                            f"choose another labels root")
    elif link.exists():
        raise DataError(f"{link}: already exists and is not a link to {pics_root}; choose another labels root")
    else:
        try:
            link.symlink_to(pics_root.resolve(), target_is_directory=True)
        except OSError as e:
            raise DataError(f"{link}: cannot create a link to {pics_root} ({e.strerror})") from None
    return link


def _write_one(lpath: str, line: str, overwrite: bool) -> str:
    """'written', 'unchanged', or why the label file was not written."""
    p = Path(lpath)
    if p.exists():
        try:
            old = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            return f"its label file {lpath} exists and cannot be read ({e})"
        if old == line:
            return "unchanged"
        if not overwrite:
            return f"its label file {lpath} exists with other content (--overwrite replaces it)"
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(line)
    except OSError as e:
        return f"cannot write its label file {lpath} ({e.strerror})"
    return "written"


def write_class_labels(source, ids: ClassIds, *, labels: list[str] | None = None, labels_root=None,
                       list_file=None, overwrite: bool = False, check_pictures: bool = True,
                       show_progress: bool | None = None,
                       report: Callable[[str], None] | None = None) -> ClassLabelsResult:
    """Class-only label files for every picture of ``source`` (a folder of class subfolders or
    a list file) and a list of the pictures ready for a detection ``train=`` list.

    ``labels``: a classifier label list (the class is the one label contained in the path);
    otherwise the class subfolder's name.  ``labels_root``: write the labels under this folder
    (``DIR/labels/...``, the pictures listed as ``DIR/images/...`` through a link to the
    dataset, so the dataset need not be writable).  ``list_file``: where the list goes
    (default ``class_only.list`` in the labels root, else in the working directory).
    ``check_pictures``: decode each picture, skipping those that cannot be read.
    ``report`` gets one line per skipped picture, and one per unknown class.
    """
    report = report or (lambda line: None)
    pics, root = find_pictures(source)
    res = ClassLabelsResult()
    base = root if root is not None else Path(os.path.commonpath([os.path.abspath(p) for p in pics]))
    if base.is_file():
        base = base.parent
    link = _labels_root(Path(os.path.abspath(labels_root)), base) if labels_root is not None else None
    for path in progress(pics, desc="class labels", enabled=show_progress, unit="pic"):
        why = _label_picture(path, root, labels, ids, res, link=link, base=base, overwrite=overwrite,
                             check=check_pictures)
        if why:
            res.problems.append(f"{path}: {why}")
            report(f"warning: skipped {path}: {why}")
    for name, n in sorted(res.unknown.items()):
        report(f"warning: skipped {n} picture{'s' if n != 1 else ''} of class {name!r}: {ids.lookup(name)[1]}")
    odd = sum(label_path(p, darknet_exact=True) != label_path(p) for p in res.listed)
    if odd:
        res.notes.append(f"{odd} pictures have an extension Darknet's label rule does not know "
                         f"(only .jpg, .png, .JPG, .JPEG): pydarknet finds their labels, Darknet would not")
    default_dir = Path(os.path.abspath(labels_root)) if labels_root is not None else Path.cwd()
    res.list_file = Path(list_file) if list_file is not None else default_dir / "class_only.list"
    try:
        res.list_file.parent.mkdir(parents=True, exist_ok=True)
        res.list_file.write_text("".join(p + "\n" for p in res.listed))
    except OSError as e:
        raise DataError(f"{res.list_file}: cannot write the list ({e.strerror})") from None
    return res


def _label_picture(path: str, root: Path | None, labels, ids: ClassIds, res: ClassLabelsResult, *,
                   link: Path | None, base: Path, overwrite: bool, check: bool) -> str:
    """Write one picture's class-only label file and list it in ``res``; '' or why it was skipped
    (an unknown class is counted in ``res.unknown`` and reported once per class, not here)."""
    name, why = _class_name(path, root, labels)
    if name is None:
        return why
    cid, why = ids.lookup(name)
    if cid is None:
        res.unknown[name] += 1
        res.problems.append(f"{path}: {why}")
        return ""
    if check:
        try:
            image_size(path)
        except ImageError:
            return "cannot read the picture"
    listed = os.path.abspath(path)
    if link is not None:
        listed = str(link / os.path.relpath(listed, os.path.abspath(base)))
    lpath = label_path(listed)
    if lpath == listed:
        return "its label path would be the picture itself"
    if link is not None and not lpath.startswith(str(link.parent / "labels") + os.sep):
        return f"its label path {lpath} is outside {link.parent / 'labels'}"
    status = _write_one(lpath, class_only_line(cid), overwrite)
    if status not in ("written", "unchanged"):
        return status
    setattr(res, status, getattr(res, status) + 1)
    res.listed.append(listed)
    res.classes[cid] += 1
    return ""


def read_names_or_tree(path) -> list[str]:
    """Class names from a names/labels list, or the first column of a ``.tree`` file."""
    from .tree import read_tree
    path = Path(path)
    if path.suffix == ".tree":
        return read_tree(path).names
    return read_names(path)
