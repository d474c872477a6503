"""No output or log lost: detect result names, a training log kept aside, dead writers'
temporaries removed; image errors keep their reason and name the path once."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pydarknet.atomic import atomic_write, remove_dead_temporaries
from pydarknet.engine import CsvLog
from pydarknet.image import ImageError, load_image
from pydarknet.outputs import keep_aside, result_names

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "cfg" / "shapes-tiny.cfg"
WEIGHTS = ROOT / "weights" / "shapes-tiny.weights"


def test_result_names_never_collide_and_are_deterministic(tmp_path):
    inputs = [tmp_path / p for p in ("good.jpg", "good.png", "good.bmp", "a/x.jpg", "b/x.jpg", "good_png.jpg",
                                     "c/Y.JPG", "c/y.jpg")]
    names = result_names(inputs)
    assert [str(n) for n in names] == ["good_jpg.jpg", "good_png.jpg", "good_bmp.jpg", "a/x.jpg", "b/x.jpg",
                                       "good_png_2.jpg", "c/Y_JPG.jpg", "c/y_jpg_2.jpg"]
    assert len({str(n).casefold() for n in names}) == len(inputs)
    assert result_names(inputs) == names
    assert result_names([tmp_path / "a/x.jpg", tmp_path / "a/x.jpg"]) == [Path("x.jpg")] * 2   # same file


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / f"w.backup.{_dead_pid()}.abcd_123.tmp"
    live = tmp_path / f"w.backup.{os.getppid()}.zzzz9999.tmp"
    other = tmp_path / f"x.weights.{_dead_pid()}.abcdefgh.tmp"
    unrelated = tmp_path / "notes.1234.tmp"
    for p in (dead, live, other, unrelated):
        p.write_bytes(b"half")
    atomic_write(tmp_path / "w.backup", b"whole")
    assert not dead.exists() and live.exists() and other.exists() and unrelated.exists()
    assert (tmp_path / "w.backup").read_bytes() == b"whole"
    assert remove_dead_temporaries(tmp_path) == [other]
    assert live.exists() and unrelated.exists()


def test_atomic_write_names_its_temporary_after_its_pid(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "f.weights", b"x")
    assert seen[0].startswith(f"f.weights.{os.getpid()}.") and seen[0].endswith(".tmp")


def test_keep_aside_never_replaces_a_file(tmp_path):
    log = tmp_path / "tiny_log.csv"
    assert keep_aside(log) is None
    for text in ("first", "second"):
        log.write_text(text)
        keep_aside(log)
    assert not log.exists()
    assert (tmp_path / "tiny_log.1.csv").read_text() == "first"
    assert (tmp_path / "tiny_log.2.csv").read_text() == "second"


def _log(path: Path, iterations) -> None:
    from pydarknet.engine import LOG_FIELDS as _LOG_FIELDS
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, _LOG_FIELDS)
        w.writeheader()
        w.writerows({"iteration": i, "loss": 1} for i in iterations)


def _rows(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return [r["iteration"] for r in csv.DictReader(f)]


def _open_log(log: Path, start: int) -> None:
    """What a training run starting (or resuming) at batch ``start`` does to its CSV log."""
    engine = SimpleNamespace(trainer=SimpleNamespace(batch_num=start), err=lambda m: print(m, file=sys.stderr))
    hook = CsvLog(log)
    hook.start(engine)
    hook.close(engine)


def test_a_new_training_run_keeps_the_earlier_log(tmp_path, capsys):
    log = tmp_path / "tiny_log.csv"
    _log(log, [1, 2, 3])
    _open_log(log, 0)                   # a fresh run into the same backup folder
    assert _rows(tmp_path / "tiny_log.1.csv") == ["1", "2", "3"] and _rows(log) == []
    assert "kept as" in capsys.readouterr().err
    _log(log, [1, 2, 3, 4])
    _open_log(log, 2)                   # resuming from iteration 2: rows 3, 4 would be dropped
    assert _rows(tmp_path / "tiny_log.2.csv") == ["1", "2", "3", "4"] and _rows(log) == ["1", "2"]
    _open_log(log, 2)                   # nothing to drop: continued in place
    assert _rows(log) == ["1", "2"] and not (tmp_path / "tiny_log.3.csv").exists()


def test_image_errors_keep_their_reason_and_name_the_path_once(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    ok, jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "cut.jpg").write_bytes(jpg.tobytes()[:40])
    cases = {"missing.jpg": "No such file or directory", "junk.jpg": "unknown image type",
             "cut.jpg": "stb_image rejects this JPEG: no SOF"}
    for name, reason in cases.items():
        with pytest.raises(ImageError) as e:
            load_image(tmp_path / name)
        text = str(e.value)
        assert reason in text and text.count(name) == 1 and "Errno" not in text and "None" not in text, text


def test_detect_writes_one_result_per_input_and_reports_problems_once(tmp_path, capsys):
    from pydarknet.commands.detect import main as detect_main
    picture = np.full((40, 50, 3), 200, np.uint8)
    for rel in ("in/good.jpg", "in/good.png", "in/good.bmp", "in/a/x.jpg", "in/b/x.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), picture)
    inputs = [str(tmp_path / p) for p in ("in/good.jpg", "in/good.png", "in/good.bmp", "in/a/x.jpg",
                                          "in/b/x.jpg", "in/missing.jpg")]
    rc = detect_main([str(CFG), str(WEIGHTS), *inputs, "--out", str(tmp_path / "out"), "--fast"])
    err = capsys.readouterr().err
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg"))
    assert rc == 1 and written == ["a/x.jpg", "b/x.jpg", "good_bmp.jpg", "good_jpg.jpg", "good_png.jpg"]
    assert err.count("wrote ") == 5
    missing = [line for line in err.splitlines() if "missing.jpg" in line]
    assert len(missing) == 1 and missing[0].count("missing.jpg") == 1 and "No such file" in missing[0]
