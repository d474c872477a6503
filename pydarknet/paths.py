"""The one rule for a file named inside another file (a list in a .data file, a tree in a cfg)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_beside"]


def resolve_beside(value, named_in) -> Path:
    """``value`` as given (relative to the working directory, as Darknet opens it) when it
    exists or is absolute, else relative to the folder of the file ``named_in`` when it exists
    there, else as given (so an error names what the file says)."""
    p = Path(value)
    if p.is_absolute() or p.exists() or named_in is None:
        return p
    beside = Path(os.fspath(named_in)).parent / p
    return beside if beside.exists() else p
