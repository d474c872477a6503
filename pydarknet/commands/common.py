"""What the commands share: warnings and errors on stderr, input expansion, class names."""
from __future__ import annotations

import signal
import sys
import warnings
from pathlib import Path

from .. import data as datamod
from ..cfg import CfgError
from ..convert import ConvertError
from ..data import IMAGE_SUFFIXES, DataError
from ..image import ImageError
from ..weights import WeightsError

USER_ERRORS = (CfgError, WeightsError, DataError, ImageError, FileNotFoundError)
#: what converting a model file can meet: bad input, an unsupported conversion, an unwritable file
CONVERT_ERRORS = (ConvertError, CfgError, WeightsError, DataError, OSError)


def warn_to_stderr(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def setup_command() -> None:
    """Warnings as one line on stderr; ``cmd | head`` ends quietly, as a C program does."""
    warnings.showwarning = warn_to_stderr
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def fail(message, status: int = 2) -> int:
    """Print ``error: message`` on stderr and return the exit status."""
    print(f"error: {message}", file=sys.stderr)
    return status


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given, folders as their pictures (sorted), .txt files as lists of paths."""
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix.lower() == ".txt" and p.is_file():
            paths += datamod.read_list(p)
        else:
            paths.append(item)
    return paths


def class_names(args, net) -> list[str] | None:
    if args.names:
        return datamod.read_names(args.names)
    if args.data:
        return datamod.DataConfig.from_file(args.data).class_names()
    beside = Path(args.cfg).with_suffix(".names")
    return datamod.read_names(beside) if beside.is_file() else None
