"""Can a checkpoint be restored into a config's model? Pure rules, no I/O.

What must match depends on what ``fine_tune_checkpoint_type`` restores
(tfod_reference.md (b)): ``classification`` restores only the backbone
(``_feature_extractor.classification_backbone``, under the root object
``feature_extractor``); ``detection`` the whole feature extractor (root
``model``, child ``_feature_extractor``, or Faster R-CNN's two extractor
parts); ``full`` the whole model. Two kinds of evidence are used:

- the checkpoint's own ``pipeline.config``: ``compare`` diffs the two model
  blocks and sorts each difference by whether it can change which variables
  exist or their shapes (restore fails) or not (accepted), within the scope
  the checkpoint type restores;
- the checkpoint's structure (root objects, ``model/`` children), when no
  ``pipeline.config`` is known: ``structure_problems`` says what surely fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from zoo.config.textproto import Document, Message, Value, meta_architecture
from zoo.errors import ConfigError

CHECKPOINT_TYPES = ("classification", "detection", "full")

# The root object each type restores, and the model/ children `detection`
# restores per meta-architecture (restore_from_objects in each meta-arch).
ROOT_FOR_TYPE = {"classification": "feature_extractor", "detection": "model", "full": "model"}
EXTRACTOR_CHILDREN = {
    "ssd": ("_feature_extractor",),
    "center_net": ("_feature_extractor",),
    "faster_rcnn": ("_feature_extractor_for_proposal_features", "_feature_extractor_for_box_classifier_features"),
}

# Feature extractors the TF2 model builder knows (builders/model_builder.py,
# the maps under `if tf_version.is_tf2()`); any other type fails model build.
TF2_EXTRACTORS = {
    "ssd": frozenset({
        "ssd_mobilenet_v1_keras", "ssd_mobilenet_v1_fpn_keras", "ssd_mobilenet_v2_keras",
        "ssd_mobilenet_v2_fpn_keras", "ssd_resnet50_v1_fpn_keras", "ssd_resnet101_v1_fpn_keras",
        "ssd_resnet152_v1_fpn_keras", *(f"ssd_efficientnet-b{i}_bifpn_keras" for i in range(8)),
    }),
    "faster_rcnn": frozenset({
        "faster_rcnn_resnet50_keras", "faster_rcnn_resnet101_keras", "faster_rcnn_resnet152_keras",
        "faster_rcnn_inception_resnet_v2_keras", "faster_rcnn_resnet50_fpn_keras",
        "faster_rcnn_resnet101_fpn_keras", "faster_rcnn_resnet152_fpn_keras",
    }),
    "center_net": frozenset({
        "resnet_v2_50", "resnet_v2_101", "resnet_v1_18_fpn", "resnet_v1_34_fpn", "resnet_v1_50_fpn",
        "resnet_v1_101_fpn", "hourglass_10", "hourglass_20", "hourglass_32", "hourglass_52", "hourglass_104",
        "mobilenet_v2", "mobilenet_v2_fpn", "mobilenet_v2_fpn_sep_conv",
    }),
}  # fmt: skip


# Feature extractors the TF1 model builder knows (builders/model_builder.py, the maps
# under `if tf_version.is_tf1()`); CenterNet has none there.
TF1_EXTRACTORS = {
    "ssd": frozenset({
        "ssd_inception_v2", "ssd_inception_v3", "ssd_mobilenet_v1", "ssd_mobilenet_v1_fpn", "ssd_mobilenet_v1_ppn",
        "ssd_mobilenet_v2", "ssd_mobilenet_v2_fpn", "ssd_mobilenet_v2_mnasfpn", "ssd_mobilenet_v3_large",
        "ssd_mobilenet_v3_small", "ssd_mobilenet_edgetpu", "ssd_resnet50_v1_fpn", "ssd_resnet101_v1_fpn",
        "ssd_resnet152_v1_fpn", "ssd_resnet50_v1_ppn", "ssd_resnet101_v1_ppn", "ssd_resnet152_v1_ppn",
        "embedded_ssd_mobilenet_v1", "ssd_pnasnet", "ssd_mobiledet_cpu", "ssd_mobiledet_dsp",
        "ssd_mobiledet_edgetpu", "ssd_mobiledet_gpu", "ssd_spaghettinet",
    }),
    "faster_rcnn": frozenset({
        "faster_rcnn_nas", "faster_rcnn_pnas", "faster_rcnn_inception_resnet_v2", "faster_rcnn_inception_v2",
        "faster_rcnn_resnet50", "faster_rcnn_resnet101", "faster_rcnn_resnet152",
    }),
    "center_net": frozenset(),
}  # fmt: skip
EXTRACTORS = {"tf1": TF1_EXTRACTORS, "tf2": TF2_EXTRACTORS}
TF1_CHECKPOINT_TYPES = ("classification", "detection")  # TF1 restore_map raises on any other


def trainer_for(doc: Document) -> str:
    """The trainer a config is written for: "tf1" when its feature extractor
    exists only in TF1's model builder, else "tf2" (the default)."""
    try:
        arch = meta_architecture(doc)
    except ConfigError:
        return "tf2"
    extractor = doc.get(f"model.{arch}.feature_extractor.type")
    return "tf1" if extractor in TF1_EXTRACTORS.get(arch, ()) else "tf2"


class Effect(Enum):
    WEIGHTS = "weights"  # can add, remove or reshape a variable: the restore fails
    NONE = "none"  # never touches a variable: accepted
    UNKNOWN = "unknown"  # not in our tables: cannot tell


# -- which settings change weights ---------------------------------------------------

# Blocks whose whole content only shapes inputs, targets, losses or outputs.
_NO_WEIGHT_BLOCKS = frozenset({
    "image_resizer", "loss", "post_processing", "second_stage_post_processing", "matcher",
    "similarity_calculator", "box_coder", "regularizer", "initializer", "hard_example_miner",
    "second_stage_classification_loss", "classification_loss", "localization_loss",
})  # fmt: skip
_NO_WEIGHT_FIELDS = frozenset({
    # batch norm and training behaviour: the variables exist either way
    "activation", "decay", "epsilon", "train", "batch_norm_trainable", "freeze_batchnorm",
    "inplace_batchnorm_update", "use_dropout", "dropout_keep_probability",
    # padding, strides and pre-processing: same kernels, other inputs
    "pad_to_multiple", "use_explicit_padding", "replace_preprocessor_with_placeholder",
    "first_stage_features_stride", "channel_means", "channel_stds", "bgr_ordering",
    "upsampling_interpolation", "initial_crop_size", "maxpool_kernel_size", "maxpool_stride",
    # anchor geometry (the *count* of anchors is judged separately)
    "anchor_scale", "base_anchor_height", "base_anchor_width", "height_stride", "width_stride",
    "height_offset", "width_offset", "min_scale", "max_scale", "interpolated_scale_aspect_ratio",
    "reduce_boxes_in_lowest_layer", "clip_anchors_to_image",
    # initial values only
    "class_prediction_bias_init", "heatmap_bias_init",
    # sampling, matching and loss normalisation
    "normalize_loss_by_num_matches", "normalize_loc_loss_by_codesize", "first_stage_minibatch_size",
    "first_stage_positive_balance_fraction", "second_stage_batch_size", "second_stage_balance_fraction",
    "first_stage_max_proposals", "max_box_predictions", "peak_max_pool_kernel_size",
    "use_matmul_gather", "use_matmul_gather_in_matcher", "use_matmul_crop_and_resize",
    "use_static_shapes", "use_static_balanced_label_sampler", "compute_heatmap_sparse",
    "return_raw_detections_during_predict",
})  # fmt: skip
_NO_WEIGHT_SUFFIXES = ("_loss_weight", "_weight", "_threshold", "_iou")  # loss weights, score cut-offs
_WEIGHT_FIELDS = frozenset({
    # the extractor itself
    "type", "depth_multiplier", "min_depth", "use_depthwise", "num_layers", "use_separable_conv",
    "override_base_feature_extractor_hyperparams", "fpn", "bifpn", "min_level", "max_level",
    "additional_layer_depth", "num_iterations", "num_filters", "combine_method",
    # layers that gain or lose variables
    "batch_norm", "scale", "center", "force_use_bias", "conv_hyperparams", "fc_hyperparams",
    # heads: output widths and depths
    "num_classes", "add_background_class", "encode_background_as_zeros", "explicit_background_class",
    "depth", "num_layers_before_predictor", "kernel_size", "kernel_sizes", "box_code_size",
    "share_prediction_tower", "scales_per_octave", "number_of_stages", "predict_instance_masks",
    "mask_height", "mask_width", "mask_prediction_conv_depth", "mask_prediction_num_conv_layers",
    "first_stage_box_predictor_depth", "first_stage_box_predictor_kernel_size", "first_stage_atrous_rate",
    "keypoint_estimation_task", "mask_estimation_task", "densepose_estimation_task",
    "track_estimation_task", "temporal_offset_task", "deepmac_mask_estimation", "num_keypoints",
    "box_predictor", "anchor_generator", "first_stage_anchor_generator", "second_stage_box_predictor",
})  # fmt: skip
# Repeated fields where only the number of values sizes a layer (anchors per location).
_COUNT_ONLY = frozenset({"aspect_ratios", "scales"})

# Proto defaults, by path suffix, so that an omitted field equals its default.
_DEFAULTS: dict[str, Value] = {
    "feature_extractor.depth_multiplier": 1.0,
    "feature_extractor.min_depth": 16,
    "feature_extractor.use_explicit_padding": False,
    "feature_extractor.use_depthwise": False,
    "feature_extractor.override_base_feature_extractor_hyperparams": False,
    "feature_extractor.num_layers": 6,
    "feature_extractor.use_separable_conv": False,
    "feature_extractor.bgr_ordering": False,
    "feature_extractor.upsampling_interpolation": "nearest",
    "feature_extractor.first_stage_features_stride": 16,
    "feature_extractor.batch_norm_trainable": False,
    "fpn.min_level": 3,
    "fpn.max_level": 7,
    "fpn.additional_layer_depth": 256,
    "bifpn.min_level": 3,
    "bifpn.max_level": 7,
    "bifpn.combine_method": "fast_attention",
    "batch_norm.center": True,
    "batch_norm.scale": False,
    "batch_norm.decay": 0.999,
    "batch_norm.epsilon": 0.001,
    "batch_norm.train": True,
    "conv_hyperparams.force_use_bias": False,
}


def effect_of(path: str) -> Effect:
    """Whether a setting at ``path`` (relative to ``model.<arch>``) can change weights."""
    names = path.split(".")
    if any(name in _NO_WEIGHT_BLOCKS for name in names[:-1]) or names[-1] in _NO_WEIGHT_BLOCKS:
        return Effect.NONE
    last = names[-1]
    if last in _NO_WEIGHT_FIELDS or (last not in _WEIGHT_FIELDS and last.endswith(_NO_WEIGHT_SUFFIXES)):
        return Effect.NONE
    if last in _WEIGHT_FIELDS or last in _COUNT_ONLY:
        return Effect.WEIGHTS
    return Effect.UNKNOWN


def in_scope(path: str, checkpoint_type: str) -> bool:
    """Whether ``checkpoint_type`` restores the weights a setting at ``path`` shapes.

    ``classification`` is judged on the backbone alone (see ``backbone``), so
    no setting path is in its scope here.
    """
    if checkpoint_type == "full":
        return True
    if checkpoint_type == "detection":
        return path == "feature_extractor" or path.startswith("feature_extractor.")
    return False


def backbone(extractor_type: str) -> str:
    """The classification network inside a detection feature extractor.

    ``ssd_resnet50_v1_fpn_keras``, ``faster_rcnn_resnet50_keras`` and CenterNet's
    ``resnet_v1_50_fpn`` all hold ``resnet50_v1``; ``ssd_mobilenet_v2_fpn_keras``
    holds ``mobilenet_v2``; ``ssd_efficientnet-b1_bifpn_keras`` ``efficientnet-b1``.
    """
    name = extractor_type.removesuffix("_keras")
    for prefix in ("ssd_", "faster_rcnn_"):
        name = name.removeprefix(prefix)
    for suffix in ("_fpn_sep_conv", "_bifpn", "_fpn"):
        name = name.removesuffix(suffix)
    if match := re.fullmatch(r"resnet_v([12])_(\d+)", name):  # CenterNet's spelling
        return f"resnet{match[2]}_v{match[1]}"
    if match := re.fullmatch(r"resnet(\d+)", name):  # Faster R-CNN's ResNets are v1
        return f"resnet{match[1]}_v1"
    return name


# -- comparing two configs -----------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """All values of one setting path in a model block, in file order."""

    values: tuple[Value | None, ...]  # None marks a message block's presence
    line: int

    def spelled(self) -> str:
        shown = ["{...}" if v is None else _spell(v) for v in self.values]
        return shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"


@dataclass(frozen=True)
class Difference:
    path: str  # relative to model.<arch>
    ours: Setting | None  # in the config being checked; None: absent, no known default
    theirs: Setting | None  # in the checkpoint's pipeline.config
    effect: Effect
    restored: bool  # within what the checkpoint type restores

    def describe(self) -> str:
        ours = self.ours.spelled() if self.ours else "(absent)"
        theirs = self.theirs.spelled() if self.theirs else "(absent)"
        return f"{self.path}: {ours} here, {theirs} in the checkpoint's config"


@dataclass(frozen=True)
class ModelSummary:
    meta_architecture: str
    extractor: str | None  # feature_extractor.type
    line: int | None  # of the extractor type (else of the model block)


@dataclass(frozen=True)
class Comparison:
    """The config's model against the checkpoint's, for one checkpoint type."""

    checkpoint_type: str
    ours: ModelSummary
    theirs: ModelSummary
    differences: tuple[Difference, ...] = field(default=())

    @property
    def meta_architecture_differs(self) -> bool:
        return self.ours.meta_architecture != self.theirs.meta_architecture

    @property
    def extractor_differs(self) -> bool:
        """Different extractor types where the type restores them (for
        ``classification``: different backbones)."""
        if self.meta_architecture_differs or self.ours.extractor == self.theirs.extractor:
            return False
        if self.checkpoint_type == "classification":
            return backbone(self.ours.extractor or "") != backbone(self.theirs.extractor or "")
        return True

    @property
    def blocking(self) -> list[Difference]:
        return [d for d in self.differences if d.restored and d.effect is Effect.WEIGHTS]

    @property
    def uncertain(self) -> list[Difference]:
        return [d for d in self.differences if d.restored and d.effect is Effect.UNKNOWN]

    @property
    def accepted(self) -> list[Difference]:
        return [d for d in self.differences if not d.restored or d.effect is Effect.NONE]

    @property
    def compatible(self) -> bool:
        return not (self.meta_architecture_differs or self.extractor_differs or self.blocking)


def compare(config: Document, reference: Document, checkpoint_type: str) -> Comparison:
    """Diff the ``model`` blocks of ``config`` and the checkpoint's ``reference``.

    The type decides which differences are restored (``in_scope``); a
    ``classification`` checkpoint is compared on its backbone only, through
    ``Comparison.extractor_differs`` and the backbone's width settings.
    """
    ours, theirs = summarize(config), summarize(reference)
    if ours.meta_architecture != theirs.meta_architecture:
        return Comparison(checkpoint_type, ours, theirs)
    arch = ours.meta_architecture
    mine = _flatten(_model_block(config, arch))
    other = _flatten(_model_block(reference, arch))
    differences = []
    for path in sorted(set(mine) | set(other), key=_path_order(mine, other)):
        if path == "feature_extractor.type":
            continue  # reported as extractor_differs, naming both sides
        difference = _difference(path, mine.get(path), other.get(path), checkpoint_type, ours.extractor)
        if difference is not None:
            differences.append(difference)
    return Comparison(checkpoint_type, ours, theirs, tuple(differences))


def summarize(doc: Document) -> ModelSummary:
    arch = meta_architecture(doc)
    nodes = doc.nodes(f"model.{arch}.feature_extractor.type")
    if nodes:
        value = nodes[0].value if not isinstance(nodes[0], Message) else None
        return ModelSummary(arch, str(value) if value is not None else None, nodes[0].line)
    return ModelSummary(arch, None, doc.nodes("model")[0].line)


def structure_problems(arch: str, checkpoint_type: str, roots: Iterable[str], model_children: Iterable[str]) -> list[str]:
    """What a checkpoint with these root objects and ``model/`` children lacks
    for ``checkpoint_type`` under meta-architecture ``arch``: names of the
    objects the trainer will try to restore and not find. Empty when fine (or
    when the type or meta-architecture is not one we know)."""
    roots, children = set(roots), set(model_children)
    root = ROOT_FOR_TYPE.get(checkpoint_type)
    if root is None:
        return []
    if root not in roots:
        return [root]
    if root == "model":
        return [f"model/{c}" for c in EXTRACTOR_CHILDREN.get(arch, ()) if c not in children]
    return []


def guess_architecture(model_children: Iterable[str]) -> str | None:
    """Which meta-architectures a ``model/`` layout fits (names from (g) of the reference)."""
    children = set(model_children)
    if set(EXTRACTOR_CHILDREN["faster_rcnn"]) & children:
        return "faster_rcnn"
    if "_feature_extractor" in children:
        return "ssd or center_net"
    return None


# -- internals ------------------------------------------------------------------------


def _model_block(doc: Document, arch: str) -> Message:
    node = doc.nodes(f"model.{arch}")[0]
    assert isinstance(node, Message), "meta_architecture() only returns message blocks"
    return node


def _flatten(message: Message, prefix: str = "") -> dict[str, Setting]:
    """Every setting path under ``message`` with all its values: repeated
    fields and ``[a, b]`` lists collect in order; a block records its presence."""
    collected: dict[str, list[Value | None]] = {}
    lines: dict[str, int] = {}
    _collect(message, prefix, collected, lines)
    return {path: Setting(tuple(values), lines[path]) for path, values in collected.items()}


def _collect(message: Message, prefix: str, into: dict[str, list[Value | None]], lines: dict[str, int]) -> None:
    for f in message.fields:
        path = prefix + f.name
        lines.setdefault(path, f.line)
        for item in f.items:
            if isinstance(item, Message):
                into.setdefault(path, []).append(None)
                _collect(item, path + ".", into, lines)
            else:
                into.setdefault(path, []).append(item.value)


def _path_order(*sides: dict[str, Setting]) -> Callable[[str], tuple[int, int]]:
    """Sort key: the order the settings appear in the files (ours first)."""

    def key(path: str) -> tuple[int, int]:
        for rank, side in enumerate(sides):
            if path in side:
                return rank, side[path].line
        return len(sides), 0

    return key


def _difference(
    path: str, ours: Setting | None, theirs: Setting | None, checkpoint_type: str, extractor: str | None
) -> Difference | None:
    ours = ours or _default(path)
    theirs = theirs or _default(path)
    if ours is not None and theirs is not None and _same(path, ours.values, theirs.values):
        return None
    effect = effect_of(path)
    if path.rsplit(".", 1)[-1] in _COUNT_ONLY and ours and theirs and len(ours.values) == len(theirs.values):
        effect = Effect.NONE  # same number of anchors per location: same predictor widths
    restored = in_scope(path, checkpoint_type) or _in_backbone(path, checkpoint_type, extractor)
    return Difference(path, ours, theirs, effect, restored)


def _in_backbone(path: str, checkpoint_type: str, extractor: str | None) -> bool:
    # A MobileNet backbone's channel counts follow depth_multiplier and min_depth.
    return (
        checkpoint_type == "classification"
        and "mobilenet" in backbone(extractor or "")
        and path in ("feature_extractor.depth_multiplier", "feature_extractor.min_depth")
    )


def _default(path: str) -> Setting | None:
    for suffix, value in _DEFAULTS.items():
        if path == suffix or path.endswith("." + suffix):
            return Setting((value,), 0)
    return None


def _same(path: str, ours: tuple[Value | None, ...], theirs: tuple[Value | None, ...]) -> bool:
    if len(ours) != len(theirs):
        return False
    return all(_equal(a, b) for a, b in zip(ours, theirs))


def _equal(a: Value | None, b: Value | None) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b  # strings and enum identifiers; an Identifier equals its str


def _spell(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not value.isidentifier():
        return repr(value)
    return str(value)
