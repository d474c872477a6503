"""``classifier train``: Darknet's classifier training loop (see :mod:`pydarknet.classifier_train`).

    pydarknet classifier train DATA CFG [WEIGHTS] [--clear] [--gpus 0,1 | --procs N] ...
    python tools/train_classifier.py DATA CFG [WEIGHTS] ...

DATA holds ``train``, ``labels`` (each picture's class is the label contained in its path),
``classes`` (the network's outputs), ``backup``, optionally ``tree``.  The options, exit
statuses, Ctrl-C, resume and several processes are ``detector train``'s
(:mod:`pydarknet.commands.train`); ``--no-augment`` letterboxes the pictures instead of
Darknet's random crops, ``--epochs`` shuffles passes over the list (each picture once per
epoch) instead of Darknet's random picks with replacement.
"""
from __future__ import annotations

import sys

from ..classifier_data import ClassifierData
from ..classifier_train import train_classifier
from ..data import DataError
from ..distributed import launched_world
from .common import USER_ERRORS, fail, setup_command
from .train import build_parser, launch, network_to_train, train_here


def check_inputs(args) -> None:
    """Read the cfg, weights and data once, so user errors are reported plainly and early."""
    net = network_to_train(args)
    data = ClassifierData.from_file(args.data)
    if net.output_shape.numel != data.classes:
        raise DataError(f"{args.data}: classes={data.classes} but the last layer of {args.cfg} "
                        f"has {net.output_shape.numel} outputs")
    data.labels()
    data.paths("train")


def main(argv=None, prog: str = "train_classifier.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser(prog)
    ap.description = "Darknet `classifier train` in PyTorch."
    ap.add_argument("--no-augment", action="store_true", help="letterbox the pictures (no crops, flips, colours)")
    ap.add_argument("--epochs", action="store_true",
                    help="shuffled passes over the list instead of Darknet's random picks with replacement")
    args = ap.parse_intermixed_args(argv)
    setup_command()
    if args.procs < 1:
        return fail("--procs must be at least 1")
    extra = dict(augment=not args.no_augment, extra={"replacement": not args.epochs})
    if launched_world() > 1:
        return train_here(args, train_classifier, **extra)
    try:
        check_inputs(args)
    except USER_ERRORS as e:
        return fail(e, 2)
    world = len(args.gpus.split(",")) if args.gpus else args.procs
    if args.gpus and world == 1:
        args.device = f"cuda:{args.gpus.strip()}"
    if world == 1:
        return train_here(args, train_classifier, **extra)
    return launch(args, argv, world, "pydarknet.commands.train_classifier")


if __name__ == "__main__":
    sys.exit(main())
