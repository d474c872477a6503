#!/usr/bin/env python3
"""Inference speed: pydarknet's ``Darknet.forward`` vs OpenCV DNN vs a plain PyTorch graph.

For each model (yolov2-voc, yolov2-tiny-voc) at SIZE×SIZE and each batch size, four
contenders run the same float32 input:

  ours          pydarknet.Darknet(cfg, exact=False).eval() (plain torch kernels), forward
                under torch.inference_mode()
  plain         the same layers as stock torch.nn modules: Conv2d, BatchNorm2d (eval),
                LeakyReLU(0.1, inplace), MaxPool2d (ConstantPad2d(-inf) where Darknet
                pads), reorg as reshape/permute, torch.cat, region activations
  plain_folded  as plain, with each BatchNorm folded into its Conv2d
  opencv        cv2.dnn.readNetFromDarknet(cfg, weights), DNN_BACKEND_OPENCV on the CPU
                (its defaults otherwise, Winograd included); setInput + forward, which
                includes its region decoding and NMS

Weights come from the golden recipe (tests/data/golden/make_weights.py), written to a
temporary folder that is deleted afterwards; OpenCV reads that same file.  Each round
runs every contender once, in an order rotated from round to round, so that noise from
the machine hits them alike; the first WARMUP rounds are discarded and the median of the
REPS timed rounds is reported.  Our default mode, ``exact=True`` (Darknet's own float
arithmetic, bit-exact and meant for verification), is timed apart at batch 1 with a few
rounds only (--exact-reps), since one forward takes seconds.  Before timing, the outputs are cross-checked: the plain
graphs against ours (region output) and OpenCV's last convolution against ours.

usage: python3 bench/inference.py [--quick] [--cfg-dir DIR] [--threads N] [--out JSON]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
MODELS = ("yolov2-voc", "yolov2-tiny-voc")
CONTENDERS = ("ours", "plain", "plain_folded", "opencv")
RATIOS = (("ours", "opencv"), ("ours", "plain"), ("ours", "plain_folded"))
BN_EPS = 1e-6   # Darknet: (x - mean) / (sqrt(var) + 1e-6)
SEED = 1        # recipe weights seed


# --- configuration files ------------------------------------------------------------

def default_cfg_dirs() -> list[tuple[Path, str]]:
    """Where to look for the cfgs, in order: ours in cfg/, then Darknet's originals."""
    dirs = [(REPO / "cfg", "repository cfg/")]
    env = os.environ.get("PYDARKNET_SHARED")
    base = Path(env) if env else REPO.parent / "shared"
    for cand in (base / "golden" / "cfg-original", base / "cfg-original"):
        dirs.append((cand, "Darknet's original cfg (shared/golden/cfg-original, third-party)"))
    return dirs


def find_cfgs(models, cfg_dir: str | None) -> dict[str, dict]:
    found = {}
    dirs = [(Path(cfg_dir), "--cfg-dir")] if cfg_dir else default_cfg_dirs()
    for model in models:
        for d, source in dirs:
            path = d / f"{model}.cfg"
            if path.is_file():
                found[model] = {"path": str(path.resolve()), "source": source,
                                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
                break
        else:
            raise SystemExit(f"{model}.cfg not found in " + ", ".join(str(d) for d, _ in dirs))
    return found


def recipe_weights(cfg: str, seed: int) -> bytes:
    sys.path.insert(0, str(REPO / "tests" / "data" / "golden"))
    try:
        from make_weights import make_weights
    finally:
        sys.path.pop(0)
    return make_weights(cfg, seed)


# --- the plain PyTorch graph ---------------------------------------------------------

class Reorg(nn.Module):
    """Darknet's [reorg] (stride s) as a reshape/permute."""

    def __init__(self, stride):
        super().__init__()
        self.s = stride

    def forward(self, x):
        n, c, h, w = x.shape
        s = self.s
        y = x.reshape(n, c // (s * s), h, s, w, s).permute(0, 3, 5, 1, 2, 4)
        return y.reshape(n, c * s * s, h // s, w // s)


class Concat(nn.Module):
    def forward(self, *xs):
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


class RegionActivation(nn.Module):
    """YOLOv2's region layer: logistic x, y, objectness; softmax over classes; w, h raw."""

    def __init__(self, num, classes):
        super().__init__()
        self.num, self.classes = num, classes

    def forward(self, x):
        n, c, h, w = x.shape
        v = x.view(n, self.num, 5 + self.classes, h, w)
        return torch.cat([torch.sigmoid(v[:, :, :2]), v[:, :, 2:4], torch.sigmoid(v[:, :, 4:5]),
                          torch.softmax(v[:, :, 5:], 2)], 2).view(n, c, h, w)


class PlainGraph(nn.Module):
    """The layers of a pydarknet net rebuilt from stock torch.nn modules (weights copied)."""

    def __init__(self, net, fold_bn: bool):
        super().__init__()
        self.mods = nn.ModuleList()
        self.sources = []
        for layer in net.layers:
            self.sources.append(list(layer.sources))
            self.mods.append(self._module(layer, fold_bn))
        last = list(range(len(self.mods)))
        for i, srcs in enumerate(self.sources):
            for j in srcs:
                if j >= 0:
                    last[j] = max(last[j], i)
        self.last_use = last

    @staticmethod
    def _module(layer, fold_bn):
        kind = layer.kind
        if kind == "convolutional":
            if layer.activation not in ("leaky", "linear"):
                raise ValueError(f"plain graph: activation {layer.activation} not handled")
            w = layer.weight.detach()
            conv = nn.Conv2d(w.shape[1] * layer.groups, w.shape[0], layer.size, layer.stride, layer.padding,
                             groups=layer.groups, bias=not layer.batch_normalize or fold_bn)
            mods = [conv]
            with torch.no_grad():
                if not layer.batch_normalize:
                    conv.weight.copy_(w)
                    conv.bias.copy_(layer.bias.detach())
                else:
                    denom = (layer.rolling_variance.detach().double().sqrt() + BN_EPS)
                    scale = layer.scales.detach().double() / denom
                    if fold_bn:
                        conv.weight.copy_((w.double() * scale.view(-1, 1, 1, 1)).float())
                        conv.bias.copy_((layer.bias.detach().double()
                                         - layer.rolling_mean.detach().double() * scale).float())
                    else:
                        conv.weight.copy_(w)
                        bn = nn.BatchNorm2d(w.shape[0], eps=0.0)
                        bn.running_mean.copy_(layer.rolling_mean.detach())
                        bn.running_var.copy_((denom * denom).float())   # sqrt(var') = sqrt(var) + 1e-6
                        bn.weight.copy_(layer.scales.detach())
                        bn.bias.copy_(layer.bias.detach())
                        mods.append(bn)
            if layer.activation == "leaky":
                mods.append(nn.LeakyReLU(0.1, inplace=True))
            return nn.Sequential(*mods)
        if kind == "maxpool":
            (_, h, w), o = layer.in_shapes[0], layer.out_shape
            left = layer.padding // 2
            right = (o.w - 1) * layer.stride + layer.size - w - left
            bottom = (o.h - 1) * layer.stride + layer.size - h - left
            pool = nn.MaxPool2d(layer.size, layer.stride)
            if left or right or bottom:
                return nn.Sequential(nn.ConstantPad2d((left, right, left, bottom), float("-inf")), pool)
            return pool
        if kind == "reorg":
            if layer.reverse:
                raise ValueError("plain graph: reverse reorg not handled")
            return Reorg(layer.stride)
        if kind == "route":
            return Concat()
        if kind == "region":
            return RegionActivation(layer.num, layer.classes)
        raise ValueError(f"plain graph: layer kind {kind} not handled")

    def forward(self, x):
        outs = []
        for i, (mod, srcs) in enumerate(zip(self.mods, self.sources)):
            outs.append(mod(*[x if j < 0 else outs[j] for j in srcs]))
            for j in srcs:
                if j >= 0 and self.last_use[j] == i:
                    outs[j] = None
        return outs[-1]


# --- timing --------------------------------------------------------------------------

def make_contenders(cfg: str, weights: str, size: int):
    import cv2
    from pydarknet import Darknet

    net = Darknet(cfg, exact=False)
    if (net.width, net.height) != (size, size):
        net.resize(size, size)
    net.load_weights(weights)
    net.eval()
    plain = PlainGraph(net, fold_bn=False).eval()
    folded = PlainGraph(net, fold_bn=True).eval()
    cvnet = cv2.dnn.readNetFromDarknet(cfg, weights)
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net, plain, folded, cvnet


def check_outputs(net, plain, folded, cvnet, blob) -> dict:
    """Max abs differences to ours: plain graphs on the region output, OpenCV on the last conv."""
    x = torch.from_numpy(blob)
    with torch.inference_mode():
        layers = net.layer_outputs(x)
        ref = layers[-1]
        res = {"plain_vs_ours_region_max_abs": float((plain(x) - ref).abs().max()),
               "plain_folded_vs_ours_region_max_abs": float((folded(x) - ref).abs().max())}
    conv_name = f"conv_{len(net.layers) - 2}"
    cvnet.setInput(blob)
    cv_raw = np.asarray(cvnet.forward(conv_name))
    res["opencv_vs_ours_last_conv_max_abs"] = float(np.abs(cv_raw - layers[-2].numpy()).max())
    res["last_conv_max_abs_value"] = float(layers[-2].abs().max())
    return res


def time_case(net, plain, folded, cvnet, blob, reps: int, warmup: int):
    """Times (ms) and minor page faults of every timed round, per contender."""
    x = torch.from_numpy(blob)

    def run_torch(m):
        with torch.inference_mode():
            m(x)

    def run_cv():
        cvnet.setInput(blob)
        cvnet.forward()

    runs = {"ours": lambda: run_torch(net), "plain": lambda: run_torch(plain),
            "plain_folded": lambda: run_torch(folded), "opencv": run_cv}
    times = {c: [] for c in CONTENDERS}
    faults = {c: [] for c in CONTENDERS}
    for r in range(warmup + reps):
        order = CONTENDERS[r % len(CONTENDERS):] + CONTENDERS[:r % len(CONTENDERS)]
        for c in order:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            runs[c]()
            dt = (time.perf_counter() - t0) * 1000
            if r >= warmup:
                times[c].append(dt)
                faults[c].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return times, faults


def time_exact(net, blob, reps: int) -> dict:
    """Our exact=True mode alone (1 warm-up round, then ``reps``), and its distance to the fast mode."""
    x = torch.from_numpy(blob)
    times = []
    try:
        net.exact = True
        with torch.inference_mode():
            exact_out = net(x)
            for _ in range(reps):
                t0 = time.perf_counter()
                net(x)
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        net.exact = False
    with torch.inference_mode():
        fast_out = net(x)
    return {"reps": reps, "warmup": 1, "median_ms": statistics.median(times),
            "times_ms": [round(t, 3) for t in times],
            "exact_vs_fast_region_max_abs": float((exact_out - fast_out).abs().max())}


def benchmark(cfgs: dict[str, str], batches, size: int, reps_for, warmup: int, exact_reps: int = 0,
              log=print) -> list[dict]:
    """Time every (model, batch); ``reps_for(batch)`` gives the number of timed rounds."""
    cases = []
    with tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as tmp:
        for model, cfg in cfgs.items():
            weights = Path(tmp) / f"{model}.weights"
            weights.write_bytes(recipe_weights(cfg, SEED))
            net, plain, folded, cvnet = make_contenders(cfg, str(weights), size)
            rng = np.random.default_rng(0)
            check = check_outputs(net, plain, folded, cvnet,
                                  rng.random((1, 3, size, size), dtype=np.float32))
            for batch in batches:
                blob = rng.random((batch, 3, size, size), dtype=np.float32)
                reps = reps_for(batch)
                t0 = time.perf_counter()
                times, faults = time_case(net, plain, folded, cvnet, blob, reps, warmup)
                med = {c: statistics.median(v) for c, v in times.items()}
                case = {
                    "model": model, "batch": batch, "size": size, "reps": reps, "warmup": warmup,
                    "median_ms": med,
                    "min_ms": {c: min(v) for c, v in times.items()},
                    "times_ms": {c: [round(t, 3) for t in v] for c, v in times.items()},
                    "ratios": {f"{a}/{b}": med[a] / med[b] for a, b in RATIOS},
                    "minor_page_faults_median": {c: statistics.median(v) for c, v in faults.items()},
                    "check_batch1": check,
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
                log(f"  {model:16s} batch {batch}: " + "  ".join(f"{c} {med[c]:.1f}" for c in CONTENDERS)
                    + f" ms  ({case['wall_s']} s)")
                if batch == 1 and exact_reps > 0:
                    t0 = time.perf_counter()
                    ex = case["ours_exact"] = time_exact(net, blob, exact_reps)
                    ex["ratio_to_ours"] = ex["median_ms"] / med["ours"]
                    log(f"  {model:16s} batch 1: ours exact=True {ex['median_ms']:.1f} ms "
                        f"({time.perf_counter() - t0:.1f} s)")
                cases.append(case)
            del net, plain, folded, cvnet
    return cases


# --- report ---------------------------------------------------------------------------

def machine_info(threads: int) -> dict:
    import cv2
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    build = cv2.getBuildInformation()
    parallel = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if "Parallel framework" in ln), None)
    return {
        "cpu_count": os.cpu_count(), "cpu_model": model, "memory_gb": mem_gb,
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "opencv": cv2.__version__, "opencv_parallel_framework": parallel, "numpy": np.__version__,
        "threads": threads, "torch_num_threads": torch.get_num_threads(), "opencv_num_threads": cv2.getNumThreads(),
    }


def table(cases: list[dict]) -> str:
    head = ("| model | batch | ours ms | plain ms | plain_folded ms | opencv ms "
            "| ours/opencv | ours/plain | ours/plain_folded | reps |")
    lines = [head, "|" + "---|" * 10]
    for c in cases:
        m, r = c["median_ms"], c["ratios"]
        lines.append(f"| {c['model']} {c['size']} | {c['batch']} | {m['ours']:.1f} | {m['plain']:.1f} | "
                     f"{m['plain_folded']:.1f} | {m['opencv']:.1f} | {r['ours/opencv']:.2f} | "
                     f"{r['ours/plain']:.2f} | {r['ours/plain_folded']:.2f} | {c['reps']} |")
    exact = [c for c in cases if "ours_exact" in c]
    if exact:
        lines += ["", "Our default exact=True mode (Darknet's float arithmetic, bit-exact), batch 1:", "",
                  "| model | batch | ours exact ms | exact/fast | reps |", "|---|---|---|---|---|"]
        for c in exact:
            e = c["ours_exact"]
            lines.append(f"| {c['model']} {c['size']} | 1 | {e['median_ms']:.1f} | {e['ratio_to_ours']:.1f} | {e['reps']} |")
    lines += ["", "Minor page faults per forward (median; fresh memory the kernel had to map):", "",
              "| model | batch | " + " | ".join(CONTENDERS) + " |", "|" + "---|" * (2 + len(CONTENDERS))]
    for c in cases:
        f = c["minor_page_faults_median"]
        lines.append(f"| {c['model']} {c['size']} | {c['batch']} | " + " | ".join(f"{f[k]:.0f}" for k in CONTENDERS) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 timed rounds after 1 warm-up")
    ap.add_argument("--cfg-dir", help="folder with yolov2-voc.cfg and yolov2-tiny-voc.cfg "
                                      "(default: cfg/, else shared/golden/cfg-original)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="threads for torch and OpenCV (default: torch.get_num_threads())")
    ap.add_argument("--out", help="JSON results, with a Markdown table beside it (.md); default "
                                  "bench/results/inference.json, or a temporary folder with --quick")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--reps", type=int, default=20, help="timed rounds at batch 1 (default 20)")
    ap.add_argument("--reps-batched", type=int, default=10, help="timed rounds at batch > 1 (default 10)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--exact-reps", type=int, default=3,
                    help="timed rounds of our exact=True mode at batch 1 (default 3; 0 skips it)")
    args = ap.parse_args(argv)

    import cv2
    if args.quick:
        args.reps = args.reps_batched = 3
        args.warmup = 1
        args.exact_reps = min(args.exact_reps, 1)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [int(b) for b in args.batches.split(",")]
    cfgs = find_cfgs(models, args.cfg_dir)
    for m, info in cfgs.items():
        print(f"{m}: {info['path']}  [{info['source']}]")

    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    cases = benchmark({m: i["path"] for m, i in cfgs.items()}, batches, args.size,
                      lambda b: args.reps if b == 1 else args.reps_batched, args.warmup, args.exact_reps)
    result = {
        "command": "python3 bench/inference.py" + "".join(" " + shlex.quote(a) for a in
                                                          (sys.argv[1:] if argv is None else argv)),
        "started_utc": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "machine": machine_info(args.threads),
        "load_average_1_5_15": {"before": [round(v, 2) for v in load_before],
                                "after": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"size": args.size, "batches": batches, "reps_batch1": args.reps,
                     "reps_batched": args.reps_batched, "warmup": args.warmup, "quick": args.quick,
                     "exact_reps": args.exact_reps,
                     "statistic": "median of timed rounds; contenders interleaved, order rotated each round",
                     "input": "uniform random float32 N×3×H×W (numpy seed 0)",
                     "weights": f"tests/data/golden/make_weights.py recipe, seed {SEED}",
                     "ours": "pydarknet.Darknet(cfg, exact=False).eval(), torch.inference_mode()",
                     "ours_exact": "the same net with exact=True (pydarknet's default), batch 1, "
                                   "not interleaved, 1 warm-up",
                     "opencv": "readNetFromDarknet, DNN_BACKEND_OPENCV, DNN_TARGET_CPU, defaults (Winograd on); "
                               "setInput+forward() incl. region decode + NMS"},
        "cfgs": cfgs,
        "cases": cases,
    }
    out = Path(args.out) if args.out else (
        Path(tempfile.mkdtemp(prefix="pydarknet-bench-quick-")) / "inference.json" if args.quick
        else REPO / "bench" / "results" / "inference.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = table(cases)
    out.with_suffix(".md").write_text(
        f"# Inference benchmark ({result['started_utc']})\n\n"
        f"`{result['command']}`\n\n"
        f"{result['machine']['cpu_count']} × {result['machine']['cpu_model']}, {args.threads} threads, "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}; median ms of interleaved rounds "
        f"after {args.warmup} warm-up rounds.\n"
        f"Load average before/after (1, 5, 15 min): {result['load_average_1_5_15']['before']} / "
        f"{result['load_average_1_5_15']['after']}.\n"
        "cfgs: " + "; ".join(f"{m}: {i['path']} ({i['source']})" for m, i in cfgs.items()) + "\n\n"
        + md + "\n")
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')} ({result['duration_s']} s)")
    return result


if __name__ == "__main__":
    main()
