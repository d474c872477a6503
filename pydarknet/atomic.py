"""Whole-file writes that a crash or a concurrent reader never sees half done.

``atomic_write`` writes a temporary file beside the target, named
``<name>.<pid>.<random>.tmp`` after the writing process, fsyncs it and renames it over
the target.  A writer killed in between (``kill -9``, power loss) leaves its temporary
behind; the next write to the same target, or :func:`remove_dead_temporaries` on the
folder at the start of a run, deletes the temporaries whose writer process is no longer
alive, and never those of a live (concurrent) writer.
"""
from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write", "remove_dead_temporaries"]

# <target>.<pid>.<8 characters of tempfile's alphabet>.tmp
_TEMP = re.compile(r"(?P<target>.+)\.(?P<pid>[0-9]{1,10})\.[a-z0-9_]{8}\.tmp")
#: Temporaries without a pid (written before pids were recorded) count as dead after this long.
LEGACY_AGE = 3600.


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # someone else's live process
        return True
    except OSError:
        return True
    return True


def remove_dead_temporaries(folder, target: str | None = None) -> list[Path]:
    """Delete ``atomic_write`` temporaries in ``folder`` (of ``target`` only, if given) whose
    writer process is gone; returns what was removed."""
    removed = []
    pattern = f"{glob.escape(target)}.*.tmp" if target else "*.tmp"
    try:
        candidates = list(Path(folder).glob(pattern))
    except OSError:
        return removed
    now = time.time()
    for tmp in candidates:
        m = _TEMP.fullmatch(tmp.name)
        if m and target is not None and m.group("target") != target:
            continue
        try:
            if m:
                dead = not _alive(int(m.group("pid")))
            else:   # an older writer's name (<target>.<random>.tmp, no pid): only when clearly abandoned
                dead = target is not None and now - tmp.stat().st_mtime > LEGACY_AGE
            if dead and tmp.is_file():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass
    return removed


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``:
    readers (and a crash) see the old file or the new one, never half of one."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_dead_temporaries(folder, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
