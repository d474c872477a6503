"""Training with Darknet's semantics: its learning-rate policies, its SGD update, its counters.

One :meth:`Trainer.step` is one call of Darknet's ``train_network``: the images are cut into
``subdivisions`` mini-batches of ``batch/subdivisions``; each adds its size to ``seen``, runs
forward and backward, and the weights are updated once every ``subdivisions`` mini-batches.
The update is Darknet's, not torch.optim's::

    updates += -grad                      (Darknet's deltas are negative gradients)
    weight_updates += -decay*batch * weights          (kernels only)
    params += (lr/batch) * updates
    updates *= momentum

with ``batch = batch_per_update`` (the cfg's ``batch``) and ``lr`` from the policy at
``batch_num = seen / batch``, taken after ``seen`` has grown.
"""
from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .network import Darknet, NetOptions

__all__ = ["learning_rate", "Trainer", "TrainingError", "policy_quirks", "check_trainable", "UntrainableError"]

_F = np.float32


def learning_rate(o: NetOptions, batch_num: int, rng: random.Random | None = None) -> float:
    """Darknet's get_current_rate(), with its float/double mix and its unsigned comparisons."""
    lr = _F(o.learning_rate)
    if batch_num < o.burn_in:
        return float(_F(float(lr) * math.pow(float(_F(batch_num) / _F(o.burn_in)), o.power)))
    if o.policy == "constant":
        return float(lr)
    if o.policy == "step":
        return float(_F(float(lr) * math.pow(o.scale, batch_num // o.step)))
    if o.policy == "steps":
        rate = lr
        for step, scale in zip(o.steps, o.scales):
            # Darknet compares int steps with a size_t batch number: -1 is the largest step.
            if step % 2**64 > batch_num:
                return float(rate)
            rate = _F(rate * _F(scale))
        return float(rate)
    if o.policy == "exp":
        return float(_F(float(lr) * math.pow(o.gamma, batch_num)))
    if o.policy == "poly":
        base = float(_F(1) - _F(batch_num) / _F(o.max_batches))
        return float(_F(float(lr) * math.pow(base, o.power))) if base > 0 or o.power == int(o.power) \
            else float("nan")
    if o.policy == "random":
        u = (rng or random).random()
        return float(_F(float(lr) * math.pow(u, o.power)))
    if o.policy == "sigmoid":
        # batch_num - step is unsigned in Darknet: before `step` it wraps around and the rate is 0.
        diff = (batch_num - o.step) % 2**64
        try:
            return float(_F(float(lr) * (1. / (1. + math.exp(o.gamma * diff)))))
        except OverflowError:
            return 0.0
    if o.policy == "sgdr":
        # AlexeyAB's cosine annealing with restarts, cycles growing by sgdr_mult
        start, cycle = 0, o.sgdr_cycle
        while start + cycle < batch_num and cycle > 0:
            start += cycle
            cycle *= o.sgdr_mult
        if cycle <= 0:
            return float(lr)
        c = math.cos(float(_F(batch_num - start)) * 3.14159265 / cycle)
        return float(_F(o.learning_rate_min + .5 * (float(lr) - o.learning_rate_min) * (1. + c)))
    raise ValueError(f"unknown policy {o.policy}")


#: Output layers that pydarknet runs and decodes but cannot train yet (their losses are not implemented).
UNTRAINABLE_HEADS = ("yolo", "gaussian_yolo", "detection", "contrastive")


class UntrainableError(ValueError):
    """The network has a layer whose training pydarknet does not implement."""


def check_trainable(net) -> None:
    """Refuse, with a clear message, to train a network whose loss pydarknet lacks ([yolo],
    [Gaussian_yolo], [detection] heads), instead of training something else."""
    heads = [layer for layer in net.layers if layer.kind in UNTRAINABLE_HEADS]
    if heads:
        h = heads[0]
        raise UntrainableError(
            f"{h.path}:{h.line}: layer {h.index} [{h.header}]: training losses for [yolo], [Gaussian_yolo] "
            f"and [detection] heads are not implemented in pydarknet yet; it can run and decode these "
            f"networks (detect), and train [region] (YOLOv2) and classifier networks")


def policy_quirks(o: NetOptions) -> list[str]:
    """Darknet behaviours of this [net] that change training and that a user may not expect."""
    notes = []
    if o.policy == "steps" and any(s < 0 for s in o.steps):
        notes.append(f"steps={','.join(map(str, o.steps))}: Darknet compares steps as unsigned numbers, "
                     f"so a negative step is never reached and no later step changes the rate")
    if o.policy == "sigmoid":
        notes.append("policy=sigmoid: Darknet subtracts step from the batch number in unsigned arithmetic, "
                     "so the rate is 0 until `step` batches")
    if o.policy == "steps" and len(o.scales) > len(o.steps):
        notes.append("scales has more values than steps; Darknet ignores the extra ones")
    return notes


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value is finite: float sums first (one cheap pass); only when one of them is
    not finite, which large finite values can also cause, the exact test by min and max."""
    if bool(torch.isfinite(torch.stack([t.sum() for t in tensors])).all()):
        return True
    return bool(torch.isfinite(torch.stack([torch.stack(torch.aminmax(t)) for t in tensors])).all())


class TrainingError(RuntimeError):
    """Training had to stop (a non-finite loss or gradient); the message says where and why."""


@dataclass
class _Slot:
    param: torch.Tensor
    updates: torch.Tensor
    decay: bool
    lr_scale: float


class Trainer:
    """Darknet's training loop for one network (``train_network`` + ``update_network``)."""

    def __init__(self, net: Darknet, *, quirk_warnings: bool = True, rng: random.Random | None = None):
        self.net = net
        self.options = net.options
        self.rng = rng or random.Random(2222222)
        if quirk_warnings:
            for note in policy_quirks(self.options):
                warnings.warn(f"{net.cfg_path}: {note} (reproduced for parity)", stacklevel=2)
        self.slots: list[_Slot] = []
        # recurrent layers: their sub-layers' parameters (gradients from autograd, not Darknet's backward)
        units = [unit for layer in net.layers for unit in (layer.sub_layers() if hasattr(layer, "sub_layers")
                                                            else [layer])]
        for layer in units:
            params = [(getattr(layer, name), name == "weight") for name in ("bias", "scales", "weight")
                      if isinstance(getattr(layer, name, None), torch.nn.Parameter)]
            for p, is_kernel in params:
                self.slots.append(_Slot(p, torch.zeros_like(p), is_kernel, layer.learning_rate_scale))
        check_trainable(net)
        self.loss_layers = [i for i, layer in enumerate(net.layers) if hasattr(layer, "delta")]
        if not self.loss_layers:
            raise ValueError(f"{net.cfg_path}: no layer with a loss ([region], [softmax] or [cost])")
        self.last_rate = 0.
        self._scratch_flat: torch.Tensor | None = None

    # --- counters ---------------------------------------------------------------
    @property
    def batch(self) -> int:
        """Images per weight update (the cfg's batch)."""
        return self.mini_batch * self.options.subdivisions

    @property
    def mini_batch(self) -> int:
        return max(self.options.batch // self.options.subdivisions, 1)

    @property
    def batch_num(self) -> int:
        return int(self.net.seen) // self.batch

    def rate(self) -> float:
        return learning_rate(self.options, self.batch_num, self.rng)

    # --- one iteration ----------------------------------------------------------
    def forward_backward(self, images: torch.Tensor, truths: torch.Tensor) -> float:
        """One mini-batch (train_network_datum): seen += n, forward, loss deltas, backward."""
        net = self.net
        net.seen += images.shape[0]
        net.train()
        outputs = net.layer_outputs(images)
        targets, grads, costs = [], [], []
        for i in self.loss_layers:
            delta, cost = net.layers[i].delta(outputs[i], truths, net.seen)
            targets.append(outputs[i])
            grads.append(-delta.to(outputs[i].dtype))
            costs.append(float(cost))
        torch.autograd.backward(targets, grads)
        # Darknet averages the costs of the layers that have one (calc_network_cost).
        cost = float(np.float32(sum(costs)) / np.float32(len(costs)))
        if not math.isfinite(cost):
            for s in self.slots:
                s.param.grad = None
            raise TrainingError(f"the loss is {cost} at iteration {self.batch_num} (seen {net.seen}); "
                                f"the update was not applied")
        return cost

    def check_gradients(self) -> None:
        """Refuse to update with a non-finite gradient (it would spoil every weight it touches)."""
        grads = [s.param.grad for s in self.slots if s.param.grad is not None]
        if grads and not _all_finite(grads):
            for s in self.slots:
                s.param.grad = None
            raise TrainingError(f"a gradient is not finite at iteration {self.batch_num} "
                                f"(seen {self.net.seen}); the update was not applied")

    def update(self) -> None:
        """update_network: Darknet's SGD with momentum and kernel-only decay (refused when a
        gradient is not finite).  Each product is rounded to float before it is added, as
        Darknet's axpy_cpu does (no fused multiply-add), through one reused scratch buffer."""
        self.check_gradients()
        self.last_rate = rate = self.rate()
        batch = self.batch
        o = self.options
        decay = torch.tensor(np.float32(-o.decay) * np.float32(batch))
        momentum = torch.tensor(np.float32(o.momentum))
        with torch.no_grad():
            for s in self.slots:
                scratch = self._scratch(s.param)
                if s.param.grad is not None:
                    s.updates.sub_(s.param.grad)
                    s.param.grad = None
                if s.decay:
                    s.updates.add_(torch.mul(s.param, decay, out=scratch))
                lr = torch.tensor(np.float32(rate) * np.float32(s.lr_scale) / np.float32(batch))
                s.param.add_(torch.mul(s.updates, lr, out=scratch))
                s.updates.mul_(momentum)

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A buffer shaped like ``like``: a view of one flat tensor kept between updates (fresh
        large temporaries would cost page faults on every iteration)."""
        flat = self._scratch_flat
        if flat is None or flat.numel() < like.numel() or flat.device != like.device or flat.dtype != like.dtype:
            n = max(s.param.numel() for s in self.slots)
            flat = self._scratch_flat = torch.empty(n, dtype=like.dtype, device=like.device)
        return flat[:like.numel()].view_as(like)

    def step(self, images: torch.Tensor, truths: torch.Tensor) -> float:
        """One Darknet iteration on (batch)×3×H×W images and their truths; returns
        the loss as ``train_network`` does (sum of the mini-batch costs / images)."""
        n = self.mini_batch
        if images.shape[0] % n:
            raise ValueError(f"{images.shape[0]} images is not a multiple of the mini-batch {n} "
                             f"(batch={self.options.batch}, subdivisions={self.options.subdivisions})")
        total = np.float32(0)
        for k in range(0, images.shape[0], n):
            total += np.float32(self.forward_backward(images[k:k + n], truths[k:k + n]))
            if (self.net.seen // n) % self.options.subdivisions == 0:
                self.update()
        return float(total / np.float32(images.shape[0]))
