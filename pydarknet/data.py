"""Darknet's data files and the detection training data pipeline.

* ``.data`` option files (``read_data_file``, ``DataConfig`` with Darknet's defaults),
  ``.names`` label lists and image lists;
* label files: ``label_path`` (Darknet's image-to-label path rule) and ``read_labels``
  (validated ``class x y w h`` rows);
* ``DetectionDataset`` and ``detection_loader``: Darknet's detection training samples
  (``load_data_detection``, see ``pydarknet.augment``) drawn as ``train_detector``
  draws them, decoded in background workers, with the ``random=1`` multi-scale
  schedule (``MultiScale``).  Samples that cannot be loaded are skipped with a
  warning and counted instead of stopping a run.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .paths import resolve_beside

__all__ = ["DataError", "DataWarning", "read_data_file", "read_names", "read_list", "IMAGE_SUFFIXES",
           "DataConfig", "label_path", "read_labels", "class_only_mask", "ONLYCLASS_MIN", "multiscale_size",
           "MultiScale", "SampleKey",
           "DetectionDataset", "DetectionBatchSampler", "DetectionLoader", "detection_loader",
           "detection_options"]

#: a truth row with x and y above this is class-only (region_layer.c); correct_boxes makes such rows
#: 999999 from the label file's x = 0, y = 0 marker
ONLYCLASS_MIN = 100000

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A bad data file; the message names the file and line."""


class DataWarning(UserWarning):
    """A training sample was skipped (bad image or label file); the message says which and why."""


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what} file ({e})") from None


def read_data_file(path) -> dict[str, str]:
    """``key = value`` lines (Darknet's read_data_cfg): blanks removed, '#'/';' comment lines."""
    path = Path(path)
    options: dict[str, str] = {}
    for lineno, raw in enumerate(_read_text(path, ".data").splitlines(), 1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise DataError(f"{path}:{lineno}: expected key = value, got {raw.strip()!r}")
        options.setdefault(key, value)  # Darknet uses the first occurrence
    return options


def read_names(path) -> list[str]:
    """One class name per line (Darknet's get_labels keeps every line, blanks inside included)."""
    path = Path(path)
    names = [line.rstrip("\r") for line in _read_text(path, ".names").split("\n")]
    while names and not names[-1].strip():
        names.pop()
    if not names:
        raise DataError(f"{path}: no class names")
    return names


def read_list(path) -> list[str]:
    """A list file: one path per non-empty line."""
    path = Path(path)
    return [line.strip() for line in _read_text(path, "list").splitlines() if line.strip()]


# --- .data files -----------------------------------------------------------------------

@dataclass
class DataConfig:
    """A ``.data`` file with Darknet's defaults for the keys it leaves out.

    The defaults are ``train_detector``/``validate_detector``'s: ``classes=20``,
    ``train`` and ``valid`` ``data/train.list``, ``names`` ``data/names.list``,
    ``backup`` ``/backup/``, ``results`` ``results``, ``eval`` ``voc``; ``map`` and
    ``tree`` are None when absent.  Values are kept as written; ``resolve``
    turns one into a path.  ``options`` holds every key of the file.
    """

    classes: int = 20
    train: str = "data/train.list"
    valid: str = "data/train.list"
    names: str = "data/names.list"
    backup: str = "/backup/"
    results: str = "results"
    eval: str = "voc"
    map: str | None = None
    tree: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def from_file(cls, path) -> "DataConfig":
        path = Path(path)
        opts = read_data_file(path)
        cfg = cls(options=opts, path=path)
        for key in ("train", "valid", "names", "backup", "results", "eval", "map", "tree"):
            if key in opts:
                setattr(cfg, key, opts[key])
        if "classes" in opts:
            try:
                cfg.classes = int(opts["classes"])
            except ValueError:
                raise DataError(f"{path}: classes={opts['classes']!r} is not an integer") from None
            if cfg.classes < 1:
                raise DataError(f"{path}: classes={cfg.classes} must be positive")
        return cfg

    def resolve(self, value) -> Path:
        """A path named in the file: as given (relative to the working directory, as
        Darknet reads it) when it exists there, else relative to the ``.data`` file's
        folder when it exists there, else as given."""
        return resolve_beside(value, self.path)

    def train_list(self) -> list[str]:
        return read_list(self.resolve(self.train))

    def valid_list(self) -> list[str]:
        return read_list(self.resolve(self.valid))

    def class_names(self) -> list[str]:
        return read_names(self.resolve(self.names))


# --- label files -------------------------------------------------------------------------

# fill_truth_detection's find_replace chain; each replaces the first occurrence only.
_LABEL_REPLACEMENTS = (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"),
                       (".jpg", ".txt"), (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt"))


def label_path(image_path, *, darknet_exact: bool = False) -> str:
    """The label file of an image, as Darknet's ``fill_truth_detection`` derives it.

    The first ``images``, then ``JPEGImages``, then ``raw`` becomes ``labels``, and
    the first ``.jpg``, ``.png``, ``.JPG``, ``.JPEG`` becomes ``.txt`` (plain string
    replacement, anywhere in the path, as Darknet does).  Darknet knows no other
    extension: for ``x.jpeg`` or ``x.bmp`` it reads the image itself as its label
    file and finds no boxes.  Unless ``darknet_exact``, an image suffix still left
    at the end is replaced by ``.txt`` instead.
    """
    s = os.fspath(image_path)
    for orig, rep in _LABEL_REPLACEMENTS:
        s = s.replace(orig, rep, 1)
    if not darknet_exact:
        root, ext = os.path.splitext(s)
        if ext.lower() in IMAGE_SUFFIXES:
            s = root + ".txt"
    return s


def class_only_mask(labels) -> np.ndarray:
    """Which (K,5) ``[class, x, y, w, h]`` label rows are YOLO9000 class-only rows: x == 0 and y == 0.

    That is Darknet's class-only marker in a label file: ``correct_boxes`` turns such a row
    into a 999999 x 999999 box at (999999, 999999) (pjreddie/darknet commit 0d6b107, which
    added it together with the region layer's ``truth.x > 100000 && truth.y > 100000``
    class-only branch); the box survives ``fill_truth_detection``'s w/h filter, and a
    ``[region]`` layer with ``tree=`` then trains only the class of the picture.
    """
    labels = np.asarray(labels, dtype=np.float32).reshape(-1, 5)
    return (labels[:, 1] == 0) & (labels[:, 2] == 0)


def read_labels(path, classes: int | None = None, *, missing_ok: bool = False,
                class_only: bool = False) -> np.ndarray:
    """A label file's ``class x y w h`` lines as a (K,5) float32 array (K may be 0).

    Blank lines are ignored.  Raises ``DataError`` naming the file and line for a
    missing or unreadable file, a line without exactly five fields, a class that
    is not an integer in 0..classes-1, or a coordinate that is not a number in 0..1.

    A row centred at x = 0, y = 0 is Darknet's class-only marker (``class_only_mask``):
    accepted with ``class_only=True`` (a ``[region]`` layer with a WordTree ``tree=``,
    YOLO9000 joint training; its w and h are not read, as in Darknet), else an error, because without a
    tree Darknet's region layer indexes the 999999 box far out of bounds.  A row with x
    and y above 100000 written in the file is not a class-only row: Darknet's
    ``correct_boxes`` clips it to an empty box and drops it, so it stays an error here.
    """
    path = Path(path)
    if missing_ok and not path.is_file():   # an image without objects
        return np.zeros((0, 5), np.float32)
    rows = []
    for lineno, raw in enumerate(_read_text(path, "label").splitlines(), 1):
        fields = raw.split()
        if fields:
            rows.append(_label_row(fields, f"{path}:{lineno}", raw.strip(), classes, class_only))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def _label_row(fields: list[str], where: str, line: str, classes: int | None, class_only: bool) -> list:
    """One validated ``class x y w h`` row of ``read_labels``."""
    if len(fields) != 5:
        raise DataError(f"{where}: expected 'class x y w h', got {line!r}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise DataError(f"{where}: class {fields[0]!r} is not an integer: {line!r}") from None
    try:
        coords = [float(f) for f in fields[1:]]
    except ValueError:
        raise DataError(f"{where}: coordinates are not numbers: {line!r}") from None
    if cls < 0 or (classes is not None and cls >= classes):
        limit = f"0..{classes - 1}" if classes is not None else "0 or more"
        raise DataError(f"{where}: class {cls} out of range ({limit}): {line!r}")
    if coords[0] == 0 and coords[1] == 0:     # Darknet's class-only marker: w and h are never read
        if class_only:
            return [cls, *coords]
        raise DataError(f"{where}: box centre at x=0, y=0, Darknet's class-only (YOLO9000) marker, "
                        f"which only a [region] layer with tree= can train on (without one Darknet "
                        f"turns it into a 999999 box and indexes far out of bounds): {line!r}")
    bad = [name for name, v in zip("xywh", coords) if not 0 <= v <= 1]  # NaN fails too
    if bad:
        hint = ""
        if coords[0] > ONLYCLASS_MIN and coords[1] > ONLYCLASS_MIN:
            hint = (" (Darknet drops this row: its correct_boxes clips it to an empty box; a class-only "
                    "row is written 'class 0 0 0 0')")
        raise DataError(f"{where}: {', '.join(bad)} outside 0..1{hint}: {line!r}")
    return [cls, *coords]


# --- multi-scale training ------------------------------------------------------------------

def multiscale_size(batch_index: int, max_batches: int | None, rng: np.random.Generator) -> tuple[int, int]:
    """One ``random=1`` draw of ``train_detector``: a square size 320, 352, ..., 608.

    ``dim = (rand() % 10 + 10) * 32``, uniform over the ten sizes, except that
    once ``batch_index + 200 > max_batches`` (the last 200 batches) it is 608.
    ``batch_index`` is the current batch (``seen / imgs``) at the time of the
    draw; ``max_batches=None`` means no end.
    """
    dim = (int(rng.integers(10)) + 10) * 32
    if max_batches is not None and batch_index + 200 > max_batches:
        dim = 608
    return dim, dim


class MultiScale:
    """The input size of every training iteration, Darknet's ``random`` schedule.

    ``train_detector`` counts the iterations of its own run from 0 and on every
    10th (0, 10, 20, ...) draws a new size with ``multiscale_size`` for the
    current batch ``start_batch + iteration``; the size holds for the next 10
    iterations.  With ``random=False`` every iteration is ``(width, height)``.
    ``size(iteration)`` can be asked in any order: the draw of each block of
    10 comes from its own generator seeded by ``(seed, block's batch)``, so the
    loader's workers and the trainer agree on it without talking.
    """

    every = 10

    def __init__(self, width: int, height: int, max_batches: int | None = None, *, random: bool = True,
                 start_batch: int = 0, seed: int | None = None, stride: int = 1):
        self.stride = int(stride)   # batch numbers an iteration moves by (several processes)
        self.width, self.height = int(width), int(height)
        self.max_batches = max_batches
        self.random = bool(random)
        self.start_batch = int(start_batch)
        self.seed = int(np.random.SeedSequence().entropy if seed is None else seed)

    def size(self, iteration: int) -> tuple[int, int]:
        """(w, h) of iteration ``iteration`` (0-based, counted from this run's start)."""
        if not self.random:
            return self.width, self.height
        first = iteration - iteration % self.every
        batch = self.start_batch + first * self.stride
        return multiscale_size(batch, self.max_batches, np.random.default_rng([self.seed, 3, batch]))

    __call__ = size

    def changes_at(self, iteration: int) -> bool:
        """Whether Darknet resizes the network before iteration ``iteration``."""
        return self.random and iteration % self.every == 0

    def __repr__(self) -> str:
        return (f"MultiScale({self.width}x{self.height}, max_batches={self.max_batches}, random={self.random}, "
                f"start_batch={self.start_batch})")


# --- dataset and loader -------------------------------------------------------------------

class SampleKey(NamedTuple):
    """What a loader asks the dataset for: image ``index`` at ``width`` x ``height``,
    augmented with draws from ``numpy.random.default_rng(seed)``."""

    index: int
    width: int
    height: int
    seed: tuple


_LOAD_ERRORS = (OSError, ValueError)  # ImageError is an OSError, DataError a ValueError


def _describe(e: Exception) -> str:
    """One line for a load error (an OSError with a filename prints oddly by itself)."""
    if isinstance(e, OSError) and e.filename is not None:
        text = e.strerror or (e.args[0] if e.args else type(e).__name__)
        text = str(text)
        return text if os.fspath(e.filename) in text else f"{e.filename}: {text}"
    return str(e)


def _without_path(message: str, path: str) -> str:
    """``<path>: <message>``, the path once (load errors often start with it already)."""
    return message if message.startswith(f"{path}: ") or message.startswith(f"{path} ") else f"{path}: {message}"


class DetectionDataset(torch.utils.data.Dataset):
    """Detection training samples as Darknet's ``load_data_detection`` makes them.

    ``paths`` is a list file (one image path a line; relative paths are read
    from the working directory as Darknet does, or else from the list file's
    folder) or a sequence of image paths.  Each sample is ``(image, truth)``:
    a (3, height, width) float32 image and a (max_boxes, 5) float32 truth in
    Darknet's region layout ``[x, y, w, h, class]``, zero-padded.

    With ``augment=True`` the sample is augmented with Darknet's distributions
    (``pydarknet.augment``: jitter crop, hue/saturation/exposure, flip, box
    shuffle).  With ``augment=False`` it is deterministic: the image is
    ``letterbox``-ed (``fit="letterbox"``, what Darknet's validation and
    detection feed the network) or ``resize``-d (``fit="resize"``), the boxes
    are moved with it, and nothing is flipped, shuffled or recoloured.

    ``class_only=True`` (a ``[region]`` layer with a WordTree) accepts YOLO9000's
    class-only label rows (x = 0, y = 0; ``read_labels``); the augmentation leaves them
    as Darknet does, as ``[999999]*4`` truth rows.

    A sample whose image or label file cannot be used is replaced by a random
    other one, with a ``DataWarning``; ``skipped`` counts them and
    ``bad_samples`` maps each bad image path to the reason.  After
    ``max_retries`` failures in a row a ``DataError`` is raised.

    ``dataset[i]`` gives sample i at (width, height) with the next draws of the
    dataset's generator (one stream per process, by ``seed``, loader worker id
    and draw count).  ``dataset[SampleKey(...)]`` (the loader's way) gives
    ``(image, truth, skips)`` and leaves warning and counting to the caller.
    """

    def __init__(self, paths, width: int, height: int, classes: int | None = None, jitter: float = .2,
                 hue: float = 0., saturation: float = 1., exposure: float = 1., max_boxes: int = 30,
                 augment: bool = True, seed: int | None = None, *, fit: str = "letterbox",
                 max_retries: int = 100, class_only: bool = False):
        if isinstance(paths, (str, os.PathLike)):
            self.list_path: Path | None = Path(paths)
            self.paths = read_list(self.list_path)
            if not self.paths:
                raise DataError(f"{self.list_path}: list file has no image paths")
        else:
            self.list_path = None
            self.paths = [os.fspath(p) for p in paths]
            if not self.paths:
                raise DataError("no image paths given")
        if fit not in ("letterbox", "resize"):
            raise ValueError(f"fit must be 'letterbox' or 'resize', got {fit!r}")
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.classes = classes
        self.jitter, self.hue = float(jitter), float(hue)
        self.saturation, self.exposure = float(saturation or 1), float(exposure or 1)
        self.max_boxes = int(max_boxes)
        self.augment = bool(augment)
        self.fit = fit
        self.max_retries = int(max_retries)
        self.class_only = bool(class_only)
        self.seed = int(np.random.SeedSequence().entropy if seed is None else seed)
        self.skipped = 0
        self.bad_samples: dict[str, str] = {}
        self._draws = 0
        self._known_bad: dict[int, str] = {}
        self._reported: set[int] = set()

    def mark_bad(self, index: int, message: str) -> None:
        """Sample ``index`` was found unusable and reported before training (``scan_samples``):
        it is skipped from now on without being reported again."""
        self._known_bad[index] = message
        self._reported.add(index)

    def __len__(self) -> int:
        return len(self.paths)

    def image_path(self, index: int) -> str:
        """Path of image ``index``: as listed, or beside the list file if only found there."""
        p = self.paths[index]
        if self.list_path is not None and not os.path.isabs(p) and not os.path.exists(p):
            beside = os.path.join(self.list_path.parent, p)
            if os.path.exists(beside):
                return beside
        return p

    def load(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        """Image ``index`` (3,H,W) and its validated (K,5) ``[class, x, y, w, h]`` labels.

        Raises ``DataError`` / ``ImageError`` with the file (and line) at fault.
        """
        from .image import load_image

        path = self.image_path(index)
        image = load_image(path)  # a missing picture is reported as such, before its labels
        lpath = label_path(path)
        if not os.path.exists(lpath):
            raise DataError(f"{lpath}: no such label file (for image {path})")
        return image, read_labels(lpath, self.classes, class_only=self.class_only)

    def make_sample(self, img: torch.Tensor, labels: np.ndarray, width: int, height: int,
                    rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment (or fit) one loaded image and its labels into ``(image, truth)``."""
        from .augment import augment_detection, fit_detection

        if self.augment:
            image, truth, _ = augment_detection(img, labels, width, height, jitter=self.jitter, hue=self.hue,
                                                saturation=self.saturation, exposure=self.exposure,
                                                max_boxes=self.max_boxes, rng=rng)
            return image, truth
        return fit_detection(img, labels, width, height, fit=self.fit, max_boxes=self.max_boxes)

    def _get(self, index: int, width: int, height: int, rng: np.random.Generator):
        skips: list[tuple[str, str]] = []
        for _ in range(self.max_retries):
            try:
                if index in self._known_bad:
                    raise DataError(self._known_bad[index])
                img, labels = self.load(index)
            except _LOAD_ERRORS as e:
                msg = _describe(e)
                self._known_bad[index] = msg
                skips.append((index, self.paths[index], msg))
                index = int(rng.integers(len(self.paths)))
                continue
            image, truth = self.make_sample(img, labels, width, height, rng)
            return image, truth, skips
        self._report(skips)
        raise DataError(f"{self.max_retries} samples in a row could not be loaded; the last: "
                        f"{_without_path(skips[-1][2], skips[-1][1])}")

    def _report(self, skips) -> None:
        """Warn once per unusable sample (not again for one already reported, e.g. by scan_samples)."""
        for index, path, msg in skips:
            self.skipped += 1
            self.bad_samples.setdefault(path, msg)
            if index not in self._reported:
                self._reported.add(index)
                warnings.warn(f"skipped training sample {_without_path(msg, path)}", DataWarning, stacklevel=3)

    def __getitem__(self, key):
        if isinstance(key, SampleKey):
            return self._get(key.index, key.width, key.height, np.random.default_rng(key.seed))
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 1, worker.id + 1 if worker else 0, self._draws])
        self._draws += 1
        image, truth, skips = self._get(int(key), self.width, self.height, rng)
        self._report(skips)
        return image, truth


class DetectionBatchSampler(torch.utils.data.Sampler):
    """Batches of ``SampleKey``: which images, at what size, with which random seed.

    As ``train_detector``'s ``get_random_paths``, each batch picks ``batch_size``
    images uniformly at random with replacement (``replacement=False``: shuffled
    passes over the list instead).  Iteration k (0-based) is absolute batch
    ``schedule.start_batch + k``; its size is ``schedule.size(k)``, and its
    picks and augmentation seeds depend only on ``(seed, batch)``, so a run is
    the same whatever the number of workers.
    """

    def __init__(self, n: int, batch_size: int, schedule: MultiScale, seed: int,
                 iterations: int | None = None, *, replacement: bool = True):
        if n < 1 or batch_size < 1:
            raise ValueError(f"need images and a positive batch size, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.schedule = int(n), int(batch_size), schedule
        self.seed, self.iterations, self.replacement = int(seed), iterations, replacement
        self._perm: tuple[int, np.ndarray] | None = None

    def _shuffled(self, pos: int) -> int:
        epoch = pos // self.n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 4, epoch]).permutation(self.n))
        return int(self._perm[1][pos % self.n])

    def batch(self, k: int) -> list[SampleKey]:
        w, h = self.schedule.size(k)
        b = self.schedule.start_batch + k
        if self.replacement:
            picks = np.random.default_rng([self.seed, 2, b]).integers(self.n, size=self.batch_size)
        else:
            picks = [self._shuffled(b * self.batch_size + j) for j in range(self.batch_size)]
        return [SampleKey(int(i), w, h, (self.seed, 5, b, j)) for j, i in enumerate(picks)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        k = 0
        while self.iterations is None or k < self.iterations:
            yield self.batch(k)
            k += 1

    def __len__(self) -> int:
        if self.iterations is None:
            raise TypeError("an endless sampler has no length")
        return self.iterations


def _collate(items):
    images = torch.stack([it[0] for it in items])
    truths = torch.stack([it[1] for it in items])
    skips = [s for it in items for s in it[2]]
    return images, truths, skips


class DetectionLoader:
    """Iterates ``(images (B,3,H,W), truths (B,max_boxes,5))`` batches, one per training iteration.

    Wraps a ``torch.utils.data.DataLoader`` whose ``num_workers`` persistent
    worker processes decode and augment ahead (``prefetch_factor`` batches
    each), so the model does not wait on JPEG decoding.  H and W follow
    ``schedule`` (``MultiScale``); ``schedule.changes_at(k)`` tells the trainer
    when to resize the network, or it can just look at ``images.shape``.
    Skipped samples are warned about here, in the main process; ``skipped``
    counts them and ``bad_samples`` maps each bad image to its reason.
    """

    def __init__(self, dataset: DetectionDataset, sampler: DetectionBatchSampler, *, num_workers: int = 2,
                 prefetch_factor: int = 2, pin_memory: bool = False, multiprocessing_context=None):
        self.dataset, self.sampler, self.schedule = dataset, sampler, sampler.schedule
        kwargs = {}
        if num_workers > 0:
            kwargs = dict(persistent_workers=True, prefetch_factor=prefetch_factor,
                          multiprocessing_context=multiprocessing_context)
        self.loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                                  collate_fn=_collate, pin_memory=pin_memory, **kwargs)

    @property
    def skipped(self) -> int:
        return self.dataset.skipped

    @property
    def bad_samples(self) -> dict[str, str]:
        return self.dataset.bad_samples

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, truths, skips in self.loader:
            if skips:
                self.dataset._report(skips)
            yield images, truths

    def __len__(self) -> int:
        return len(self.sampler)


def detection_loader(paths, width: int, height: int, classes: int | None = None, jitter: float = .2,
                     hue: float = 0., saturation: float = 1., exposure: float = 1., max_boxes: int = 30,
                     augment: bool = True, seed: int | None = None, *, batch_size: int, num_workers: int = 2,
                     random: bool = False, max_batches: int | None = None, start_batch: int = 0,
                     iterations: int | None = None, prefetch_factor: int = 2, pin_memory: bool = False,
                     fit: str = "letterbox", replacement: bool = True, max_retries: int = 100,
                     multiprocessing_context=None, class_only: bool = False) -> DetectionLoader:
    """Darknet's detection training data: one ``(images, truths)`` batch per iteration.

    ``batch_size`` is the images of one iteration (Darknet's ``imgs`` = batch x
    subdivisions).  ``random`` turns on the multi-scale schedule (``MultiScale``,
    which needs ``max_batches`` for its last-200-batches rule).  The loader runs
    from batch ``start_batch`` (a resumed run: ``seen // imgs``) for
    ``iterations`` batches, by default up to ``max_batches``, endless when that
    is None.  ``seed`` fixes the whole stream (images, sizes, augmentation).
    ``class_only`` accepts YOLO9000 class-only label rows (see ``DetectionDataset``).
    """
    dataset = DetectionDataset(paths, width, height, classes, jitter, hue, saturation, exposure, max_boxes,
                               augment, seed, fit=fit, max_retries=max_retries, class_only=class_only)
    schedule = MultiScale(width, height, max_batches, random=random, start_batch=start_batch,
                          seed=dataset.seed)
    if iterations is None and max_batches is not None:
        iterations = max(0, max_batches - start_batch)
    sampler = DetectionBatchSampler(len(dataset), batch_size, schedule, dataset.seed, iterations,
                                    replacement=replacement)
    return DetectionLoader(dataset, sampler, num_workers=num_workers, prefetch_factor=prefetch_factor,
                           pin_memory=pin_memory, multiprocessing_context=multiprocessing_context)


def detection_options(net) -> dict:
    """``detection_loader`` keyword arguments from a network, as ``train_detector`` fills its ``args``.

    Size, hue, saturation, exposure and the images of one iteration
    (``batch`` x ``subdivisions``, Darknet's ``imgs``) come from ``[net]``;
    classes, jitter, ``max`` boxes and ``random`` from the detection layer;
    ``start_batch`` from ``net.seen``; ``class_only`` (YOLO9000 class-only label rows
    accepted) when the detection layer has a WordTree, the only case Darknet trains them.
    """
    o = net.options
    layer = getattr(net, "detection_layer", None) or net.layers[-1]
    imgs = (o.batch // o.subdivisions) * o.subdivisions
    return dict(width=o.width, height=o.height, classes=getattr(layer, "classes", None),
                jitter=getattr(layer, "jitter", .2), hue=o.hue, saturation=o.saturation, exposure=o.exposure,
                max_boxes=getattr(layer, "max_boxes", 30), batch_size=imgs,
                random=bool(getattr(layer, "random", False)), max_batches=o.max_batches or None,
                start_batch=int(getattr(net, "seen", 0)) // max(imgs, 1),
                class_only=getattr(layer, "tree", None) is not None)
