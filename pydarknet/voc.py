"""PASCAL VOC layout -> Darknet training files (what Darknet's ``scripts/voc_label.py`` does).

A VOC-layout folder holds ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
``ImageSets/Main/<set>.txt`` (one image id per line).  :func:`convert_dataset` writes

* one Darknet label file per image, ``class x y w h`` (centre and size relative to the image,
  computed with voc_label.py's exact arithmetic, -1 included, see :func:`convert_box`), at the
  path Darknet derives from the image path (:func:`pydarknet.data.label_path`: ``JPEGImages`` -> ``labels``,
  extension -> ``.txt``).  ``difficult`` objects are left out of these files, as voc_label.py
  does, so that training never sees them;
* ``<set>_truth.json`` per set: the ground truth for evaluation, every object with its
  pixel box exactly as in the XML (VOC's 1-based pixel coordinates) and its ``difficult`` flag
  (see :func:`read_truth_json`; :mod:`pydarknet.eval` reads it);
* ``<set>.txt`` per set: absolute image paths, one per line (Darknet's list files);
* ``<name>.names`` and ``<name>.data`` (``classes``, ``train``, ``valid``, ``names``,
  ``backup`` and, a pydarknet extension Darknet ignores, ``valid_truth``).

Read-only datasets (``--labels-root``): Darknet finds a label file only through the image's
path, so the label tree must sit beside the images.  With ``labels_root=DIR`` the images are
made reachable under DIR (``DIR/JPEGImages`` becomes a symlink to the real folder, as do
``Annotations`` and ``ImageSets``), the labels go to ``DIR/labels/`` and the list files name
``DIR/JPEGImages/<file>``; DIR is then a complete VOC-layout folder of its own.

Problems (unreadable XML, an unknown class name, a box outside the image, a missing image)
are reported one line each, naming the file; the rest is converted.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .data import IMAGE_SUFFIXES, DataError, read_names
from .data import label_path
from .image import ImageError, image_size
from .progress import progress

__all__ = [
    "VocError",
    "VocObject",
    "VocAnnotation",
    "ConvertResult",
    "parse_annotation",
    "convert_box",
    "unconvert_box",
    "image_id",
    "find_image",
    "find_sets",
    "read_truth_json",
    "convert_dataset",
    "progress",
]

TRUTH_FORMAT = "pydarknet-voc-truth/1"


class VocError(DataError):
    """A VOC annotation or layout problem; the message names the file."""


# --------------------------------------------------------------------------- boxes
def convert_box(size: tuple[float, float], box: Sequence[float]) -> tuple[float, float, float, float]:
    """voc_label.py's ``convert((w, h), (xmin, xmax, ymin, ymax))`` -> relative (x, y, w, h).

    Same operations in the same order (double precision), the ``- 1`` of the centre included
    (it maps VOC's 1-based pixel centre to 0-based).
    """
    dw = 1.0 / size[0]
    dh = 1.0 / size[1]
    x = (box[0] + box[1]) / 2.0 - 1
    y = (box[2] + box[3]) / 2.0 - 1
    w = box[1] - box[0]
    h = box[3] - box[2]
    return (x * dw, y * dh, w * dw, h * dh)


def unconvert_box(size: tuple[float, float], xywh: Sequence[float]) -> tuple[float, float, float, float]:
    """The inverse of :func:`convert_box`: relative (x, y, w, h) -> VOC pixel (xmin, ymin, xmax, ymax)."""
    W, H = float(size[0]), float(size[1])
    cx, cy = xywh[0] * W + 1, xywh[1] * H + 1
    bw, bh = xywh[2] * W, xywh[3] * H
    return (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)


# --------------------------------------------------------------------------- paths
def image_id(path: str | os.PathLike) -> str:
    """Darknet's ``basecfg``: the file name up to its first dot (the id in comp4 result files)."""
    name = os.fspath(path).rsplit("/", 1)[-1]
    return name.split(".", 1)[0]


def find_image(root: Path, ident: str, filename: str | None = None) -> Path | None:
    """``JPEGImages/<id>.jpg`` (voc_label.py's choice), else ``<id>`` with another picture
    extension, else the XML's ``<filename>``."""
    folder = root / "JPEGImages"
    cand = folder / f"{ident}.jpg"
    if cand.is_file():
        return cand
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        cand = folder / f"{ident}{suffix}"
        if cand.is_file():
            return cand
    if filename:
        cand = folder / Path(filename).name
        if cand.is_file():
            return cand
    return None


def find_sets(root: Path) -> list[str]:
    """Image sets in ``ImageSets/Main``: the ``.txt`` files of one id per line (VOC's per-class
    files ``<class>_<set>.txt`` have two columns and are left out)."""
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        return []
    sets = []
    for f in sorted(main.glob("*.txt")):
        first = next((ln.split() for ln in f.read_text(errors="replace").splitlines() if ln.strip()), None)
        if first is not None and len(first) == 1:
            sets.append(f.stem)
    return sets


def _read_set(root: Path, name: str) -> list[str]:
    path = root / "ImageSets" / "Main" / f"{name}.txt"
    try:
        return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise VocError(f"{path}: no such image set") from None


# --------------------------------------------------------------------------- annotations
@dataclass
class VocObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass
class VocAnnotation:
    path: Path
    filename: str | None
    width: int
    height: int
    objects: list[VocObject]


def _text(elem, tag: str, path: Path, what: str) -> str:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise VocError(f"{path}: {what} has no <{tag}>")
    return child.text.strip()


def parse_annotation(path: str | os.PathLike, image_size: Callable[[], tuple[int, int]] | None = None
                     ) -> VocAnnotation:
    """Read one VOC XML file.  Raises :class:`VocError` naming the file when it cannot be used.

    When ``<size>`` is missing or zero, ``image_size()`` (if given) supplies (width, height).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise VocError(f"{path}: bad XML ({e})") from None
    except OSError as e:
        raise VocError(f"{path}: cannot read ({e.strerror})") from None
    if root.tag != "annotation":
        raise VocError(f"{path}: not a VOC annotation (root element <{root.tag}>)")
    width = height = 0
    size = root.find("size")
    try:
        if size is not None:
            width = int(float(_text(size, "width", path, "<size>")))
            height = int(float(_text(size, "height", path, "<size>")))
    except ValueError:
        raise VocError(f"{path}: <size> width/height are not numbers") from None
    except VocError:
        width = height = 0
    if width <= 0 or height <= 0:
        if image_size is None:
            raise VocError(f"{path}: no usable <size> (width {width}, height {height})")
        width, height = image_size()
    fn = root.find("filename")
    objects = []
    for i, obj in enumerate(root.iter("object"), 1):
        what = f"object {i}"
        name = _text(obj, "name", path, what)
        diff = obj.find("difficult")
        try:
            difficult = diff is not None and diff.text is not None and int(diff.text.strip() or 0) == 1
        except ValueError:
            raise VocError(f"{path}: {what} ({name}): <difficult> is not 0/1") from None
        bnd = obj.find("bndbox")
        if bnd is None:
            raise VocError(f"{path}: {what} ({name}) has no <bndbox>")
        try:
            coords = [float(_text(bnd, k, path, f"{what} ({name}) <bndbox>"))
                      for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise VocError(f"{path}: {what} ({name}): <bndbox> coordinates are not numbers") from None
        objects.append(VocObject(name, *coords, difficult=difficult))
    return VocAnnotation(path, fn.text.strip() if fn is not None and fn.text else None, width, height, objects)


def box_problem(obj: VocObject, width: int, height: int) -> str | None:
    """Why a box cannot be used, or None.  Boxes may touch the border in either pixel convention
    (0-based or VOC's 1-based, so coordinates in [0, W+1]); beyond that they are 'outside'."""
    if not all(math.isfinite(v) for v in obj.box):
        return "non-finite coordinates"
    if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
        return "empty box (max <= min)"
    if obj.xmin < 0 or obj.ymin < 0 or obj.xmax > width + 1 or obj.ymax > height + 1:
        return f"box outside the {width}x{height} image"
    return None


def _clip(obj: VocObject, width: int, height: int) -> VocObject | None:
    x1, y1 = max(obj.xmin, 1.0), max(obj.ymin, 1.0)
    x2, y2 = min(obj.xmax, float(width)), min(obj.ymax, float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return VocObject(obj.name, x1, y1, x2, y2, obj.difficult)


# --------------------------------------------------------------------------- truth json
def read_truth_json(path: str | os.PathLike) -> dict:
    """A ``<set>_truth.json`` written by :func:`convert_dataset`::

        {"format": "pydarknet-voc-truth/1", "classes": [names...],
         "images": [{"id": "<image id>", "path": "<image path as in the list>", "width": W,
                     "height": H, "objects": [[class_id, xmin, ymin, xmax, ymax, difficult], ...]}]}

    Boxes are the XML's VOC pixel coordinates (1-based, inclusive); ``difficult`` is 0/1.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such truth file") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read truth file ({e})") from None
    if doc.get("format") != TRUTH_FORMAT:
        raise DataError(f"{path}: not a {TRUTH_FORMAT} file")
    return doc


# --------------------------------------------------------------------------- conversion
@dataclass
class ConvertResult:
    classes: list[str]
    sets: dict[str, int] = field(default_factory=dict)  # set -> images listed
    list_files: dict[str, str] = field(default_factory=dict)
    truth_files: dict[str, str] = field(default_factory=dict)
    names_file: str | None = None
    data_file: str | None = None
    labels_written: int = 0
    objects: int = 0  # written to label files
    difficult: int = 0  # kept for evaluation only
    problems: list[str] = field(default_factory=list)  # one line per skipped file/object
    notes: list[str] = field(default_factory=list)  # harmless remarks

    @property
    def ok(self) -> bool:
        return not self.problems


def _parse_classes(classes) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        p = Path(classes)
        if p.is_file():
            return read_names(p)
        classes = [c.strip() for c in str(classes).split(",")]
    out = [c for c in classes if c]
    if not out:
        raise VocError("no class names given")
    if len(set(out)) != len(out):
        raise VocError(f"duplicate class names in {out}")
    return out


def _link_tree(src: Path, dst: Path, copy: bool, result: ConvertResult) -> None:
    """Make ``dst`` (a folder of the labels root) show ``src``: a symlink, or a copy."""
    if os.path.lexists(dst):
        if dst.is_symlink():
            if Path(os.readlink(dst)) == src:
                return
            dst.unlink()
            result.notes.append(f"{dst}: symlink replaced (now -> {src})")
        else:
            return  # a real folder the user made: used as it is
    if copy:
        shutil.copytree(src, dst)
    else:
        try:
            dst.symlink_to(src, target_is_directory=True)
        except OSError as e:
            raise VocError(f"{dst}: cannot create a symlink to {src} ({e.strerror}); "
                           "use copy_images=True (--copy-images)") from None


def _pick(sets: Sequence[str], choices: Sequence[str]) -> str | None:
    return next((c for c in choices if c in sets), None)


def convert_dataset(
    voc_root,
    out=None,
    classes=None,
    sets: Sequence[str] | None = None,
    labels_root=None,
    name: str | None = None,
    train_set: str | None = None,
    valid_set: str | None = None,
    clip: bool = False,
    ignore_unknown: bool = False,
    copy_images: bool = False,
    show_progress: bool | None = None,
    report: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Convert a VOC-layout folder; see the module docstring for what is written.

    ``out``: folder for the lists, ``.names``, ``.data`` and truth files (default: the labels
    root).  ``labels_root``: where the ``labels/`` tree goes (default ``voc_root``; another folder
    gets symlinks to the images, see the module docstring).  ``classes``: names in class-id
    order, a comma-separated string or a ``.names`` file (default: every name in the chosen
    sets' annotations, sorted).  ``sets``: image sets (default: all of ``ImageSets/Main``, or
    one set ``all`` of every annotation when there is no ``ImageSets/Main``).  ``train_set`` /
    ``valid_set``: the sets named in the ``.data`` file (default ``trainval`` with ``test``,
    else ``train``; ``test``, else ``val``).  ``clip``: clip boxes that stick out of the image
    instead of skipping them.  ``ignore_unknown``: objects of classes not in ``classes`` are
    dropped silently (for a subset of the classes) instead of being reported as problems.
    ``report(line)`` receives each problem as it happens (default: print to stderr).
    """
    report = report or (lambda line: print(line, file=sys.stderr))
    root = Path(os.path.abspath(voc_root))
    for sub in ("Annotations", "JPEGImages"):
        if not (root / sub).is_dir():
            raise VocError(f"{root}: no {sub}/ folder (not a VOC-layout dataset)")
    lroot = Path(os.path.abspath(labels_root)) if labels_root is not None else root
    out_dir = Path(os.path.abspath(out)) if out is not None else lroot
    set_ids = _image_sets(root, sets)
    result = ConvertResult(classes=[])

    def problem(line: str) -> None:
        result.problems.append(line)
        report(line)

    label_dir = _prepare_labels_root(root, lroot, copy_images, result)
    all_ids = list(dict.fromkeys(i for ids in set_ids.values() for i in ids))
    parsed = _parse_annotations(root, all_ids, show_progress, problem, result)
    class_list = _parse_classes(classes)
    if class_list is None:
        class_list = sorted({o.name for ann, _ in parsed.values() for o in ann.objects})
        if not class_list:
            raise VocError(f"{root}: no objects in any annotation")
    result.classes = class_list
    truth = _write_labels(parsed, lroot, label_dir, class_list, clip, ignore_unknown, show_progress, problem, result)
    _write_lists(out_dir, set_ids, truth, class_list, result)
    _write_names_and_data(out_dir, name or root.name, set_ids, train_set, valid_set, result)
    return result


def _image_sets(root: Path, sets: Sequence[str] | None) -> dict[str, list[str]]:
    """The image ids of each set: the named ones, else all of ImageSets/Main, else ``all``."""
    names = list(sets) if sets else find_sets(root)
    if names:
        set_ids = {s: _read_set(root, s) for s in names}
    else:
        set_ids = {"all": sorted(p.stem for p in (root / "Annotations").glob("*.xml"))}
    if not any(set_ids.values()):
        raise VocError(f"{root}: no images in sets {list(set_ids)}")
    return set_ids


def _prepare_labels_root(root: Path, lroot: Path, copy_images: bool, result: ConvertResult) -> Path:
    """Make the images reachable from the labels root (Darknet finds labels through the image
    path) and check that Darknet's path rule leads to ``<lroot>/labels``."""
    lroot.mkdir(parents=True, exist_ok=True)
    if lroot != root:
        for sub in ("JPEGImages", "Annotations", "ImageSets"):
            if (root / sub).is_dir():
                _link_tree(root / sub, lroot / sub, copy_images and sub == "JPEGImages", result)
    label_dir = lroot / "labels"
    probe = label_path(str(lroot / "JPEGImages" / "x.jpg"), darknet_exact=True)
    if probe != str(label_dir / "x.txt"):
        raise VocError(f"{lroot}: Darknet replaces the first 'images' or 'raw' in an image path by 'labels', "
                       f"so it would look for the labels of {lroot / 'JPEGImages' / 'x.jpg'} at {probe}; "
                       "use --labels-root DIR with a DIR whose path contains neither")
    return label_dir


def _parse_annotations(root: Path, ids: list[str], show_progress, problem, result: ConvertResult) -> dict:
    """id -> (annotation, image path) for every usable annotation, each parsed once."""
    parsed: dict[str, tuple[VocAnnotation, Path]] = {}
    for ident in progress(ids, desc="annotations", enabled=show_progress):
        xml = root / "Annotations" / f"{ident}.xml"
        if not xml.is_file():
            problem(f"{xml}: no annotation for image id {ident!r}; image skipped")
            continue

        def size_from_image(ident=ident, xml=xml):
            img = find_image(root, ident)
            if img is None:
                raise VocError(f"{xml}: no usable <size> and no image to measure")
            result.notes.append(f"{xml}: no usable <size>; size read from {img.name}")
            try:
                return image_size(img)
            except ImageError as e:
                raise VocError(str(e)) from None

        try:
            ann = parse_annotation(xml, size_from_image)
        except VocError as e:
            problem(f"{e}; image skipped")
            continue
        img = find_image(root, ident, ann.filename)
        if img is None:
            problem(f"{xml}: no image {ident}.* in {root / 'JPEGImages'}; image skipped")
            continue
        parsed[ident] = (ann, img)
    return parsed


def _label_rows(ann: VocAnnotation, class_list: list[str], clip: bool, ignore_unknown: bool, problem,
                result: ConvertResult) -> tuple[list[str], list[list]]:
    """(label file lines, truth objects) of one annotation; difficult objects only in the truth."""
    index = {c: i for i, c in enumerate(class_list)}
    lines, objs = [], []
    for obj in ann.objects:
        if obj.name not in index:
            if not ignore_unknown:
                problem(f"{ann.path}: unknown class {obj.name!r} (not in {class_list}); object skipped")
            continue
        why = box_problem(obj, ann.width, ann.height)
        if why is not None:
            fixed = _clip(obj, ann.width, ann.height) if clip and "outside" in why else None
            if fixed is None:
                problem(f"{ann.path}: {obj.name} {obj.box}: {why}; object skipped")
                continue
            result.notes.append(f"{ann.path}: {obj.name} {obj.box} clipped to the image")
            obj = fixed
        cid = index[obj.name]
        objs.append([cid, obj.xmin, obj.ymin, obj.xmax, obj.ymax, int(obj.difficult)])
        if obj.difficult:
            result.difficult += 1
            continue
        bb = convert_box((ann.width, ann.height), (obj.xmin, obj.xmax, obj.ymin, obj.ymax))
        lines.append(str(cid) + " " + " ".join(str(a) for a in bb) + "\n")
    return lines, objs


def _write_labels(parsed: dict, lroot: Path, label_dir: Path, class_list, clip, ignore_unknown, show_progress,
                  problem, result: ConvertResult) -> dict[str, dict]:
    """One label file per image where Darknet will look for it; returns the per-image truth."""
    truth: dict[str, dict] = {}
    label_dir.mkdir(parents=True, exist_ok=True)
    for ident in progress(list(parsed), desc="labels", enabled=show_progress):
        ann, img = parsed[ident]
        listed = lroot / "JPEGImages" / img.name
        lpath = label_path(str(listed), darknet_exact=True)
        if lpath != str(label_dir / (img.stem + ".txt")):
            problem(f"{ann.path}: Darknet would look for the labels of {listed} at {lpath} (it maps only "
                    f".jpg/.png/.JPG/.JPEG picture names to .txt); image skipped (convert or rename the picture)")
            continue
        lines, objs = _label_rows(ann, class_list, clip, ignore_unknown, problem, result)
        Path(lpath).write_text("".join(lines))
        result.labels_written += 1
        result.objects += len(lines)
        truth[ident] = {"id": image_id(listed), "path": str(listed), "width": ann.width,
                        "height": ann.height, "objects": objs}
    return truth


def _write_lists(out_dir: Path, set_ids: dict, truth: dict, class_list, result: ConvertResult) -> None:
    """``<set>.txt`` image lists and ``<set>_truth.json`` ground truth, per set."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(ch.isspace() for ch in str(out_dir)):
        result.notes.append(f"{out_dir}: the path has blanks; Darknet (and read_data_file) strip blanks "
                            "from .data values, so the .data file will not work as written")
    for s, ids in set_ids.items():
        kept = [truth[i] for i in ids if i in truth]
        list_file = out_dir / f"{s}.txt"
        list_file.write_text("".join(t["path"] + "\n" for t in kept))
        truth_file = out_dir / f"{s}_truth.json"
        head = json.dumps({"format": TRUTH_FORMAT, "classes": class_list, "set": s})[:-1]
        truth_file.write_text(head + ', "images": [\n' + ",\n".join(json.dumps(t) for t in kept) + "\n]}\n")
        result.sets[s] = len(kept)
        result.list_files[s] = str(list_file)
        result.truth_files[s] = str(truth_file)


def _write_names_and_data(out_dir: Path, name: str, set_ids: dict, train_set, valid_set,
                          result: ConvertResult) -> None:
    """``<name>.names`` and ``<name>.data`` (train/valid sets chosen as in the docstring)."""
    names_file = out_dir / f"{name}.names"
    names_file.write_text("".join(c + "\n" for c in result.classes))
    result.names_file = str(names_file)
    set_names = list(set_ids)
    tr = train_set or (_pick(set_names, ["trainval"]) if "test" in set_names else None) \
        or _pick(set_names, ["train", "trainval"]) or set_names[0]
    va = valid_set or _pick(set_names, ["test", "val"]) or tr
    for s in (tr, va):
        if s not in set_ids:
            raise VocError(f"set {s!r} is not among the converted sets {set_names}")
    backup = out_dir / "backup"
    backup.mkdir(exist_ok=True)
    data_file = out_dir / f"{name}.data"
    data_file.write_text(
        f"classes = {len(result.classes)}\n"
        f"train = {result.list_files[tr]}\n"
        f"valid = {result.list_files[va]}\n"
        f"names = {names_file}\n"
        f"backup = {backup}\n"
        f"# pydarknet: ground truth of the valid set for tools/map.py (Darknet ignores this key)\n"
        f"valid_truth = {result.truth_files[va]}\n"
    )
    result.data_file = str(data_file)
# --------------------------------------------------------------------------- command line
