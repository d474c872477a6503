"""What the package ships: our cfgs, names and data files (``cfg/`` in the repository) and the
offline demo model (``weights/``), found through the import system (``importlib``) when installed and
in the checkout when run from it."""
from __future__ import annotations

import os
import importlib.util
from pathlib import Path

__all__ = ["cfg_dir", "weights_dir", "shipped_cfg", "resolve_cfg"]

_CHECKOUT = Path(__file__).resolve().parents[2]


def _folder(package: str, checkout_name: str) -> Path:
    """The folder of a data package (a namespace package: the folder has no __init__.py)."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:   # a checkout that is not installed
        return _CHECKOUT / checkout_name
    return Path(list(spec.submodule_search_locations)[0])


def cfg_dir() -> Path:
    """The folder of the shipped cfg, .names and .data files."""
    return _folder("pydarknet.resources.cfg", "cfg")


def weights_dir() -> Path:
    """The folder of the shipped weights (the offline demo model)."""
    return _folder("pydarknet.resources.weights", "weights")


def shipped_cfg(name: str) -> Path | None:
    """The shipped cfg called ``name`` (``yolov2-voc`` or ``yolov2-voc.cfg``), or None."""
    if not name or os.sep in name or "/" in name:
        return None
    path = cfg_dir() / (name if name.endswith(".cfg") else name + ".cfg")
    return path if path.is_file() else None


def resolve_cfg(cfg) -> Path | str:
    """A cfg path as given when it exists, else a shipped cfg of that bare name, else as given
    (so the error names what the user wrote)."""
    if isinstance(cfg, (str, os.PathLike)) and not os.path.exists(cfg):
        found = shipped_cfg(os.fspath(cfg))
        if found is not None:
            return found
    return cfg
