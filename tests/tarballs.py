"""Builders for realistic and hostile TF Object Detection model-zoo tarballs.

Realistic tarballs contain real TensorFlow checkpoints and a SavedModel, laid out like
the zoo's downloads; hostile ones are built with tarfile alone and look like a zoo
tarball apart from one malicious or broken detail.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import os
import random
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_PIPELINE_CONFIG",
    "FAMILIES",
    "absolute_path_tarball",
    "corrupt_gzip",
    "device_tarball",
    "dotdot_tarball",
    "hardlink_escape_tarball",
    "header_bomb_tar",
    "header_bomb_tarball",
    "header_chain_tarball",
    "inside_link_tarball",
    "link_chain_tarball",
    "make_zoo_tarball",
    "missing_shard_tarball",
    "no_index_tarball",
    "sha256_of",
    "size_bomb_tarball",
    "sparse_map_bomb_tarball",
    "sparse_tarball",
    "symlink_escape_tarball",
    "write_tf1_checkpoint",
    "write_tf2_checkpoint",
]

DEFAULT_PIPELINE_CONFIG = """\
model {
  ssd {
    num_classes: 90
    image_resizer {
      fixed_shape_resizer {
        height: 320
        width: 320
      }
    }
    feature_extractor {
      type: "ssd_mobilenet_v2_fpn_keras"
    }
  }
}
train_config {
  batch_size: 64
  fine_tune_checkpoint: "PATH_TO_BE_CONFIGURED"
  fine_tune_checkpoint_type: "detection"
}
train_input_reader {
  label_map_path: "PATH_TO_BE_CONFIGURED"
}
"""

_VARIABLES = 20
_MTIME = 1594339200  # 2020-07-10, when the TF2 zoo was published
_COMPRESSLEVEL = 6  # what `tar czf` uses
_CKPT_STATE = b'model_checkpoint_path: "ckpt-0"\nall_model_checkpoint_paths: "ckpt-0"\n'


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


_Entry = tuple[tarfile.TarInfo, "_Readable | None"]


# -- TensorFlow checkpoints ------------------------------------------------------------


def write_tf2_checkpoint(
    directory: Path, *, variables: int = _VARIABLES, floats_per_variable: int = 1000, seed: int = 0
) -> Path:
    """Write an object-based TF2 checkpoint keyed like the zoo's; return its prefix (`directory/ckpt-0`)."""
    if variables < 2:
        raise ValueError("need at least one variable for each of _feature_extractor and _box_predictor")
    tf = _tensorflow()
    weights = _random_weights(variables, floats_per_variable, seed)
    split = variables - max(1, variables // 4)  # like real detectors, the backbone holds most weights
    model = tf.Module()
    model._feature_extractor = _module_of(tf, "conv", weights[:split])
    model._box_predictor = _module_of(tf, "head", weights[split:])
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(directory), max_to_keep=1)
    return Path(manager.save(checkpoint_number=0))


def write_tf1_checkpoint(
    directory: Path, *, variables: int = _VARIABLES, floats_per_variable: int = 1000, seed: int = 0,
    scope: str = "FeatureExtractor/MobilenetV1", global_step: int | None = None,
) -> Path:
    """Write a name-based TF1 Saver checkpoint (`model.ckpt.{index,data-*,meta}` + `checkpoint`); return its prefix.

    `scope` is where the weights live: `FeatureExtractor/...` as in a TF1 detection checkpoint, or a
    bare backbone scope (`MobilenetV1`) as in a classification one. With `global_step` the Saver
    appends it, as TF1 training does: `model.ckpt-<step>` (the ssdlite_mobiledet_* archives).
    """
    tf = _tensorflow()
    v1 = tf.compat.v1
    feeds = {}
    with tf.Graph().as_default():
        for i, array in enumerate(_random_weights(variables, floats_per_variable, seed)):
            # Initialised from a fed placeholder so the weights stay out of the .meta graph, as in real TF1 exports.
            placeholder = v1.placeholder(tf.float32, array.shape)
            v1.Variable(placeholder, name=f"{scope}/Conv2d_{i}/weights")
            feeds[placeholder] = array
        v1.train.get_or_create_global_step()
        saver = v1.train.Saver()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer(), feed_dict=feeds)
            return Path(saver.save(session, str(Path(directory) / "model.ckpt"), global_step=global_step))


def _tensorflow() -> ModuleType:
    # Imported lazily: tests that only need hostile tarballs shouldn't pay TF's import time.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def _random_weights(count: int, length: int, seed: int) -> list[np.ndarray]:
    import numpy as np

    # Random, not zeros: real weights barely compress, and tarball sizes should reflect that.
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(length, dtype=np.float32) for _ in range(count)]


def _module_of(tf: ModuleType, prefix: str, arrays: list[np.ndarray]) -> object:
    module = tf.Module()
    for i, array in enumerate(arrays):
        setattr(module, f"{prefix}_{i}", tf.Variable(array))
    return module


@functools.cache
def _saved_model_dir() -> Path:
    """A tiny real SavedModel with a serving signature, built once per process."""
    tf = _tensorflow()

    class Detector(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)])
        def __call__(self, images: object) -> dict[str, object]:
            return {"detection_scores": tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2]) * self.scale}

    detector = Detector()
    directory = _fresh_build_dir() / "saved_model"
    tf.saved_model.save(detector, str(directory), signatures=detector.__call__)
    return directory


# -- realistic zoo tarballs ------------------------------------------------------------

_CheckpointWriter = Callable[[Path, int], object]

FAMILIES: dict[str, _CheckpointWriter] = {
    # family -> writes the checkpoint below the tarball's top directory, given floats per variable
    "tf2-detection": lambda top, n: write_tf2_checkpoint(top / "checkpoint", floats_per_variable=n),
    "tf2-classification": lambda top, n: write_tf2_checkpoint(top, floats_per_variable=n),
    "tf1-detection": lambda top, n: write_tf1_checkpoint(top, floats_per_variable=n),
}


def make_zoo_tarball(
    dest: Path,
    name: str,
    *,
    family: str = "tf2-detection",
    config_text: str | None = None,
    size_mb: float = 1.0,
    checkpoint: bool = True,
    tf1_steps: tuple[int, ...] = (),
) -> Path:
    """Build `dest/<name>.tar.gz` in the zoo's layout, with a checkpoint of about `size_mb` MiB.

    Every family gets `<name>/pipeline.config` and `<name>/saved_model/`; the checkpoint goes to
    `<name>/checkpoint/ckpt-0.*` (tf2-detection), `<name>/ckpt-0.*` (tf2-classification) or
    `<name>/model.ckpt.*` (tf1-detection; with `tf1_steps`, one `<name>/model.ckpt-<step>.*` per step
    instead). Identical calls within a process return identical bytes.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILIES)}")
    config = DEFAULT_PIPELINE_CONFIG if config_text is None else config_text
    return _copy_into(dest, _build_zoo_tarball(name, family, config, size_mb, checkpoint, tf1_steps))


@functools.cache
def _build_zoo_tarball(
    name: str, family: str, config_text: str, size_mb: float, checkpoint: bool, tf1_steps: tuple[int, ...]
) -> Path:
    build = _fresh_build_dir()
    top = build / "stage" / name
    top.mkdir(parents=True)
    floats = max(1, round(size_mb * 2**20 / 4 / _VARIABLES))
    for step in tf1_steps:
        write_tf1_checkpoint(top, floats_per_variable=floats, global_step=step, seed=step)
    if checkpoint and not tf1_steps:
        FAMILIES[family](top, floats)
    (top / "pipeline.config").write_text(config_text)
    shutil.copytree(_saved_model_dir(), top / "saved_model")
    tarball = _write_tarball(build / f"{name}.tar.gz", _tree_entries(top, name))
    shutil.rmtree(build / "stage")
    return tarball


# -- hostile and broken tarballs -------------------------------------------------------


def absolute_path_tarball(dest: Path, name: str) -> Path:
    """Adds a member at an absolute `/tmp/zoo-escape-<random>` path (random so tests can check it wasn't created)."""
    return _hostile(dest, name, [_file(f"/tmp/zoo-escape-{secrets.token_hex(8)}", b"escaped\n")])


def dotdot_tarball(dest: Path, name: str) -> Path:
    return _hostile(dest, name, [_file(f"{name}/../../escape", b"escaped\n")])


def symlink_escape_tarball(dest: Path, name: str) -> Path:
    """`<name>/link -> /etc`, then a file written through it as `<name>/link/x`."""
    link = _entry(f"{name}/link", tarfile.SYMTYPE, linkname="/etc")
    return _hostile(dest, name, [link, _file(f"{name}/link/x", b"escaped\n")])


def hardlink_escape_tarball(dest: Path, name: str) -> Path:
    return _hostile(dest, name, [_entry(f"{name}/passwd", tarfile.LNKTYPE, linkname="/etc/passwd")])


def device_tarball(dest: Path, name: str) -> Path:
    return _hostile(dest, name, [_entry(f"{name}/null", tarfile.CHRTYPE, devmajor=1, devminor=3)])


def size_bomb_tarball(dest: Path, name: str, *, size_mb: int = 300) -> Path:
    """Adds `<name>/padding.bin`: `size_mb` MiB of zeros that gzip to a few hundred KiB."""
    return _copy_into(dest, _build_size_bomb(name, size_mb))


def header_bomb_tarball(dest: Path, name: str, *, kind: bytes = tarfile.GNUTYPE_LONGNAME, size_mb: int = 1024) -> Path:
    """Adds one extended header (a GNU long name unless `kind` says e.g. `tarfile.XHDTYPE` for pax)
    announcing a `size_mb` MiB body of zeros, which tarfile reads whole before any filter sees it.
    The default gzips to about 1 MB."""
    return _copy_into(dest, _build_header_bomb(name, kind, size_mb))


def header_bomb_tar(dest: Path, name: str, *, size_mb: int = 1024) -> Path:
    """An uncompressed `dest/<name>.tar` (shaped like a bundle) whose first header is a GNU long
    name announcing `size_mb` MiB of zeros; the zeros are a hole, so the file takes no disk space."""
    path = Path(dest) / f"{name}.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    info, _ = _entry(f"{name}/bomb", tarfile.GNUTYPE_LONGNAME, size=size_mb * 2**20)
    with open(path, "wb") as out:
        out.write(info.tobuf(tarfile.GNU_FORMAT))
        out.seek(info.size, os.SEEK_CUR)
        out.write(bytes(2 * tarfile.BLOCKSIZE))
    return path


def header_chain_tarball(dest: Path, name: str, *, count: int = 2000) -> Path:
    """Adds `count` GNU long-name headers in a row before one file (tarfile reads a chain recursively)."""
    chain = [_file(f"{name}/chain-{i}", f"{name}/long-{i}".encode()) for i in range(count)]
    for info, _ in chain:
        info.type = tarfile.GNUTYPE_LONGNAME
    return _hostile(dest, name, [*chain, _file(f"{name}/chained", b"x")])


def sparse_tarball(dest: Path, name: str) -> Path:
    """Adds `<name>/sparse.bin`, an old-style GNU sparse member (type 'S')."""
    return _hostile(dest, name, [_entry(f"{name}/sparse.bin", tarfile.GNUTYPE_SPARSE)])


def sparse_map_bomb_tarball(dest: Path, name: str, *, pairs: int = 5_000_000) -> Path:
    """Adds a GNU sparse 1.0 member (pax `GNU.sparse.*` records) whose data opens with a map of
    `pairs` offset/size pairs, which tarfile reads into lists before any filter sees the member."""
    return _copy_into(dest, _build_sparse_map_bomb(name, pairs))


def inside_link_tarball(dest: Path, name: str, *, kind: bytes = tarfile.SYMTYPE) -> Path:
    """Adds `<name>/link`, a harmless symlink (or, with `kind=tarfile.LNKTYPE`, hard link) to
    `<name>/pipeline.config`, for archives that may hold no links at all."""
    target = "pipeline.config" if kind == tarfile.SYMTYPE else f"{name}/pipeline.config"
    return _hostile(dest, name, [_entry(f"{name}/link", kind, linkname=target)])


def link_chain_tarball(dest: Path, name: str) -> Path:
    """`<name>/b -> a/../..` while `a` is missing (so it looks inside), then `<name>/a -> .`, which
    makes `b` the directory above the archive's root, then a file written through `b`."""
    return _hostile(dest, name, [
        _entry(f"{name}/b", tarfile.SYMTYPE, linkname="a/../.."),
        _entry(f"{name}/a", tarfile.SYMTYPE, linkname="."),
        _file(f"{name}/b/zoo-escape-{secrets.token_hex(8)}", b"escaped\n"),
    ])  # fmt: skip


def missing_shard_tarball(dest: Path, name: str) -> Path:
    """Index and `ckpt-0.data-00000-of-00002`, but no `ckpt-0.data-00001-of-00002`."""
    return _hostile(dest, name, [], shards=("ckpt-0.data-00000-of-00002",))


def no_index_tarball(dest: Path, name: str) -> Path:
    return _hostile(dest, name, [], index=False)


def corrupt_gzip(path: Path) -> Path:
    """Garble and truncate a tarball in place, like a cut-off download with a flipped bit."""
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 3] ^= 0xFF  # past the 10-byte gzip header, so it is still recognised as gzip
    Path(path).write_bytes(bytes(data[: len(data) * 2 // 3]))
    return Path(path)


@functools.cache
def _build_size_bomb(name: str, size_mb: int) -> Path:
    size = size_mb * 2**20
    return _hostile(_fresh_build_dir(), name, [_entry(f"{name}/padding.bin", size=size, stream=_Zeros(size))])


@functools.cache
def _build_header_bomb(name: str, kind: bytes, size_mb: int) -> Path:
    size = size_mb * 2**20
    return _hostile(_fresh_build_dir(), name, [_entry(f"{name}/bomb", kind, size=size, stream=_Zeros(size))])


@functools.cache
def _build_sparse_map_bomb(name: str, pairs: int) -> Path:
    head = f"{pairs}\n".encode()
    size = len(head) + 4 * pairs
    info, stream = _entry(f"{name}/GNUSparseFile.0/sparse.bin", size=size, stream=_Repeat(head, b"1\n", size))
    info.pax_headers = {
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
        "GNU.sparse.name": f"{name}/sparse.bin", "GNU.sparse.realsize": "1",
    }  # fmt: skip
    return _hostile(_fresh_build_dir(), name, [(info, stream)])


def _hostile(
    dest: Path,
    name: str,
    extra: list[_Entry],
    *,
    shards: Iterable[str] = ("ckpt-0.data-00000-of-00001",),
    index: bool = True,
) -> Path:
    """A plausible tf2-detection tarball (fake checkpoint bytes, no TF) plus `extra` members."""
    noise = random.Random(name)  # incompressible but reproducible "weights"
    entries = [_entry(name, tarfile.DIRTYPE), _file(f"{name}/pipeline.config", DEFAULT_PIPELINE_CONFIG.encode())]
    entries += [_entry(f"{name}/checkpoint", tarfile.DIRTYPE), _file(f"{name}/checkpoint/checkpoint", _CKPT_STATE)]
    if index:
        entries.append(_file(f"{name}/checkpoint/ckpt-0.index", noise.randbytes(1024)))
    entries += [_file(f"{name}/checkpoint/{shard}", noise.randbytes(16 * 1024)) for shard in shards]
    return _write_tarball(Path(dest) / f"{name}.tar.gz", [*entries, *extra])


# -- shared tar plumbing ---------------------------------------------------------------


class _Zeros:
    """Stream of zero bytes, so a size bomb never has to exist in memory or on disk."""

    def __init__(self, size: int) -> None:
        self._left = size

    def read(self, size: int, /) -> bytes:
        size = min(size, self._left)
        self._left -= size
        return bytes(size)


class _Repeat:
    """`head`, then `unit` over and over, `size` bytes in all, never in memory at once."""

    def __init__(self, head: bytes, unit: bytes, size: int) -> None:
        self._head, self._unit, self._left, self._phase = head, unit, size, 0

    def read(self, size: int, /) -> bytes:
        size = min(size, self._left)
        self._left -= size
        data, self._head = self._head[:size], self._head[size:]
        rest, start = size - len(data), self._phase
        self._phase = (start + rest) % len(self._unit)
        return data + (self._unit * ((start + rest) // len(self._unit) + 1))[start : start + rest]


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, *, size: int = 0, stream: _Readable | None = None, **attrs: object
) -> _Entry:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, _MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for attr, value in attrs.items():
        setattr(info, attr, value)
    return info, stream


def _file(name: str, data: bytes) -> _Entry:
    return _entry(name, size=len(data), stream=io.BytesIO(data))


def _tree_entries(root: Path, arcname: str) -> Iterator[_Entry]:
    yield _entry(arcname, tarfile.DIRTYPE)
    for path in sorted(root.rglob("*")):  # sorted: parents first, reproducible member order
        name = f"{arcname}/{path.relative_to(root).as_posix()}"
        yield _entry(name, tarfile.DIRTYPE) if path.is_dir() else _file(name, path.read_bytes())


def _write_tarball(path: Path, entries: Iterable[_Entry]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A 1 MiB copy buffer keeps streaming a size bomb through gzip at about a second.
    with tarfile.open(path, "w:gz", compresslevel=_COMPRESSLEVEL, copybufsize=2**20) as tar:
        for info, stream in entries:
            tar.addfile(info, stream)  # type: ignore[arg-type]
    return path


@functools.cache
def _build_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="zoo-test-tarballs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def _fresh_build_dir() -> Path:
    return Path(tempfile.mkdtemp(dir=_build_root()))


def _copy_into(dest: Path, built: Path) -> Path:
    """Hand out a copy, so a test that corrupts its tarball can't poison the cache."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(built, Path(dest) / built.name))


def sha256_of(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def repack(source: Path, target: Path, change: Callable[[tarfile.TarInfo, bytes], bytes | None],
           extra: Iterable[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    """Copy a tarball member by member (gzip kept if the name says so), letting `change`
    rewrite a member's bytes or drop it (None), then appending `extra` members."""
    write_mode = "w:gz" if target.name.endswith(".gz") else "w"
    with tarfile.open(source) as original, tarfile.open(target, write_mode) as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            changed = change(member, data)
            if changed is not None:
                member.size = len(changed)
                copy.addfile(member, io.BytesIO(changed) if member.isfile() else None)
        for member, data in extra:
            member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    return target
