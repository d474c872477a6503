#!/usr/bin/env python3
"""The end-to-end raccoon benchmark: VOC labels -> k-means anchors -> training -> VOC mAP.

    python bench/raccoon/run.py [--raccoon ../shared/datasets/raccoon] [--work /tmp/raccoon-bench]
                                [--iterations 2000] [--size 224] [--lr 0.002] [--gpus 0]

Every step is the public command a user would run (tools/voc_label.py, tools/anchors.py,
tools/train.py, tools/valid.py, tools/map.py).  The dataset and everything derived from it
stay in --work; bench/raccoon/ receives results.json and the loss curve.
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


def run(cmd: list[str], **kw) -> str:
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    r = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw)
    return r.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raccoon", default=str(REPO.parent / "shared" / "datasets" / "raccoon"))
    ap.add_argument("--work", default="/tmp/raccoon-bench")
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--gpus", help="passed to tools/train.py (e.g. 0)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    py = sys.executable
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    run([py, str(REPO / "tools/voc_label.py"), args.raccoon, "--labels-root", str(work / "voc")])
    data = next((work / "voc").glob("*.data"))
    anchors = json.loads(run([py, str(REPO / "tools/anchors.py"), str(data), "-k", "5", "--width", str(args.size),
                              "--height", str(args.size), "--json"]))
    cfg_text = (HERE / "raccoon-tiny.cfg.in").read_text()
    values = {"SIZE": str(args.size), "LR": str(args.lr), "ITERATIONS": str(args.iterations),
              "STEP1": str(int(args.iterations * .8)), "STEP2": str(int(args.iterations * .9)),
              "ANCHORS": ", ".join(f"{w:.4f},{h:.4f}" for w, h in anchors["anchors"])}
    for key, value in values.items():
        cfg_text = cfg_text.replace(key, value)
    cfg = work / "raccoon-tiny.cfg"
    cfg.write_text(cfg_text)
    train = [py, str(REPO / "tools/train.py"), str(data), str(cfg), "--backup", str(work / "backup"),
             "--seed", str(args.seed), "--no-progress"] + (["--gpus", args.gpus] if args.gpus else [])
    t0 = time.perf_counter()
    log = run(train)
    train_seconds = time.perf_counter() - t0
    (work / "train.log").write_text(log)
    weights = work / "backup" / "raccoon-tiny_final.weights"
    run([py, str(REPO / "tools/valid.py"), str(data), str(cfg), str(weights), "--out", str(work / "results"),
         "--no-recall"])
    scores = json.loads(run([py, str(REPO / "tools/map.py"), str(data), "--results", str(work / "results"),
                             "--json"]))
    images = args.iterations * 16
    result = {
        "map50_voc07": scores["map50_voc07"], "map50_area": scores["map50_area"],
        "train_seconds": round(train_seconds, 1), "images_per_second": round(images / train_seconds, 2),
        "iterations": args.iterations, "batch": 16, "input": args.size, "learning_rate": args.lr,
        "anchors": anchors["anchors"], "anchor_avg_iou": anchors["avg_iou"],
        "command": " ".join(shlex.quote(a) for a in ["python", "bench/raccoon/run.py", *(argv or sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "details": scores,
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(work / "backup" / "raccoon-tiny_loss.png", HERE / "loss.png")
    print(json.dumps({k: result[k] for k in ("map50_voc07", "map50_area", "train_seconds", "images_per_second")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
