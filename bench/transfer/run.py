#!/usr/bin/env python3
"""Detection from an ImageNet backbone on raccoon: Tiny Darknet -> tools/finetune.py -> VOC mAP.

    python bench/transfer/run.py [--raccoon ../shared/datasets/raccoon] [--tiny ../shared/real/tiny]
                                 [--work /tmp/transfer-bench] [--minutes 25] [--threads N] [--seed 1]

Every step is a public command: tools/voc_label.py converts the VOC folder (the 160 ``train``
pictures train, the 40 ``val`` pictures are only scored at the end), tools/finetune.py does
partial -> recipe -> training within ``--minutes`` (checkpoint picked on a held-out part of the
training list) -> valid -> map.  The dataset, weights and everything derived from them stay in
--work; bench/transfer/ receives results.json (with the from-scratch figure of bench/raccoon
for comparison) and the loss curve.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def run(cmd: list[str]) -> None:
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True)


def _without_work(args: list[str]) -> list[str]:
    """The command's arguments without ``--work DIR`` (a scratch folder of this machine)."""
    out, skip = [], False
    for a in args:
        if skip or a.startswith("--work="):
            skip = False
            continue
        skip = a == "--work"
        if not skip:
            out.append(a)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raccoon", default=str(REPO.parent / "shared" / "datasets" / "raccoon"))
    ap.add_argument("--tiny", default=str(REPO.parent / "shared" / "real" / "tiny"),
                    help="folder with Tiny Darknet's tiny.cfg and tiny.weights")
    ap.add_argument("--work", default="/tmp/transfer-bench")
    ap.add_argument("--minutes", type=float, default=25.)
    ap.add_argument("--epochs", type=float, help="passed to tools/finetune.py")
    ap.add_argument("--threads", type=int, help="passed to tools/finetune.py")
    ap.add_argument("--size", type=int, help="passed to tools/finetune.py")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    py = sys.executable
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    run([py, str(REPO / "tools/voc_label.py"), args.raccoon, "--labels-root", str(work / "voc"), "-q"])
    data = next((work / "voc").glob("*.data"))
    cmd = [py, str(REPO / "tools/finetune.py"), str(data), "--backbone", str(Path(args.tiny) / "tiny.weights"),
           "--work", str(work / "finetune"), "--minutes", str(args.minutes), "--seed", str(args.seed)]
    cmd += (["--epochs", str(args.epochs)] if args.epochs else []) + \
           (["--threads", str(args.threads)] if args.threads else []) + \
           (["--size", str(args.size)] if args.size else [])
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    run(cmd)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    s = json.loads((work / "finetune" / "finetune.json").read_text())
    scratch = json.loads((REPO / "bench/raccoon/results.json").read_text())
    result = {
        "map50_voc07": s["map50_voc07"], "map50_area": s["map50_area"],
        "train_seconds": s["train_seconds"], "images_per_second": s["images_per_second"],
        "iterations": s["iterations"], "batch": s["recipe"]["batch"], "input": s["recipe"]["size"],
        "wall_seconds_whole_command": round(wall, 1),
        "heldout_seconds": s["heldout_seconds"], "best_checkpoint": s["best"], "heldout_history": s["history"],
        "recipe": s["recipe"],
        "from_scratch": {"map50_voc07": scratch["map50_voc07"], "map50_area": scratch["map50_area"],
                         "train_seconds": scratch["train_seconds"], "iterations": scratch["iterations"],
                         "command": scratch["command"], "source": "bench/raccoon/results.json"},
        "command": " ".join(shlex.quote(a) for a in ["python", "bench/transfer/run.py", *_without_work(argv or sys.argv[1:])]),
        "finetune_command": "python tools/finetune.py RACCOON.data --backbone tiny.weights --work WORK "
                            + " ".join(shlex.quote(a) for a in cmd[7:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)]},
        "details": json.loads(json.dumps({k: v for k, v in s["valid"].items() if k not in ("results", "truth_source")})
                              .replace(str(work / "finetune") + "/", "WORK/")),
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    png = next((work / "finetune" / "backup").glob("*_loss.png"), None)
    if png is not None:
        shutil.copy(png, HERE / "loss.png")
    print(json.dumps({k: result[k] for k in ("map50_voc07", "map50_area", "train_seconds", "images_per_second",
                                              "iterations")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
