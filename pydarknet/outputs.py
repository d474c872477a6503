"""Where results go, so that no run overwrites another input's result or an earlier run's log.

* :func:`result_names` gives each detect input its own output name, derived from its path
  relative to the inputs' common folder (``a/x.jpg`` -> ``a/x.jpg``, ``b/x.jpg`` ->
  ``b/x.jpg``); inputs that would still share a name (``good.jpg``, ``good.png``,
  ``good.bmp`` -> ``good.jpg``) keep their extension in it (``good_jpg.jpg``,
  ``good_png.jpg``, ``good_bmp.jpg``), and any name still taken gets ``_2``, ``_3`` ... in
  input order.  The same list of inputs always gives the same names.
* :func:`keep_aside` moves an existing file to the first free ``<stem>.<N><suffix>``
  (``yolo_log.csv`` -> ``yolo_log.1.csv``) instead of letting a new run truncate it.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["result_names", "keep_aside"]


def _common_root(paths: list[str]) -> str:
    parents = [os.path.dirname(p) for p in paths]
    try:
        return os.path.commonpath(parents)
    except ValueError:      # different drives (Windows): no common folder
        return ""


def result_names(paths, suffix: str = ".jpg") -> list[Path]:
    """One relative output path per input path, all different unless the inputs are the same file."""
    absolute = [os.path.abspath(os.fspath(p)) for p in paths]
    root = _common_root(absolute)
    rel = [Path(os.path.relpath(p, root) if root else Path(p).name) for p in absolute]
    names = [r.with_name(r.stem + suffix) for r in rel]

    def key(p: Path) -> str:        # case-insensitive file systems count Good.jpg = good.jpg
        return str(p).casefold()

    # inputs (distinct files) sharing a name keep their extension in it
    owners: dict[str, set] = {}
    for name, src in zip(names, absolute):
        owners.setdefault(key(name), set()).add(src)
    for i, (name, r) in enumerate(zip(names, rel)):
        if len(owners[key(name)]) > 1 and r.suffix:
            names[i] = r.with_name(f"{r.stem}_{r.suffix[1:]}{suffix}")
    # anything still taken by another input: _2, _3 ... in input order
    taken: dict[str, str] = {}
    for i, (name, src) in enumerate(zip(names, absolute)):
        candidate, n = name, 1
        while taken.get(key(candidate), src) != src:
            n += 1
            candidate = name.with_name(f"{name.stem}_{n}{name.suffix}")
        taken[key(candidate)] = src
        names[i] = candidate
    return names


def keep_aside(path) -> Path | None:
    """Move ``path`` (if it exists) to the first free ``<stem>.<N><suffix>``; returns the new path.

    The move never replaces a file (``os.link`` fails on an existing name), so two runs
    keeping aside at once both keep theirs."""
    path = Path(path)
    if not path.exists():
        return None
    for n in range(1, 1_000_000):
        target = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if target.exists():
            continue
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except OSError:                 # no hard links here: a rename after the check
            if target.exists():
                continue
            os.replace(path, target)
            return target
        os.unlink(path)
        return target
    raise OSError(f"{path}: no free name to keep it aside")
