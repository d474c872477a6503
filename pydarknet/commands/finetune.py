"""``tools/finetune.py``: a detector for a small VOC-format dataset from an ImageNet backbone."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def _data_file(source: str, work: Path) -> str:
    """A .data file as given, or one written by tools/voc_label.py's conversion of a VOC folder."""
    path = Path(source)
    if path.is_dir():
        from pydarknet.voc import convert_dataset
        res = convert_dataset(path, labels_root=work / "voc", show_progress=False, report=lambda line: None)
        print(f"converted {path} ({', '.join(res.classes)}): {res.data_file}", file=sys.stderr)
        return str(res.data_file)
    return source


def _backbone_cfg(args) -> str | None:
    """--backbone-cfg, else a .cfg named like the weights beside them (tiny.weights -> tiny.cfg)."""
    if args.backbone_cfg:
        return args.backbone_cfg
    beside = Path(args.backbone).with_suffix(".cfg")
    return str(beside) if beside.is_file() else None


def main(argv=None, prog: str = "finetune.py") -> int:
    from pydarknet.finetune import BASE_CFG
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Train a detector for a small VOC-format dataset from an ImageNet classifier: partial -> "
                    "a cfg for the dataset (input size, k-means anchors, schedule, decided from the training "
                    "data) -> training within a time budget, keeping the checkpoint best on a held-out part "
                    "of the training list -> valid -> mAP on the valid= list.")
    ap.add_argument("data", metavar="DATA", help=".data file (train=, valid=, names=) or a VOC folder "
                                                "(Annotations/, JPEGImages/, ImageSets/Main/)")
    ap.add_argument("--backbone", required=True, metavar="WEIGHTS",
                    help="the classifier's .weights (e.g. tiny.weights; its cfg is --backbone-cfg or the .cfg "
                         "beside it) or a partial file already cut to the backbone (e.g. tiny.conv.19)")
    ap.add_argument("--backbone-cfg", metavar="CFG", help="the classifier's cfg (default: WEIGHTS with .cfg)")
    ap.add_argument("--cfg", default=str(BASE_CFG), help="base detection cfg whose first layers are the "
                                                         "backbone's (default cfg/tinydarknet-yolov2.cfg)")
    ap.add_argument("--work", metavar="DIR", help="output folder (default finetune-<DATA name>)")
    ap.add_argument("--minutes", type=float, default=25., help="budget for training and held-out checks (25)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.001, help="learning_rate (0.001)")
    ap.add_argument("--size", type=int, help="input size instead of the decided one (a multiple of 32)")
    ap.add_argument("--epochs", type=float, help="epochs instead of the decided 60 (still cut to --minutes)")
    ap.add_argument("--workers", type=int, default=2, help="data-loading processes (2)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or (args.size is not None and (args.size < 32 or args.size % 32)):
        ap.error("--minutes must be positive and --size a positive multiple of 32")
    import torch
    from pydarknet.cfg import CfgError
    from pydarknet.commands.common import warn_to_stderr
    from pydarknet.convert import ConvertError
    from pydarknet.data import DataError
    from pydarknet.finetune import FinetuneConfig, finetune
    from pydarknet.trainloop import TrainingError
    from pydarknet.weights import WeightsError
    warnings.showwarning = warn_to_stderr
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work or f"finetune-{Path(args.data).stem}")
    try:
        work.mkdir(parents=True, exist_ok=True)
        data = _data_file(args.data, work)
        summary = finetune(FinetuneConfig(
            data=data, backbone=args.backbone, work=str(work), backbone_cfg=_backbone_cfg(args), cfg=args.cfg,
            minutes=args.minutes, seed=args.seed, learning_rate=args.lr, size=args.size, epochs=args.epochs,
            workers=args.workers))
    except (DataError, CfgError, WeightsError, ConvertError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"weights: {summary['weights']}  cfg: {summary['cfg']}  summary: {work / 'finetune.json'}")
    return 0
