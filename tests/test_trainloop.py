"""``tools/train.py`` / ``pydarknet.trainloop``: Darknet's ``detector train`` loop around the Trainer.

Tiny networks (64x64 input, four 3x3 convolutions, a [region] on a 4x4 grid, batch 4) on 16
generated scenes (``pydarknet.shapes``), so that the whole file runs in well under a minute:

* a short run prints Darknet's lines, writes the CSV log, the loss PNG, numbered checkpoints
  and ``<base>_final.weights``, whose header's ``seen`` is iterations x images;
* Ctrl-C (SIGINT to the process group, as a terminal sends it) saves ``<base>.backup`` and
  exits with 130; resuming from it continues the iteration numbers and the rate schedule;
  ``--clear`` starts again at iteration 1;
* ``kill -9`` during checkpoint writes never leaves a partial file at the checkpoint's path;
* OpenCV's Darknet reader takes a trainer-written file and computes what we compute;
* two gloo processes train exactly as one process simulating the same data-parallel scheme
  (measured: bit-identical weights files and losses);
* bad samples are named (file and line), skipped, counted; an empty list file, a list with
  no usable sample and a non-finite loss stop with a clear message.
"""
from __future__ import annotations

import csv
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet import Darknet
from pydarknet.data import DataError, DataWarning
from pydarknet.shapes import write_dataset
from pydarknet.train import learning_rate
from pydarknet.distributed import DataParallelTrainer
from pydarknet.engine import checkpoint_due
from pydarknet.train import TrainingError
from pydarknet.trainloop import (TrainConfig, scan_samples,
                                 train_detector)
from pydarknet.weights import read_header

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "tools" / "train.py"
LINE = re.compile(r"^(\d+): (\S+), (\S+) avg, (\d+\.\d{6}) rate, (\d+\.\d{6}) seconds, (\d+) images$")


def tiny_cfg(max_batches: int = 6, burn_in: int = 4, steps: str = "5", lr: float = .001, random_: int = 0,
             batch: int = 4) -> str:
    conv = "[convolutional]\nbatch_normalize=1\nfilters={}\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n" \
           "[maxpool]\nsize=2\nstride=2\n\n"
    return (f"[net]\nbatch={batch}\nsubdivisions=1\nwidth=64\nheight=64\nchannels=3\nmomentum=0.9\n"
            f"decay=0.0005\nlearning_rate={lr}\nburn_in={burn_in}\nmax_batches={max_batches}\npolicy=steps\n"
            f"steps={steps}\nscales=.1\n\n"
            + "".join(conv.format(f) for f in (8, 16, 16, 16))
            + "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=40\nactivation=linear\n\n"
              "[region]\nanchors=0.5,0.5, 1,1, 1,2, 2,1, 2.5,2.5\nbias_match=1\nclasses=3\ncoords=4\nnum=5\n"
              "softmax=1\njitter=.2\nrescore=1\nobject_scale=5\nnoobject_scale=1\nclass_scale=1\ncoord_scale=1\n"
              f"absolute=1\nthresh=.6\nrandom={random_}\n")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in this process: the tiny nets gain nothing from more, and a busy
    2-core machine makes OpenMP's spinning threads many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """16 generated scenes in VOC layout; returns the .data file."""
    return write_dataset(tmp_path_factory.mktemp("shapes"), n_train=16, n_val=0, seed=0,
                         sizes=((96, 80), (80, 96)))


def train_cmd(data, cfg, *args) -> list[str]:
    return [sys.executable, str(TRAIN), str(data), str(cfg), "--seed", "1", "--threads", "1", "--no-progress",
            *map(str, args)]


def run_train(data, cfg, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(data, cfg, *args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def iteration_lines(stdout: str) -> list[tuple[int, float, float, str, int]]:
    """(iteration, loss, avg, printed rate, images) of every Darknet iteration line."""
    out = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            out.append((int(m[1]), float(m[2]), float(m[3]), m[4], int(m[6])))
    return out


def seen_of(path: Path) -> int:
    return read_header(path.read_bytes()[:20], path).seen


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]


# --- a short run ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_run(shapes, tmp_path_factory):
    d = tmp_path_factory.mktemp("short")
    cfg = d / "tiny.cfg"
    cfg.write_text(tiny_cfg(max_batches=6, burn_in=4, steps="5"))
    backup = d / "backup"
    p = run_train(shapes, cfg, "--backup", backup, "--workers", "1", "--checkpoint-every", "3")
    return p, cfg, backup


def test_short_run_prints_darknet_lines_and_writes_everything(short_run):
    p, cfg, backup = short_run
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "tiny"
    assert lines[1] == "Learning Rate: 0.001, Momentum: 0.9, Decay: 0.0005"
    assert sum(line.startswith("Loaded: ") and line.endswith(" seconds") for line in lines) == 6
    its = iteration_lines(p.stdout)
    assert [i for i, *_ in its] == [1, 2, 3, 4, 5, 6]
    options = Darknet(cfg, exact=False).options
    avg = None
    for i, loss, printed_avg, rate, images in its:
        assert images == 4 * i
        assert rate == f"{learning_rate(options, i):f}"                     # burn_in, then steps=5
        avg = loss if avg is None else avg * .9 + loss * .1
        assert printed_avg == pytest.approx(avg, rel=1e-5, abs=2e-6)
    assert [r for *_, r, _ in its][3:] == ["0.001000", "0.000100", "0.000100"]

    names = {f.name for f in backup.iterdir()}
    assert {"tiny.backup", "tiny_3.weights", "tiny_6.weights", "tiny_final.weights", "tiny_log.csv",
            "tiny_loss.png"} <= names
    assert no_temp_files(backup)
    assert seen_of(backup / "tiny_3.weights") == 3 * 4
    assert seen_of(backup / "tiny_6.weights") == 6 * 4
    assert seen_of(backup / "tiny_final.weights") == 6 * 4            # iterations x imgs
    assert (backup / "tiny_final.weights").read_bytes() == (backup / "tiny_6.weights").read_bytes()
    for name in ("tiny_3.weights", "tiny_6.weights", "tiny.backup", "tiny_final.weights"):
        assert f"Saving weights to {backup / name}" in p.stderr
    Darknet(cfg, exact=False).load_weights(backup / "tiny_final.weights")   # complete and loadable

    with (backup / "tiny_log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["loss"]) for r in rows] == pytest.approx([loss for _, loss, *_ in its], rel=1e-5)
    assert [int(r["seen"]) for r in rows] == [4 * i for i in range(1, 7)]
    assert (backup / "tiny_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_rule_is_darknets():
    for i in range(1, 30001):
        assert checkpoint_due(i) == (i % 100 == 0, i % 10000 == 0 or (i < 1000 and i % 100 == 0))
    # Several processes move the batch number by `world`: a multiple stepped over still counts.
    assert checkpoint_due(102, 99) == (True, True)
    assert checkpoint_due(1002, 999) == (True, False)
    assert checkpoint_due(10001, 9998) == (True, True)
    assert checkpoint_due(6, 3, every=5) == (True, True)
    assert checkpoint_due(4, 3, every=5) == (False, False)


def test_random_prints_resizing_and_trains_at_608(shapes, tmp_path):
    """random=1: Darknet prints "Resizing" and the size every 10 iterations; within the last
    200 batches the size is 608."""
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg(max_batches=2, random_=1, batch=1))
    lines: list[str] = []
    result = train_detector(TrainConfig(str(shapes), str(cfg), backup=str(tmp_path / "b"), workers=0, seed=1,
                                        progress=False), out=lines.append)
    assert not result.interrupted and result.seen == 2
    assert lines[2:5] == ["Resizing", "608", lines[4]] and lines[4].startswith("Loaded: ")
    assert [LINE.match(x)[1] for x in lines if LINE.match(x)] == ["1", "2"]
    with (tmp_path / "b" / "tiny_log.csv").open(newline="") as f:
        assert {(r["width"], r["height"]) for r in csv.DictReader(f)} == {("608", "608")}


# --- Ctrl-C, resume, --clear ----------------------------------------------------------------------

def test_ctrl_c_saves_backup_and_resume_continues_the_schedule(shapes, tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg(max_batches=100000, burn_in=4, steps="100000"))
    backup = tmp_path / "backup"
    # A terminal's Ctrl-C goes to the whole process group (the loader's workers included).
    p = subprocess.Popen(train_cmd(shapes, cfg, "--backup", backup, "--workers", "2"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        seen_lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            assert line, f"training ended early: {p.stderr.read()}"
            seen_lines.append(line)
            if line.startswith("3: "):
                break
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    out = "".join(seen_lines) + out
    assert p.returncode == 130, err
    its = iteration_lines(out)
    n = its[-1][0]
    assert n >= 3 and [i for i, *_ in its] == list(range(1, n + 1))
    assert f"Interrupted at iteration {n}: saved {backup / 'tiny.backup'}" in out
    assert "Traceback" not in err
    assert seen_of(backup / "tiny.backup") == 4 * n
    assert not (backup / "tiny_final.weights").exists()
    assert no_temp_files(backup)

    # Resume with more max_batches and a step four iterations on: numbering and rate carry on.
    (tmp_path / "resume").mkdir()
    cfg2 = tmp_path / "resume" / "tiny.cfg"    # same base name: the same checkpoint and log names
    cfg2.write_text(tiny_cfg(max_batches=100000, burn_in=4, steps=str(n + 4)))
    lines: list[str] = []
    result = train_detector(TrainConfig(str(shapes), str(cfg2), str(backup / "tiny.backup"), backup=str(backup),
                                        max_batches=n + 8, workers=0, seed=1, progress=False), out=lines.append)
    assert not result.interrupted and result.iterations == 8
    its = iteration_lines("\n".join(lines))
    assert its[0][0] == seen_of(backup / "tiny.backup") // 4 + 1 == n + 1
    assert [i for i, *_ in its] == list(range(n + 1, n + 9))
    options = Darknet(cfg2, exact=False).options
    assert [rate for _, _, _, rate, _ in its] == [f"{learning_rate(options, i):f}" for i in range(n + 1, n + 9)]
    assert [rate for _, _, _, rate, _ in its][2:4] == ["0.001000", "0.000100"]   # the step at n + 4
    assert seen_of(backup / "tiny_final.weights") == 4 * (n + 8)
    with (backup / "tiny_log.csv").open(newline="") as f:
        assert [int(row["iteration"]) for row in csv.DictReader(f)] == list(range(1, n + 9))

    # --clear: seen back to 0, the schedule (burn_in) from the start.
    lines = []
    result = train_detector(TrainConfig(str(shapes), str(cfg2), str(backup / "tiny_final.weights"), clear=True,
                                        backup=str(backup), max_batches=2, workers=0, seed=1, progress=False),
                            out=lines.append)
    its = iteration_lines("\n".join(lines))
    assert [i for i, *_ in its] == [1, 2]
    assert [rate for _, _, _, rate, _ in its] == [f"{learning_rate(options, i):f}" for i in (1, 2)]
    assert result.seen == seen_of(backup / "tiny_final.weights") == 8


# --- kill -9 during a checkpoint write ------------------------------------------------------------

def _writer(net, path, first, conn):
    """Save versions first, first+1, ... of ``net`` to ``path``: every float of version k is k."""
    torch.set_num_threads(1)
    k = first
    while True:
        with torch.no_grad():
            for t in list(net.parameters()) + list(net.buffers()):
                t.fill_(float(k))
        net.seen = k
        conn.send(("saving", k))
        net.save_weights(path)
        conn.send(("saved", k))
        k += 1


def test_kill_9_during_checkpoint_writes_never_leaves_a_partial_file(tmp_path):
    """A 63 MB network (yolov2-tiny-voc) saved again and again to one path by a process that is
    killed (SIGKILL) at random moments: the file at the path is always a complete version."""
    net = Darknet(ROOT / "cfg" / "yolov2-tiny-voc.cfg", exact=False)
    path = tmp_path / "yolov2-tiny-voc.backup"
    ctx = torch.multiprocessing.get_context("fork")
    rng = random.Random(0)
    size = None
    save_time = None
    first, kills, mid_write = 1, 0, 0
    while kills < 20 and (kills < 5 or mid_write < 2):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_writer, args=(net, path, first, child), daemon=True)
        proc.start()
        try:
            msg = parent.recv() if parent.poll(60) else None
            assert msg and msg[0] == "saving", "the writer did not start"
            if save_time is None:               # measure one complete save first
                t0 = time.monotonic()
                assert parent.poll(60)
                assert parent.recv()[0] == "saved"
                save_time = time.monotonic() - t0
                size = path.stat().st_size
                assert parent.poll(60) and parent.recv()[0] == "saving"
            time.sleep(rng.uniform(0, 1.3 * save_time))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
        kills += 1
        leftovers = list(tmp_path.glob(path.name + ".*.tmp"))
        mid_write += bool(leftovers)            # the kill landed while a temp file was being written
        for f in leftovers:
            f.unlink()
        data = path.read_bytes()
        assert len(data) == size, f"kill {kills}: {len(data)} bytes, a complete file has {size}"
        header = read_header(data, path)
        body = np.frombuffer(data, "<f4", offset=header.nbytes)
        assert header.seen >= 1 and np.all(body == np.float32(header.seen)), f"kill {kills}: mixed versions"
        first = header.seen + 1000              # the next writer's versions are new values
    print(f"{kills} kills, {mid_write} during a write, save {save_time:.2f} s")
    assert mid_write >= 2, f"only {mid_write} of {kills} kills hit a write in progress"
    loaded = Darknet(ROOT / "cfg" / "yolov2-tiny-voc.cfg", exact=False)
    loaded.load_weights(path)
    assert loaded.seen == header.seen and float(loaded.layers[0].weight.detach().flatten()[0]) == header.seen


# --- OpenCV reads what the trainer writes ----------------------------------------------------------

def test_opencv_reads_trainer_weights(short_run):
    """OpenCV's Darknet importer reads the trainer's file and computes what we compute.

    OpenCV normalises with ``(x - mean) / sqrt(var + 1e-6)`` where Darknet (and we) use
    ``(x - mean) / (sqrt(var) + 1e-6)``.  A 6-iteration network still has tiny rolling
    variances (Darknet starts them at 0; ~0.002 here), where the two formulas differ by ~3e-4
    relative per layer: measured 2.2e-4·max on the last convolution.  Giving our network the
    variance that makes our formula equal OpenCV's brings it to 1.6e-6·max, which shows every
    number of the file is read where we wrote it.  Tolerances: 1e-5 and 1e-3 (x max |output|).
    """
    cv2 = pytest.importorskip("cv2")
    p, cfg, backup = short_run
    assert p.returncode == 0, p.stderr
    weights = backup / "tiny_final.weights"
    x = np.random.default_rng(3).random((2, 3, 64, 64), dtype=np.float32)
    cvnet = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    cvnet.setInput(x)
    for opencv_bn, tol in ((True, 1e-5), (False, 1e-3)):
        net = Darknet(cfg, exact=False).eval()
        net.load_weights(weights)
        if opencv_bn:
            with torch.no_grad():
                for layer in net.layers:
                    if getattr(layer, "batch_normalize", False):
                        v = layer.rolling_variance.double()
                        layer.rolling_variance.copy_(((v + 1e-6).sqrt() - 1e-6) ** 2)
        with torch.no_grad():
            outs = net.layer_outputs(torch.from_numpy(x))
        last_conv = len(net.layers) - 2
        raw, det = (np.array(o) for o in cvnet.forward([f"conv_{last_conv}", "detection_out"]))
        ours = outs[last_conv].numpy()
        assert raw.shape == ours.shape
        assert np.abs(raw - ours).max() <= tol * np.abs(ours).max(), opencv_bn
        # OpenCV's region rows: ((row*W + col)*num + anchor) x [x, y, w, h, objectness, ...]; x, y and
        # objectness (w and h are exp of the raw outputs compared above, which overflow here).
        region = net.layers[-1]
        out = outs[-1].numpy().reshape(2, region.num, 5 + region.classes, 4, 4).transpose(0, 3, 4, 1, 2)
        cols, rows = np.arange(4)[None, None, :, None], np.arange(4)[:, None, None]
        ref = np.stack([(cols + out[..., 0]) / 4, (rows + out[..., 1]) / 4, out[..., 4]], -1).reshape(2, -1, 3)
        det = det.reshape(2, -1, 5 + region.classes)[..., [0, 1, 4]]
        # x = (col + logistic(t)) / 4 and obj = logistic(t): a raw difference d moves them by at
        # most d/4 (the logistic's slope is at most 1/4), so the raw layer's own distance bounds them.
        bound = max(tol, np.abs(raw - ours).max() / 4)
        assert np.abs(det - ref).max() <= bound, opencv_bn


# --- two gloo processes = one process simulating the scheme ------------------------------------------

GLOO_SCRIPT = '''
import sys
from pathlib import Path
import torch
import torch.distributed as dist
sys.path.insert(0, {root!r})
from pydarknet import Darknet
from pydarknet.distributed import DataParallelTrainer

d, port, rank = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{{port}}", rank=rank, world_size=2)
net = Darknet(d / "tiny.cfg", exact=False)
net.load_weights(d / "start.weights")
net.train()
trainer = DataParallelTrainer(net, 2, quirk_warnings=False)
losses = []
for images, truths in torch.load(d / "batches.pt"):
    n = images.shape[0] // 2
    losses.append(trainer.step(images[rank * n:(rank + 1) * n], truths[rank * n:(rank + 1) * n]))
torch.save(losses, d / f"losses{{rank}}.pt")
net.save_weights(d / f"gloo{{rank}}.weights")
dist.destroy_process_group()
'''


class _Exchange:
    """What an all-reduce does for two replicas running in two threads of one process."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=60)
        self.slots: list = [None, None]

    def mean(self, rank: int, tensors: list[torch.Tensor]) -> None:
        self.slots[rank] = tensors
        self.barrier.wait()
        mine, theirs = self.slots[rank], self.slots[1 - rank]
        new = [(a + b) / 2 for a, b in zip(mine, theirs)]
        self.barrier.wait()                    # both computed before either writes
        for t, v in zip(tensors, new):
            t.copy_(v)


class SimulatedReplica(DataParallelTrainer):
    def __init__(self, net, exchange: _Exchange, rank: int):
        super().__init__(net, 2, quirk_warnings=False)
        self.exchange, self.rank = exchange, rank

    def average(self, tensors):
        self.exchange.mean(self.rank, tensors)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process_simulation(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg(burn_in=2, lr=.01))
    torch.manual_seed(0)
    Darknet(cfg, exact=False).save_weights(tmp_path / "start.weights")
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(3):
        images = torch.rand(8, 3, 64, 64, generator=g)
        truths = torch.zeros(8, 30, 5)
        truths[:, 0, :4] = torch.rand(8, 4, generator=g) * .5 + .25
        truths[:, 0, 4] = torch.randint(0, 3, (8,), generator=g).float()
        batches.append((images, truths))
    torch.save(batches, tmp_path / "batches.pt")
    script = tmp_path / "gloo_run.py"
    script.write_text(GLOO_SCRIPT.format(root=str(ROOT)))
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(port), str(rank)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exchange = _Exchange()
        nets, losses, errors = [], [[], []], []
        for rank in range(2):
            net = Darknet(cfg, exact=False)
            net.load_weights(tmp_path / "start.weights")
            nets.append(net.train())
        replicas = [SimulatedReplica(nets[r], exchange, r) for r in range(2)]

        def run(rank):
            try:
                for images, truths in batches:
                    losses[rank].append(replicas[rank].step(images[rank * 4:(rank + 1) * 4],
                                                            truths[rank * 4:(rank + 1) * 4]))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                exchange.barrier.abort()

        workers = [threading.Thread(target=run, args=(r,)) for r in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, errors
    finally:
        torch.set_num_threads(threads_before)
    for rank in range(2):
        assert losses[rank] == torch.load(tmp_path / f"losses{rank}.pt")
        nets[rank].save_weights(tmp_path / f"sim{rank}.weights")
        # Measured: bit-identical files (weights, rolling statistics, seen).
        assert (tmp_path / f"sim{rank}.weights").read_bytes() == (tmp_path / f"gloo{rank}.weights").read_bytes()
    assert nets[0].seen == 3 * 8                        # every replica counts both shards
    assert replicas[0].rate() == pytest.approx(2 * learning_rate(nets[0].options, 6))   # batch 6 of 4 images
    # The replicas' parameters are identical; the rolling statistics are each one's own.
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(nets[0].layers[0].rolling_mean, nets[1].layers[0].rolling_mean)


def test_procs_2_end_to_end(shapes, tmp_path):
    """``--procs 2`` (gloo on CPU): rate x2, each iteration 2 x batch images, batch numbers 2, 4, ..."""
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg(max_batches=8, burn_in=4, steps="6"))
    backup = tmp_path / "backup"
    p = run_train(shapes, cfg, "--backup", backup, "--procs", "2", "--workers", "0", "--checkpoint-every", "4",
                  timeout=240)
    assert p.returncode == 0, p.stderr
    assert "Learning Rate: 0.002, Momentum: 0.9, Decay: 0.0005" in p.stdout
    its = iteration_lines(p.stdout)
    assert [i for i, *_ in its] == [2, 4, 6, 8]
    assert [images for *_, images in its] == [8, 16, 24, 32]
    options = Darknet(cfg, exact=False).options
    assert [rate for _, _, _, rate, _ in its] == [f"{2 * learning_rate(options, i):f}" for i in (2, 4, 6, 8)]
    assert seen_of(backup / "tiny_final.weights") == 32
    assert seen_of(backup / "tiny_4.weights") == 16
    assert no_temp_files(backup)


# --- bad input ---------------------------------------------------------------------------------------

@pytest.fixture
def bad_set(shapes, tmp_path):
    """A list of 9: a missing image (line 3), a class 7 of 3 (line 2 of a label file), an x of 1.5,
    a missing label file, and 5 good samples."""
    import shutil
    src = Path(shapes).parent
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "labels").mkdir()
    listed = []
    for im in sorted((src / "JPEGImages").glob("*.jpg"))[:8]:
        shutil.copy(im, tmp_path / "JPEGImages" / im.name)
        shutil.copy(src / "labels" / (im.stem + ".txt"), tmp_path / "labels" / (im.stem + ".txt"))
        listed.append(tmp_path / "JPEGImages" / im.name)
    (tmp_path / "labels" / (listed[1].stem + ".txt")).write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    (tmp_path / "labels" / (listed[2].stem + ".txt")).write_text("1 1.5 0.5 0.2 0.2\n")
    (tmp_path / "labels" / (listed[3].stem + ".txt")).unlink()
    listed.insert(2, tmp_path / "JPEGImages" / "missing.jpg")
    (tmp_path / "train.txt").write_text("".join(f"{p}\n" for p in listed))
    data = tmp_path / "bad.data"
    data.write_text(f"classes=3\ntrain={tmp_path / 'train.txt'}\nbackup={tmp_path / 'backup'}\n")
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg(max_batches=4))
    return data, cfg, listed


def test_bad_samples_are_named_skipped_and_counted(bad_set, tmp_path, capsys):
    data, cfg, listed = bad_set
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_detector(TrainConfig(str(data), str(cfg), workers=0, seed=1, progress=False),
                                out=lines.append)
    err = capsys.readouterr().err
    # Checked up front, each with its file and line:
    assert "warning: 4 of 9 listed training samples cannot be used" in err
    assert f"{tmp_path / 'train.txt'}:3: no such image file {listed[2]}" in err
    assert f"{tmp_path / 'labels' / listed[1].stem}.txt:2: class 7 out of range (0..2)" in err
    assert f"{tmp_path / 'labels' / listed[3].stem}.txt:1: x outside 0..1" in err
    assert f"{tmp_path / 'labels' / listed[4].stem}.txt: no such label file" in err
    # ... skipped whenever drawn without being reported again (each problem once, its path once),
    # counted, and the run completes.
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert not any("missing.jpg" in m for m in messages)
    assert err.count("missing.jpg: No such file") == 0 and err.count("no such image file") == 1
    assert result.skipped > 0 and not result.interrupted and result.batch_num == 4
    assert f"warning: skipped {result.skipped} bad samples" in err
    assert [LINE.match(x)[1] for x in lines if LINE.match(x)] == ["1", "2", "3", "4"]
    assert scan_samples.__name__  # public helper
    assert (tmp_path / "backup" / "tiny_final.weights").exists()


def test_empty_or_unusable_lists_are_clear_errors(bad_set, tmp_path, capsys):
    from pydarknet.commands.train import main as train_main
    data, cfg, listed = bad_set
    (tmp_path / "empty.txt").write_text("\n\n")
    empty = tmp_path / "empty.data"
    empty.write_text(f"classes=3\ntrain={tmp_path / 'empty.txt'}\nbackup={tmp_path / 'backup'}\n")
    assert train_main([str(empty), str(cfg), "--no-progress"]) == 2
    assert f"error: {tmp_path / 'empty.txt'}: list file has no image paths" in capsys.readouterr().err

    (tmp_path / "allbad.txt").write_text(f"{listed[2]}\n{listed[1]}\n")
    allbad = tmp_path / "allbad.data"
    allbad.write_text(f"classes=3\ntrain={tmp_path / 'allbad.txt'}\nbackup={tmp_path / 'backup'}\n")
    with pytest.raises(DataError, match=r"allbad.txt: none of the 2 listed samples can be used: .*allbad.txt:1: "
                                        r"no such image file"):
        train_detector(TrainConfig(str(allbad), str(cfg), workers=0, progress=False), out=lambda s: None)


def test_non_finite_loss_stops_before_the_update(shapes, tmp_path, capsys):
    cfg = tmp_path / "nan.cfg"
    cfg.write_text(tiny_cfg(max_batches=10, burn_in=0, lr=1e5))
    backup = tmp_path / "backup"
    with pytest.raises(TrainingError, match=r"(the loss is (nan|inf|-inf)|a gradient is not finite) at iteration "
                                            r"\d+ .*the update was not applied.*no checkpoint saved yet"):
        train_detector(TrainConfig(str(shapes), str(cfg), backup=str(backup), workers=0, seed=1, progress=False),
                       out=lambda s: None)
    assert not (backup / "nan_final.weights").exists()


def test_a_dead_loader_worker_is_a_clear_error(shapes, tmp_path):
    """A data-loading worker killed mid-run (SIGKILL): TrainingError naming it and the last checkpoint."""
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg(max_batches=1000))

    def out(line):
        if line.startswith("4: "):                  # after iteration 3's checkpoints
            me = os.getpid()
            children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
            assert children
            os.kill(int(children[0]), signal.SIGKILL)

    with pytest.raises(TrainingError, match=r"a data-loading worker process died during iteration \d+ .*"
                                            r"the last checkpoint is ") as caught:
        train_detector(TrainConfig(str(shapes), str(cfg), backup=str(tmp_path / "b"), workers=1, seed=1,
                                   progress=False, checkpoint_every=3), out=out)
    last = Path(re.search(r"the last checkpoint is (\S+)$", str(caught.value))[1])
    assert last.name == "tiny_3.weights" and seen_of(last) == 12
    assert no_temp_files(tmp_path / "b")
