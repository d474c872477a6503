"""Download Darknet's published weights (needs internet; nothing else in pydarknet downloads).

    download_weights.py NAME... [--dir DIR] [--sha256 HEX]
    download_weights.py --list
    download_weights.py --check FILE...

Each file is written under a temporary name beside its target, checked (its exact size, a
load into its cfg, its SHA-256 against DIR/SHA256SUMS) and only then renamed, so DIR never
holds a partial file under the final name.  Without network it says so and prints the URL to
fetch by hand and where to put the file; --check then verifies a file fetched that way.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from ..published import BASE_URL, PUBLISHED, DownloadError, default_weights_dir, describe_size, download, verify


def _list() -> None:
    rows = [(p.name, p.size_text, f"cfg/{p.cfg}" + (f" (first {p.cutoff} layers)" if p.cutoff else ""),
             p.title + ("" if p.cutoff else f", {p.classes} classes")) for p in PUBLISHED.values()]
    head = ("file", "bytes", "cfg", "what")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(3)]
    for row in [head] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[3])
    print(f"\nEach file is at {BASE_URL}NAME. 'A or B' bytes: which header the file has (16 or 20 "
          f"bytes) is not known, so either size is accepted.")


def _check(paths: list[str], sha256: str | None) -> int:
    status = 0
    for name in paths:
        path = Path(name)
        item = PUBLISHED.get(path.name)
        try:
            if item is None:
                what = describe_size(path.stat().st_size)
                raise ValueError(f"not a published file name ({', '.join(PUBLISHED)})"
                                 + (f"; by its size, {what}" if what else ""))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                digest = verify(path, item, sha256)
        except (OSError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: ok: {item.describe()}; sha256 {digest}")
    return status


def _fetch(name: str, dest: Path, sha256: str | None) -> Path:
    with tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=None, file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
        return download(name, dest, sha256, progress)


def main(argv=None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help="e.g. yolov2.weights (see --list)")
    ap.add_argument("--dir", type=Path, default=None,
                    help=f"where to put the files (default: {default_weights_dir()})")
    ap.add_argument("--sha256", help="expected SHA-256 of the file")
    ap.add_argument("--list", action="store_true", help="list the known files with their cfg and size")
    ap.add_argument("--check", nargs="+", metavar="FILE", help="verify files fetched by hand")
    args = ap.parse_args(argv)
    if args.check:
        return _check(args.check, args.sha256)
    if args.list or not args.names:
        _list()
        return 0
    unknown = [n for n in args.names if n not in PUBLISHED]
    if unknown:
        print(f"error: unknown weights {', '.join(map(repr, unknown))}; known: {', '.join(PUBLISHED)}",
              file=sys.stderr)
        return 2
    dest = args.dir if args.dir is not None else default_weights_dir()
    for name in args.names:
        try:
            path = _fetch(name, dest, args.sha256)
        except DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 1
        print(f"ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
