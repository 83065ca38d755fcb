"""Compatibility rules between two real sample configs, per checkpoint type (no I/O, no TensorFlow)."""

from __future__ import annotations

import pytest
from conftest import SAMPLE_CONFIGS

from zoo.config.restore_rules import (
    Effect,
    backbone,
    compare,
    effect_of,
    guess_architecture,
    structure_problems,
)
from zoo.config.textproto import Document, parse_file

SSD_R50_640 = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config"
SSD_R50_1024 = "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8.config"
SSD_MOBILENET = "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.config"
FRCNN_R50 = "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
FRCNN_R101 = "faster_rcnn_resnet101_v1_640x640_coco17_tpu-8.config"
EFFICIENTDET_D0 = "ssd_efficientdet_d0_512x512_coco17_tpu-8.config"
EFFICIENTDET_D1 = "ssd_efficientdet_d1_640x640_coco17_tpu-8.config"


def sample(name: str) -> Document:
    return parse_file(SAMPLE_CONFIGS / name)


def test_ssd_resnet50_checkpoint_under_an_ssd_mobilenet_config_is_rejected_naming_both():
    result = compare(sample(SSD_MOBILENET), sample(SSD_R50_640), "detection")
    assert not result.compatible and result.extractor_differs
    assert (result.ours.extractor, result.theirs.extractor) == ("ssd_mobilenet_v2_fpn_keras", "ssd_resnet50_v1_fpn_keras")


def test_640_and_1024_variants_of_one_model_are_compatible_for_detection_and_full():
    for kind in ("detection", "full"):
        result = compare(sample(SSD_R50_1024), sample(SSD_R50_640), kind)
        assert result.compatible, kind
        assert {d.path for d in result.accepted} == {
            "image_resizer.fixed_shape_resizer.height", "image_resizer.fixed_shape_resizer.width"
        }  # fmt: skip


def test_faster_rcnn_resnet50_checkpoint_under_resnet101_is_rejected():
    result = compare(sample(FRCNN_R101), sample(FRCNN_R50), "detection")
    assert not result.compatible and result.extractor_differs


def test_num_classes_is_restored_by_full_but_not_by_detection():
    config = sample(SSD_R50_640)
    config.set("model.ssd.num_classes", 3)
    full = compare(config, sample(SSD_R50_640), "full")
    assert [d.path for d in full.blocking] == ["num_classes"] and not full.compatible
    detection = compare(config, sample(SSD_R50_640), "detection")
    assert detection.compatible and [d.path for d in detection.accepted] == ["num_classes"]


def test_different_meta_architectures_are_rejected():
    result = compare(sample(FRCNN_R50), sample(SSD_R50_640), "detection")
    assert result.meta_architecture_differs and not result.compatible


@pytest.mark.parametrize(
    ("path", "value", "blocks"),
    [
        ("model.ssd.feature_extractor.fpn.max_level", 6, True),  # one FPN level fewer
        ("model.ssd.feature_extractor.depth_multiplier", 0.5, True),
        ("model.ssd.feature_extractor.fpn.additional_layer_depth", 128, True),
        ("model.ssd.feature_extractor.use_depthwise", True, True),
        ("model.ssd.feature_extractor.conv_hyperparams.batch_norm.scale", False, True),  # gamma variables go
        ("model.ssd.feature_extractor.pad_to_multiple", 32, False),  # same kernels, padded input
        ("model.ssd.feature_extractor.conv_hyperparams.batch_norm.decay", 0.9, False),  # moving average rate
        ("model.ssd.feature_extractor.conv_hyperparams.regularizer.l2_regularizer.weight", 0.1, False),
        ("model.ssd.box_predictor.weight_shared_convolutional_box_predictor.depth", 128, False),  # not restored
    ],
)
def test_detection_restores_exactly_the_feature_extractor(path: str, value: float, blocks: bool):
    config = sample(SSD_R50_640)
    config.set(path, value)
    result = compare(config, sample(SSD_R50_640), "detection")
    assert result.compatible is not blocks
    if blocks:
        assert [f"model.ssd.{d.path}" for d in result.blocking] == [path]


def test_an_omitted_field_equals_its_proto_default():
    config = sample(SSD_R50_640)
    config.delete("model.ssd.feature_extractor.min_depth")  # default 16, as written in the sample
    config.delete("model.ssd.feature_extractor.depth_multiplier")  # default 1.0
    assert compare(config, sample(SSD_R50_640), "full").differences == ()


def test_unknown_settings_in_the_restored_part_are_uncertain_not_rejected():
    config = sample(SSD_R50_640)
    config.set("model.ssd.feature_extractor.some_future_option", 3)
    result = compare(config, sample(SSD_R50_640), "detection")
    assert result.compatible and [d.path for d in result.uncertain] == ["feature_extractor.some_future_option"]


def test_bifpn_settings_of_two_efficientdets_differ_in_weights():
    result = compare(sample(EFFICIENTDET_D1), sample(EFFICIENTDET_D0), "detection")
    assert result.extractor_differs  # b1 vs b0: named, not drowned in the BiFPN details


def test_anchor_aspect_ratios_matter_for_full_only_through_their_count():
    config = sample(SSD_R50_640)
    config.set_all("model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios", [1.0, 3.0, 0.33])
    assert compare(config, sample(SSD_R50_640), "full").compatible
    config.set_all("model.ssd.anchor_generator.multiscale_anchor_generator.aspect_ratios", [1.0, 2.0])
    assert not compare(config, sample(SSD_R50_640), "full").compatible


def test_classification_compares_only_the_backbone():
    # SSD ResNet50 FPN and Faster R-CNN ResNet50 share the ResNet-50 v1 backbone.
    same = compare(sample(SSD_R50_640), sample(SSD_R50_1024), "classification")
    assert same.compatible
    assert backbone("ssd_resnet50_v1_fpn_keras") == backbone("faster_rcnn_resnet50_keras") == "resnet50_v1"
    other = compare(sample(SSD_MOBILENET), sample(SSD_R50_640), "classification")
    assert other.extractor_differs


@pytest.mark.parametrize(
    ("extractor", "expected"),
    [
        ("ssd_mobilenet_v2_fpn_keras", "mobilenet_v2"),
        ("ssd_efficientnet-b3_bifpn_keras", "efficientnet-b3"),
        ("resnet_v1_101_fpn", "resnet101_v1"),
        ("resnet_v2_50", "resnet50_v2"),
        ("faster_rcnn_inception_resnet_v2_keras", "inception_resnet_v2"),
        ("mobilenet_v2_fpn_sep_conv", "mobilenet_v2"),
        ("hourglass_104", "hourglass_104"),
    ],
)
def test_backbone_names(extractor: str, expected: str):
    assert backbone(extractor) == expected


def test_effect_table():
    assert effect_of("image_resizer.fixed_shape_resizer.height") is Effect.NONE
    assert effect_of("loss.classification_loss.weighted_sigmoid_focal.gamma") is Effect.NONE
    assert effect_of("post_processing.batch_non_max_suppression.iou_threshold") is Effect.NONE
    assert effect_of("num_classes") is Effect.WEIGHTS
    assert effect_of("feature_extractor.bifpn.num_filters") is Effect.WEIGHTS
    assert effect_of("feature_extractor.mystery") is Effect.UNKNOWN


def test_structure_rules_per_type_and_architecture():
    ssd_children = ["_box_predictor", "_feature_extractor"]
    assert structure_problems("ssd", "detection", ["model", "save_counter"], ssd_children) == []
    assert structure_problems("ssd", "classification", ["model"], ssd_children) == ["feature_extractor"]
    assert structure_problems("faster_rcnn", "detection", ["model"], ssd_children) == [
        "model/_feature_extractor_for_proposal_features", "model/_feature_extractor_for_box_classifier_features"
    ]  # fmt: skip
    assert structure_problems("ssd", "classification", ["feature_extractor"], []) == []
    assert guess_architecture(ssd_children) == "ssd or center_net"
    assert guess_architecture(["_feature_extractor_for_proposal_features"]) == "faster_rcnn"
