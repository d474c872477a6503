"""JPEG decoding speed: pydarknet's stb-exact decoder against OpenCV's, on the same files.

For every JPEG of the photo folder and the datasets in ``../shared`` (relative to the
repository), each round decodes the file's bytes (already in memory) with both decoders, in
an order that alternates from round to round; a file's time is its minimum over the rounds
(the machine's noise only ever adds time); by default the time is the thread's CPU time
(``--clock cpu``), since on a shared machine wall time mostly measures the other processes. Totals are sums over the files, ratios are
ours / OpenCV's. ``load_image`` (file read, decode, uint8 -> float32 CHW) is timed the same
way on the photos. The first-call cost (import, numba's cached machine code or its compile,
first decode) is measured in fresh processes, with the numba cache warm and with an empty one.

    python bench/jpeg/bench_jpeg.py --rounds 5 --out bench/jpeg/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pydarknet import image  # noqa: E402
from pydarknet.imagefile import decode_image_bytes  # noqa: E402

SHARED = REPO.parent / "shared"
SETS = {
    "photos": ("real/photos", "*.jpg"),
    "raccoon": ("datasets/raccoon/JPEGImages", "*.jpg"),
    "hymenoptera": ("datasets/hymenoptera", "**/*.jpg"),
}
FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
CLOCK = time.thread_time


def _opencv(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), FLAGS)


def _stb(data: bytes) -> np.ndarray:
    return decode_image_bytes(data, "stb")


def _time_pair(fa, fb, arg, rounds: int) -> tuple[float, float]:
    """Minimum over the rounds of each function's time: this thread's CPU time with
    ``--clock cpu`` (both decoders are single-threaded; time spent descheduled on a busy
    machine is left out), wall time with ``--clock wall``."""
    ta, tb = [], []
    for r in range(rounds):
        order = ((fa, ta), (fb, tb)) if r % 2 == 0 else ((fb, tb), (fa, ta))
        for f, acc in order:
            t = CLOCK()
            f(arg)
            acc.append(CLOCK() - t)
    return min(ta), min(tb)


def bench_set(files: list[Path], rounds: int) -> dict:
    ours = cv = 0.0
    pixels = 0
    worst = (0.0, "")
    for p in files:
        data = p.read_bytes()
        _stb(data)  # warm caches for this size
        a, b = _time_pair(_stb, _opencv, data, rounds)
        ours += a
        cv += b
        pixels += int(np.prod(_opencv(data).shape[:2]))
        if a / b > worst[0]:
            worst = (a / b, p.relative_to(SHARED).as_posix())
    return {"files": len(files), "megapixels": round(pixels / 1e6, 3), "ours_s": round(ours, 4),
            "opencv_s": round(cv, 4), "ratio": round(ours / cv, 3),
            "ours_mpix_per_s": round(pixels / 1e6 / ours, 1),
            "opencv_mpix_per_s": round(pixels / 1e6 / cv, 1),
            "worst_file_ratio": round(worst[0], 3), "worst_file": worst[1]}


def bench_load_image(files: list[Path], rounds: int) -> dict:
    ours = cv = 0.0
    for p in files:
        a, b = _time_pair(lambda q: image.load_image(q, decoder="stb"),
                          lambda q: image.load_image(q, decoder="opencv"), p, rounds)
        ours += a
        cv += b
    return {"files": len(files), "stb_s": round(ours, 4), "opencv_s": round(cv, 4),
            "ratio": round(ours / cv, 3)}


_FIRST = """
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
from pydarknet import image
t1 = time.perf_counter()
image.load_image({path!r}, decoder="stb")
t2 = time.perf_counter()
image.load_image({path!r}, decoder="stb")
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def first_call(path: Path, cache_dir: str | None) -> dict:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    code = _FIRST.format(repo=str(REPO), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    imp, first, second = map(float, out)
    return {"import_s": round(imp, 3), "first_decode_s": round(first, 3),
            "second_decode_s": round(second, 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    if not SHARED.exists():
        print(f"error: {SHARED} not found (the photos and datasets live there)", file=sys.stderr)
        return 1
    cv2.setNumThreads(1)
    result = {"command": "python bench/jpeg/bench_jpeg.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"python": platform.python_version(), "opencv": cv2.__version__,
                          "numpy": np.__version__, "cpus": os.cpu_count(),
                          "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
              "rounds": args.rounds, "clock": args.clock, "decode": {}}
    for name, (folder, pattern) in SETS.items():
        files = sorted((SHARED / folder).glob(pattern))
        result["decode"][name] = bench_set(files, args.rounds)
        print(name, result["decode"][name], flush=True)
    tot_ours = sum(v["ours_s"] for v in result["decode"].values())
    tot_cv = sum(v["opencv_s"] for v in result["decode"].values())
    result["decode"]["all"] = {"ours_s": round(tot_ours, 4), "opencv_s": round(tot_cv, 4),
                               "ratio": round(tot_ours / tot_cv, 3)}
    photos = sorted((SHARED / "real/photos").glob("*.jpg"))
    result["load_image_photos"] = bench_load_image(photos, args.rounds)
    print("load_image", result["load_image_photos"], flush=True)
    result["first_call_warm_cache"] = first_call(photos[0], None)
    with tempfile.TemporaryDirectory() as empty:
        result["first_call_empty_cache"] = first_call(photos[0], empty)
    print("first call", result["first_call_warm_cache"], result["first_call_empty_cache"])
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
