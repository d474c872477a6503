"""Hostile variants of weights/shapes-tiny.weights, loaded as inference loads them.

Each variant has an expected verdict: ``refuse`` (a WeightsError; accepting it would run
a model with garbage or missing weights) or ``accept`` (a legitimate file, e.g. another
``seen`` or Darknet's 0.2.5 header).  ``bad`` counts variants whose verdict differs, and any
exception other than WeightsError (a traceback).  Partial files are also loaded with
``partial=True``, where a file cut at a layer boundary must be accepted.

    nice python3 bench/reliability/weights_variants.py --seed 1 --out bench/reliability/weights_variants.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pydarknet.network import Darknet  # noqa: E402
from pydarknet.weights import WeightsError, layer_boundaries, read_header  # noqa: E402

CFG = ROOT / "cfg" / "shapes-tiny.cfg"
WEIGHTS = ROOT / "weights" / "shapes-tiny.weights"


def other_cfg_texts(text: str) -> dict[str, str]:
    """cfgs near shapes-tiny (one layer wider, one class more, a layer less, no batch norm ...)."""
    variants = {
        "filters 16->32 in the first conv": text.replace("filters=16", "filters=32", 1),
        "one class more": text.replace("classes=3", "classes=4").replace("filters=40", "filters=45"),
        "one anchor less": text,
        "no batch norm in the first conv": text.replace("batch_normalize=1", "batch_normalize=0", 1),
        "3x3 -> 1x1 in the first conv": text.replace("size=3", "size=1", 1),
    }
    lines = text.split("\n")
    heads = [i for i, l in enumerate(lines) if l.strip() == "[convolutional]"]
    if len(heads) > 2:      # drop the second conv+pool block: a shallower net
        a = heads[1]
        b = heads[2]
        variants["one conv block less"] = "\n".join(lines[:a] + lines[b:])
    return {k: v for k, v in variants.items() if v != text}


def variants(data: bytes, net, rng: random.Random, folder: Path):
    """(name, expected verdict, bytes, load options) of every variant."""
    header = read_header(data[:20])
    sizes = sorted(set(layer_boundaries(net, header)))
    full = len(data)
    out = []
    # truncations at every layer boundary (a partial file) and inside layers and the header
    for s in sizes[:-1]:
        out.append((f"cut at layer boundary {s}", "refuse", data[:s], {}))
        if s > 20:
            out.append((f"cut at layer boundary {s}, partial=True", "accept", data[:s], {"partial": True}))
    for a, b in zip(sizes, sizes[1:]):
        for _ in range(3):
            if b - a > 8:
                cut = rng.randrange(a + 1, b)
                out.append((f"cut inside a layer at {cut}", "refuse", data[:cut], {}))
                out.append((f"cut inside a layer at {cut}, partial=True", "refuse", data[:cut], {"partial": True}))
    for cut in (0, 1, 4, 12, 15, 16, 19):
        out.append((f"cut in the header at {cut}", "refuse", data[:cut], {}))
    # header fields
    body = data[20:]

    def head(major=0, minor=2, revision=0, seen=header.seen, fmt="<iiiQ"):
        return struct.pack(fmt, major, minor, revision, seen)
    for major in (1, 2, 3, -1, 999, 2**31 - 1, -2**31):
        out.append((f"major {major}", "refuse", head(major=major) + body, {}))
    for minor in (3, 5, 10, 100, -1, 999, 2**31 - 1):
        out.append((f"minor {minor}", "refuse", head(minor=minor) + body, {}))
    for revision in (-1, 1000, 2**31 - 1):
        out.append((f"revision {revision}", "refuse", head(revision=revision) + body, {}))
    for revision in (1, 5):
        out.append((f"revision {revision} (AlexeyAB writes 0.2.5)", "accept", head(revision=revision) + body, {}))
    for seen in (2**63, 2**62, 2**48, 2**64 - 1, 2**56 + 3):
        out.append((f"seen {seen}", "refuse", head(seen=seen) + body, {}))
    for seen in (0, 1, 64000, 2**40):
        out.append((f"seen {seen}", "accept", head(seen=seen) + body, {}))
    out.append(("version 0.1 header (32-bit seen), body intact", "accept", struct.pack("<iiii", 0, 1, 0, 7) + body, {}))
    out.append(("version 0.1 header + 4 stray bytes", "refuse", struct.pack("<iiii", 0, 1, 0, 7) + bytes(4) + body, {}))
    out.append(("version 0.1, negative seen", "refuse", struct.pack("<iiii", 0, 1, 0, -5) + body, {}))
    out.append(("random header", "refuse", bytes(rng.randrange(256) for _ in range(20)) + body, {}))
    out.append(("all-0xFF header", "refuse", b"\xff" * 20 + body, {}))
    # non-finite values in each stored tensor of each layer
    offset = 20
    for layer in net.layers:
        for p in layer.darknet_params():
            n = p.numel()
            for bad in (np.nan, np.inf, -np.inf):
                i = offset + 4 * rng.randrange(n)
                v = bytearray(data)
                v[i:i + 4] = np.float32(bad).tobytes()
                kind = "NaN" if np.isnan(bad) else ("+Inf" if bad > 0 else "-Inf")
                out.append((f"{kind} in layer {layer.index} tensor of {n}", "refuse", bytes(v), {}))
            offset += 4 * n
    v = bytearray(data)
    v[-4:] = np.float32(np.nan).tobytes()
    out.append(("NaN in the last value, allow_nonfinite=True", "accept", bytes(v), {"allow_nonfinite": True}))
    # appended bytes
    for extra in (1, 2, 3, 4, 8, 20, 100, 4096, 1 << 20):
        out.append((f"{extra} bytes appended", "refuse", data + bytes(rng.randrange(256) for _ in range(min(extra, 4096)))
                    + b"\0" * max(0, extra - 4096), {}))
    out.append(("the file twice", "refuse", data + data, {}))
    out.append(("8 bytes appended, allow_trailing=True", "accept", data + b"\0" * 8, {"allow_trailing": True}))
    # files for other cfgs (their own weights, saved by pydarknet)
    text = CFG.read_text()
    for what, other in other_cfg_texts(text).items():
        o = Darknet("other.cfg", text=other, exact=False)
        with torch_no_grad():
            for layer in o.layers:
                if getattr(layer, "batch_normalize", False):
                    layer.rolling_variance.uniform_(0.5, 2)
        path = folder / "other.weights"
        o.save_weights(path)
        out.append((f"file for another cfg: {what}", "refuse", path.read_bytes(), {}))
        out.append((f"file for another cfg: {what}, partial=True", "refuse", path.read_bytes(), {"partial": True}))
    for name in ("yolov2-tiny-voc.cfg", "darknet19.cfg"):
        o = Darknet(ROOT / "cfg" / name, exact=False)
        path = folder / "other.weights"
        o.save_weights(path, cutoff=4)
        out.append((f"first 4 layers of {name}", "refuse", path.read_bytes(), {}))
    out.append(("empty file", "refuse", b"", {}))
    out.append(("0.2.0 header and all-zero values", "accept", head(seen=0) + bytes(full - 20), {}))
    return out


KINDS = [("cut at layer boundary", "truncated at a layer boundary"), ("cut inside", "truncated inside a layer"),
         ("cut in the header", "truncated in the header"), ("NaN", "non-finite value"), ("+Inf", "non-finite value"),
         ("-Inf", "non-finite value"), ("file for another cfg", "file for another cfg"),
         ("first 4 layers", "file for another cfg"), ("special", "special file"), ("empty", "special file"),
         ("0.2.0 header and all-zero", "all-zero values")]


def kind_of(name: str) -> str:
    """The family of a variant, for the summary."""
    if "appended" in name or "twice" in name:
        return "bytes appended"
    return next((kind for prefix, kind in KINDS if name.startswith(prefix)), "header field")


class torch_no_grad:
    def __enter__(self):
        import torch
        self.ctx = torch.no_grad()
        return self.ctx.__enter__()

    def __exit__(self, *a):
        return self.ctx.__exit__(*a)


def special(folder: Path):
    fifo = folder / "fifo.weights"
    os.mkfifo(fifo)
    d = folder / "dir.weights"
    d.mkdir()
    return [("FIFO", fifo), ("directory", d), ("/dev/zero", Path("/dev/zero")), ("missing", folder / "nope")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    data = WEIGHTS.read_bytes()
    net = Darknet(CFG, exact=False)
    counts, bad, by_kind = Counter(), [], Counter()
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = [(name, verdict, blob, opts, None) for name, verdict, blob, opts in variants(data, net, rng, folder)]
        jobs += [(f"special: {name}", "refuse", None, {}, path) for name, path in special(folder)]
        for name, verdict, blob, opts, path in jobs:
            if path is None:
                path = folder / "v.weights"
                path.write_bytes(blob)
            counts["tried"] += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    net.load_weights(path, **opts)
                got, message = "accept", ""
            except WeightsError as e:
                got, message = "refuse", str(e).replace(tmp, "<tmp>")
            except Exception:  # noqa: BLE001 - a traceback is what we look for
                got, message = "traceback", traceback.format_exc()[-500:]
            counts["clean_error" if got == "refuse" else "ok" if got == "accept" else "traceback"] += 1
            by_kind[f"{kind_of(name)}, expected {verdict}: {'as expected' if got == verdict else got}"] += 1
            if got != verdict:
                counts["bad"] += 1
                bad.append({"variant": name, "expected": verdict, "got": got, "message": message[:300]})
                print(f"BAD {name}: expected {verdict}, got {got}: {message[:200]}", file=sys.stderr)
    result = {
        "command": "nice python3 bench/reliability/weights_variants.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "file": "weights/shapes-tiny.weights", "cfg": "cfg/shapes-tiny.cfg", "loaded_as": "inference (strict), "
        "unless the variant names an option",
        "tried": counts["tried"], "clean_error": counts["clean_error"], "ok": counts["ok"],
        "tracebacks": counts["traceback"], "bad": counts["bad"],
        "expected_refuse": sum(1 for j in jobs if j[1] == "refuse"),
        "expected_accept": sum(1 for j in jobs if j[1] == "accept"),
        "wall_s": round(time.time() - start, 1), "by_kind": dict(sorted(by_kind.items())), "bad_examples": bad[:30],
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("tried", "clean_error", "ok", "tracebacks", "bad", "expected_refuse",
                                             "expected_accept")}))
    return 1 if counts["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
