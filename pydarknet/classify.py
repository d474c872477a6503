"""Classification, end to end: picture -> letterbox -> network -> top-k, as ``classifier predict``.

Darknet's ``predict_classifier`` (examples/classifier.c) letterboxes the picture to the
network's size, runs the network, turns a WordTree's conditional probabilities into absolute
ones for the leaves (``hierarchy_predictions(..., only_leaves=1)``) when the network has a
tree, and prints the ``top_k`` classes as ``%5.2f%%: name`` of the float32 ``prob*100``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .detect import _as_image, forward_picture
from .tree import WordTree, hierarchy_predictions

__all__ = ["Prediction", "classify", "classify_tensor", "top_k", "network_tree"]


@dataclass
class Prediction:
    """One class of a picture's top k: its index, name (``net.names``) and probability."""
    class_id: int
    name: str | None
    prob: float

    def to_dict(self) -> dict:
        return asdict(self)

    def darknet_line(self) -> str:
        """What Darknet prints: ``%5.2f%%: name`` of ``predictions[index]*100`` (a float product)."""
        percent = float(np.float32(self.prob) * np.float32(100))
        return f"{percent:5.2f}%: {self.name if self.name is not None else self.class_id}"


def top_k(values: torch.Tensor, k: int) -> list[int]:
    """Darknet's ``top_k``: the indices of the k largest values, largest first; of equal
    values the lower index comes first (its insertion uses a strict ``>``).  Asking for more
    than there are values gives them all."""
    v = values.detach().reshape(-1).to(torch.float32).cpu()
    # A NaN never wins Darknet's `a[curr] > a[index[j]]`: rank it below everything.
    v = torch.where(torch.isnan(v), torch.tensor(float("-inf")), v)
    order = torch.sort(v, descending=True, stable=True).indices
    return order[:max(int(k), 0)].tolist()


def network_tree(net) -> WordTree | None:
    """Darknet's ``net->hierarchy``: the tree of the last [softmax] layer that has one."""
    for layer in reversed(net.layers):
        if layer.kind == "softmax" and getattr(layer, "tree", None) is not None:
            return layer.tree
    return None


def classify_tensor(net, output: torch.Tensor, top: int = 5) -> list[Prediction]:
    """The top predictions from one picture's network output (any shape, flattened)."""
    probs = output.detach().reshape(-1).to(torch.float32).cpu()
    tree = network_tree(net)
    if tree is not None:
        probs = hierarchy_predictions(probs, tree, only_leaves=True)
    names = net.names
    return [Prediction(i, names[i] if names and i < len(names) else None, float(probs[i]))
            for i in top_k(probs, top)]


@torch.no_grad()
def classify(net, image, top: int = 5) -> list[Prediction]:
    """Classify one picture as ``./darknet classifier predict`` does.

    ``image`` is a path, an HxWx3 uint8 RGB array or a (3,H,W) float tensor (RGB, 0..1, what
    :func:`pydarknet.load_image` returns).  Returns the ``top`` most probable classes, most
    probable first, as :class:`Prediction` (``class_id``, ``name``, ``prob``).
    """
    img = _as_image(image)
    return classify_tensor(net, forward_picture(net, img)[0], top)
