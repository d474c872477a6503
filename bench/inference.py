#!/usr/bin/env python3
"""Inference speed: pydarknet's engines vs OpenCV DNN vs a plain PyTorch graph.

For each model (yolov2-voc, yolov2-tiny-voc) at SIZE×SIZE and each batch size, these
contenders run the same float32 input, interleaved round by round:

  detect        batch 1 only: the default path end to end, ``pydarknet.load_network(cfg,
                weights)`` (engine "auto") + ``pydarknet.detect(net, picture)``: Darknet's
                letterbox of the picture, forward, region decoding, NMS
  onnxruntime   load_network(..., engine="onnxruntime"): forward (``net(x)``)
  torch         load_network(..., engine="torch"): plain torch kernels, batch norm folded
  exact         batch 1 only: load_network(..., engine="exact"), Darknet's own arithmetic
                bit for bit (numba kernels)
  plain_folded  the same layers as stock torch.nn modules, batch norm folded into Conv2d
  opencv        cv2.dnn.readNetFromDarknet(cfg, weights), DNN_BACKEND_OPENCV on the CPU
                (its defaults otherwise, Winograd included); setInput + forward, which
                includes its region decoding and NMS

At batch 1 the input is the letterboxed picture (tests/data/golden/images/synth1.png, a
committed synthetic scene) for every contender; at batch > 1, uniform noise.  Weights come
from the golden recipe (tests/data/golden/make_weights.py), written to a temporary folder
that is deleted afterwards; OpenCV reads that same file.  Each round runs every contender
once, in an order rotated from round to round, so that noise from the machine hits them
alike; the first WARMUP rounds are discarded and the median of the REPS timed rounds is
reported.  Before timing, the outputs are cross-checked against the torch engine.

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
sys.path.insert(0, str(REPO))  # measure this checkout's pydarknet, not an installed one
MODELS = ("yolov2-voc", "yolov2-tiny-voc")
CONTENDERS = ("detect", "onnxruntime", "torch", "exact", "plain_folded", "opencv")
BATCH1_ONLY = ("detect", "exact")
RATIOS = (("detect", "opencv"), ("onnxruntime", "opencv"), ("torch", "opencv"), ("exact", "opencv"),
          ("torch", "plain_folded"))
PICTURE = REPO / "tests" / "data" / "golden" / "images" / "synth1.png"
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


def _shown(path: Path) -> str:
    """A path for the results files: relative to the repository (or ../shared), never absolute."""
    path = path.resolve()
    for base, prefix in ((REPO, ""), (REPO.parent, "../")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            pass
    return path.name


def find_cfgs(models, cfg_dir: str | None) -> dict[str, dict]:
    found = {}
    dirs = [(Path(cfg_dir), "--cfg-dir")] if cfg_dir else default_cfg_dirs()
    for model in models:
        for d, source in dirs:
            path = d / f"{model}.cfg"
            if path.is_file():
                found[model] = {"path": str(path.resolve()), "shown": _shown(path), "source": source,
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
        from pydarknet.exact import bn_divisor
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
                    denom = bn_divisor(layer.rolling_variance.detach(), layer.flavour)
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

def make_contenders(cfg: str, weights: str, size: int) -> dict:
    import cv2
    import pydarknet

    def load(engine):
        net = pydarknet.load_network(cfg, weights, engine=engine)
        if (net.width, net.height) != (size, size):
            net.resize(size, size)
        return net

    nets = {e: load(e) for e in ("auto", "onnxruntime", "torch", "exact")}
    cvnet = cv2.dnn.readNetFromDarknet(cfg, weights)
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return {"nets": nets, "plain_folded": PlainGraph(nets["torch"], fold_bn=True).eval(), "cvnet": cvnet,
            "default_engine": type(nets["auto"].backend).__name__ if nets["auto"].backend else "torch"}


def check_outputs(m: dict, blob) -> dict:
    """Max abs differences to the torch engine: region outputs, and OpenCV's last convolution."""
    x = torch.from_numpy(blob)
    nets = m["nets"]
    with torch.inference_mode():
        layers = nets["torch"].layer_outputs(x)
        ref = layers[-1]
        res = {f"{k}_vs_torch_region_max_abs": float((f(x) - ref).abs().max())
               for k, f in (("onnxruntime", nets["onnxruntime"]), ("exact", nets["exact"]),
                            ("plain_folded", m["plain_folded"]))}
    conv_name = f"conv_{len(nets['torch'].layers) - 2}"
    m["cvnet"].setInput(blob)
    cv_raw = np.asarray(m["cvnet"].forward(conv_name))
    res["opencv_vs_torch_last_conv_max_abs"] = float(np.abs(cv_raw - layers[-2].numpy()).max())
    res["last_conv_max_abs_value"] = float(layers[-2].abs().max())
    return res


def time_case(m: dict, blob, picture, contenders, reps: int, warmup: int):
    """Times (ms) and minor page faults of every timed round, per contender."""
    import pydarknet
    x = torch.from_numpy(blob)
    nets, cvnet = m["nets"], m["cvnet"]

    def forward(f):
        def run():
            with torch.inference_mode():
                f(x)
        return run

    def run_cv():
        cvnet.setInput(blob)
        cvnet.forward()

    runs = {"detect": lambda: pydarknet.detect(nets["auto"], picture),
            "onnxruntime": forward(nets["onnxruntime"]), "torch": forward(nets["torch"]),
            "exact": forward(nets["exact"]), "plain_folded": forward(m["plain_folded"]), "opencv": run_cv}
    times = {c: [] for c in contenders}
    faults = {c: [] for c in contenders}
    for r in range(warmup + reps):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            runs[c]()
            dt = (time.perf_counter() - t0) * 1000
            if r >= warmup:
                times[c].append(dt)
                faults[c].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return times, faults


def benchmark(cfgs: dict[str, str], batches, size: int, reps_for, warmup: int, log=print) -> list[dict]:
    """Time every (model, batch); ``reps_for(batch)`` gives the number of timed rounds."""
    import pydarknet
    cases = []
    picture = pydarknet.load_image(PICTURE)
    with tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as tmp:
        for model, cfg in cfgs.items():
            weights = Path(tmp) / f"{model}.weights"
            weights.write_bytes(recipe_weights(cfg, SEED))
            t0 = time.perf_counter()
            m = make_contenders(cfg, str(weights), size)
            boxed = pydarknet.letterbox(picture, size, size)[None].numpy()
            check = check_outputs(m, boxed)
            first = {}
            for c, f in (("detect", lambda: pydarknet.detect(m["nets"]["auto"], picture)),
                         ("exact", lambda: m["nets"]["exact"](torch.from_numpy(boxed)))):
                t1 = time.perf_counter()
                with torch.inference_mode():
                    f()
                first[c] = round((time.perf_counter() - t1) * 1000, 1)
            log(f"  {model}: contenders built and checked in {time.perf_counter() - t0:.1f} s; first calls {first} ms")
            rng = np.random.default_rng(0)
            for batch in batches:
                blob = boxed if batch == 1 else rng.random((batch, 3, size, size), dtype=np.float32)
                contenders = tuple(c for c in CONTENDERS if batch == 1 or c not in BATCH1_ONLY)
                reps = reps_for(batch)
                t0 = time.perf_counter()
                times, faults = time_case(m, blob, picture, contenders, reps, warmup)
                med = {c: statistics.median(v) for c, v in times.items()}
                case = {
                    "model": model, "batch": batch, "size": size, "reps": reps, "warmup": warmup,
                    "default_engine": m["default_engine"],
                    "median_ms": med,
                    "images_per_s": {c: batch * 1000 / v for c, v in med.items()},
                    "min_ms": {c: min(v) for c, v in times.items()},
                    "times_ms": {c: [round(t, 3) for t in v] for c, v in times.items()},
                    "ratios": {f"{a}/{b}": med[a] / med[b] for a, b in RATIOS if a in med and b in med},
                    "minor_page_faults_median": {c: statistics.median(v) for c, v in faults.items()},
                    "check_batch1": check,
                    "first_call_ms": first,
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
                log(f"  {model:16s} batch {batch}: " + "  ".join(f"{c} {med[c]:.1f}" for c in contenders)
                    + f" ms  ({case['wall_s']} s)")
                cases.append(case)
            del m
    return cases


# --- report ---------------------------------------------------------------------------

def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


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
    def cell(d, k, fmt):
        return fmt.format(d[k]) if k in d else "–"

    lines = ["Median ms per call (batch 1: the letterboxed picture; `detect` is the default path end to end):", "",
             "| model | batch | " + " | ".join(f"{c} ms" for c in CONTENDERS) + " | " +
             " | ".join(f"{a}/{b}" for a, b in RATIOS) + " | reps |",
             "|" + "---|" * (3 + len(CONTENDERS) + len(RATIOS))]
    for c in cases:
        m, r = c["median_ms"], c["ratios"]
        lines.append(f"| {c['model']} {c['size']} | {c['batch']} | "
                     + " | ".join(cell(m, k, "{:.1f}") for k in CONTENDERS) + " | "
                     + " | ".join(cell(r, f"{a}/{b}", "{:.2f}") for a, b in RATIOS) + f" | {c['reps']} |")
    lines += ["", "Images per second:", "", "| model | batch | " + " | ".join(CONTENDERS) + " |",
              "|" + "---|" * (2 + len(CONTENDERS))]
    for c in cases:
        lines.append(f"| {c['model']} {c['size']} | {c['batch']} | "
                     + " | ".join(cell(c["images_per_s"], k, "{:.2f}") for k in CONTENDERS) + " |")
    lines += ["", "Minor page faults per call (median; fresh memory the kernel had to map):", "",
              "| model | batch | " + " | ".join(CONTENDERS) + " |", "|" + "---|" * (2 + len(CONTENDERS))]
    for c in cases:
        f = c["minor_page_faults_median"]
        lines.append(f"| {c['model']} {c['size']} | {c['batch']} | " + " | ".join(cell(f, k, "{:.0f}") for k in CONTENDERS) + " |")
    lines += ["", "First call after load_network (ms; ONNX Runtime session build, numba cache load):", ""]
    for c in cases:
        if c["batch"] == 1:
            lines.append(f"- {c['model']}: " + ", ".join(f"{k} {v:.0f}" for k, v in c["first_call_ms"].items()))
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
    args = ap.parse_args(argv)

    import cv2
    if args.quick:
        args.reps = args.reps_batched = 3
        args.warmup = 1
    torch.set_num_threads(args.threads)  # numba's kernels (exact engine, letterbox) follow torch's count
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
                      lambda b: args.reps if b == 1 else args.reps_batched, args.warmup)
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
                     "statistic": "median of timed rounds; contenders interleaved, order rotated each round",
                     "input": "batch 1: tests/data/golden/images/synth1.png letterboxed; batch > 1: uniform "
                              "random float32 N×3×H×W (numpy seed 0)",
                     "weights": f"tests/data/golden/make_weights.py recipe, seed {SEED}",
                     "detect": "pydarknet.load_network(cfg, weights) (engine auto) + pydarknet.detect(net, "
                               "picture tensor): letterbox, forward, decoding, NMS",
                     "onnxruntime/torch/exact": "load_network(cfg, weights, engine=...), net(x) under "
                                                "torch.inference_mode()",
                     "opencv": "readNetFromDarknet, DNN_BACKEND_OPENCV, DNN_TARGET_CPU, defaults (Winograd on); "
                               "setInput+forward() incl. region decode + NMS"},
        "versions": {"onnxruntime": _version("onnxruntime"), "numba": _version("numba")},
        "cfgs": {m: {k: v for k, v in i.items() if k != "path"} for m, i in cfgs.items()},
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
        f"onnxruntime {result['versions']['onnxruntime']}, numba {result['versions']['numba']}.\n"
        "cfgs: " + "; ".join(f"{m}: {i['shown']} ({i['source']})" for m, i in cfgs.items()) + "\n\n"
        + md + "\n")
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')} ({result['duration_s']} s)")
    return result


if __name__ == "__main__":
    main()
