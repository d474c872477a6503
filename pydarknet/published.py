"""Darknet's published weights files: each known by name, byte size, cfg and what it is.

pjreddie published the YOLOv2-generation detectors and ImageNet classifiers as
``https://pjreddie.com/media/files/NAME``.  A file is a header (16 bytes: version 0.1.0 and a
32-bit ``seen``; 20 bytes: 0.2.0 and a 64-bit ``seen``) then ``floats`` float32 values, the
count our cfg implies (``tests/test_published_cfgs.py`` derives it from each cfg).  Which header a
file has is Darknet's version when pjreddie saved it, so it varies from file to file; where
a file's exact size has been seen (download logs, other loaders' size errors, the copy in
``../shared/real``) ``header`` records it, elsewhere both sizes are accepted.

``describe_size`` says what a file of a given size is (a published model, or a shipped cfg
it fits): ``weights.load_weights`` adds it to its errors about a file that does not fit.
pydarknet never downloads anything by itself; ``download`` does, on request (the
``download_weights`` command): into a temporary name beside the target, checked (exact
size, a load into its cfg, SHA-256 against ``SHA256SUMS``), then renamed.
"""
from __future__ import annotations

import functools
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from .resources import cfg_dir
from .weights import Header, expected_size, read_header

__all__ = ["PUBLISHED", "Published", "DownloadError", "NoNetworkError", "shipped_cfg_dir", "default_weights_dir",
           "identify", "describe_size", "verify", "download"]

BASE_URL = "https://pjreddie.com/media/files/"
HEADERS = (16, 20)   # bytes of a 0.1.0 (32-bit seen) and of a 0.2.0 (64-bit seen) header


def shipped_cfg_dir() -> Path:
    """The folder of the cfg files that come with pydarknet."""
    return cfg_dir()


def default_weights_dir() -> Path:
    """Where downloads go by default: ``weights/`` in the working directory (the checkout's
    own weights/ folder when run from it, as the README's commands are)."""
    return Path("weights")


@dataclass(frozen=True)
class Published:
    name: str
    cfg: str                    # our cfg file it belongs to, in shipped_cfg_dir()
    title: str                  # what it is, as a sentence's subject
    classes: int
    floats: int                 # float32 values after the header
    header: int | None = None   # header bytes where the file's exact size is known
    cutoff: int | None = None   # partial files hold the first N layers

    @property
    def url(self) -> str:
        return BASE_URL + self.name

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every size the file may have: one when known, else one per header format."""
        return tuple(h + 4 * self.floats for h in ((self.header,) if self.header else HEADERS))

    @property
    def size_text(self) -> str:
        return " or ".join(f"{s:,}" for s in self.sizes)

    @property
    def cfg_path(self) -> Path:
        return shipped_cfg_dir() / self.cfg

    def describe(self) -> str:
        if self.cutoff:
            return f"{self.title} ({self.name}: the first {self.cutoff} layers of cfg/{self.cfg})"
        return f"{self.title} ({self.name}: cfg/{self.cfg}, {self.classes} classes)"


# Exact sizes seen: yolov2.weights 203,934,260 and yolov2-tiny-voc.weights 63,471,556 (darkflow
# loading them), yolov2-voc.weights 202,704,264 and yolov2-tiny.weights 44,948,600 (darkflow's
# size errors on them), darknet19_448.conv.23 79,327,120, tiny.weights 4,185,968 (../shared/real).
PUBLISHED = {p.name: p for p in (
    Published("yolov2.weights", "yolov2.cfg", "the COCO YOLOv2", 80, 50_983_561, header=16),
    Published("yolov2-tiny.weights", "yolov2-tiny.cfg", "the COCO Tiny YOLOv2", 80, 11_237_145, header=20),
    Published("yolov2-voc.weights", "yolov2-voc.cfg", "the VOC YOLOv2", 20, 50_676_061, header=20),
    Published("yolov2-tiny-voc.weights", "yolov2-tiny-voc.cfg", "the VOC Tiny YOLOv2", 20, 15_867_885,
              header=16),
    Published("yolo9000.weights", "yolo9000.cfg", "YOLO9000", 9418, 48_807_501),
    Published("darknet19.weights", "darknet19.cfg", "the Darknet-19 ImageNet classifier", 1000, 20_856_776),
    Published("darknet19_448.weights", "darknet19_448.cfg", "the Darknet-19 448x448 ImageNet classifier", 1000,
              20_856_776),
    Published("darknet19_448.conv.23", "darknet19_448.cfg",
              "Darknet-19's pretrained convolutional layers, YOLOv2's training start", 1000, 19_831_776,
              header=16, cutoff=23),
    Published("tiny.weights", "tiny.cfg", "the Tiny Darknet ImageNet classifier", 1000, 1_046_488, header=16),
    Published("darknet.weights", "darknet.cfg", "the Darknet Reference ImageNet classifier", 1000, 7_323_480),
    Published("extraction.weights", "extraction.cfg", "the Extraction ImageNet classifier", 1000, 23_455_400),
)}


def identify(size: int) -> list[Published]:
    """The published files a file of ``size`` bytes may be (several when they share a graph)."""
    return [p for p in PUBLISHED.values() if size in p.sizes]


@functools.lru_cache(maxsize=None)
def _cfg_floats(cfg: Path) -> int | None:
    """Float count of a shipped cfg (built on the meta device: no memory, no init), None when
    it does not build here (yolo9000.cfg without its tree file)."""
    import torch

    from .network import Darknet  # here: network imports weights, which calls describe_size
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            net = Darknet(cfg, exact=False)
        return (expected_size(net, None, Header(0, 1, 0)) - 16) // 4
    except Exception:  # noqa: BLE001 - any cfg that does not build simply fits nothing
        return None


def describe_size(size: int, cfg_path=None) -> str:
    """What a weights file of ``size`` bytes is, for an error about it not fitting ``cfg_path``:
    the published model(s) of that size, else the shipped cfg(s) it fits, else ''."""
    found = identify(size)
    if found:
        return "this is " + " or ".join(p.describe() for p in found)
    own = Path(cfg_path).resolve() if cfg_path else None
    fits = [f"cfg/{c.name}" for c in sorted(shipped_cfg_dir().glob("*.cfg"))
            if c.resolve() != own and any(size == h + 4 * (_cfg_floats(c) or -1) for h in HEADERS)]
    return f"its size fits {' and '.join(fits)}" if fits else ""


# --- checking and downloading ----------------------------------------------------------------
class DownloadError(OSError):
    """The transfer failed; the message says how to fetch the file by hand."""


class NoNetworkError(DownloadError):
    """The server could not be reached."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded(sums: Path) -> dict[str, str]:
    if not sums.is_file():
        return {}
    pairs = (line.split(None, 1) for line in sums.read_text().splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def verify(path, item: Published, sha256: str | None = None, sums: Path | None = None) -> str:
    """Check a file against its published description; returns its SHA-256 or raises
    ValueError (or WeightsError, a ValueError) saying what is wrong."""
    from .network import Darknet
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        header = read_header(f.read(20), path)
    want = header.nbytes + 4 * item.floats
    if size != want or size not in item.sizes:
        what = describe_size(size)
        raise ValueError(f"{path}: {size:,} bytes, but {item.name} has {item.size_text}"
                         + (f" ({what})" if what else ""))
    try:
        net = Darknet(item.cfg_path, exact=False)
    except Exception as e:  # noqa: BLE001 - the size check stands; say why the load was skipped
        warnings.warn(f"{path}: not loaded into cfg/{item.cfg} ({e}); its size is right", stacklevel=2)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a partial file (conv.23) warns that it is partial
            net.load_weights(path, cutoff=item.cutoff)
    digest = _sha256(path)
    if sha256 and digest != sha256.lower():
        raise ValueError(f"{path}: SHA-256 {digest} differs from the expected {sha256}")
    known = _recorded(sums).get(item.name) if sums else None
    if known and known != digest:
        raise ValueError(f"{path}: SHA-256 {digest} differs from the one recorded in {sums} ({known})")
    return digest


def _fetch(url: str, out, progress) -> None:
    """Copy ``url`` into the open file ``out``.  NoNetworkError when the server cannot be
    reached, DownloadError when the transfer breaks off; HTTPError passes through."""
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as e:
        raise NoNetworkError(f"no network: cannot reach {url} ({getattr(e, 'reason', e)})") from None
    done = 0
    with response:
        total = int(response.headers.get("Content-Length") or 0)
        while True:
            try:
                block = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"the download of {url} broke off after {done:,} bytes ({e})") from None
            if not block:
                return
            out.write(block)
            done += len(block)
            if progress:
                progress(done, total)


def fetch_by_hand(item: Published, target: Path) -> str:
    """What to do when the download cannot happen here."""
    return (f"Download {item.url} by hand (a browser, or wget/curl on a machine with internet) "
            f"and save it as {target} ({item.size_text} bytes); then check it with "
            f"`download_weights.py --check {target}`")


def download(name: str, dest_dir=None, sha256: str | None = None, progress=None) -> Path:
    """Fetch one published file into ``dest_dir``: written under a temporary name in that
    folder, verified, then renamed, so the final name only ever holds a checked file.  A file
    already there that passes the checks is kept as it is."""
    if name not in PUBLISHED:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(PUBLISHED)}")
    item = PUBLISHED[name]
    dest_dir = Path(dest_dir) if dest_dir is not None else default_weights_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    sums = dest_dir / "SHA256SUMS"
    if target.is_file():  # already fetched: keep it if it checks out, else fetch it again
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                verify(target, item, sha256, sums)
            return target
        except (OSError, ValueError):
            pass
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                _fetch(item.url, out, progress)
            except DownloadError as e:
                raise type(e)(f"{e}. {fetch_by_hand(item, target)}") from None
            except urllib.error.HTTPError as e:
                raise OSError(f"{item.url}: the server answered {e.code} {e.reason}; "
                              f"{fetch_by_hand(item, target)}") from None
        digest = verify(Path(tmp), item, sha256, sums)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp's 0600 -> what a plain open() would give
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    recorded = _recorded(sums)
    recorded[name] = digest
    sums.write_text("".join(f"{d}  {n}\n" for n, d in sorted(recorded.items())))
    return target
