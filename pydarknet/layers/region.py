"""[region]: YOLOv2's output layer (src/region_layer.c).

Forward keeps Darknet's memory layout [anchor][x, y, w, h, obj, classes][row][col]
and applies the logistic to x, y and objectness and a softmax to the classes;
w and h stay raw.  Box decoding lives in :mod:`pydarknet.boxes`.
"""
from __future__ import annotations

import torch

from ..tree import read_tree, resolve_data_path
from .base import Layer, register
from .passthrough import loss_layer_output


#: Bounds read before anything is sized by them (a detection layer's channels must also match
#: its input, but that is only known once the defaults exist).
MAX_ANCHORS = 1 << 16
MAX_CLASSES = 1 << 20
MAX_BOXES = 1 << 16


@register("region")
class Region(Layer):
    def __init__(self, section, index):
        super().__init__(section, index)
        g = section
        # num is bounded before its default anchor list is built (num=100000000 would take GBs).
        self.classes = g.get_int("classes", 20, min=0, max=MAX_CLASSES)
        self.coords = g.get_int("coords", 4, min=4, max=MAX_CLASSES)
        self.num = g.get_int("num", 1, min=1, max=MAX_ANCHORS)
        self.softmax = g.get_bool("softmax")
        self.background = g.get_bool("background")
        self.anchors = g.get_list("anchors", float, default=lambda: [.5] * (2 * self.num), min=0)
        if len(self.anchors) < 2 * self.num:
            raise g.error(f"anchors has {len(self.anchors)} values, num={self.num} needs {2 * self.num}", "anchors")
        if len(self.anchors) > 2 * self.num:
            raise g.error(f"anchors has {len(self.anchors)} values but num={self.num}: Darknet would read "
                          f"past its bias buffer", "anchors")
        # Training options, kept for the region loss.
        self.jitter = g.get_float("jitter", .2, min=0)
        self.rescore = g.get_bool("rescore")
        self.thresh = g.get_float("thresh", .5)
        self.max_boxes = g.get_int("max", 30, min=0, max=MAX_BOXES)
        self.object_scale = g.get_float("object_scale", 1., min=0)
        self.noobject_scale = g.get_float("noobject_scale", 1., min=0)
        self.class_scale = g.get_float("class_scale", 1., min=0)
        self.coord_scale = g.get_float("coord_scale", 1., min=0)
        self.mask_scale = g.get_float("mask_scale", 1., min=0)
        self.bias_match = g.get_bool("bias_match")
        self.absolute = g.get_bool("absolute")
        self.random = g.get_bool("random")
        self.classfix = g.get_int("classfix", 0)
        self.log = g.get_int("log", 0)
        self.sqrt = g.get_int("sqrt", 0)
        self.tree_file = g.get_str("tree")
        self.map_file = g.get_str("map")
        self.tree = None
        if self.tree_file:
            try:
                self.tree = read_tree(resolve_data_path(self.tree_file, section.path))
            except (OSError, ValueError) as e:
                raise g.error(f"tree={self.tree_file}: {e}", "tree") from None
            if self.tree.n != self.classes:
                raise g.error(f"classes={self.classes} but the tree {self.tree_file} has {self.tree.n} nodes",
                              "classes")

    @property
    def entries(self) -> int:
        return self.coords + 1 + self.classes

    def infer_shape(self, in_shapes):
        s = in_shapes[0]
        if s.c != self.num * self.entries:
            raise self.error(f"the previous layer gives {s.c} channels but num*(classes+coords+1) = "
                             f"{self.num}*({self.classes}+{self.coords}+1) = {self.num * self.entries}")
        return s

    def forward(self, x):
        n, _, h, w = x.shape
        v = x.view(n, self.num, self.entries, h, w)
        arith = self.arith
        sigmoid = arith.logistic
        xy = sigmoid(v[:, :, 0:2])
        coords = v[:, :, 2:self.coords]
        obj = v[:, :, self.coords:self.coords + 1]
        if not self.background:
            obj = sigmoid(obj)
        cls = v[:, :, self.coords + 1:]
        if self.tree is not None:
            # What Darknet's GPU kernel computes.  Its CPU tree branch is broken (divides by an
            # unset temperature and mis-indexes; pjreddie/darknet #143, #144), so we follow the GPU.
            cls = arith.group_softmax(cls.movedim(2, -1), self.tree).movedim(-1, 2)
        elif self.softmax:
            cls = arith.softmax(cls, 2)
        y = torch.cat([xy, coords, obj, cls], dim=2).view(n, -1, h, w)
        return loss_layer_output(x, y, self._logistic_mask(x)) if self.training else y

    def _logistic_mask(self, x):
        """Entries whose Darknet gradient is the logistic's: x, y and (without background) obj."""
        m = torch.zeros(self.entries, dtype=torch.bool, device=x.device)
        m[0:2] = True
        m[self.coords] = not self.background
        return m.repeat(self.num).view(1, -1, 1, 1)

    def describe(self):
        return "detection"

    def delta(self, output, truths, seen):
        """Darknet's training delta and cost for this batch's output (see pydarknet.region_loss)."""
        from ..region_loss import region_delta
        return region_delta(self, output, truths, seen)
