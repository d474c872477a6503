"""YOLO9000's WordTree (Darknet's ``tree`` files) and the grouped softmax over it.

A tree file has one ``name parent_index`` line per node (-1 for a root).  A group is a
run of consecutive lines with the same parent, so siblings must be contiguous; group 0
is the first run, the root group.  Softmax is taken within each group.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .paths import resolve_beside

__all__ = ["WordTree", "read_tree", "group_softmax", "resolve_data_path", "hierarchy_predictions",
           "hierarchy_top_prediction"]


@dataclass
class WordTree:
    names: list[str]
    parent: list[int]
    group: list[int]          # group index of each node
    group_offset: list[int]   # first node of each group
    group_size: list[int]
    child: list[int]          # group of each node's children, -1 for a leaf
    leaf: list[bool]

    @property
    def n(self) -> int:
        return len(self.parent)

    @property
    def groups(self) -> int:
        return len(self.group_offset)

    def group_index(self) -> torch.Tensor:
        return torch.tensor(self.group, dtype=torch.int64)


def read_tree(path) -> WordTree:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        hint = MISSING_DATA_HINT if isinstance(e, FileNotFoundError) else ""
        raise FileNotFoundError(f"{path}: cannot read tree file ({e.strerror}){hint}") from None
    if "\0" in text:
        # Darknet's fgetl glues the lines around a NUL run together (AlexeyAB's damaged cfg/9k.tree
        # reads as 8709 of 9418 nodes, 511 of them with a parent past the end, which read_tree then
        # writes past its arrays): nothing to reproduce
        raise ValueError(f"{path}: holds NUL bytes (the first on line {text.count(chr(10), 0, text.index(chr(0))) + 1}): a damaged tree "
                         f"file (AlexeyAB's cfg/9k.tree is one; data/9k.tree of either Darknet is intact)")
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    names, parent = [], []
    for lineno, parts in enumerate(lines, 1):
        try:
            names.append(parts[0])
            parent.append(int(parts[1]) if len(parts) > 1 else -1)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'name parent_index'") from None
    group, offsets, sizes = [], [], []
    for i, p in enumerate(parent):
        if i == 0 or p != parent[i - 1]:
            offsets.append(i)
            sizes.append(0)
        sizes[-1] += 1
        group.append(len(offsets) - 1)
    child = [-1] * len(parent)
    for i, p in enumerate(parent):
        if p >= len(parent):
            raise ValueError(f"{path}: node {names[i]} has parent {p}, past the last node")
        if p >= 0:
            child[p] = group[i]  # Darknet keeps the last run of p's children
    leaf = [child[i] < 0 for i in range(len(parent))]
    return WordTree(names, parent, group, offsets, sizes, child, leaf)


def group_softmax(x: torch.Tensor, tree: WordTree, dim: int) -> torch.Tensor:
    """Softmax of ``x`` within each tree group along ``dim`` (whose size is tree.n)."""
    x = x.movedim(dim, -1)
    seg = tree.group_index().to(x.device).expand_as(x)
    shape = (*x.shape[:-1], tree.groups)
    mx = torch.full(shape, float("-inf"), dtype=x.dtype, device=x.device)
    mx = mx.scatter_reduce(-1, seg, x, "amax", include_self=True)
    e = torch.exp(x - mx.gather(-1, seg))
    total = torch.zeros(shape, dtype=x.dtype, device=x.device).scatter_add(-1, seg, e)
    return (e / total.gather(-1, seg)).movedim(-1, dim)


DATA_ENV = "PYDARKNET_DATA"
MISSING_DATA_HINT = (
    f"; tree and map files (9k.tree, coco9k.map, ...) are Darknet's data, not shipped with pydarknet: "
    f"get them from Darknet's data/ folder (https://github.com/pjreddie/darknet/tree/master/data) and put "
    f"them where the cfg names them (relative to the working directory or to the cfg), or set "
    f"{DATA_ENV} to the folder that holds them")


def resolve_data_path(name: str, cfg_path: str | None) -> Path:
    """A file named in a cfg (tree=, map=): Darknet opens it relative to the working
    directory; we also look beside the cfg file (the name as written, then its last part), then
    in the folder ``$PYDARKNET_DATA``
    (the name as written, then its last part: ``data/9k.tree`` is found as
    ``$PYDARKNET_DATA/data/9k.tree`` or ``$PYDARKNET_DATA/9k.tree``)."""
    p = resolve_beside(name, cfg_path)
    if p.is_file() or p.is_absolute():
        return p
    if cfg_path:
        # a tree beside the cfg (AlexeyAB's repository keeps data/9k.tree, which its yolo9000.cfg names,
        # and a damaged cfg/9k.tree that read_tree refuses)
        same_name = Path(cfg_path).parent / p.name
        if same_name.is_file():
            return same_name
    if not os.environ.get(DATA_ENV):
        return p
    folder = Path(os.environ[DATA_ENV])
    return next((c for c in (folder / p, folder / p.name) if c.is_file()), p)


def hierarchy_predictions(probs: torch.Tensor, tree: WordTree, only_leaves: bool = False) -> torch.Tensor:
    """Darknet's ``hierarchy_predictions`` on the last dim (size tree.n): one pass in node
    order, ``p[j] *= p[parent[j]]`` in float32 (absolute probabilities when every parent
    precedes its children); ``only_leaves`` then zeroes the internal nodes, as
    ``classifier predict`` does before ``top_k``.  Returns a new tensor."""
    p = probs.detach().to(torch.float32).clone()
    if p.shape[-1] != tree.n:
        raise ValueError(f"{p.shape[-1]} values but the tree has {tree.n} nodes")
    for j, parent in enumerate(tree.parent):
        if parent >= 0:
            p[..., j] = p[..., j] * p[..., parent]
    if only_leaves:
        p[..., [j for j in range(tree.n) if not tree.leaf[j]]] = 0
    return p


def hierarchy_top_prediction(probs: torch.Tensor, tree: WordTree, thresh: float) -> torch.Tensor:
    """Darknet's ``hierarchy_top_prediction`` for every row of ``probs`` (..., tree.n), which
    holds absolute probabilities (after :func:`hierarchy_predictions`).  Returns int64 node
    indices of shape ``probs.shape[:-1]``.

    Greedy descent from group 0: in the current group take the first largest value (strict
    ``>`` starting from 0, index 0 when nothing beats 0); while ``p*max > thresh`` (float32,
    ``p *= max``: the products double count) go on into that node's children, stopping at a
    leaf.  A failed test returns the best root in group 0, else the group's parent node."""
    p_in = probs.detach().to(torch.float32)
    if p_in.shape[-1] != tree.n:
        raise ValueError(f"{p_in.shape[-1]} values but the tree has {tree.n} nodes")
    lead = p_in.shape[:-1]
    vals = p_in.reshape(-1, tree.n)
    device = vals.device
    rows = vals.shape[0]
    node_group = torch.tensor(tree.group, dtype=torch.int64, device=device)
    child = torch.tensor(tree.child, dtype=torch.int64, device=device)
    group_parent = torch.tensor([tree.parent[o] for o in tree.group_offset], dtype=torch.int64, device=device)
    th = torch.tensor(thresh, dtype=torch.float32, device=device)
    zero = torch.zeros((), dtype=torch.float32, device=device)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float32, device=device)
    # NaN never wins `val > max`: treat it as -inf
    vals = torch.where(torch.isnan(vals), neg_inf, vals)

    p = torch.ones(rows, dtype=torch.float32, device=device)
    group = torch.zeros(rows, dtype=torch.int64, device=device)
    result = torch.zeros(rows, dtype=torch.int64, device=device)
    active = torch.ones(rows, dtype=torch.bool, device=device)
    for _ in range(tree.n + 1):
        if not bool(active.any()):
            break
        idx = torch.nonzero(active).flatten()
        g = group[idx]
        in_group = node_group.unsqueeze(0) == g.unsqueeze(1)
        v = torch.where(in_group, vals[idx], neg_inf)
        mx, arg = v.max(dim=-1)  # first index of the maximum
        beats = mx > zero
        max_i = torch.where(beats, arg, torch.zeros_like(arg))
        mx = torch.where(beats, mx, zero)
        prod = p[idx] * mx
        go = prod > th
        nxt = child[max_i]
        # test passed: descend, or stop at a leaf
        p[idx] = torch.where(go, prod, p[idx])
        group[idx] = torch.where(go, nxt, g)
        leaf_stop = go & (nxt < 0)
        fail = ~go
        res = torch.where(fail & (g != 0), group_parent[g], max_i)
        done = leaf_stop | fail
        result[idx[done]] = res[done]
        active[idx[done]] = False
    else:
        if bool(active.any()):
            raise ValueError("hierarchy_top_prediction: the descent does not end (thresh < 0?)")
    return result.reshape(lead)
