"""Command-line front ends (the scripts in tools/ are thin wrappers around these)."""
from __future__ import annotations

import argparse
import json
import os
import signal
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


def warn_to_stderr(message, category, filename, lineno, file=None, line=None):
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
    ap.add_argument("--flavour", choices=("pjreddie", "alexeyab"),
                    help="detect as this Darknet does (default: guessed from the cfg)")
    args = ap.parse_args(argv)
    warnings.showwarning = warn_to_stderr
    if hasattr(signal, "SIGPIPE"):  # `detect.py ... | head` ends quietly, as a C program does
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    text_out = sys.stderr if args.json else sys.stdout

    try:
        net = Darknet(args.cfg, exact=not args.fast, flavour=args.flavour)
        net.load_weights(args.weights)
        net.names = class_names(args, net)
        net.eval().to(args.device)
        paths = expand_inputs(args.images)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if net.detection_layer is None:
        print(f"error: {args.cfg} has no detection layer: it is not a detector", file=sys.stderr)
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
            print(d.printed_line(net.flavour, img.shape[2], img.shape[1]), file=text_out)
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


def _train_worker(rank: int, world: int, port: int, cfg_kwargs: dict, devices: list[str], status,
                  threads: int | None) -> None:
    """One data-parallel training process (``torch.multiprocessing.spawn`` target).

    ``status[rank]`` becomes 130 when the run was interrupted (Ctrl-C) and saved its
    backup, 0 when it finished.  Exceptions go back to the launcher through spawn."""
    import torch

    from .trainloop import TrainConfig, train_detector
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    warnings.showwarning = warn_to_stderr
    if devices[rank].startswith("cuda"):
        torch.cuda.set_device(devices[rank])
    if threads:
        torch.set_num_threads(threads)
    result = train_detector(TrainConfig(**{**cfg_kwargs, "device": devices[rank]}))
    status[rank] = 130 if result.interrupted else 0


def _last_checkpoint(backup: Path, base: str) -> Path | None:
    """The newest of <base>.backup, <base>_<N>.weights and <base>_final.weights in ``backup``."""
    found = [p for p in backup.glob(f"{base}*") if p.name == f"{base}.backup"
             or (p.suffix == ".weights" and p.name.startswith(base + "_"))]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _process_failure(e, world: int, context) -> str:
    """A clear message for a training process that failed (spawn's ProcessException)."""
    import pickle
    from torch.multiprocessing import ProcessExitedException
    if isinstance(e, ProcessExitedException):
        how = f"was killed by {e.signal_name}" if e.signal_name else f"exited with status {e.exit_code}"
        lines = [f"training process {e.error_index} of {world} {how}; the other processes were stopped"]
    else:
        lines = []
    # Every process that left a traceback (the first failure may only be a peer's lost connection);
    # the same error from several processes is reported once.
    failures: dict[str, list[int]] = {}
    traces: dict[str, str] = {}
    for index, path in enumerate(getattr(context, "error_files", [])):
        try:
            with open(path, "rb") as fh:
                trace = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
        last = [line for line in trace.strip().splitlines() if line.strip()][-1]
        name, sep, text = last.partition(": ")
        last = f"{name.rsplit('.', 1)[-1]}{sep}{text}"
        failures.setdefault(last, []).append(index)
        if not any(name.endswith(k) for k in ("TrainingError", "DataError", "CfgError", "WeightsError",
                                              "ImageError", "FileNotFoundError")):
            traces.setdefault(last, trace.rstrip())
    for last, indices in failures.items():
        who = f"process {indices[0]}" if len(indices) == 1 else "processes " + ", ".join(map(str, indices))
        lines.append(f"training {who} of {world} failed: {last}")
        if last in traces:
            lines.append(traces[last])
    if not lines:
        lines.append(f"training process failed: {e}")
    return "\n".join(lines)


def train_main(argv=None) -> int:
    """``tools/train.py``.  Exit status: 0 when max_batches is reached, 130 when stopped by
    Ctrl-C (``<base>.backup`` saved), 2 for bad input (cfg, weights, data files), 1 when
    training failed (a non-finite loss, a training process that crashed)."""
    import signal

    import torch

    ap = argparse.ArgumentParser(prog="train.py", description="Darknet `detector train` in PyTorch.")
    ap.add_argument("data", help=".data file (classes, train, valid, names, backup)")
    ap.add_argument("cfg")
    ap.add_argument("weights", nargs="?", help="initial weights (e.g. darknet19_448.conv.23, or a .backup to resume)")
    ap.add_argument("--clear", action="store_true", help="reset the images-seen counter (restart the schedule)")
    ap.add_argument("--gpus", help="comma-separated CUDA devices, e.g. 0,1 (one process each, NCCL)")
    ap.add_argument("--procs", type=int, default=1, help="CPU processes for data-parallel training (gloo)")
    ap.add_argument("--max-batches", type=int, help="override the cfg's max_batches")
    ap.add_argument("--backup", help="checkpoint folder (default: the .data file's backup=)")
    ap.add_argument("--workers", type=int, default=2, help="data-loading worker processes (per training process)")
    ap.add_argument("--threads", type=int,
                    help="torch CPU threads per training process (default: torch's; with --procs N, cores/N)")
    ap.add_argument("--seed", type=int, help="random seed for the data order and augmentation")
    ap.add_argument("--checkpoint-every", type=int, help="save every N iterations instead of Darknet's rule")
    ap.add_argument("--exact", action="store_true",
                    help="batch-norm sums in Darknet's float order (slower; loss within ~1e-6 of Darknet's)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_intermixed_args(argv)   # options may come before or after WEIGHTS
    warnings.showwarning = warn_to_stderr
    if args.procs < 1:
        ap.error("--procs must be at least 1")
    devices = [f"cuda:{g.strip()}" for g in args.gpus.split(",")] if args.gpus else ["cpu"] * args.procs
    kwargs = dict(data=args.data, cfg=args.cfg, weights=args.weights, clear=args.clear,
                  max_batches=args.max_batches, backup=args.backup, workers=args.workers, seed=args.seed,
                  progress=not args.no_progress, checkpoint_every=args.checkpoint_every, exact=args.exact)
    from .trainloop import TrainConfig, TrainingError, train_detector
    try:
        # Check the inputs once, in this process, so user errors are reported plainly.
        net = Darknet(args.cfg, exact=False)
        if args.weights:
            net.load_weights(args.weights)
        if net.detection_layer is None:
            raise CfgError(f"{args.cfg} has no [region] layer: it is not a detector")
        del net
        data = datamod.DataConfig.from_file(args.data)
        if not data.train_list():
            raise DataError(f"{data.resolve(data.train)}: list file has no image paths")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if len(devices) == 1:
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            result = train_detector(TrainConfig(**kwargs, device=devices[0]))
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except TrainingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("aborted: nothing saved since the last checkpoint", file=sys.stderr)
            return 130
        return 130 if result.interrupted else 0

    # Several processes: one per device, rank 0 prints and saves.
    import torch.multiprocessing as mp
    world = len(devices)
    threads = args.threads or (max(1, (os.cpu_count() or 1) // world) if not args.gpus else None)
    ctx = mp.get_context("spawn")
    status = ctx.Array("i", [-1] * world)
    base = Path(args.cfg).stem
    backup = Path(args.backup or data.backup)
    interrupted: list[float] = []
    processes: list = []

    def forward_sigint(signum, frame):
        # The processes handle Ctrl-C themselves (stop after the iteration, save); pass it on
        # in case it was sent to this process only (they take two within a second as one).
        interrupted.append(time.monotonic())
        for p in processes:
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGINT)
                except OSError:
                    pass

    previous = signal.signal(signal.SIGINT, forward_sigint)
    try:
        context = mp.start_processes(_train_worker, args=(world, _free_port(), kwargs, devices, status, threads),
                                     nprocs=world, join=False, start_method="spawn")
        processes.extend(context.processes)
        if interrupted:     # a Ctrl-C while they were starting
            forward_sigint(signal.SIGINT, None)
        while not context.join():
            pass
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
        message = _process_failure(e, world, context)
        print(f"error: {message}", file=sys.stderr)
        last = _last_checkpoint(backup, base)
        if last is not None and "checkpoint" not in message:
            print(f"the last checkpoint is {last}", file=sys.stderr)
        return 130 if interrupted else 1
    finally:
        signal.signal(signal.SIGINT, previous)
    return 130 if any(s == 130 for s in status) or interrupted else 0
