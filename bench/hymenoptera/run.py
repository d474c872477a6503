#!/usr/bin/env python3
"""Fine-tune Tiny Darknet (real ImageNet weights) on ants vs bees with pydarknet's commands.

    python bench/hymenoptera/run.py [--shared ../shared] [--work DIR] [--threads N]

The sequence a Darknet user would type, with pydarknet's verbs:

    pydarknet partial tiny.cfg tiny.weights tiny.conv.19 19
    pydarknet classifier train hymenoptera.data bench/hymenoptera/tiny-hymenoptera.cfg tiny.conv.19
    pydarknet classifier valid hymenoptera.data bench/hymenoptera/tiny-hymenoptera.cfg \
        backup/tiny-hymenoptera_final.weights

``hymenoptera.data`` (written into the work folder): classes=2, labels = ants, bees (found in
each picture's path), train/valid lists of ``../shared/datasets/hymenoptera/{train,val}``.
Writes ``bench/hymenoptera/results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from pydarknet.commands import main as pydarknet  # noqa: E402

CFG = HERE / "tiny-hymenoptera.cfg"


def write_data(shared: Path, work: Path) -> Path:
    sets = shared / "datasets" / "hymenoptera"
    for split, name in (("train", "train.list"), ("val", "valid.list")):
        pictures = sorted(str(p) for p in (sets / split).glob("*/*.jpg"))
        (work / name).write_text("\n".join(pictures) + "\n")
    (work / "labels.list").write_text("ants\nbees\n")
    data = work / "hymenoptera.data"
    data.write_text(f"classes=2\ntrain={work / 'train.list'}\nvalid={work / 'valid.list'}\n"
                    f"labels={work / 'labels.list'}\nnames={work / 'labels.list'}\ntop=1\nbackup={work / 'backup'}\n")
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--cfg", default=str(CFG), help="the fine-tuning cfg (default tiny-hymenoptera.cfg)")
    ap.add_argument("--results", default=str(HERE / "results.json"))
    args = ap.parse_args()
    shared, work, cfg = Path(args.shared), Path(args.work), Path(args.cfg)
    work.mkdir(parents=True, exist_ok=True)
    data = write_data(shared, work)
    tiny = shared / "real" / "tiny"
    conv = work / "tiny.conv.19"
    assert pydarknet(["partial", str(tiny / "tiny.cfg"), str(tiny / "tiny.weights"), str(conv), "19"]) == 0
    extra = ["--threads", str(args.threads)] if args.threads else []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rc = pydarknet(["classifier", "train", str(data), str(cfg), str(conv), "--seed", "1", "--no-progress", "-q",
                    *extra])
    train_seconds = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    if rc != 0:
        return rc
    final = work / "backup" / f"{cfg.stem}_final.weights"
    summary = work / "valid.json"
    assert pydarknet(["classifier", "valid", str(data), str(cfg), str(final), "--out", str(summary), "-q"]) in (0, 1)
    valid = json.loads(summary.read_text())
    from pydarknet.network import Darknet
    net = Darknet(cfg)
    images = net.options.max_batches * net.options.batch
    train_count = len((work / "train.list").read_text().splitlines())
    import torch
    results = {
        "top1": valid["top1"], "valid_images": valid["images"], "train_images": train_count,
        "train_seconds": round(train_seconds, 1), "images_per_second": round(images / train_seconds, 2),
        "epochs": round(images / train_count, 2), "iterations": net.options.max_batches,
        "batch": net.options.batch, "input": net.width, "learning_rate": net.options.learning_rate,
        "valid_seconds": round(valid["seconds"], 1), "torch_threads": torch.get_num_threads(),
        "command": "python bench/hymenoptera/run.py" + (f" --threads {args.threads}" if args.threads else "")
                   + (f" --cfg bench/hymenoptera/{cfg.name} --results bench/hymenoptera/{Path(args.results).name}"
                      if cfg != CFG else ""),
        "steps": ["pydarknet partial tiny.cfg tiny.weights tiny.conv.19 19",
                  f"pydarknet classifier train hymenoptera.data bench/hymenoptera/{cfg.name} tiny.conv.19 --seed 1",
                  f"pydarknet classifier valid hymenoptera.data bench/hymenoptera/{cfg.name} "
                  f"backup/{cfg.stem}_final.weights"],
        "machine": {"cpus": os.cpu_count(), "gpu": False,
                    "load_average_1min_before_after_training": [round(load_before, 2), round(load_after, 2)]},
    }
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
