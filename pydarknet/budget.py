"""How much memory a cfg may ask for: checked from the inferred shapes before any tensor exists.

A mistyped ``filters=655360`` or ``width=416000`` would otherwise make torch try to allocate
tens of gigabytes (or overflow its size arithmetic).  The estimate of a network is its
parameters (float32) plus every layer's output for one image, the memory an inference
needs; a layer or a network above the budget is a :class:`~pydarknet.cfg.CfgError` naming
the cfg line and the size.
"""
from __future__ import annotations

import os
import re

__all__ = ["DEFAULT_BUDGET", "memory_budget", "parse_size", "format_size"]

#: Default budget: 2 GiB, ~3x what the largest published YOLOv2 model (yolov2-voc at 608x608) needs.
DEFAULT_BUDGET = 2 << 30
ENV = "PYDARKNET_MEMORY_BUDGET"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1000000"`` -> bytes (binary units); ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]?)i?B?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"{text!r} is not a size such as 4G, 512M or 1000000")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_size(n: int) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = _UNITS[unit[0]]
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def memory_budget(budget: int | str | None = None) -> int:
    """The budget in bytes: ``budget`` if given, else ``$PYDARKNET_MEMORY_BUDGET``, else 2 GiB."""
    if budget is None:
        budget = os.environ.get(ENV) or DEFAULT_BUDGET
    if isinstance(budget, str):
        try:
            budget = parse_size(budget)
        except ValueError as e:
            raise ValueError(f"{ENV}: {e}") from None
    return int(budget)
