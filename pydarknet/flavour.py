"""Which Darknet a cfg belongs to: pjreddie/darknet or AlexeyAB/darknet.

The two read the same files but detect differently (pjreddie letterboxes the picture and
prints ``name: NN%`` per class; AlexeyAB resizes it unless ``[net] letter_box=1``, may use
DIoU NMS and prints ``-ext_output`` lines sorted by left edge) and store [batchnorm] layers
differently.  A cfg is AlexeyAB's when it uses a section, an option or an activation that only
AlexeyAB's parser reads; ``Darknet(cfg, flavour=...)`` or ``--flavour`` overrides the guess.
"""
from __future__ import annotations

from .cfg import ALEXEYAB_SECTIONS, CfgError, Section

__all__ = ["FLAVOURS", "detect_flavour", "alexeyab_markers", "mark_training_options"]

FLAVOURS = ("pjreddie", "alexeyab")

# Options only AlexeyAB's parser reads, by section kind.
ALEXEYAB_OPTIONS = {
    "net": {"letter_box", "mosaic", "cutmix", "mixup", "blur", "gaussian_noise", "flip", "track",
            "augment_speed", "sequential_subdivisions", "try_fix_nan", "ema_alpha", "label_smooth_eps",
            "resize_step", "max_chart_loss", "adversarial_lr", "contrastive", "contrastive_jit_flip",
            "contrastive_color", "unsupervised", "dynamic_minibatch", "optimized_memory",
            "workspace_size_limit_MB", "use_cuda_graph", "loss_scale", "learning_rate_min", "sgdr_cycle",
            "sgdr_mult", "equidistant_point", "weights_reject_freq", "mosaic_bound", "attention",
            "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "seq_scales"},
    "convolutional": {"stride_x", "stride_y", "dilation", "antialiasing", "share_index", "cbn", "bin_output",
                      "sway", "rotate", "stretch", "stretch_sway", "coordconv", "assisted_excitation",
                      "grad_centr", "stream", "wait_stream"},
    "route": {"groups", "group_id", "stream", "wait_stream"},
    "shortcut": {"weights_type", "weights_normalization"},
    "maxpool": {"stride_x", "stride_y", "maxpool_depth", "out_channels", "antialiasing", "maxpool_zero_nonmax"},
    "yolo": {"scale_x_y", "new_coords", "nms_kind", "beta_nms", "iou_loss", "iou_normalizer", "cls_normalizer",
             "obj_normalizer", "delta_normalizer", "max_delta", "counters_per_class", "label_smooth_eps",
             "objectness_smooth", "iou_thresh", "iou_thresh_kind", "resize", "focal_loss", "embedding_layer",
             "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm",
             "show_details", "beta1"},
    "dropout": {"dropblock", "dropblock_size_rel", "dropblock_size_abs"},
    # pjreddie's [crnn] reads output_filters=/hidden_filters= and fixes 3x3 kernels, stride 1, pad 1
    "crnn": {"output", "hidden", "size", "stride", "dilation", "pad", "padding", "groups", "xnor"},
    "rnn": {"logistic"},
}
# AlexeyAB options that only matter to training or to its GPU code: read without a warning.
TRAINING_ONLY = {
    "net": ALEXEYAB_OPTIONS["net"] - {"letter_box", "learning_rate_min", "sgdr_cycle", "sgdr_mult"}
    | {"max_epochs", "seen"},
    "dropout": ALEXEYAB_OPTIONS["dropout"],
}


def alexeyab_markers(sections: list[Section]) -> list[str]:
    """'file:line: what' for each AlexeyAB-only section, option or activation in the cfg."""
    from .layers.activations import ALEXEYAB_ACTIVATIONS
    found = []
    for s in sections:
        if s.kind in ALEXEYAB_SECTIONS:
            found.append(f"{s.path}:{s.line}: [{s.header}]")
            continue
        kind = "yolo" if s.kind == "gaussian_yolo" else s.kind
        for key, opt in s.options.items():
            if key in ALEXEYAB_OPTIONS.get(kind, ()):
                found.append(f"{s.path}:{opt.line}: {key}= in [{s.header}]")
            elif key == "activation" and opt.value in ALEXEYAB_ACTIVATIONS:
                found.append(f"{s.path}:{opt.line}: activation={opt.value}")
            elif key == "policy" and opt.value == "sgdr":
                found.append(f"{s.path}:{opt.line}: policy=sgdr")
            elif kind == "shortcut" and key == "from" and "," in opt.value:
                found.append(f"{s.path}:{opt.line}: from= with several layers in [shortcut]")
    return found


def detect_flavour(sections: list[Section], override: str | None = None) -> str:
    """``override`` if given, else "alexeyab" when any AlexeyAB-only marker is present, else "pjreddie"."""
    if override is not None:
        if override not in FLAVOURS:
            raise CfgError(f"flavour must be one of {', '.join(FLAVOURS)}, not {override!r}")
        return override
    return "alexeyab" if alexeyab_markers(sections) else "pjreddie"


def mark_training_options(section: Section) -> None:
    """Read AlexeyAB's training-only options of a section so that they are not 'unused'."""
    for key in TRAINING_ONLY.get(section.kind, ()):
        if section.has(key):
            section.get_str(key)
