"""Real TensorFlow checkpoints in the key layouts the TF2 Object Detection API writes.

Each writer builds tiny ``tf.Module`` trees whose attribute names are the
zoo's (tfod_reference.md (g)), saves them with ``tf.train.CheckpointManager``
as the exporter and the training loop do, and returns the prefix. A zoo model
directory gets ``<top>/checkpoint/ckpt-0`` beside ``<top>/pipeline.config``.
"""

from __future__ import annotations

from pathlib import Path

from tarballs import _module_of, _random_weights, _tensorflow, write_tf1_checkpoint

# model/ children per meta-architecture: what `detection` restores, then heads.
LAYOUTS = {
    "ssd": ("_feature_extractor", "_box_predictor"),
    "center_net": ("_feature_extractor", "_prediction_head_dict"),
    "faster_rcnn": (
        "_feature_extractor_for_proposal_features",
        "_feature_extractor_for_box_classifier_features",
        "_first_stage_box_predictor",
        "_mask_rcnn_box_predictor",
    ),
}


def _model(arch: str) -> object:
    tf = _tensorflow()
    model = tf.Module()
    for i, child in enumerate(LAYOUTS[arch]):
        setattr(model, child, _module_of(tf, "w", _random_weights(2, 8, seed=i)))
    return model


def _save(directory: Path, **roots: object) -> Path:
    tf = _tensorflow()
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**roots), str(directory), max_to_keep=1)
    return Path(manager.save(checkpoint_number=0))


def zoo_model_dir(top: Path, arch: str = "ssd", config_text: str | None = None) -> Path:
    """``top/checkpoint/ckpt-0`` (root ``model``) and, when given, ``top/pipeline.config``."""
    prefix = _save(top / "checkpoint", model=_model(arch))
    if config_text is not None:
        (top / "pipeline.config").write_text(config_text)
    return prefix


def classification_checkpoint(directory: Path) -> Path:
    """A backbone saved under the root ``feature_extractor`` (the classification layout)."""
    tf = _tensorflow()
    return _save(directory, feature_extractor=_module_of(tf, "conv", _random_weights(3, 8, seed=7)))


def training_checkpoint(model_dir: Path, step: int, arch: str = "ssd") -> Path:
    """What train_loop leaves in model_dir: ``Checkpoint(step=global_step, model=..., optimizer=...)``."""
    tf = _tensorflow()
    global_step = tf.Variable(step, dtype=tf.int64, trainable=False)
    optimizer = tf.Module()
    optimizer.iterations = tf.Variable(step, dtype=tf.int64)
    return _save(model_dir, step=global_step, model=_model(arch), optimizer=optimizer)


def tf1_checkpoint(directory: Path) -> Path:
    """A TF1 Saver checkpoint, ``model.ckpt``, as the TF1 zoo ships it."""
    return write_tf1_checkpoint(directory, variables=3, floats_per_variable=8)
