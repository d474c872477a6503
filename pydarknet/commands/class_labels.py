"""``class_labels``: YOLO9000 class-only label files for a folder-of-classes dataset.

    pydarknet class_labels DATASET|LIST (--names 9k.labels | --tree 9k.tree | --labels L --map M)
                           [--labels-root DIR] [--list OUT.list] [--overwrite] [--no-check]
    python tools/class_labels.py ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import DataError
from ..joint_labels import ClassIds, read_names_or_tree, write_class_labels
from ..labels import read_label_list
from ..region_loss import read_map
from ..tree import read_tree
from .common import fail, setup_command


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Class-only label files (Darknet's 'ID 0 0 0 0' rows) for classification pictures, so "
                    "they can join a detection train= list for YOLO9000 joint training with a [region] "
                    "layer that has tree=.",
        epilog="The class of a picture is its class subfolder, or with --labels the one label of that "
               "classifier label list found in its path (as `classifier train` finds it). It becomes a tree "
               "id by name in --names (9k.labels for WordNet ids such as n02084071, or 9k.names) or --tree, "
               "or through --map (line i: the tree id of --labels' line i, the format of Darknet's coco9k.map). "
               "The ids "
               "are tree nodes: Darknet does not apply the [region] layer's map= to class-only rows. Label "
               "files go where Darknet looks (images -> labels, extension -> .txt); --labels-root DIR puts "
               "them under DIR/labels and lists the pictures as DIR/images/... through a link.")
    ap.add_argument("source", metavar="DATASET|LIST", help="folder with one subfolder per class, or a list file")
    ap.add_argument("--names", metavar="FILE", help="names list whose line numbers are the tree ids "
                                                   "(9k.labels, 9k.names, or a .tree file)")
    ap.add_argument("--tree", metavar="FILE", help="the WordTree (.tree): ids checked against it; its node "
                                                   "names are used when --names is not given")
    ap.add_argument("--labels", metavar="FILE", help="classifier label list: a picture's class is the one "
                                                     "label contained in its path")
    ap.add_argument("--map", metavar="FILE", help=".map file: line i is the tree id of --labels' line i")
    ap.add_argument("--labels-root", metavar="DIR", help="write the labels under DIR (dataset left untouched)")
    ap.add_argument("--list", metavar="FILE", help="list of the labelled pictures, to append to train= "
                                                   "(default: class_only.list in DIR, else here)")
    ap.add_argument("--overwrite", action="store_true", help="replace label files that hold something else")
    ap.add_argument("--no-check", action="store_true", help="do not open every picture to check it reads")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings or summary")
    return ap


def _class_ids(args) -> tuple[ClassIds, list[str] | None]:
    tree = read_tree(args.tree) if args.tree else None
    labels = read_label_list(args.labels) if args.labels else None
    names = read_names_or_tree(args.names) if args.names else (tree.names if tree is not None else None)
    mapping = read_map(args.map) if args.map else None
    where = args.names or args.tree or ""
    limit = tree.n if tree is not None else None
    return ClassIds(names=names, mapping=mapping, labels=labels, limit=limit, where=where), labels


def main(argv=None, prog: str = "class_labels.py") -> int:
    """Exit 0 when every picture got its label file, 1 when some were skipped, 2 on a usage error."""
    args = _parser(prog).parse_args(argv)
    setup_command()
    if not (args.names or args.tree or args.map):
        return fail("give --names, --tree or --map (with --labels) to find the tree ids")
    report = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    try:
        ids, labels = _class_ids(args)
        res = write_class_labels(args.source, ids, labels=labels, labels_root=args.labels_root,
                                 list_file=args.list, overwrite=args.overwrite, check_pictures=not args.no_check,
                                 show_progress=False if args.quiet else None, report=report)
    except (DataError, ValueError, OSError) as e:
        return fail(e)
    if not res.listed:
        return fail(f"{args.source}: none of the pictures could be labelled ({len(res.problems)} skipped)", 1)
    if not args.quiet:
        for note in res.notes:
            print(f"note: {note}", file=sys.stderr)
        unknown = sum(res.unknown.values())
        print(f"{len(res.listed)} pictures of {len(res.classes)} classes labelled class-only "
              f"({res.written} written, {res.unchanged} unchanged); {len(res.problems)} skipped"
              + (f", {unknown} of them of {len(res.unknown)} unknown classes" if unknown else ""))
        print(f"list: {res.list_file} (append it to the detection train= list)")
    return 1 if res.problems else 0


if __name__ == "__main__":
    sys.exit(main())
