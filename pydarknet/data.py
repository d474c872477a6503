"""Darknet's data files: ``.data`` option files, ``.names`` label lists and image lists."""
from __future__ import annotations

from pathlib import Path

__all__ = ["DataError", "read_data_file", "read_names", "read_list", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A bad data file; the message names the file and line."""


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
