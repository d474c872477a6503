"""``voc_label``: VOC XML annotations -> Darknet label files, image lists, .names and .data.

    pydarknet voc_label VOC_ROOT [--labels-root DIR] ...
    python tools/voc_label.py VOC_ROOT [--labels-root DIR] ...
"""
from __future__ import annotations

import argparse
import sys

from ..data import DataError
from ..voc import convert_dataset
from .common import setup_command


def main(argv=None, prog: str = "voc_label.py") -> int:
    """``tools/voc_label.py``: exit 0 when everything converted, 1 when something was skipped,
    2 on a usage or layout error."""
    ap = argparse.ArgumentParser(
        prog=prog,
        description="VOC XML annotations -> Darknet label files, image lists, .names and .data "
                    "(Darknet's scripts/voc_label.py for any VOC-layout folder).",
        epilog="Label files go where Darknet looks for them: the image path with JPEGImages -> labels "
               "and the extension -> .txt. For a read-only dataset give --labels-root DIR: DIR gets "
               "symlinks JPEGImages/Annotations/ImageSets to the dataset, DIR/labels/ the labels, and "
               "the lists name the images through DIR/JPEGImages. Difficult objects are left out of "
               "the labels and kept in <set>_truth.json for tools/map.py.")
    ap.add_argument("voc_root", metavar="VOC_ROOT", help="folder with Annotations/, JPEGImages/, ImageSets/Main/")
    ap.add_argument("--out", metavar="DIR",
                    help="where the lists, .names, .data and truth files go (default: the labels root)")
    ap.add_argument("--labels-root", metavar="DIR",
                    help="write the labels/ tree here instead of VOC_ROOT (images reached by symlinks)")
    ap.add_argument("--classes", help="class names in id order, comma-separated, or a .names file "
                                      "(default: every name in the annotations, sorted)")
    ap.add_argument("--sets", help="image sets to convert, comma-separated (default: all of ImageSets/Main)")
    ap.add_argument("--name", help="base name of the .names/.data files (default: VOC_ROOT's folder name)")
    ap.add_argument("--train", metavar="SET", help="set named by train= (default trainval if there is a "
                                                   "test set, else train)")
    ap.add_argument("--valid", metavar="SET", help="set named by valid= (default test, else val)")
    ap.add_argument("--clip", action="store_true", help="clip boxes sticking out of the image instead of "
                                                        "skipping them")
    ap.add_argument("--ignore-unknown", action="store_true",
                    help="drop objects of classes not in --classes silently (converting a subset)")
    ap.add_argument("--copy-images", action="store_true",
                    help="with --labels-root: copy JPEGImages instead of symlinking it")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    args = ap.parse_args(argv)
    setup_command()
    try:
        res = convert_dataset(
            args.voc_root, out=args.out, classes=args.classes,
            sets=[s for s in args.sets.split(",") if s] if args.sets else None,
            labels_root=args.labels_root, name=args.name, train_set=args.train, valid_set=args.valid,
            clip=args.clip, ignore_unknown=args.ignore_unknown, copy_images=args.copy_images,
            show_progress=False if args.quiet else None)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        for note in res.notes:
            print(f"note: {note}", file=sys.stderr)
        sets = ", ".join(f"{s} {n}" for s, n in res.sets.items())
        print(f"{len(res.classes)} class{'es' if len(res.classes) != 1 else ''} ({', '.join(res.classes[:10])}{', ...' if len(res.classes) > 10 else ''}); "
              f"{res.labels_written} label files, {res.objects} boxes, {res.difficult} difficult kept for "
              f"evaluation only; sets: {sets}")
        print(f"data file: {res.data_file}")
        if res.problems:
            print(f"{len(res.problems)} problem(s): the files named above were skipped in part or whole",
                  file=sys.stderr)
    return 1 if res.problems else 0


if __name__ == "__main__":
    sys.exit(main())
