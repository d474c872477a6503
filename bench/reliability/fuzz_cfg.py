"""Fuzz the cfg reader and network builder: mutants of the project's cfgs plus special files.

Every input must end as a clean ``CfgError`` (short message) or a built network: no other
exception (a traceback), no hang (per-input timeout), no memory blow-up (each worker runs
under RLIMIT_AS, so a runaway allocation fails instead of swapping).  Networks that build
and are small also run one forward pass on a zero image.

    nice python3 bench/reliability/fuzz_cfg.py --mutants 10000 --seed 1 --out bench/reliability/fuzz_cfg.json

To keep ~10,000 builds within ~15 CPU minutes the workers replace ``torch.randn``/``torch.rand``
by ``torch.empty`` (same allocations, no random fill): initial values play no part in
what is checked here.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CFGS = {"shapes-tiny.cfg": 82, "yolov2-tiny-voc.cfg": 8, "darknet19.cfg": 3, "darknet19_448.cfg": 3,
        "yolov2-voc.cfg": 4}
HOSTILE = ["0", "-1", "-2147483648", "2147483647", "2147483648", "99999999999999999999", "1" + "0" * 5000,
           "nan", "inf", "-inf", "1e309", "-1e309", "NaN", "Infinity", "\uff13", "\uff11\uff16", "3x", "0x10",
           "1_000", "+5", "", "abc", "1.5", "-0.0", "1e-400", "\u0663", "\u216b", "\u00a05", "1e5", "65536",
           "100000000", "-65536", "1,2,3", ",", "1,,2", ",,,", "x" * 100_000, "1" * 61, "0.5e", ".", "-",
           "1e", "--1", "4294967296", "-4294967297", "\x00", "\u202e1", "1\r", "1;2", "1#2", "[net]"]
KEYS = ["filters", "size", "stride", "pad", "padding", "num", "classes", "coords", "anchors", "mask", "layers",
        "from", "width", "height", "channels", "batch", "subdivisions", "groups", "output", "max", "jitter",
        "hue", "saturation", "exposure", "momentum", "decay", "learning_rate", "max_batches", "steps",
        "scales", "policy", "burn_in", "activation", "batch_normalize", "probability", "temperature",
        "random", "thresh", "softmax", "tree", "map", "reverse", "dontload", "numload", "time_steps", "inputs",
        "max_crop", "min_crop", "angle", "aspect", "B1", "adam", "eps", "power", "gamma", "step", "scale"]
SECTIONS = ["net", "network", "convolutional", "conv", "maxpool", "avgpool", "route", "reorg", "region",
            "yolo", "softmax", "connected", "dropout", "shortcut", "upsample", "cost", "crop", "lstm", "foo",
            "", "net]", "[conv"]


# --- mutants -----------------------------------------------------------------------------
def _option_lines(lines):
    return [i for i, l in enumerate(lines) if "=" in l and not l.lstrip().startswith(("#", ";"))]


def _section_spans(lines):
    heads = [i for i, l in enumerate(lines) if l.strip().startswith("[")]
    return [(a, b) for a, b in zip(heads, heads[1:] + [len(lines)])]


def _value(rng: random.Random) -> str:
    r = rng.random()
    if r < .5:
        return rng.choice(HOSTILE)
    if r < .8:
        return str(rng.choice([-1, 1]) * int(2 ** rng.uniform(0, 70)))
    return repr(rng.choice([-1, 1]) * 10 ** rng.uniform(-8, 12))


def mutate(text: str, rng: random.Random, others: list[str]) -> tuple[str, str]:
    """One mutation of cfg ``text``; returns (operator name, mutant text)."""
    lines = text.split("\n")
    ops = _option_lines(lines)
    spans = _section_spans(lines)
    op = rng.choice(["value", "value", "value", "number", "number", "delete", "duplicate", "dup_section",
                     "dup_section", "del_section", "swap", "insert", "insert", "rename", "bytes", "truncate",
                     "garbage", "splice", "long"])
    if op == "value" and ops:
        i = rng.choice(ops)
        lines[i] = lines[i].split("=", 1)[0] + "=" + _value(rng)
    elif op == "number" and ops:
        i = rng.choice(ops)
        key, val = lines[i].split("=", 1)
        try:
            lines[i] = f"{key}={int(float(val.split(',')[0]) * rng.choice([0, -1, 2, 10, 64, 1000, 10**6]))}"
        except (ValueError, OverflowError):
            lines[i] = f"{key}={_value(rng)}"
    elif op == "delete" and lines:
        del lines[rng.randrange(len(lines))]
    elif op == "duplicate" and lines:
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    elif op == "dup_section" and spans:
        a, b = rng.choice(spans)
        at = rng.choice([s for s, _ in spans] + [len(lines)])
        lines[at:at] = lines[a:b]
    elif op == "del_section" and spans:
        a, b = rng.choice(spans)
        del lines[a:b]
    elif op == "swap" and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "insert" and spans:
        a, b = rng.choice(spans)
        lines.insert(rng.randint(a + 1, b), f"{rng.choice(KEYS)}={_value(rng)}")
    elif op == "rename" and spans:
        a, _ = rng.choice(spans)
        lines[a] = f"[{rng.choice(SECTIONS)}]"
    elif op == "bytes":
        raw = bytearray("\n".join(lines).encode("utf-8", "surrogateescape"))
        for _ in range(rng.randint(1, 8)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        return op, raw.decode("utf-8", "surrogateescape")   # written back as the same bytes
    elif op == "truncate":
        t = "\n".join(lines)
        return op, t[:rng.randrange(len(t) + 1)]
    elif op == "garbage":
        lines.insert(rng.randrange(len(lines) + 1),
                     "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
                             for _ in range(rng.randint(1, 40))))
    elif op == "splice" and others:
        other = rng.choice(others).split("\n")
        a = rng.randrange(len(other))
        at = rng.randrange(len(lines) + 1)
        lines[at:at] = other[a:a + rng.randint(1, 30)]
    elif op == "long" and ops:
        i = rng.choice(ops)
        lines[i] = lines[i].split("=", 1)[0] + "=" + "9" * rng.choice([1000, 100_000, 900_000])
    return op, "\n".join(lines)


def make_mutant(i: int, seed: int, sources: dict[str, str], folder: Path) -> tuple[str, str, Path]:
    rng = random.Random(f"{seed}:{i}")
    name = rng.choices(list(CFGS), weights=list(CFGS.values()))[0]
    text, ops = sources[name], []
    for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
        op, text = mutate(text, rng, list(sources.values()))
        ops.append(op)
    path = folder / f"m{i}.cfg"
    data = text.encode("utf-8", "surrogateescape")
    path.write_bytes(data)
    return name, "+".join(ops), path


def special_files(folder: Path, sources: dict[str, str]) -> list[tuple[str, Path]]:
    """FIFO, devices, a folder, binary and huge files, odd encodings, links."""
    made = []
    fifo = folder / "fifo.cfg"
    os.mkfifo(fifo)
    made.append(("fifo", fifo))
    for dev in ("/dev/zero", "/dev/null", "/dev/urandom"):
        if os.path.exists(dev):
            made.append((dev, Path(dev)))
    d = folder / "dir.cfg"
    d.mkdir()
    made.append(("directory", d))
    (folder / "binary.cfg").write_bytes(Path(sys.executable).read_bytes()[:300_000])
    made.append(("binary", folder / "binary.cfg"))
    with open(folder / "sparse.cfg", "wb") as f:
        f.truncate(20 << 30)       # a 20 GB file (sparse: no disk used)
    made.append(("huge sparse 20 GB", folder / "sparse.cfg"))
    big = sources["shapes-tiny.cfg"] + "\n[maxpool]\nsize=1\nstride=1\n" * 150_000
    (folder / "big.cfg").write_text(big)
    made.append(("huge text 3.6 MB", folder / "big.cfg"))
    many = sources["shapes-tiny.cfg"].split("[region]")[0] + "[maxpool]\nsize=1\nstride=1\n" * 40_000
    (folder / "many.cfg").write_text(many)
    made.append(("40,000 layers", folder / "many.cfg"))
    (folder / "empty.cfg").write_bytes(b"")
    made.append(("empty", folder / "empty.cfg"))
    (folder / "utf16.cfg").write_bytes(sources["shapes-tiny.cfg"].encode("utf-16"))
    made.append(("utf-16", folder / "utf16.cfg"))
    (folder / "nul.cfg").write_bytes(sources["shapes-tiny.cfg"].encode().replace(b"\n", b"\n\0", 3))
    made.append(("NUL bytes", folder / "nul.cfg"))
    (folder / "cr.cfg").write_bytes(sources["shapes-tiny.cfg"].encode().replace(b"\n", b"\r"))
    made.append(("CR line ends", folder / "cr.cfg"))
    (folder / "link_fifo.cfg").symlink_to(fifo)
    made.append(("symlink to FIFO", folder / "link_fifo.cfg"))
    (folder / "loop.cfg").symlink_to(folder / "loop.cfg")
    made.append(("symlink loop", folder / "loop.cfg"))
    made.append(("missing", folder / "missing.cfg"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.cfg"))
    made.append(("socket", folder / "sock.cfg"))
    return made


# --- worker ------------------------------------------------------------------------------------
def worker(limit_gb: float) -> None:
    import resource
    import traceback
    import warnings
    resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 2**30),) * 2)
    sys.path.insert(0, str(ROOT))
    import torch
    torch.set_num_threads(1)
    torch.randn = lambda *a, **k: torch.empty(*a, **k)
    torch.rand = lambda *a, **k: torch.empty(*a, **k)
    from pydarknet.cfg import CfgError
    from pydarknet.network import Darknet
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = json.loads(line)
        t0 = time.perf_counter()
        result = {"outcome": "ok"}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                net = Darknet(path, exact=False)
                if net.memory_estimate < 64 << 20:
                    with torch.no_grad():
                        net.eval()(torch.zeros(1, net.channels, net.height, net.width))
                del net
            except CfgError as e:
                text = str(e)
                long = len(text) > 4000 or max(len(x) for x in text.split("\n")) > 400
                result = {"outcome": "bad" if long else "clean", "message": text[:300],
                          **({"why": f"message of {len(text)} characters"} if long else {})}
            except MemoryError:
                result = {"outcome": "bad", "why": "memory", "message": traceback.format_exc()[-600:]}
            except Exception:  # noqa: BLE001 - any other exception is what we look for
                result = {"outcome": "bad", "why": "traceback", "message": traceback.format_exc()[-600:]}
        longest = max((len(str(w.message)) for w in caught), default=0)
        if longest > 4000:
            result = {"outcome": "bad", "why": f"warning of {longest} characters"}
        result["seconds"] = round(time.perf_counter() - t0, 3)
        result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps(result), flush=True)


class Worker:
    """A worker process; its start (importing torch) is not counted in any input's time."""

    def __init__(self, limit_gb: float):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--limit-gb", str(limit_gb)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.limit_gb = limit_gb
        if not self._wait(900):
            raise RuntimeError("the worker did not start in 15 minutes")
        self.proc.stdout.readline()     # {"ready": true}

    def _wait(self, timeout: float) -> bool:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        return bool(ready)

    def run(self, path: Path, timeout: float, retry: bool = True) -> dict:
        """The worker's verdict on ``path``.  An input that times out is tried once more in a
        fresh worker (a busy machine can stall a process for a while); twice is a hang."""
        self.proc.stdin.write(json.dumps(str(path)) + "\n")
        self.proc.stdin.flush()
        if not self._wait(timeout):
            self.restart()
            if retry:
                r = self.run(path, timeout, retry=False)
                r["retried_after_timeout"] = True
                return r
            return {"outcome": "bad", "why": "hang", "seconds": timeout}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.restart()
            return {"outcome": "bad", "why": f"worker died (exit {code})"}
        return json.loads(line)

    def restart(self):
        self.proc.kill()
        self.proc.wait()
        self.__init__(self.limit_gb)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.)
    ap.add_argument("--limit-gb", type=float, default=8.)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.limit_gb)
        return 0
    sources = {name: (ROOT / "cfg" / name).read_text() for name in CFGS}
    counts, by_op, bad, slowest = Counter(), Counter(), [], []
    start = time.time()
    w = Worker(args.limit_gb)
    maxrss = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = [(f"special: {what}", "special", path) for what, path in special_files(folder, sources)]
        jobs = iter(jobs + [None] * args.mutants)
        i = 0
        for job in jobs:
            if job is None:
                name, ops, path = make_mutant(i, args.seed, sources, folder)
                label = f"mutant {i} of {name} ({ops})"
                i += 1
            else:
                label, ops, path = job
            r = w.run(path, args.timeout)
            if "message" in r:      # no paths of this machine in the results
                r["message"] = r["message"].replace(tmp, "<tmp>").replace(str(ROOT), "<repo>")
            if job is None:
                path.unlink()
            counts["tried"] += 1
            counts[r["outcome"]] += 1
            counts["retried_after_timeout"] += bool(r.get("retried_after_timeout"))
            if r["outcome"] == "bad":
                counts[r.get("why", "bad")] += 1
                bad.append({"input": label, **r})
                print(f"BAD {label}: {r.get('why')}: {r.get('message', '')[-300:]}", file=sys.stderr)
            by_op[(ops.split("+")[0], r["outcome"])] += 1
            maxrss = max(maxrss, r.get("maxrss_mb", 0))
            slowest = sorted(slowest + [(r.get("seconds", 0), label)], reverse=True)[:5]
            if counts["tried"] % 500 == 0:
                print(f"{counts['tried']} tried, {counts['clean']} clean errors, {counts['ok']} ok, "
                      f"{counts['bad']} bad, {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    w.close()
    result = {
        "command": "nice python3 bench/reliability/fuzz_cfg.py " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:])),
        "seed": args.seed, "sources": CFGS,
        "tried": counts["tried"], "clean_error": counts["clean"], "ok": counts["ok"], "bad": counts["bad"],
        "tracebacks": counts["traceback"], "hangs": counts["hang"], "memory_blowups": counts["memory"],
        "worker_deaths": sum(v for k, v in counts.items() if str(k).startswith("worker died")),
        "retried_after_timeout": counts["retried_after_timeout"],
        "per_input_timeout_s": args.timeout, "rlimit_as_gb": args.limit_gb,
        "worker_max_rss_mb": maxrss, "wall_s": round(time.time() - start),
        "slowest": [{"seconds": s, "input": lab} for s, lab in slowest],
        "by_operator": {f"{op}: {outcome}": n for (op, outcome), n in sorted(by_op.items())},
        "bad_examples": bad[:30],
    }
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({k: result[k] for k in ("tried", "clean_error", "ok", "bad", "tracebacks", "hangs",
                                             "memory_blowups", "wall_s")}))
    return 1 if counts["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
