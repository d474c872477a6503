"""``demo``: the offline demo, the shipped shapes detector on a generated scene or on your pictures.

    pydarknet demo [IMAGE...] [--seed N] [--thresh 0.5] [--out DIR]
    python tools/demo.py [IMAGE...]

Without IMAGE it draws a new scene (circles, squares, triangles on a random background)
into demo_scene.png, detects the shapes and writes predictions.jpg; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..resources import cfg_dir, weights_dir
from ..shapes import CLASSES, make_scene
from .detect import main as detect_main


def demo_files() -> tuple[Path, Path, Path]:
    """(cfg, weights, names) of the shipped demo model."""
    return cfg_dir() / "shapes-tiny.cfg", weights_dir() / "shapes-tiny.weights", cfg_dir() / "shapes.names"


def main(argv=None, prog: str = "demo.py") -> int:
    ap = argparse.ArgumentParser(prog=prog, description="Offline demo: the shipped shapes detector.")
    ap.add_argument("images", nargs="*", metavar="IMAGE", help="pictures (default: a freshly generated scene)")
    ap.add_argument("--seed", type=int, help="seed of the generated scene (default: random)")
    ap.add_argument("--thresh", type=float, default=.5)
    ap.add_argument("--out", help="folder for the annotated pictures (default: ./predictions.jpg)")
    args = ap.parse_args(argv)
    images = list(args.images)
    if not images:
        seed = args.seed if args.seed is not None else int(time.time() * 1000) % 2**31
        pixels, boxes = make_scene(np.random.default_rng(seed))
        scene = Path("demo_scene.png")
        cv2.imwrite(str(scene), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        print(f"generated {scene} (seed {seed}) with {len(boxes)} shapes: "
              + ", ".join(CLASSES[b[0]] for b in boxes))
        images = [str(scene)]
    cfg, weights, names = demo_files()
    argv = [str(cfg), str(weights), *images, "--names", str(names), "--thresh", str(args.thresh), "--quiet"]
    if args.out:
        argv += ["--out", args.out]
    return detect_main(argv)


if __name__ == "__main__":
    sys.exit(main())
