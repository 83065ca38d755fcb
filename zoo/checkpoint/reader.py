"""A checkpoint's index, found from any path a user gives and read without TensorFlow.

A checkpoint is a prefix such as ``.../checkpoint/ckpt-0``: ``<prefix>.index``
lists every tensor (dtype, shape, shard, offset, size, masked CRC32C; see
zoo.checkpoint.tensor_bundle) and ``<prefix>.data-NNNNN-of-MMMMM`` hold the
bytes. Reading the index takes milliseconds and imports neither TensorFlow
nor numpy. Every function takes a ``CheckpointPath``: a local path, or a path
in an object store with the same methods, so one code path reads both.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from zoo.checkpoint.tensor_bundle import BundleHeader, Malformed, TensorEntry, parse_index
from zoo.errors import CheckpointError

OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SUFFIX = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")
_STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's and Saver's record of the latest prefix
_STATE_PATH = re.compile(r'^\s*model_checkpoint_path:\s*"([^"]*)"', re.MULTILINE)
_NOT_PARAMETERS = {"string", "variant", "resource"}


class CheckpointPath(Protocol):
    """Where checkpoint files are: a ``pathlib.Path``, or a path in an object store
    with these same methods (zoo.config.remote's RemotePath, over fsspec), so one
    reader finds, reads and checks checkpoints wherever they live."""

    @property
    def name(self) -> str: ...
    @property
    def stem(self) -> str: ...
    @property
    def parent(self) -> CheckpointPath: ...
    def __truediv__(self, key: Any) -> CheckpointPath: ...
    def with_name(self, name: str) -> CheckpointPath: ...
    def with_suffix(self, suffix: str) -> CheckpointPath: ...
    def is_dir(self) -> bool: ...
    def is_file(self) -> bool: ...
    def glob(self, pattern: str) -> Iterable[CheckpointPath]: ...
    def stat(self) -> Any: ...  # st_size is what is used
    def read_bytes(self) -> bytes: ...
    def read_text(self, *, errors: str | None = None) -> str: ...


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's index: what it holds, where, and which CRCs the bytes must have.

    ``entries`` are the tensors TensorFlow lists (``tf.train.list_variables``), in
    name order; ``slices`` hold the data of partitioned tensors, named after them.
    """

    prefix: CheckpointPath
    header: BundleHeader
    entries: tuple[TensorEntry, ...]
    slices: tuple[TensorEntry, ...] = ()

    @property
    def index_file(self) -> CheckpointPath:
        return _index_of(self.prefix)

    @property
    def data_files(self) -> tuple[CheckpointPath, ...]:
        count = self.header.num_shards
        return tuple(self.prefix.with_name(f"{self.prefix.name}.data-{i:05d}-of-{count:05d}") for i in range(count))

    @property
    def is_object_based(self) -> bool:
        """Written by tf.train.Checkpoint (TF2), which the Object Detection API's fine-tuning requires."""
        return any(entry.name == OBJECT_GRAPH for entry in self.entries)

    @property
    def format(self) -> str:
        return "tf2-object-based" if self.is_object_based else "tf1-name-based"

    @property
    def num_parameters(self) -> int:
        """Elements of all numeric tensors (optimizer slots and counters included)."""
        return sum(entry.num_elements for entry in self.entries if entry.dtype not in _NOT_PARAMETERS)

    @property
    def num_bytes(self) -> int:
        """Bytes the index points to: what verify_checkpoint reads and reports progress against."""
        return sum(entry.size for entry in self.entries if not entry.slices) + sum(s.size for s in self.slices)

    def root_objects(self) -> list[str]:
        """First components of the names: ``model``, ``optimizer``, ``save_counter`` (TF1: scopes)."""
        return sorted({entry.name.split("/", 1)[0] for entry in self.entries if entry.name != OBJECT_GRAPH})

    def children(self, parent: str) -> list[str]:
        """Components right below ``parent`` (a ``/`` path), without TF's ``.ATTRIBUTES``-style markers."""
        start = parent.rstrip("/") + "/"
        found = {entry.name[len(start) :].split("/", 1)[0] for entry in self.entries if entry.name.startswith(start)}
        return sorted(child for child in found if child and not child.startswith("."))

    def model_children(self) -> list[str]:
        """What ``model`` holds: ``_feature_extractor``, ``_box_predictor`` ..."""
        return self.children("model")

    def has_name_prefix(self, prefix: str) -> bool:
        """Whether a listed name starts with ``prefix`` (the API's ``feature_extractor`` check)."""
        return any(entry.name.startswith(prefix) for entry in self.entries)


# -- finding and reading ---------------------------------------------------------------


def resolve_prefix(path: str | CheckpointPath) -> CheckpointPath:
    """The absolute prefix of the checkpoint ``path`` names, whose ``.index`` exists.

    ``path`` is a prefix, its ``.index``, ``.meta`` or a ``.data-*`` file, or a
    directory: the one its ``checkpoint`` state file names, else its single
    ``*.index``, else the same in its ``checkpoint/`` sub-directory (a TF2 zoo
    model's layout).
    """
    given = Path(path) if isinstance(path, str) else path
    if given.is_dir():
        return _absolute(_prefix_in_directory(given))
    prefix = given.with_name(_SUFFIX.sub("", given.name))
    if not _index_of(prefix).is_file():
        raise CheckpointError(_no_index_message(prefix))
    return _absolute(prefix)


def is_checkpoint_path(target: str) -> bool:
    """Whether ``target`` names a checkpoint by path rather than a model by name:
    it exists, or has a directory part or a checkpoint file's suffix (no model
    name has a '/'; the registry refuses one)."""
    exists = os.path.exists(target) or os.path.exists(target + ".index")
    return exists or "/" in target or bool(_SUFFIX.search(target))


def read_checkpoint(path: str | CheckpointPath) -> Checkpoint:
    """Resolve ``path`` (see resolve_prefix) and read its index; no data shard is opened."""
    prefix = resolve_prefix(path)
    index = _index_of(prefix)
    try:
        header, entries, slices = parse_index(index.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{index}: cannot read: {exc.strerror or exc}") from None
    except Malformed as exc:
        raise CheckpointError(f"{index}: {exc}") from None
    return Checkpoint(prefix, header, tuple(entries), tuple(slices))


def _prefix_in_directory(directory: CheckpointPath) -> CheckpointPath:
    state = directory / _STATE_FILE
    if state.is_file():
        return _prefix_from_state(state)
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    if not indexes and state.is_dir():
        return _prefix_in_directory(state)
    if not indexes:
        raise CheckpointError(f"{directory}: no checkpoint here (no '{_STATE_FILE}' state file, no *.index file)")
    names = ", ".join(index.stem for index in indexes)
    raise CheckpointError(
        f"{directory}: several checkpoints ({names}) and no '{_STATE_FILE}' state file; pass a prefix"
    )


def _prefix_from_state(state: CheckpointPath) -> CheckpointPath:
    try:
        match = _STATE_PATH.search(state.read_text(errors="replace"))
    except OSError as exc:
        raise CheckpointError(f"{state}: cannot read: {exc.strerror or exc}") from None
    if not match:
        raise CheckpointError(f"{state}: state file names no model_checkpoint_path")
    named = Path(match.group(1))
    # TF keeps an absolute path as written, so a state file from another machine names
    # that machine's directory; the checkpoint then sits next to the state file.
    for prefix in (state.parent / named, state.parent / named.name):
        if _index_of(prefix).is_file():
            return prefix
    raise CheckpointError(f"{state}: model_checkpoint_path {match.group(1)!r} names no checkpoint "
                          f"({_index_of(state.parent / named)} does not exist)")  # fmt: skip


def _no_index_message(prefix: CheckpointPath) -> str:
    shards = sorted(p.name for p in prefix.parent.glob(f"{glob.escape(prefix.name)}.data-*"))
    if shards:
        return f"{_index_of(prefix)} is missing; only data shards are there ({', '.join(shards)})"
    if not prefix.parent.is_dir():
        return f"{prefix}: no checkpoint there ({prefix.parent} is not a directory)"
    others = sorted(index.stem for index in prefix.parent.glob("*.index"))
    found = f"checkpoints there: {', '.join(others)}" if others else f"{prefix.parent} holds no *.index file"
    return f"{prefix}: no checkpoint there ({_index_of(prefix).name} does not exist; {found})"


def _index_of(prefix: CheckpointPath) -> CheckpointPath:
    return prefix.with_name(prefix.name + ".index")


def _absolute(path: CheckpointPath) -> CheckpointPath:
    if not isinstance(path, Path):
        return path  # a store's key is absolute already
    return Path(os.path.abspath(path))  # normalised, but symlinks kept as the user laid them out
