"""Darknet's published weights: the list, the checks on a downloaded file, the download's
failure modes (never the real network: urlopen is replaced), and a file recognised by its
size when it does not fit the cfg it is loaded into."""
from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_published_cfgs import shared_dir, synthetic_tree

from pydarknet import Darknet, WeightsError
from pydarknet.commands.download import main
from pydarknet.published import PUBLISHED, describe_size, identify, shipped_cfg_dir, verify
from pydarknet.tree import DATA_ENV
from pydarknet.weights import Header

ROOT = Path(__file__).resolve().parents[1]
REAL_TINY = shared_dir() / "real" / "tiny" / "tiny.weights"
# The YOLOv2-generation files pjreddie published (issue 14), each with a cfg we ship.
REQUIRED = ["yolov2.weights", "yolov2-tiny.weights", "yolov2-voc.weights", "yolov2-tiny-voc.weights",
            "yolo9000.weights", "darknet19.weights", "darknet19_448.weights", "darknet19_448.conv.23",
            "tiny.weights", "darknet.weights"]
# Sizes of the published files as seen outside this project (see pydarknet/published.py).
SEEN_SIZES = {"yolov2.weights": 203_934_260, "yolov2-tiny.weights": 44_948_600,
              "yolov2-voc.weights": 202_704_264, "yolov2-tiny-voc.weights": 63_471_556,
              "darknet19_448.conv.23": 79_327_120, "tiny.weights": 4_185_968}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs offline: a test that reaches for the network fails."""
    def refuse(*a, **k):
        raise AssertionError("a test tried to use the real network")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def recipe(name: str, folder: Path) -> Path:
    """A file of the published size, random values, written by pydarknet's save_weights."""
    item = PUBLISHED[name]
    header = Header(0, 1, 0) if (item.header or 16) == 16 else Header(0, 2, 0)
    path = folder / name
    Darknet(item.cfg_path, exact=False).save_weights(path, item.cutoff, header=header)
    assert path.stat().st_size == item.sizes[0]
    return path


# --- the list ----------------------------------------------------------------------------
def test_list_shows_each_file_once_with_its_cfg_and_size(capsys):
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, item in PUBLISHED.items():
        mine = [ln for ln in lines if ln.split()[:1] == [name]]
        assert len(mine) == 1, name
        assert f"cfg/{item.cfg}" in mine[0] and f"{item.sizes[0]:,}" in mine[0]
    assert set(REQUIRED) <= set(PUBLISHED)
    assert all(p.cfg_path.is_file() for p in PUBLISHED.values())
    assert main([]) == 0 and capsys.readouterr().out.count("yolov2.weights ") == 1


def test_sizes_seen_outside_match():
    for name, size in SEEN_SIZES.items():
        assert PUBLISHED[name].sizes == (size,), name


def test_unknown_name_is_a_usage_error(capsys):
    assert main(["yolov9.weights"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown weights 'yolov9.weights'" in err and "yolov2.weights" in err


# --- downloading, without network ----------------------------------------------------------
def test_offline_says_so_with_the_url_and_the_place(monkeypatch, tmp_path, capsys):
    def offline(url, *a, **k):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["yolov2.weights", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no network") and err.count("\n") == 1
    assert "https://pjreddie.com/media/files/yolov2.weights" in err
    assert str(tmp_path / "yolov2.weights") in err and "203,934,260 bytes" in err
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_not_called_offline(monkeypatch, tmp_path, capsys):
    def missing(url, *a, **k):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
    monkeypatch.setattr(urllib.request, "urlopen", missing)
    assert main(["tiny.weights", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "404 Not Found" in err and "no network" not in err and "tiny.weights by hand" in err
    assert list(tmp_path.iterdir()) == []


class FakeResponse(io.BytesIO):
    """urlopen's answer: the given bytes, then optionally a dropped connection."""

    def __init__(self, data: bytes, length: int, drop: bool = False):
        super().__init__(data)
        self.headers = {"Content-Length": str(length)}
        self.drop = drop

    def read(self, n=-1):
        block = super().read(n)
        if not block and self.drop:
            raise ConnectionResetError(104, "Connection reset by peer")
        return block


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return recipe("tiny.weights", tmp_path_factory.mktemp("tiny"))


def serve(monkeypatch, data: bytes, length: int, drop: bool = False):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: FakeResponse(data, length, drop))


def test_download_keeps_a_checked_file_and_records_its_digest(monkeypatch, tmp_path, tiny_file, capsys):
    data = tiny_file.read_bytes()
    serve(monkeypatch, data, len(data))
    assert main(["tiny.weights", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "tiny.weights").read_bytes() == data
    sums = (tmp_path / "SHA256SUMS").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}  tiny\.weights\n", sums)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256SUMS", "tiny.weights"]
    # a second run keeps the checked file without fetching it again
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("fetched again"))
    assert main(["tiny.weights", "--dir", str(tmp_path)]) == 0
    assert f"ready: {tmp_path / 'tiny.weights'}" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["dropped", "short"])
def test_a_partial_download_never_takes_the_final_name(monkeypatch, tmp_path, tiny_file, capsys, how):
    data = tiny_file.read_bytes()
    if how == "dropped":   # the connection breaks halfway
        serve(monkeypatch, data[: len(data) // 2], len(data), drop=True)
    else:                  # the server ends early without an error
        serve(monkeypatch, data[:-4096], len(data))
    assert main(["tiny.weights", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    if how == "dropped":
        assert "broke off after 2,092,984 bytes" in err and "https://pjreddie.com/media/files/tiny.weights" in err
    else:
        assert "4,185,968" in err
    assert list(tmp_path.iterdir()) == []


# --- checking a file -----------------------------------------------------------------------
def test_a_good_file_passes_and_its_digest_is_checked(tiny_file, tmp_path):
    item = PUBLISHED["tiny.weights"]
    digest = verify(tiny_file, item)
    assert len(digest) == 64
    assert verify(tiny_file, item, sha256=digest.upper()) == digest
    with pytest.raises(ValueError, match="differs from the expected"):
        verify(tiny_file, item, sha256="0" * 64)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'1' * 64}  tiny.weights\n")
    with pytest.raises(ValueError, match="recorded in"):
        verify(tiny_file, item, sums=sums)


def test_truncated_or_foreign_files_are_rejected(tiny_file, tmp_path):
    short = tmp_path / "short.weights"
    short.write_bytes(tiny_file.read_bytes()[:-4])
    with pytest.raises(ValueError, match="4,185,964 bytes, but tiny.weights has 4,185,968"):
        verify(short, PUBLISHED["tiny.weights"])
    # the right size but garbage: the load into the cfg rejects it (negative BN variance)
    junk = tmp_path / "junk.weights"
    data = np.frombuffer(tiny_file.read_bytes(), np.uint8).copy()
    data[16:] = np.random.default_rng(0).integers(0, 256, data.size - 16)
    junk.write_bytes(data.tobytes())
    with pytest.raises(WeightsError, match="not for"):
        verify(junk, PUBLISHED["tiny.weights"])


def test_check_a_file_fetched_by_hand(tiny_file, tmp_path, capsys):
    assert main(["--check", str(tiny_file)]) == 0
    assert "ok: the Tiny Darknet ImageNet classifier" in capsys.readouterr().out
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(tiny_file.read_bytes())
    assert main(["--check", str(renamed)]) == 1
    assert "by its size, this is the Tiny Darknet" in capsys.readouterr().err


def test_real_tiny_weights_is_recognised():
    if not REAL_TINY.is_file():
        pytest.skip(f"{REAL_TINY} not present (third-party weights are read from ../shared only)")
    assert REAL_TINY.stat().st_size in PUBLISHED["tiny.weights"].sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verify(REAL_TINY, PUBLISHED["tiny.weights"])
    with pytest.raises(WeightsError, match=r"this is the Tiny Darknet ImageNet classifier \(tiny.weights"):
        Darknet(shipped_cfg_dir() / "darknet.cfg", exact=False).load_weights(REAL_TINY)


# --- recognising a file by its size ------------------------------------------------------------
def test_every_published_size_is_recognised_by_name():
    for name, item in PUBLISHED.items():
        for size in item.sizes:
            assert item in identify(size)
            assert f"({name}: " in describe_size(size)
    assert describe_size(12345) == ""


def test_a_file_that_is_no_published_model_is_matched_to_a_shipped_cfg():
    demo = ROOT / "weights" / "shapes-tiny.weights"
    assert describe_size(demo.stat().st_size, shipped_cfg_dir() / "yolov2-tiny-voc.cfg") \
        == "its size fits cfg/shapes-tiny.cfg"
    assert describe_size(demo.stat().st_size, shipped_cfg_dir() / "shapes-tiny.cfg") == ""


# Each published file loaded into a cfg it does not fit; the large files are slow.
WRONG_CFG = {"yolov2-voc.weights": "yolov2.cfg", "darknet19_448.conv.23": "yolov2-tiny-voc.cfg"}
FAST = {"tiny.weights", "yolov2-tiny.weights", "darknet.weights"}


@pytest.fixture(scope="module")
def nets():
    cache = {}

    def get(cfg):
        if cfg not in cache:
            cache[cfg] = Darknet(shipped_cfg_dir() / cfg, exact=False)
        return cache[cfg]
    return get


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in PUBLISHED])
def test_mismatch_error_names_the_published_model(name, tmp_path, monkeypatch, nets):
    monkeypatch.setenv(DATA_ENV, str(synthetic_tree(tmp_path)))
    path = recipe(name, tmp_path)
    wrong = WRONG_CFG.get(name, "yolov2-voc.cfg")
    with pytest.raises(WeightsError) as e:
        nets(wrong).load_weights(path)
    msg = str(e.value)
    assert f"({name}: " in msg and f"cfg/{PUBLISHED[name].cfg}" in msg and wrong in msg
    assert re.search(r"expected \d+", msg)
