#!/usr/bin/env python3
"""GPU speed, one short run (≤ 5 minutes): yolov2-voc at 416 on a CUDA device.

Reports inference images/s at batch 1, 32 and 64 (``load_network(cfg, weights,
engine="torch", device="cuda")``, ``net(x)`` under ``torch.inference_mode()``; float32,
and channels_last + float16 autocast beside it with its distance to float32), the exact
engine's time at batch 1 (Darknet's arithmetic on the GPU: the torch sequential sums), and
training images/s (``Trainer.step``, batch 32, subdivisions 1).  Weights from the golden
recipe; input uniform noise.  Results: bench/results/gpu.json and gpu.md, with the device
named.

usage: python3 bench/gpu.py [--device cuda:0] [--out JSON] [--quick]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _inference_bench():
    spec = importlib.util.spec_from_file_location("pydarknet_bench_inference", REPO / "bench" / "inference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(f, reps, warmup, device):
    for _ in range(warmup):
        f()
    torch.cuda.synchronize(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inference(net, batch, reps, device) -> dict:
    x = torch.rand(batch, 3, net.height, net.width, device=device)
    with torch.inference_mode():
        ref = net(x)
        t = timed(lambda: net(x), reps, 3, device)
        net.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16):
            half = net(xc).float()
            th = timed(lambda: net(xc), reps, 3, device)
        net.to(memory_format=torch.contiguous_format)
    return {"batch": batch, "fp32_images_per_s": batch / t, "fp32_ms": t * 1000,
            "amp_channels_last_images_per_s": batch / th, "amp_channels_last_ms": th * 1000,
            "amp_vs_fp32_max_abs": float((half - ref).abs().max())}


def training(cfg, weights, batch, reps, device) -> dict:
    from pydarknet import Darknet
    from pydarknet.train import Trainer
    net = Darknet(cfg, exact=False)
    net.load_weights(weights)
    net.options.batch, net.options.subdivisions = batch, 1
    net.to(device).train()
    trainer = Trainer(net, quirk_warnings=False)
    x = torch.rand(batch, 3, net.height, net.width, device=device)
    truths = torch.zeros(batch, 30, 5, device=device)
    truths[:, 0] = torch.tensor([.5, .5, .3, .4, 1.], device=device)
    t = timed(lambda: trainer.step(x, truths), reps, 2, device)
    return {"batch": batch, "images_per_s": batch / t, "s_per_step": t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--model", default="yolov2-voc")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="3 timed rounds, batches 1 and 2, training batch 2")
    ap.add_argument("--out", help="default bench/results/gpu.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    import pydarknet
    device = torch.device(args.device)
    reps = 3 if args.quick else args.reps
    batches = (1, 2) if args.quick else (1, 32, 64)
    bench = _inference_bench()
    cfg = bench.find_cfgs([args.model], None)[args.model]
    started = _dt.datetime.now(_dt.timezone.utc)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pydarknet-gpu-") as tmp:
        weights = Path(tmp) / "w.weights"
        weights.write_bytes(bench.recipe_weights(cfg["path"], bench.SEED))
        net = pydarknet.load_network(cfg["path"], str(weights), engine="torch", device=device)
        rows = []
        for b in batches:
            rows.append(inference(net, b, reps, device))
            print(f"inference batch {b}: {rows[-1]['fp32_images_per_s']:.1f} images/s fp32, "
                  f"{rows[-1]['amp_channels_last_images_per_s']:.1f} AMP+channels_last", flush=True)
        net.exact = True
        x = torch.rand(1, 3, net.height, net.width, device=device)
        with torch.inference_mode():
            exact_s = timed(lambda: net(x), 1 if args.quick else 3, 1, device)
        print(f"exact engine batch 1: {exact_s * 1000:.0f} ms", flush=True)
        del net
        train = training(cfg["path"], str(weights), 2 if args.quick else 32, 3 if args.quick else 5, device)
        print(f"training batch {train['batch']}: {train['images_per_s']:.1f} images/s", flush=True)
    result = {
        "command": "python3 bench/gpu.py" + "".join(" " + shlex.quote(a) for a in
                                                    (sys.argv[1:] if argv is None else argv)),
        "started_utc": started.isoformat(timespec="seconds"), "duration_s": round(time.perf_counter() - t_start, 1),
        "device": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "model": args.model, "cfg": cfg["shown"], "size": 416, "inference": rows,
        "exact_batch1_ms": exact_s * 1000, "training": train,
    }
    out = Path(args.out) if args.out else REPO / "bench" / "results" / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = (f"# GPU benchmark ({result['started_utc']}, {result['device']})\n\n`{result['command']}`\n\n"
          f"{args.model} at 416, torch {torch.__version__}, CUDA {torch.version.cuda}; median of {reps} rounds.\n\n"
          "| batch | fp32 images/s | AMP + channels_last images/s | AMP max abs diff |\n|---|---|---|---|\n"
          + "".join(f"| {r['batch']} | {r['fp32_images_per_s']:.1f} | {r['amp_channels_last_images_per_s']:.1f} | "
                    f"{r['amp_vs_fp32_max_abs']:.2g} |\n" for r in rows)
          + f"\nExact engine (Darknet's arithmetic), batch 1: {exact_s * 1000:.0f} ms.\n"
          f"Training (Trainer.step, batch {train['batch']}): {train['images_per_s']:.1f} images/s.\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
