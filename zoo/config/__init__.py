"""Pipeline configs: read, check and write them as the TF2 trainer sees them.

- ``textproto``: the lossless protobuf text-format reader and editor (every
  byte not edited stays as it was);
- ``labelmap``: label maps, held to what TensorFlow's ``label_map_util`` accepts;
- ``restore_rules``: what each ``fine_tune_checkpoint_type`` restores, and a
  config's model compared with the checkpoint's own pipeline.config;
- ``checks``: ``check(doc, facts)``, the pure rules of `zoo check`, one module
  per rule group;
- ``facts``: the I/O edge that gathers those facts from disk (``gather``,
  ``check_document``);
- ``configure``: `zoo config`, a zoo model's sample config (or the config beside
  a checkpoint given by path) made ready to train;
- ``trainer``: the trainer's command lines (one builder for `zoo config
  --model-dir` and `zoo train`) and `zoo train`'s checks before running it.

Nothing here imports TensorFlow or the download stack (requests); ``configure``
reaches it only through ``zoo.fetch`` when a model is not cached yet. Import
from the modules (``from zoo.config.checks import check``): this package
imports none of them, so `zoo check` loads only what checking needs.
"""

