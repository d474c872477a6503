"""``detector train``: Darknet's training loop (see :mod:`pydarknet.trainloop`).

    pydarknet detector train DATA CFG [WEIGHTS] [--clear] [--gpus 0,1 | --procs N] ...
    python tools/train.py DATA CFG [WEIGHTS] ...
    torchrun --nnodes 2 --nproc-per-node 4 ... tools/train.py DATA CFG [WEIGHTS] --device cuda

Exit status: 0 when max_batches is reached, 130 when stopped by Ctrl-C (``<base>.backup``
saved), 2 for bad input (cfg, weights, data files), 1 when training failed (a non-finite
loss, a training process that crashed).  ``--procs N`` / ``--gpus 0,1`` start torchrun with
one process per device; under torchrun every process runs this same command.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import data as datamod
from ..cfg import CfgError
from ..data import DataError
from ..distributed import launched_world
from ..network import Darknet
from ..train import TrainingError
from ..trainloop import TrainConfig, train_detector
from .common import USER_ERRORS, fail, setup_command

_STATUS_DIR = "PYDARKNET_STATUS_DIR"     # set by --procs/--gpus for the processes it starts
_DEVICES = "PYDARKNET_DEVICES"


def build_parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="Darknet `detector train` in PyTorch.")
    ap.add_argument("data", help=".data file (classes, train, valid, names, backup)")
    ap.add_argument("cfg")
    ap.add_argument("weights", nargs="?", help="initial weights (e.g. darknet19_448.conv.23, or a .backup to resume)")
    ap.add_argument("--clear", action="store_true", help="reset the images-seen counter (restart the schedule)")
    ap.add_argument("--gpus", help="comma-separated CUDA devices, e.g. 0,1 (one process each, NCCL, via torchrun)")
    ap.add_argument("--procs", type=int, default=1, help="CPU processes for data-parallel training (gloo, via torchrun)")
    ap.add_argument("--device", default="cpu", help="torch device of a single process (cpu, cuda, cuda:1); "
                                                    "under torchrun 'cuda' means cuda:LOCAL_RANK")
    ap.add_argument("--max-batches", type=int, help="override the cfg's max_batches")
    ap.add_argument("--backup", help="checkpoint folder (default: the .data file's backup=)")
    ap.add_argument("--workers", type=int, default=2, help="data-loading worker processes (per training process)")
    ap.add_argument("--threads", type=int, help="torch CPU threads per training process")
    ap.add_argument("--seed", type=int, help="random seed for the data order and augmentation")
    ap.add_argument("--checkpoint-every", type=int, help="save every N iterations instead of Darknet's rule")
    ap.add_argument("--exact", action="store_true",
                    help="batch-norm sums in Darknet's float order (slower; loss within ~1e-6 of Darknet's)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print Darknet's layer table")
    return ap


def network_to_train(args) -> Darknet:
    """The cfg and its initial weights, read once before training so user errors are reported
    plainly and early (Darknet's layer table printed unless -q)."""
    net = Darknet(args.cfg, exact=False)
    if not args.quiet:
        print(net.summary(), file=sys.stderr)
    if args.weights:
        net.load_weights(args.weights, partial=True)   # a backbone (partial file) is fine for training
    return net


def check_inputs(args) -> None:
    """Read the cfg, weights and data once, so user errors are reported plainly and early."""
    net = network_to_train(args)
    if net.detection_layer is None:
        raise CfgError(f"{args.cfg} has no [region] layer: it is not a detector")
    data = datamod.DataConfig.from_file(args.data)
    if not data.train_list():
        raise DataError(f"{data.resolve(data.train)}: list file has no image paths")


def _device(args) -> str:
    """This process's device: the launcher's list by LOCAL_RANK, 'cuda' as cuda:LOCAL_RANK."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if os.environ.get(_DEVICES):
        return os.environ[_DEVICES].split(",")[local]
    if args.device == "cuda" and launched_world() > 1:
        return f"cuda:{local}"
    return args.device


def train_here(args, train=train_detector, **config) -> int:
    """Train in this process (alone, or as one of torchrun's) with ``train`` (a TrainConfig ->
    TrainResult function; ``config`` adds TrainConfig fields)."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(data=args.data, cfg=args.cfg, weights=args.weights, clear=args.clear,
                         max_batches=args.max_batches, backup=args.backup, workers=args.workers, seed=args.seed,
                         progress=not args.no_progress, checkpoint_every=args.checkpoint_every, exact=args.exact,
                         device=_device(args), **config)
    try:
        result = train(config)
    except USER_ERRORS as e:
        return fail(e, 2)
    except TrainingError as e:
        return fail(e, 1)
    except KeyboardInterrupt:
        return fail("aborted: nothing saved since the last checkpoint", 130)
    if result.interrupted and os.environ.get(_STATUS_DIR):
        Path(os.environ[_STATUS_DIR], "interrupted").touch()
        return 0      # torchrun would report a status of 130 as a crash
    return 130 if result.interrupted else 0


def launch(args, argv: list[str], world: int, module: str = "pydarknet.commands.train") -> int:
    """Start torchrun with ``world`` processes running ``module``'s command without --procs/--gpus."""
    rest = _without_launch_options(argv)
    env = dict(os.environ)
    if args.gpus:
        env[_DEVICES] = ",".join(f"cuda:{g.strip()}" for g in args.gpus.split(","))
    with tempfile.TemporaryDirectory() as status:
        env[_STATUS_DIR] = status
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               "-m", module, *rest]
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # the processes handle Ctrl-C themselves
        try:
            code = subprocess.run(cmd, env=env).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
        interrupted = Path(status, "interrupted").exists()
    if code != 0:
        return 130 if interrupted else 1
    return 130 if interrupted else 0


def _without_launch_options(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--procs", "--gpus"):
            skip = True
            continue
        if a.startswith(("--procs=", "--gpus=")):
            continue
        out.append(a)
    return out + ["--quiet"]


def main(argv=None, prog: str = "train.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_intermixed_args(argv)   # options may come before or after WEIGHTS
    setup_command()
    if args.procs < 1:
        return fail("--procs must be at least 1")
    if launched_world() > 1:          # one of torchrun's processes
        return train_here(args)
    try:
        check_inputs(args)
    except USER_ERRORS as e:
        return fail(e, 2)
    world = len(args.gpus.split(",")) if args.gpus else args.procs
    if args.gpus and world == 1:
        args.device = f"cuda:{args.gpus.strip()}"
    return train_here(args) if world == 1 else launch(args, argv, world)


if __name__ == "__main__":
    sys.exit(main())
