"""The I/O edge of `zoo check`: look at the disk, or the object store, for what the config names.

``gather(doc, cwd, ...)`` reads exactly what zoo.config.checks' pure rules need
(``check_document`` runs both):
the checkpoint's index (through zoo.checkpoint, never TensorFlow) and its own
pipeline.config, label maps, glob matches and the model_dir's latest
checkpoint. Nothing here decides whether something is wrong.

A checkpoint or input pattern given as an fsspec URL (gs://, s3://, az:// ...)
is looked at through ``RemotePath``, which answers the reader's questions the
way ``pathlib.Path`` does: the same code finds the prefix, reads the index and
pipeline.config (whole, capped) and sizes the shards (metadata only, never
their bytes). A store that cannot be asked gives an ``Unreachable`` fact.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from pathlib import Path

from zoo.cache import Cache, checked_name
from zoo.checkpoint import (
    Checkpoint,
    CheckpointPath,
    check_files,
    read_checkpoint,
    resolve_prefix,
)
from zoo.config.checks import (
    FINE_TUNE_CHECKPOINT,
    TF1_DETECTION_SCOPES,
    CheckpointFacts,
    Facts,
    Finding,
    LabelMapFacts,
    ModelDirFacts,
    Unreachable,
    check,
    input_path_fields,
    is_remote,
    label_map_fields,
    string_value,
)
from zoo.config.checks.model_dir import training_plan
from zoo.config.labelmap import LabelMap, read_label_map
from zoo.config.remote import RemotePath, Stores, StoreUnreachable
from zoo.config.textproto import Document, Scalar, parse, parse_file
from zoo.errors import CheckpointError, ConfigError, UnknownModelError, ZooError
from zoo.extract import find_pipeline_config
from zoo.sources import Scheme, scheme_of

_DATA = re.compile(r"\.data-\d{5}-of-\d{5}$")
_STEP = "step/.ATTRIBUTES/VARIABLE_VALUE"  # train_loop's tf.train.Checkpoint(step=global_step, ...)
_STATE_FILE = "checkpoint"


def check_document(
    doc: Document,
    cwd: Path,
    *,
    model_dir: str | Path | None = None,  # a path, or a store URL (gs://...)
    cache_root: Path | None = None,
    label_maps: Mapping[str, LabelMap] | None = None,
    trainer: str | None = None,
) -> list[Finding]:
    """`zoo check` on a parsed config: the facts from disk, then the pure rules
    for ``trainer`` ("tf1" or "tf2"; None: as the config's feature extractor says)."""
    return check_and_plan(doc, cwd, model_dir=model_dir, cache_root=cache_root, label_maps=label_maps,
                          trainer=trainer)[0]  # fmt: skip


def check_and_plan(
    doc: Document,
    cwd: Path,
    *,
    model_dir: str | Path | None = None,  # a path, or a store URL (gs://...)
    cache_root: Path | None = None,
    label_maps: Mapping[str, LabelMap] | None = None,
    trainer: str | None = None,
) -> tuple[list[Finding], str | None]:
    """``check_document``'s findings, and the one line saying what training in
    ``model_dir`` will do (resume, or start fresh from what; None without one)."""
    facts = gather(doc, cwd, model_dir=model_dir, cache_root=cache_root, label_maps=label_maps)
    return check(doc, facts, trainer), training_plan(doc, facts)


def gather(
    doc: Document,
    cwd: Path,
    *,
    model_dir: str | Path | None = None,  # a path, or a store URL (gs://...)
    cache_root: Path | None = None,
    label_maps: Mapping[str, LabelMap] | None = None,
) -> Facts:
    """Facts for ``doc`` as the trainer would see them when started in ``cwd``;
    ``label_maps`` (by absolute path) were already read by the caller, who
    should not pay for a big one twice."""
    stores = Stores()
    checkpoint = _checkpoint_facts(doc, cwd, cache_root, stores)
    globs, unreachable_globs = _globs(doc, cwd, stores)
    return Facts(
        cwd=cwd,
        checkpoint=checkpoint,
        label_maps=_label_maps(doc, cwd, label_maps or {}),
        globs=globs,
        unreachable_globs=unreachable_globs,
        model_dir=_model_dir(model_dir, cwd, cache_root, stores) if model_dir is not None else None,
    )


# -- fine_tune_checkpoint ---------------------------------------------------------------


def _checkpoint_facts(doc: Document, cwd: Path, cache_root: Path | None, stores: Stores) -> CheckpointFacts | None:
    nodes = [n for n in doc.nodes(FINE_TUNE_CHECKPOINT) if isinstance(n, Scalar)]
    value = string_value(nodes[0]) if nodes else None
    if not value:
        return None
    if not _readable_here(value):
        return CheckpointFacts(value, _absolute(value, cwd), "remote")
    try:
        return _checkpoint_at(value, stores.path(value) if is_remote(value) else _absolute(value, cwd), cache_root)
    except StoreUnreachable as exc:
        return CheckpointFacts(value, _absolute(value, cwd), "remote", unreachable=exc.problem)


def _readable_here(value: str) -> bool:
    """A path, or a URL fsspec reads (gs://, s3:// ...); other URLs (http://, file://) are only noted."""
    return not is_remote(value) or scheme_of(value) is Scheme.FSSPEC


def _checkpoint_at(value: str, path: CheckpointPath, cache_root: Path | None) -> CheckpointFacts:
    kind = _kind(path)
    try:
        prefix = resolve_prefix(path)
    except CheckpointError as exc:
        return CheckpointFacts(value, path, kind, error=str(exc), nearby=_nearby(path), named_model=_named_model(value))
    try:
        checkpoint = read_checkpoint(prefix)
    except CheckpointError as exc:
        return CheckpointFacts(value, path, kind, prefix=prefix, error=str(exc))
    reference, reference_path, reference_error, searched = _reference(prefix, cache_root)
    return CheckpointFacts(
        value, path, kind, prefix=prefix, shards_error=_shards_error(checkpoint),
        object_based=checkpoint.is_object_based,
        roots=tuple(checkpoint.root_objects()),
        model_children=tuple(checkpoint.model_children()),
        feature_extractor_names=checkpoint.has_name_prefix("feature_extractor"),
        detection_scopes=any(checkpoint.has_name_prefix(scope) for scope in TF1_DETECTION_SCOPES),
        reference=reference, reference_path=reference_path, reference_error=reference_error,
        searched=searched, zoo_model=_zoo_model(prefix, cache_root),
    )  # fmt: skip


def _shards_error(checkpoint: Checkpoint) -> str | None:
    """Missing or truncated data shards: stat calls only, no byte is read."""
    try:
        check_files(checkpoint)
    except CheckpointError as exc:
        return str(exc)
    return None


def _absolute(value: str, cwd: Path) -> Path:
    # abspath, not resolve(): the trainer sees the path as written, symlinks and all.
    return Path(os.path.abspath(os.path.join(cwd, value)))


def _kind(path: CheckpointPath) -> str:
    if path.is_dir():
        return "directory"
    for suffix, kind in ((".index", "index"), (".meta", "meta")):
        if path.name.endswith(suffix):
            return kind
    if _DATA.search(path.name):
        return "data"
    if path.is_file():
        return "other"
    return "prefix" if path.with_name(path.name + ".index").is_file() else "missing"


def _nearby(path: CheckpointPath) -> CheckpointPath | None:
    """A checkpoint where the user probably meant: in the directory named (a
    stale ckpt number), or in the ``checkpoint/`` beside a SavedModel."""
    directory = path if path.is_dir() else path.parent
    for candidate in (directory, directory.parent / "checkpoint"):
        if candidate.is_dir():
            try:
                return resolve_prefix(candidate)
            except CheckpointError:
                continue
    return None


def _named_model(value: str) -> str | None:
    """The zoo model a missing path names in one of its components, e.g.
    ``./ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8/checkpoint`` (either separator)."""
    from zoo.registry import (
        load_registry,  # only on this miss: a found checkpoint never pays for it
    )

    try:
        names = {model.name for model in load_registry()}
    except ZooError:
        return None
    return next((part for part in re.split(r"[/\\]", value) if part in names), None)


def _reference(
    prefix: CheckpointPath, cache_root: Path | None
) -> tuple[Document | None, CheckpointPath | None, str | None, tuple[CheckpointPath, ...]]:
    """The checkpoint's own pipeline.config and where it was looked for."""
    searched = _reference_candidates(prefix, cache_root)
    for candidate in searched:
        if candidate.is_file():
            try:
                return _parse_config(candidate), candidate, None, tuple(searched)
            except (ConfigError, CheckpointError) as exc:
                return None, candidate, str(exc), tuple(searched)
    return None, None, None, tuple(searched)


def _parse_config(path: CheckpointPath) -> Document:
    if isinstance(path, Path):
        return parse_file(path)
    return parse(path.read_text(errors="replace"), str(path))


def _reference_candidates(prefix: CheckpointPath, cache_root: Path | None) -> list[CheckpointPath]:
    """A cached zoo model's archive config; else the zoo layout
    ``<model>/checkpoint/ckpt-0`` (config one level up), a TF1 ``model.ckpt``
    or a model_dir checkpoint (config beside it)."""
    candidates: list[CheckpointPath] = []
    entry_dir = _cache_entry_dir(prefix, cache_root)
    if entry_dir is not None and (entry_dir / "files").is_dir():
        found = find_pipeline_config(entry_dir / "files")
        if found is not None:
            candidates.append(found)
    if prefix.parent.name == "checkpoint":
        candidates.append(prefix.parent.parent / "pipeline.config")
    candidates.append(prefix.parent / "pipeline.config")
    return list(dict.fromkeys(candidates))


def _cache_entry_dir(prefix: CheckpointPath, cache_root: Path | None) -> Path | None:
    if cache_root is None or not isinstance(prefix, Path):
        return None
    models = Cache(cache_root).models_dir
    try:
        # relative_to is lexical: ".." may come back, and names no entry.
        name = checked_name(prefix.relative_to(models).parts[0])
    except (ValueError, IndexError, UnknownModelError):
        return None
    return models / name


def _zoo_model(prefix: CheckpointPath, cache_root: Path | None) -> str | None:
    entry_dir = _cache_entry_dir(prefix, cache_root)
    if entry_dir is None or cache_root is None:
        return None
    try:
        entry = Cache(cache_root).read_entry(entry_dir.name)
    except ZooError:  # an entry a newer zoo wrote: no reference to compare with
        return None
    return entry.name if entry is not None else None


# -- label maps and inputs --------------------------------------------------------------


def _label_maps(doc: Document, cwd: Path, known: Mapping[str, LabelMap]) -> dict[str, LabelMapFacts]:
    found: dict[str, LabelMapFacts] = {}
    for _, node in label_map_fields(doc):
        value = string_value(node)
        if value and value not in found and not is_remote(value):
            path = _absolute(value, cwd)
            read = known.get(str(path))
            found[value] = LabelMapFacts(path, exists=True, label_map=read) if read else _label_map(path)
    return found


def _label_map(path: Path) -> LabelMapFacts:
    if not path.is_file():
        return LabelMapFacts(path, exists=False)
    try:
        return LabelMapFacts(path, exists=True, label_map=read_label_map(path))
    except ConfigError as exc:
        return LabelMapFacts(path, exists=True, error=str(exc))


def _globs(doc: Document, cwd: Path, stores: Stores) -> tuple[dict[str, int], dict[str, Unreachable]]:
    """Matches per pattern, and the remote patterns whose store could not be asked;
    TensorFlow's glob knows * ? and [...] like Python's and fsspec's."""
    matches: dict[str, int] = {}
    unreachable: dict[str, Unreachable] = {}
    for _, node in input_path_fields(doc):
        value = string_value(node)
        if not value or value in matches or value in unreachable or not _readable_here(value):
            continue
        try:
            matches[value] = stores.path(value).matches() if is_remote(value) else _local_matches(value, cwd)
        except StoreUnreachable as exc:
            unreachable[value] = exc.problem
    return matches, unreachable


def _local_matches(pattern: str, cwd: Path) -> int:
    return len(glob.glob(str(_absolute(pattern, cwd))))


# -- model_dir ---------------------------------------------------------------------


def _model_dir(value: str | Path, cwd: Path, cache_root: Path | None, stores: Stores) -> ModelDirFacts:
    """What the trainer finds in ``value``: a path, or a store URL such as the
    gs:// model_dir a TPU trains into."""
    value = str(value)
    if is_remote(value) and _readable_here(value):
        try:
            return _model_dir_at(stores.path(value), None)
        except StoreUnreachable as exc:
            return ModelDirFacts(Path(value), unreachable=exc.problem)
    directory = _absolute(value, cwd)
    return _model_dir_at(directory, _enclosing_cache(directory, cache_root))


def _model_dir_at(directory: CheckpointPath, cache: Path | None) -> ModelDirFacts:
    state = directory / _STATE_FILE
    subdir = state.is_dir()
    if not state.is_file():
        # tf.train.latest_checkpoint finds nothing
        return ModelDirFacts(directory, checkpoint_subdir=subdir, cache=cache)
    try:
        checkpoint = read_checkpoint(resolve_prefix(directory))
    except CheckpointError as exc:
        return ModelDirFacts(directory, error=str(exc), cache=cache)
    return ModelDirFacts(directory, latest=checkpoint.prefix, step=_step(checkpoint), cache=cache)


def _enclosing_cache(directory: Path, cache_root: Path | None) -> Path | None:
    """The cache root when ``directory`` is it or lies below it, as written or
    through symlinks (realpath resolves what exists, even for a new directory)."""
    if cache_root is None:
        return None
    root = os.path.abspath(cache_root)
    for mine, theirs in ((str(directory), root), (os.path.realpath(directory), os.path.realpath(root))):
        if os.path.commonpath([mine, theirs]) == theirs:
            return Path(root)
    return None


def _step(checkpoint: Checkpoint) -> int | None:
    """The global step a training checkpoint saved: one int64 scalar, read
    from its data shard at the offset the index gives."""
    entry = next((e for e in checkpoint.entries if e.name == _STEP), None)
    if entry is None or entry.dtype != "int64" or entry.shape != () or entry.size != 8:
        return None
    try:
        data = _read_at(checkpoint.data_files[entry.shard_id], entry.offset, 8)
    except (OSError, IndexError, StoreUnreachable):
        return None
    return int.from_bytes(data, checkpoint.header.endianness, signed=True) if len(data) == 8 else None


def _read_at(path: CheckpointPath, offset: int, size: int) -> bytes:
    if isinstance(path, RemotePath):
        return path.read_at(offset, size)  # one ranged read, not the shard
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)
