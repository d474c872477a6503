"""The ``pydarknet`` command: Darknet's verbs and argument order.

    pydarknet detector test|train|valid|map DATA CFG [WEIGHTS] [IMAGE...]
    pydarknet classifier predict|train|valid DATA CFG [WEIGHTS] [IMAGE...]
    pydarknet detect CFG WEIGHTS IMAGE...
    pydarknet classify CFG WEIGHTS IMAGE...
    pydarknet partial CFG WEIGHTS OUT N
    pydarknet convert | anchors | voc_label | class_labels | demo | download ...

Each verb's module holds its argparse program (``main``); ``tools/*.py`` call the same
functions.  The library never imports this package.
"""
from __future__ import annotations

import importlib
import signal
import sys

# verb -> (module, function, what it does); "detector"/"classifier" take a sub-verb
VERBS = {
    "detect": ("detect", "main", "detect objects: CFG WEIGHTS IMAGE... (Darknet's `detect`)"),
    "classify": ("classify", "main", "classify pictures: CFG WEIGHTS IMAGE... (top-k lines)"),
    "partial": ("partial", "main", "the first N layers' weights with seen = 0: CFG WEIGHTS OUT N"),
    "convert": ("convert", "main", ".weights <-> .pt <-> .safetensors, ONNX export"),
    "anchors": ("anchors", "main", "k-means (1 - IoU) anchors from a dataset"),
    "voc_label": ("voc_label", "main", "VOC XML -> Darknet labels, lists, .names, .data"),
    "class_labels": ("class_labels", "main", "YOLO9000 class-only labels for a folder-of-classes dataset"),
    "demo": ("demo", "main", "the offline demo (shipped shapes detector)"),
    "finetune": ("finetune", "main", "a detector from an ImageNet backbone, choices made from the data"),
    "download": ("download", "main", "Darknet's published weights by name (needs internet), checked"),
}
DETECTOR = {
    "test": ("detect", "detector_test", "DATA CFG WEIGHTS IMAGE...: detections per picture"),
    "train": ("train", "main", "DATA CFG [WEIGHTS]: Darknet's training loop"),
    "valid": ("valid", "main", "DATA CFG WEIGHTS: comp4 result files of the valid= list"),
    "map": ("map", "detector_map", "DATA [CFG WEIGHTS]: VOC mAP (runs valid first with a model)"),
    "recall": ("map", "detector_map", "DATA [CFG WEIGHTS]: Darknet's recall (printed with the mAP)"),
}
CLASSIFIER = {
    "predict": ("classify", "classifier_predict", "DATA CFG WEIGHTS IMAGE...: top-k classes per picture"),
    "train": ("train_classifier", "main", "DATA CFG [WEIGHTS]: Darknet's classifier training loop"),
    "valid": ("valid_classifier", "main", "DATA CFG WEIGHTS: top-1 / top-k over the valid= list"),
}
GROUPS = {"detector": DETECTOR, "classifier": CLASSIFIER}


def _usage() -> str:
    lines = ["usage: pydarknet VERB [ARGS...]   (pydarknet VERB --help for a verb's options)", "", "verbs:"]
    for group, table in GROUPS.items():
        for sub, (_m, _f, what) in table.items():
            lines.append(f"  {group} {sub:<10} {what}")
    for verb, (_m, _f, what) in VERBS.items():
        lines.append(f"  {verb:<19} {what}")
    return "\n".join(lines)


def _call(entry, argv: list[str], prog: str) -> int:
    module, function, _ = entry
    fn = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return fn(argv, prog=prog)


def main(argv=None) -> int:
    if hasattr(signal, "SIGPIPE"):      # `pydarknet --help | head` ends quietly, as a C program does
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb in GROUPS:
        table = GROUPS[verb]
        if not rest or rest[0] not in table:
            print(_usage(), file=sys.stderr)
            return 2
        return _call(table[rest[0]], rest[1:], f"pydarknet {verb} {rest[0]}")
    if verb in VERBS:
        return _call(VERBS[verb], rest, f"pydarknet {verb}")
    print(f"pydarknet: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
    return 2
