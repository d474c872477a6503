"""The one progress bar of the library: tqdm on stderr, drawn only when stderr is a terminal."""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

__all__ = ["progress"]

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", enabled: bool | None = None,
             unit: str = "it") -> Iterator[T]:
    """Yield ``items`` with a tqdm bar; ``enabled=None`` draws it only on a terminal."""
    return iter(tqdm(items, total=total, desc=desc or None, unit=unit, leave=False, dynamic_ncols=True,
                     disable=None if enabled is None else not enabled))
