"""Command-line front ends (the scripts in tools/ are thin wrappers around these)."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import cv2

from . import data as datamod
from .cfg import CfgError
from .data import IMAGE_SUFFIXES, DataError
from .detect import detect
from .draw import draw_detections
from .image import ImageError, load_image, to_uint8
from .network import Darknet
from .weights import WeightsError

USER_ERRORS = (CfgError, WeightsError, DataError, ImageError, FileNotFoundError)


def _warn_to_stderr(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given, folders as their pictures (sorted), .txt files as lists of paths."""
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix.lower() == ".txt" and p.is_file():
            paths += datamod.read_list(p)
        else:
            paths.append(item)
    return paths


def class_names(args, net) -> list[str] | None:
    if args.names:
        return datamod.read_names(args.names)
    if args.data:
        opts = datamod.read_data_file(args.data)
        names = opts.get("names")
        if names is None:
            raise DataError(f"{args.data}: no names= entry")
        p = Path(names)
        if not p.is_file() and (Path(args.data).parent / p).is_file():
            p = Path(args.data).parent / p
        return datamod.read_names(p)
    beside = Path(args.cfg).with_suffix(".names")
    return datamod.read_names(beside) if beside.is_file() else None


def detect_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="detect.py", description="Darknet `detector test` in PyTorch.")
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="pictures, folders or .txt lists")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", help=".data file whose names= gives the class names")
    src.add_argument("--names", help=".names file (one class name per line)")
    ap.add_argument("--thresh", type=float, default=.5, help="probability threshold (Darknet's -thresh, .5)")
    ap.add_argument("--hier", type=float, default=.5, help="WordTree threshold (Darknet's -hier, .5)")
    ap.add_argument("--nms", type=float, default=.45, help="NMS IoU threshold (0 disables)")
    ap.add_argument("--out", help="folder for the annotated pictures (default: ./predictions.jpg)")
    ap.add_argument("--json", action="store_true", help="one JSON object per picture on stdout")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0")
    ap.add_argument("--fast", action="store_true",
                    help="plain PyTorch arithmetic: several times faster, within ~1e-5 of Darknet "
                         "instead of bit-identical")
    args = ap.parse_args(argv)
    warnings.showwarning = _warn_to_stderr
    text_out = sys.stderr if args.json else sys.stdout

    try:
        net = Darknet(args.cfg, exact=not args.fast)
        net.load_weights(args.weights)
        net.names = class_names(args, net)
        net.eval().to(args.device)
        paths = expand_inputs(args.images)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if net.detection_layer is None:
        print(f"error: {args.cfg} has no [region] layer: it is not a detector", file=sys.stderr)
        return 2
    if not paths:
        print("error: no pictures found", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, path in enumerate(paths):
        try:
            img = load_image(path)
        except ImageError as e:
            print(f"error: cannot read image {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        start = time.perf_counter()
        found = detect(net, img, args.thresh, args.hier, args.nms)
        print(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.", file=text_out)
        for d in found:
            print(d.darknet_line(), file=text_out)
        picture = draw_detections(to_uint8(img), found, net.detection_layer.classes)
        if out_dir:
            target = out_dir / (Path(path).stem + ".jpg")
        else:
            target = Path("predictions.jpg" if len(paths) == 1 else f"predictions_{i:04d}_{Path(path).stem}.jpg")
        cv2.imwrite(str(target), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if args.json:
            print(json.dumps({"image": path, "width": int(img.shape[2]), "height": int(img.shape[1]),
                              "detections": [d.to_dict() for d in found]}), flush=True)
    return 1 if failed else 0


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_worker(rank: int, world: int, port: int, cfg_kwargs: dict, devices: list[str]) -> None:
    import os

    from .trainloop import TrainConfig, train_detector
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    if devices[rank].startswith("cuda"):
        import torch
        torch.cuda.set_device(devices[rank])
    train_detector(TrainConfig(**{**cfg_kwargs, "device": devices[rank]}))


def train_main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="train.py", description="Darknet `detector train` in PyTorch.")
    ap.add_argument("data", help=".data file (classes, train, valid, names, backup)")
    ap.add_argument("cfg")
    ap.add_argument("weights", nargs="?", help="initial weights (e.g. darknet19_448.conv.23, or a .backup to resume)")
    ap.add_argument("--clear", action="store_true", help="reset the images-seen counter (restart the schedule)")
    ap.add_argument("--gpus", help="comma-separated CUDA devices, e.g. 0,1 (one process each, NCCL)")
    ap.add_argument("--procs", type=int, default=1, help="CPU processes for data-parallel training (gloo)")
    ap.add_argument("--max-batches", type=int, help="override the cfg's max_batches")
    ap.add_argument("--backup", help="checkpoint folder (default: the .data file's backup=)")
    ap.add_argument("--workers", type=int, default=2, help="data-loading worker processes")
    ap.add_argument("--seed", type=int, help="random seed for the data order and augmentation")
    ap.add_argument("--checkpoint-every", type=int, help="save every N iterations instead of Darknet's rule")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    warnings.showwarning = _warn_to_stderr
    devices = [f"cuda:{g}" for g in args.gpus.split(",")] if args.gpus else ["cpu"] * max(args.procs, 1)
    kwargs = dict(data=args.data, cfg=args.cfg, weights=args.weights, clear=args.clear,
                  max_batches=args.max_batches, backup=args.backup, workers=args.workers, seed=args.seed,
                  progress=not args.no_progress, checkpoint_every=args.checkpoint_every)
    from .trainloop import TrainConfig, train_detector
    try:
        # Check the inputs once, in this process, so user errors are reported plainly.
        Darknet(args.cfg, exact=False)
        datamod.DataConfig.from_file(args.data).train_list()
        if len(devices) == 1:
            final = train_detector(TrainConfig(**kwargs, device=devices[0]))
            print(f"Saved {final}")
            return 0
        import torch.multiprocessing as mp
        mp.spawn(_train_worker, args=(len(devices), _free_port(), kwargs, devices), nprocs=len(devices))
        return 0
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
