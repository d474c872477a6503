"""kill -9 a training run at random moments, resume it, and check that nothing is lost.

Each round resumes from ``<backup>/tiny.backup`` (when there is one) with a checkpoint
every iteration, and is killed with SIGKILL (its whole process group) after a random delay.
After every kill: every checkpoint in the backup folder must load strictly (a corrupt or
half-written file is ``bad``), the CSV log rows (the log and any earlier log kept aside)
must not decrease, and the temporaries of the killed writer must be gone once the next
run has started (a planted temporary of a dead pid too).

    nice python3 bench/reliability/kill9_train.py --rounds 12 --seed 1 --out bench/reliability/kill9_train.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pydarknet.network import Darknet  # noqa: E402
from pydarknet.shapes import write_dataset  # noqa: E402
from pydarknet.weights import WeightsError  # noqa: E402

CFG = """[net]
batch=4
subdivisions=1
width=64
height=64
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.001
burn_in=4
max_batches=100000
policy=steps
steps=100000
scales=.1
""" + "".join(f"""
[convolutional]
batch_normalize=1
filters={f}
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2
""" for f in (8, 16, 16, 16)) + """
[convolutional]
size=1
stride=1
pad=1
filters=40
activation=linear

[region]
anchors=0.5,0.5, 1,1, 1,2, 2,1, 2.5,2.5
bias_match=1
classes=3
coords=4
num=5
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
absolute=1
thresh=.6
random=0
"""


def log_rows(backup: Path) -> int:
    rows = 0
    for p in backup.glob("tiny_log*.csv"):
        with p.open(newline="") as f:
            rows += sum(1 for _ in csv.DictReader(f))
    return rows


def check_checkpoints(cfg: Path, backup: Path) -> tuple[int, list[str]]:
    loads, corrupt = 0, []
    for p in sorted(backup.iterdir()):
        if p.suffix in (".weights", ".backup"):
            loads += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    Darknet(cfg, exact=False).load_weights(p)
            except WeightsError as e:
                corrupt.append(str(e)[:200])
    return loads, corrupt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-delay", type=float, default=4.)
    ap.add_argument("--max-delay", type=float, default=20.)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    stats = {"rounds": 0, "kills": 0, "checkpoint_loads": 0, "corrupt": 0, "log_rows_lost": 0,
             "temporaries_left_after_restart": 0, "planted_dead_temporaries": 0, "starts_checked_for_temporaries": 0, "runs_failed": 0}
    problems = []
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_dataset(tmp / "shapes", n_train=16, n_val=0, seed=0, sizes=((96, 80), (80, 96)))
        cfg = tmp / "tiny.cfg"
        cfg.write_text(CFG)
        backup = tmp / "backup"
        backup.mkdir()
        rows_before = 0
        for r in range(args.rounds):
            stats["rounds"] += 1
            leftovers = sorted(p.name for p in backup.glob("*.tmp"))
            gone = subprocess.Popen(["true"])
            gone.wait()                                              # a pid that is surely dead
            planted = backup / f"tiny.backup.{gone.pid}.abcd1234.tmp"
            planted.write_bytes(b"half a checkpoint")
            stats["planted_dead_temporaries"] += 1
            resume = backup / "tiny.backup"
            cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(data), str(cfg),
                   *([str(resume)] if resume.exists() else []), "--backup", str(backup), "--checkpoint-every", "1",
                   "--seed", str(r), "--threads", "1", "--workers", "0", "--no-progress"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True, cwd=ROOT)
            time.sleep(rng.uniform(args.min_delay, args.max_delay))
            alive = proc.poll() is None
            if alive:
                os.killpg(proc.pid, signal.SIGKILL)
                stats["kills"] += 1
            out, err = proc.communicate()
            if not alive:
                stats["runs_failed"] += 1
                problems.append(f"round {r}: the run ended by itself (exit {proc.returncode}): {err[-300:]}")
            # the killed run's start removed the dead temporaries that were there before it
            started = "Loading weights" in err or "Learning Rate" in out
            still = [n for n in leftovers + [planted.name] if (backup / n).exists()]
            stats["starts_checked_for_temporaries"] += started
            if started and still:
                stats["temporaries_left_after_restart"] += len(still)
                problems.append(f"round {r}: dead temporaries not removed at start: {still}")
            loads, corrupt = check_checkpoints(cfg, backup)
            stats["checkpoint_loads"] += loads
            stats["corrupt"] += len(corrupt)
            problems += [f"round {r}: {c}" for c in corrupt]
            rows = log_rows(backup)
            if rows < rows_before:
                stats["log_rows_lost"] += rows_before - rows
                problems.append(f"round {r}: log rows {rows_before} -> {rows}")
            rows_before = rows
            print(f"round {r}: killed={alive} checkpoints={loads} corrupt={len(corrupt)} log rows={rows}",
                  file=sys.stderr, flush=True)
    bad = stats["corrupt"] + stats["log_rows_lost"] + stats["temporaries_left_after_restart"] + stats["runs_failed"]
    result = {"command": "nice python3 bench/reliability/kill9_train.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "tried": stats["kills"], "bad": bad, **stats,
        "wall_s": round(time.time() - start), "problems": problems[:30]}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("tried", "bad", "checkpoint_loads", "corrupt", "log_rows_lost",
                                             "temporaries_left_after_restart")}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
