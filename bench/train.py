#!/usr/bin/env python3
"""Training speed: pydarknet's ``Trainer.step`` vs a plain PyTorch training step of the same
layers, and the data loader's throughput, measured side by side in one run.

Contenders, interleaved round by round (order rotated), the same batch of images:

  trainer        Darknet(cfg, exact=False) + Trainer.step: forward, Darknet's region loss
                 (delta and cost), backward with Darknet's batch-norm gradient, Darknet's SGD
  trainer_exact  Darknet(cfg) (exact=True) + Trainer.step: as above, batch-norm statistics
                 summed in Darknet's float order (the loss within ~1e-6 of Darknet's)
  plain          the same layers as stock torch.nn modules (Conv2d, BatchNorm2d in training
                 mode, LeakyReLU, MaxPool2d, reorg, cat, region activations), a squared-error
                 loss on the region output, torch.optim.SGD with momentum and weight decay

Data: ``pydarknet.data.detection_loader`` over a synthetic shapes dataset (pydarknet.shapes,
written to a temporary folder) with Darknet's augmentation, at the same size and batch,
timed in the main process (num_workers=0: the cost of one worker); the training runs
use 2 workers, so the loader keeps up when its images/s exceeds the trainer's / 2.

usage: python3 bench/train.py [--model yolov2-tiny-voc] [--size 416] [--batch 8] [--reps 3]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # measure this checkout's pydarknet
CONTENDERS = ("trainer", "trainer_exact", "plain")


def _inference_bench():
    spec = importlib.util.spec_from_file_location("pydarknet_bench_inference", REPO / "bench" / "inference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _net(cfg, weights, size, batch, exact, device):
    from pydarknet import Darknet
    net = Darknet(cfg, exact=exact)
    net.load_weights(weights)
    net.options.batch, net.options.subdivisions = batch, 1
    if (net.width, net.height) != (size, size):
        net.resize(size, size)
    return net.to(device).train()


def _truths(batch, classes, rng):
    t = np.zeros((batch, 30, 5), np.float32)
    for i in range(batch):
        for j in range(3):
            w, h = rng.uniform(.1, .5, 2)
            t[i, j] = [rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2), w, h, rng.integers(classes)]
    return torch.from_numpy(t)


def plain_step(model, opt):
    def step(x):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = .5 * (out * out).sum()   # squared error to a zero target: a loss as cheap as possible
        loss.backward()
        opt.step()
        return float(loss)
    return step


def time_training(cfg, weights, size, batch, reps, warmup, device, log) -> dict:
    from pydarknet.train import Trainer
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((batch, 3, size, size), dtype=np.float32)).to(device)
    fast = _net(cfg, weights, size, batch, False, device)
    exact = _net(cfg, weights, size, batch, True, device)
    truths = _truths(batch, fast.detection_layer.classes, rng).to(device)
    trainers = {"trainer": Trainer(fast, quirk_warnings=False), "trainer_exact": Trainer(exact, quirk_warnings=False)}
    plain = _inference_bench().PlainGraph(_net(cfg, weights, size, batch, False, "cpu").eval(), fold_bn=False)
    plain = plain.to(device).train()
    for mod in plain.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eps, mod.momentum = 1e-5, .01
    opt = torch.optim.SGD(plain.parameters(), lr=1e-6, momentum=.9, weight_decay=5e-4)
    runs = {"trainer": lambda: trainers["trainer"].step(x, truths),
            "trainer_exact": lambda: trainers["trainer_exact"].step(x, truths), "plain": plain_step(plain, opt)}
    runs["plain"] = (lambda f: lambda: f(x))(runs["plain"])
    times = {c: [] for c in CONTENDERS}
    for r in range(warmup + reps):
        for c in CONTENDERS[r % 3:] + CONTENDERS[:r % 3]:
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            runs[c]()
            if device != "cpu":
                torch.cuda.synchronize()
            if r >= warmup:
                times[c].append(time.perf_counter() - t0)
        log(f"  round {r + 1}/{warmup + reps}: " + ", ".join(f"{c} {times[c][-1]:.2f} s" for c in CONTENDERS
                                                               if times[c] and r >= warmup))
    med = {c: statistics.median(v) for c, v in times.items()}
    return {"median_s": med, "times_s": {c: [round(t, 3) for t in v] for c, v in times.items()},
            "images_per_s": {c: batch / v for c, v in med.items()},
            "ratios": {"trainer/plain images_per_s": med["plain"] / med["trainer"],
                       "trainer_exact/plain images_per_s": med["plain"] / med["trainer_exact"]}}


def time_loader(size, batch, batches, tmp, log) -> dict:
    from pydarknet import shapes
    from pydarknet.data import DataConfig, detection_loader
    data = shapes.write_dataset(Path(tmp) / "shapes", n_train=4 * batch, n_val=0, seed=0)
    paths = DataConfig.from_file(data).train_list()
    loader = detection_loader(paths, size, size, batch_size=batch, num_workers=0, seed=0, iterations=batches + 1)
    it = iter(loader)
    next(it)  # first batch: imports, file cache
    t0 = time.perf_counter()
    n = sum(images.shape[0] for images, _ in it)
    dt = time.perf_counter() - t0
    log(f"  loader: {n} images in {dt:.2f} s (one process)")
    return {"images": n, "seconds": round(dt, 3), "images_per_s_one_process": n / dt, "num_workers": 0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov2-tiny-voc")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--loader-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="JSON results (a Markdown summary beside it); default bench/results/train.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = _inference_bench()
    cfg = bench.find_cfgs([args.model], None)[args.model]
    load_before = os.getloadavg()
    started = _dt.datetime.now(_dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="pydarknet-train-bench-") as tmp:
        weights = Path(tmp) / "w.weights"
        weights.write_bytes(bench.recipe_weights(cfg["path"], bench.SEED))
        training = time_training(cfg["path"], str(weights), args.size, args.batch, args.reps, args.warmup,
                                 args.device, print)
        loader = time_loader(args.size, args.batch, args.loader_batches, tmp, print)
    result = {
        "command": "python3 bench/train.py" + "".join(" " + shlex.quote(a) for a in
                                                      (sys.argv[1:] if argv is None else argv)),
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": bench.machine_info(args.threads),
        "load_average_1_5_15": {"before": [round(v, 2) for v in load_before],
                                "after": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"model": args.model, "cfg": cfg["shown"], "size": args.size, "batch": args.batch,
                     "subdivisions": 1, "reps": args.reps, "warmup": args.warmup, "device": args.device},
        "training": training, "loader": loader,
    }
    out = Path(args.out) if args.out else REPO / "bench" / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    ips = training["images_per_s"]
    md = (f"# Training benchmark ({result['started_utc']})\n\n`{result['command']}`\n\n"
          f"{args.model} at {args.size}, batch {args.batch}, {args.device}, {args.threads} threads; "
          f"load average before/after {result['load_average_1_5_15']['before']} / "
          f"{result['load_average_1_5_15']['after']}; median of {args.reps} interleaved rounds.\n\n"
          "| contender | s per step | images/s | vs plain |\n|---|---|---|---|\n"
          + "".join(f"| {c} | {training['median_s'][c]:.2f} | {ips[c]:.2f} | {ips[c] / ips['plain']:.2f} |\n"
                    for c in CONTENDERS)
          + f"\nData loader (Darknet's augmentation, one process): {loader['images_per_s_one_process']:.1f} "
            f"images/s.\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
