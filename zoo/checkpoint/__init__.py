"""Read, inspect and verify TensorFlow checkpoints without TensorFlow.

``tensor_bundle`` decodes a ``.index`` file, ``reader`` finds and reads a
checkpoint's index from any path a user gives, ``verify`` checks every
tensor's bytes against its CRC32C, ``inspection`` summarises what it holds.
"""

from zoo.checkpoint.inspection import summarize
from zoo.checkpoint.reader import Checkpoint, CheckpointPath, is_checkpoint_path, read_checkpoint, resolve_prefix
from zoo.checkpoint.tensor_bundle import BundleHeader, TensorEntry
from zoo.checkpoint.verify import check_files, verify_checkpoint

__all__ = [
    "BundleHeader",
    "Checkpoint",
    "CheckpointPath",
    "TensorEntry",
    "check_files",
    "is_checkpoint_path",
    "read_checkpoint",
    "resolve_prefix",
    "summarize",
    "verify_checkpoint",
]
