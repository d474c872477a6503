"""Bad input never costs a traceback, a hang, memory or data: hostile cfgs and special files,
Darknet-exact number reading, the memory budget, and clipped messages (bench/reliability/
has the long runs)."""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydarknet.cfg import CfgError, Option, Section
from pydarknet.network import Darknet

ROOT = Path(__file__).resolve().parents[1]
SHAPES = (ROOT / "cfg" / "shapes-tiny.cfg").read_text()


def section(text: str) -> Section:
    return Section("convolutional", "convolutional", 1, "x.cfg", options={"k": Option(text, 2)})


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        pytest.skip("no C library to compare with")
    libc = ctypes.CDLL(name)
    libc.atoi.argtypes, libc.atoi.restype = [ctypes.c_char_p], ctypes.c_int
    libc.strtod.argtypes, libc.strtod.restype = [ctypes.c_char_p, ctypes.c_void_p], ctypes.c_double
    return libc


NUMBERISH = st.text(alphabet="0123456789+-.eExXinfaINFA\uff13\u0663_ ,", max_size=14)


# --- numbers: Darknet's atoi/atof, or a clear error -------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(NUMBERISH)
def test_integers_are_atoi_or_an_error(text):
    try:
        value = section(text).get_int("k")
    except CfgError as e:
        assert "x.cfg:2" in str(e)
        return
    assert value == _libc().atoi(text.encode())


@settings(max_examples=300, deadline=None)
@given(NUMBERISH)
def test_numbers_are_atof_or_an_error(text):
    try:
        value = section(text).get_float("k")
    except CfgError as e:
        assert "x.cfg:2" in str(e)
        return
    assert math.isfinite(value) and value == _libc().strtod(text.encode(), None)


@pytest.mark.parametrize("text, darknet", [("\uff13", 0), ("3x", 3), ("", 0), ("1_000", 1), ("0x10", 0),
                                           ("2147483648", None), ("1.5", 1)])
def test_texts_darknet_reads_differently_are_errors_saying_what_darknet_reads(text, darknet):
    with pytest.raises(CfgError, match=r"x\.cfg:2: .*k=") as e:
        section(text).get_int("k")
    if darknet is not None:
        assert f"Darknet's atoi would read {darknet})" in str(e.value)


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "1e309", "0x1p3", "\u0663"])
def test_non_finite_and_odd_numbers_are_errors(text):
    with pytest.raises(CfgError, match=r"x\.cfg:2: "):
        section(text).get_float("k")


# --- hostile cfgs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("old, new, what", [
    ("hue=0.1", "hue=nan", "hue=nan: not a finite number"),
    ("momentum=0.9", "momentum=-3", "momentum=-3: must be at least 0"),
    ("anchors=0.754719", "anchors=-0.754719", "each value must be at least 0"),
    ("pad=1", "pad=\uff13", "pad=\uff13: expected an integer (Darknet's atoi would read 0)"),
    ("filters=16", "filters=-16", "filters=-16: must be at least 1"),
    ("num=5", "num=100000000", "num=100000000: must lie in 1..65536"),
    ("batch=16", "batch=0", "batch=0: must be at least 1"),
])
def test_impossible_values_are_errors_naming_the_line(old, new, what):
    assert old in SHAPES
    text = SHAPES.replace(old, new, 1)
    line = text[:text.index(new)].count("\n") + 1
    start = time.perf_counter()
    with pytest.raises(CfgError) as e:
        Darknet("x.cfg", text=text)
    assert f"x.cfg:{line}: " in str(e.value) and what in str(e.value)
    assert time.perf_counter() - start < 10   # num=100000000 builds no default anchor list first


def test_a_second_net_section_is_an_error_naming_its_line():
    text = SHAPES + "\n[net]\nwidth=3\n"
    line = text.count("\n") - 1
    with pytest.raises(CfgError, match=rf"x\.cfg:{line}: \[net\] a second \[net\] section"):
        Darknet("x.cfg", text=text)


def test_long_values_are_clipped_in_messages():
    text = SHAPES.replace("filters=16", "filters=" + "9" * 1_000_000, 1).replace("size=3", "size=" + "x" * 100_000, 1)
    with pytest.raises(CfgError) as e:
        Darknet("x.cfg", text=text)
    assert len(str(e.value)) < 300 and "1000008 characters" not in str(e.value)


def test_the_memory_budget_is_checked_before_allocating():
    huge = SHAPES.replace("filters=256", "filters=600000", 1)   # 600000x128x3x3 kernels: 2.6 GiB
    before = huge[:huge.index("filters=600000")]
    line = before[:before.rindex("[convolutional]")].count("\n") + 1     # the section's line
    start = time.perf_counter()
    with pytest.raises(CfgError, match=rf"x\.cfg:{line}: \[convolutional\] its parameters would need 2\.6 GiB "
                                       r".* over the memory budget of 2\.0 GiB"):
        Darknet("x.cfg", text=huge)
    assert time.perf_counter() - start < 10     # refused before the 2.6 GiB were allocated
    net = Darknet("x.cfg", text=SHAPES)
    assert 4 << 20 < net.memory_estimate < 64 << 20      # 4 MB of weights, ~7 MB of activations
    with pytest.raises(CfgError, match="over the memory budget of 4.0 MiB"):
        Darknet("x.cfg", text=SHAPES, memory_budget="4M")


def test_the_memory_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PYDARKNET_MEMORY_BUDGET", "1M")
    with pytest.raises(CfgError, match="memory budget of 1.0 MiB"):
        Darknet("x.cfg", text=SHAPES)
    monkeypatch.setenv("PYDARKNET_MEMORY_BUDGET", "lots")
    with pytest.raises(CfgError, match="PYDARKNET_MEMORY_BUDGET"):
        Darknet("x.cfg", text=SHAPES)


OPTION_LINES = [i for i, line in enumerate(SHAPES.split("\n")) if "=" in line and not line.startswith("#")]
VALUES = st.one_of(st.text(max_size=12), st.integers(-2**40, 2**40).map(str), st.floats().map(repr),
                   st.sampled_from(["nan", "\uff13", "3x", "", "1e309", "65536", "100000000", "-1", "0"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPTION_LINES), VALUES), min_size=1, max_size=3))
def test_mutated_cfgs_build_or_raise_a_cfg_error(edits):
    lines = SHAPES.split("\n")
    for i, value in edits:
        lines[i] = lines[i].split("=", 1)[0] + "=" + value
    try:
        Darknet("x.cfg", text="\n".join(lines), exact=False, memory_budget="256M")
    except CfgError as e:
        assert str(e).startswith("x.cfg") and len(str(e)) < 2000


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_cfg_file_are_a_cfg_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "x.cfg"
    path.write_bytes(data)
    with pytest.raises(CfgError):
        Darknet(path)


def _build_in_thread(path, seconds: float = 20.):
    """Darknet(path) in a thread: the error it raised, or 'hang' when it did not return in time."""
    out = []

    def run():
        try:
            Darknet(path)
            out.append(None)
        except Exception as e:  # noqa: BLE001 - the test looks at what it is
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return out[0] if out else "hang"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_special_files_are_clear_errors_without_blocking(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "fifo.cfg")
    (tmp_path / "dir.cfg").mkdir()
    (tmp_path / "big.cfg").write_text(SHAPES)
    cases = {tmp_path / "fifo.cfg": "is a FIFO", tmp_path / "dir.cfg": "is a directory",
             Path("/dev/zero"): "is a device", tmp_path / "nope.cfg": "no such cfg file"}
    for path, what in cases.items():
        e = _build_in_thread(path)
        assert isinstance(e, CfgError) and what in str(e), (path, e)
    monkeypatch.setenv("PYDARKNET_MAX_CFG_BYTES", "1000")
    e = _build_in_thread(tmp_path / "big.cfg")
    assert isinstance(e, CfgError) and "larger than the 1000-byte limit" in str(e)
