"""The offline demo: the shipped shapes detector on a generated scene or on the user's pictures."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from .cli import detect_main
from .shapes import CLASSES, make_scene

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CFG = REPO_ROOT / "cfg" / "shapes-tiny.cfg"
DEMO_WEIGHTS = REPO_ROOT / "weights" / "shapes-tiny.weights"
DEMO_NAMES = REPO_ROOT / "cfg" / "shapes.names"


def demo_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="demo.py", description="Offline demo: the shipped shapes detector.")
    ap.add_argument("images", nargs="*", metavar="IMAGE", help="pictures (default: a freshly generated scene)")
    ap.add_argument("--seed", type=int, help="seed of the generated scene (default: random)")
    ap.add_argument("--thresh", type=float, default=.5)
    ap.add_argument("--out", help="folder for the annotated pictures (default: ./predictions.jpg)")
    args = ap.parse_args(argv)
    images = list(args.images)
    if not images:
        seed = args.seed if args.seed is not None else int(time.time() * 1000) % 2**31
        pixels, boxes = make_scene(np.random.default_rng(seed))
        scene = Path("demo_scene.jpg")
        cv2.imwrite(str(scene), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        print(f"generated {scene} (seed {seed}) with {len(boxes)} shapes: "
              + ", ".join(CLASSES[b[0]] for b in boxes))
        images = [str(scene)]
    argv = [str(DEMO_CFG), str(DEMO_WEIGHTS), *images, "--names", str(DEMO_NAMES), "--thresh", str(args.thresh)]
    if args.out:
        argv += ["--out", args.out]
    return detect_main(argv)
