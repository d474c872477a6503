"""Darknet's published weights: where they are, what they must look like, and a checked download.

pydarknet never downloads anything by itself; ``tools/download_weights.py`` does, on request.
Each file is checked before it is kept: its exact byte size (computed from the cfg it belongs
to), then a full load into that cfg (which rejects files for another network).  The SHA-256 of
every accepted file is recorded in ``weights/SHA256SUMS``; a later download of the same name
must match it, and ``--sha256`` checks against a sum you trust.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .network import Darknet
from .weights import Header, expected_size, read_header

__all__ = ["PUBLISHED", "Published", "download"]

ROOT = Path(__file__).resolve().parents[1]
BASE_URL = "https://pjreddie.com/media/files/"


@dataclass(frozen=True)
class Published:
    name: str
    cfg: str          # our cfg file it belongs to
    cutoff: int | None = None   # partial files hold the first N layers

    @property
    def url(self) -> str:
        return BASE_URL + self.name

    def size(self, header: Header = Header()) -> int:
        """Bytes of the file; the header's format (32- or 64-bit ``seen``) changes it by 4."""
        return expected_size(Darknet(ROOT / "cfg" / self.cfg, exact=False), self.cutoff, header)


PUBLISHED = {p.name: p for p in (
    Published("yolov2-voc.weights", "yolov2-voc.cfg"),
    Published("yolov2-tiny-voc.weights", "yolov2-tiny-voc.cfg"),
    Published("darknet19.weights", "darknet19.cfg"),
    Published("darknet19_448.weights", "darknet19_448.cfg"),
    Published("darknet19_448.conv.23", "darknet19_448.cfg", cutoff=23),
)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded(sums: Path) -> dict[str, str]:
    if not sums.is_file():
        return {}
    return {name: digest for digest, name in (line.split(None, 1) for line in sums.read_text().splitlines()
                                              if line.strip()) for name in [name.strip()]}


def verify(path: Path, item: Published, sha256: str | None = None, sums: Path | None = None) -> str:
    """Check a downloaded file; returns its SHA-256 or raises ValueError saying what is wrong."""
    size = path.stat().st_size
    with path.open("rb") as f:
        header = read_header(f.read(20), path)
    if size != item.size(header):
        raise ValueError(f"{path}: {size} bytes, but {item.name} for cfg/{item.cfg} has {item.size(header)}")
    net = Darknet(ROOT / "cfg" / item.cfg, exact=False)
    net.load_weights(path, cutoff=item.cutoff)
    digest = _sha256(path)
    if sha256 and digest != sha256.lower():
        raise ValueError(f"{path}: SHA-256 {digest} differs from the expected {sha256}")
    known = _recorded(sums).get(item.name) if sums else None
    if known and known != digest:
        raise ValueError(f"{path}: SHA-256 {digest} differs from the one recorded in {sums} ({known})")
    return digest


def download(name: str, dest_dir=ROOT / "weights", sha256: str | None = None, progress=None) -> Path:
    """Fetch one published file into ``dest_dir`` (atomically, after verification)."""
    if name not in PUBLISHED:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(PUBLISHED)}")
    item = PUBLISHED[name]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    sums = dest_dir / "SHA256SUMS"
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(item.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        digest = verify(Path(tmp), item, sha256, sums)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    recorded = _recorded(sums)
    recorded[name] = digest
    sums.write_text("".join(f"{d}  {n}\n" for n, d in sorted(recorded.items())))
    return target
