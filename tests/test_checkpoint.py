"""zoo.checkpoint against TensorFlow as the oracle: listing, verification, corruption, resolution."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tarballs
from zoo.checkpoint import tensor_bundle as bundle_index
from zoo.checkpoint.reader import OBJECT_GRAPH
from zoo.checkpoint import (
    Checkpoint,
    TensorEntry,
    read_checkpoint,
    resolve_prefix,
    summarize,
    verify_checkpoint,
)
from zoo.errors import CheckpointError

tf_module = tarballs._tensorflow  # imports TensorFlow on first use only


# -- checkpoints written by TensorFlow ---------------------------------------------------


def write_zoo_like(directory: Path, blocks: int = 1000) -> Path:
    """Object-based, keyed like a zoo detector (model/_feature_extractor/..., model/_box_predictor/...),
    with ~2,000 variables and every dtype a checkpoint commonly holds; saved by a CheckpointManager."""
    import numpy as np

    tf = tf_module()
    rng = np.random.default_rng(1)
    model = tf.Module()
    model._feature_extractor = tf.Module()
    model._feature_extractor.blocks = [_conv_block(tf, rng) for _ in range(blocks)]
    head = tf.Module()
    head.kernel = tf.Variable(rng.standard_normal((3, 3, 4, 6)).astype(np.float16))
    head.bias = tf.Variable(rng.standard_normal(6))  # float64
    head.scale = tf.Variable(0.5)  # float32 scalar
    head.step = tf.Variable(7, dtype=tf.int64)
    head.anchors = tf.Variable(np.arange(12, dtype=np.int32).reshape(3, 4))
    head.mask = tf.Variable([True, False, True])
    # Empty, non-ASCII, and lengths needing 2- and 3-byte varints.
    head.labels = tf.Variable(["person", "", "traffic light", "ü" * 100, "x" * 70_000])
    head.version = tf.Variable("v2")  # string scalar
    head.empty = tf.Variable(np.zeros((0, 4), np.float32))
    model._box_predictor = head
    optimizer = tf.Module()  # stands in for a Keras optimizer's root object
    optimizer.iterations = tf.Variable(100, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1)
    return Path(manager.save(checkpoint_number=0))


def _conv_block(tf, rng) -> object:
    block = tf.Module()
    block.kernel = tf.Variable(rng.standard_normal((3, 3, 2, 2), dtype="float32"))
    block.bias = tf.Variable(rng.standard_normal(2, dtype="float32"))
    return block


def write_classification(directory: Path) -> Path:
    """A backbone saved under the root `feature_extractor`, as classification checkpoints are."""
    tf = tf_module()
    backbone = tf.Module()
    backbone.conv = tf.Variable(tf.ones([3, 3, 3, 8]))
    return Path(tf.train.Checkpoint(feature_extractor=backbone).write(str(directory / "ckpt-1")))


def write_sharded(directory: Path) -> Path:
    """Three data shards, one variable split across two of them as slices."""
    tf = tf_module()
    model = tf.Module()
    model.weights = [tf.Variable(tf.fill([40], float(i))) for i in range(6)]
    model.step = tf.Variable(3, dtype=tf.int64)
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=400)
    options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    return Path(tf.train.Checkpoint(model=model).write(str(directory / "ckpt"), options=options))


def write_iterator(directory: Path) -> Path:
    """A tf.data iterator's state: a variant tensor."""
    tf = tf_module()
    iterator = iter(tf.data.Dataset.range(10))
    next(iterator)
    return Path(tf.train.Checkpoint(iterator=iterator).write(str(directory / "ckpt")))


def write_tf1_partitioned(directory: Path) -> Path:
    """A TF1 Saver checkpoint with a partitioned variable, stored as three slices."""
    tf = tf_module()
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        v1.get_variable("BoxPredictor/weights", shape=[10, 4], partitioner=v1.fixed_size_partitioner(3))
        v1.get_variable("BoxPredictor/biases", shape=[4], dtype=tf.float64)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            return Path(v1.train.Saver().save(session, str(directory / "model.ckpt")))


WRITERS = {
    "zoo_like": write_zoo_like,
    "classification": write_classification,
    "sharded": write_sharded,
    "iterator": write_iterator,
    "tf1": lambda directory: tarballs.write_tf1_checkpoint(directory, variables=5, floats_per_variable=10),
    "tf1_partitioned": write_tf1_partitioned,
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint prefixes by kind, each written once; tests that alter one work on a copy."""
    return {kind: write(tmp_path_factory.mktemp(kind)) for kind, write in WRITERS.items()}


def copy_checkpoint(prefix: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for path in prefix.parent.glob(prefix.name + ".*"):
        shutil.copyfile(path, dest / path.name)
    return dest / prefix.name


def entry_named(checkpoint: Checkpoint, name: str) -> TensorEntry:
    return next(entry for entry in checkpoint.entries if entry.name == name)


def shard_of(checkpoint: Checkpoint, entry: TensorEntry) -> Path:
    return checkpoint.data_files[entry.shard_id]


def flip(path: Path, position: int, xor: int = 0xFF) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        byte = file.read(1)[0]
        file.seek(position)
        file.write(bytes([byte ^ xor]))


# -- TensorFlow agrees -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(WRITERS))
def test_names_dtypes_and_shapes_equal_tensorflows(written: dict[str, Path], kind: str):
    tf = tf_module()
    prefix = str(written[kind])
    ours = read_checkpoint(prefix)
    reader = tf.train.load_checkpoint(prefix)
    assert [(e.name, list(e.shape)) for e in ours.entries] == tf.train.list_variables(prefix)
    assert {e.name: e.dtype for e in ours.entries} == {
        name: dtype.name for name, dtype in reader.get_variable_to_dtype_map().items()
    }
    assert {e.name: list(e.shape) for e in ours.entries} == reader.get_variable_to_shape_map()


@pytest.mark.parametrize("kind", list(WRITERS))
def test_what_tensorflow_wrote_verifies_and_every_byte_is_checked(written: dict[str, Path], kind: str):
    checkpoint = read_checkpoint(written[kind])
    checked: list[int] = []
    verify_checkpoint(checkpoint, progress=checked.append)
    # TensorFlow writes tensors back to back, so the CRCs cover every byte of every shard.
    assert sum(checked) == checkpoint.num_bytes == sum(path.stat().st_size for path in checkpoint.data_files)


def test_the_fixtures_cover_what_they_claim(written: dict[str, Path]):
    zoo_like = read_checkpoint(written["zoo_like"])
    assert len(zoo_like.entries) > 2000
    assert {"float16", "float32", "float64", "int32", "int64", "bool", "string"} <= {e.dtype for e in zoo_like.entries}
    assert any(e.shape == () and e.dtype == "string" for e in zoo_like.entries if e.name != OBJECT_GRAPH)
    sharded = read_checkpoint(written["sharded"])
    assert sharded.header.num_shards == 3 and len({s.shard_id for s in sharded.slices}) > 1
    assert {e.dtype for e in read_checkpoint(written["iterator"]).entries} == {"string", "variant"}
    partitioned = read_checkpoint(written["tf1_partitioned"])
    assert [e.slices for e in partitioned.entries] == [0, 3] and len(partitioned.slices) == 3


def test_dtype_names_are_tensorflows():
    tf = tf_module()
    from tensorflow.core.framework import types_pb2

    numbers = [value.number for value in types_pb2.DataType.DESCRIPTOR.values if 0 < value.number < 100]
    assert {n: tf.as_dtype(n).name for n in numbers} == bundle_index.DTYPES


def test_questions_the_resolver_asks(written: dict[str, Path]):
    zoo_like = read_checkpoint(written["zoo_like"])
    assert zoo_like.is_object_based and zoo_like.format == "tf2-object-based"
    assert zoo_like.root_objects() == ["model", "optimizer", "save_counter"]
    assert zoo_like.model_children() == ["_box_predictor", "_feature_extractor"]
    assert zoo_like.children("model/_feature_extractor") == ["blocks"]
    assert zoo_like.has_name_prefix("model/_feature_extractor/blocks/999/")
    assert not zoo_like.has_name_prefix("feature_extractor")

    classification = read_checkpoint(written["classification"])
    assert classification.root_objects() == ["feature_extractor"] and classification.model_children() == []
    assert classification.has_name_prefix("feature_extractor")

    tf1 = read_checkpoint(written["tf1"])
    assert not tf1.is_object_based and tf1.format == "tf1-name-based"
    assert tf1.root_objects() == ["FeatureExtractor", "global_step"]


def test_parameters_count_the_numeric_elements(written: dict[str, Path]):
    tf = tf_module()
    reader = tf.train.load_checkpoint(str(written["zoo_like"]))
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    expected = sum(math.prod(shape) for name, shape in shapes.items() if dtypes[name] != tf.string)
    assert read_checkpoint(written["zoo_like"]).num_parameters == expected


def test_summary(written: dict[str, Path]):
    tf = tf_module()
    prefix = written["zoo_like"]
    listed = tf.train.list_variables(str(prefix))
    dtypes = {
        name: dtype.name for name, dtype in tf.train.load_checkpoint(str(prefix)).get_variable_to_dtype_map().items()
    }
    checkpoint = read_checkpoint(prefix.parent)
    summary = summarize(checkpoint, filter_prefix="model/_box_predictor/")
    assert summary == {
        "prefix": str(prefix),
        "format": "tf2-object-based",
        "root_objects": ["model", "optimizer", "save_counter"],
        "model_children": ["_box_predictor", "_feature_extractor"],
        "tensors": len(listed),
        "parameters": checkpoint.num_parameters,
        "bytes": prefix.with_name(prefix.name + ".data-00000-of-00001").stat().st_size,
        "shards": 1,
        "dtypes": dict(sorted(Counter(dtypes.values()).items())),
        "variables": [
            {"name": name, "dtype": dtypes[name], "shape": shape}
            for name, shape in listed
            if name.startswith("model/_box_predictor/")
        ],
    }
    assert len(summary["variables"]) == 9
    assert "variables" not in summarize(checkpoint)


def test_importing_the_reader_pulls_in_neither_numpy_nor_tensorflow():
    code = "import sys, zoo.checkpoint; print(sorted({'numpy', 'tensorflow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- corrupt data shards ---------------------------------------------------------------


@pytest.fixture
def zoo_copy(written: dict[str, Path], tmp_path: Path) -> Path:
    return copy_checkpoint(written["zoo_like"], tmp_path / "copy")


@pytest.mark.parametrize(
    "name",
    [
        "model/_feature_extractor/blocks/500/kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "model/_box_predictor/kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "model/_box_predictor/labels/.ATTRIBUTES/VARIABLE_VALUE",
        "model/_box_predictor/step/.ATTRIBUTES/VARIABLE_VALUE",
        OBJECT_GRAPH,
    ],
)
def test_a_flipped_byte_is_reported_with_its_tensor(zoo_copy: Path, name: str):
    checkpoint = read_checkpoint(zoo_copy)
    entry = entry_named(checkpoint, name)
    shard = shard_of(checkpoint, entry)
    flip(shard, entry.offset + entry.size - 1)
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(checkpoint)
    assert str(caught.value).startswith(
        f"{shard}: tensor {name!r} at offset {entry.offset} ({entry.size} bytes) fails its CRC32C: stored "
    )
    tf = tf_module()  # and TensorFlow agrees
    with pytest.raises(tf.errors.OpError, match=rf"\({entry.size} bytes\): Checksum does not match"):
        tf.train.load_checkpoint(str(zoo_copy)).get_tensor(name)


def test_a_garbled_string_length_is_reported_with_its_tensor(zoo_copy: Path):
    checkpoint = read_checkpoint(zoo_copy)
    entry = entry_named(checkpoint, "model/_box_predictor/labels/.ATTRIBUTES/VARIABLE_VALUE")
    flip(shard_of(checkpoint, entry), entry.offset, xor=0x80)  # the first length now runs into the second
    corrupt = r"tensor '.*/labels/.*' at offset \d+ \(\d+ bytes\) is corrupt: its string lengths do not add up"
    with pytest.raises(CheckpointError, match=corrupt):
        verify_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def flippable(written: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return read_checkpoint(copy_checkpoint(written["zoo_like"], tmp_path_factory.mktemp("flippable")))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_reported_with_the_tensor_holding_it(flippable: Checkpoint, data: st.DataObject):
    shard = flippable.data_files[0]
    position = data.draw(st.integers(0, shard.stat().st_size - 1), label="position")
    xor = data.draw(st.integers(1, 255), label="xor")
    holder = next(e for e in flippable.entries if e.offset <= position < e.offset + e.size)
    flip(shard, position, xor)
    try:
        with pytest.raises(CheckpointError, match=f"^{shard}: tensor '{holder.name}' at offset {holder.offset} "):
            verify_checkpoint(flippable)
    finally:
        flip(shard, position, xor)


def test_a_truncated_shard_is_reported_with_the_first_tensor_cut(zoo_copy: Path):
    checkpoint = read_checkpoint(zoo_copy)
    shard = checkpoint.data_files[0]
    cut = shard.stat().st_size // 2
    with open(shard, "r+b") as file:
        file.truncate(cut)
    first = min((e for e in checkpoint.entries if e.offset + e.size > cut), key=lambda e: e.offset)
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(checkpoint)
    assert str(caught.value) == (
        f"{shard}: tensor {first.name!r} at offset {first.offset} ({first.size} bytes) runs past "
        f"the end of the shard ({cut} bytes): the shard is truncated"
    )


def test_a_deleted_shard_is_reported_but_the_index_still_lists(written: dict[str, Path], tmp_path: Path):
    prefix = copy_checkpoint(written["sharded"], tmp_path)
    missing = prefix.with_name("ckpt.data-00001-of-00003")
    missing.unlink()
    checkpoint = read_checkpoint(prefix)
    assert len(checkpoint.entries) == 8
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(checkpoint)
    assert str(caught.value) == f"{missing}: data shard is missing"


def test_a_corrupt_slice_is_named_after_its_tensor(written: dict[str, Path], tmp_path: Path):
    checkpoint = read_checkpoint(copy_checkpoint(written["sharded"], tmp_path))
    piece = checkpoint.slices[-1]
    flip(shard_of(checkpoint, piece), piece.offset)
    with pytest.raises(CheckpointError, match=f"a slice of tensor '{piece.name}' at offset {piece.offset} .* fails"):
        verify_checkpoint(checkpoint)


# -- corrupt index files ---------------------------------------------------------------


def _rewrite_index(prefix: Path, change) -> Path:
    index = prefix.with_name(prefix.name + ".index")
    index.write_bytes(change(index.read_bytes()))
    return index


def _block_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every block of a sound index: the metaindex, index and data blocks."""
    metaindex, pos = bundle_index._handle(data, len(data) - 48)
    index, _ = bundle_index._handle(data, pos)
    items = bundle_index._block_items(bundle_index._block(data, index, "index"))
    return [metaindex, index, *(bundle_index._handle(value, 0)[0] for _, value in items)]


def _reseal(data: bytearray, spans: list[tuple[int, int]], kind: int = 0) -> bytearray:
    """Give every block the type byte ``kind`` and the CRC its bytes now have."""
    for offset, size in spans:
        data[offset + size] = kind
        crc = bundle_index.mask(crc32c.crc32c(bytes(data[offset : offset + size + 1])))
        data[offset + size + 1 : offset + size + 5] = crc.to_bytes(4, "little")
    return data


NOT_AN_INDEX = "truncated, or not an index"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(
            lambda data: data[: len(data) // 2],
            rf"bad magic number 0x[0-9a-f]{{16}} \(expected 0xdb4775248b80fb57\): {NOT_AN_INDEX}",
            id="cut-in-half",
        ),
        pytest.param(
            lambda data: data[:20], f"20 bytes is too short for the table footer: {NOT_AN_INDEX}", id="cut-to-20"
        ),
        pytest.param(lambda data: b"", "0 bytes is too short for the table footer", id="empty"),
        pytest.param(
            lambda data: bytes(range(256)) * 16, f"bad magic number 0xfffefdfcfbfaf9f8 .*{NOT_AN_INDEX}", id="garbage"
        ),
        pytest.param(lambda data: data[:-1] + b"\x00", "bad magic number 0x004775248b80fb57", id="bad-magic"),
        pytest.param(
            lambda data: data[:100] + data[-48:],
            r"metaindex block at offset \d+ \(\d+ bytes\) runs past the end of the file \(148 bytes\): truncated",
            id="cut-block",
        ),
        pytest.param(
            lambda data: data[:10] + bytes([data[10] ^ 1]) + data[11:],
            "bad CRC32C in the data block at offset 0: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}",
            id="bad-block-crc",
        ),
        pytest.param(
            lambda data: bytes(_reseal(bytearray(data), _block_spans(data), kind=1)),
            r"the metaindex block at offset \d+ is compressed \(snappy\); TensorFlow writes uncompressed",
            id="compressed",
        ),
    ],
)
def test_a_broken_index_is_reported_with_its_problem(written: dict[str, Path], tmp_path: Path, change, problem):
    index = _rewrite_index(copy_checkpoint(written["sharded"], tmp_path), change)
    with pytest.raises(CheckpointError, match=f"^{index}: {problem}"):
        read_checkpoint(index)


@pytest.fixture(scope="module")
def fuzz_site(written: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A copy of the sharded checkpoint (it has slices) whose index each example overwrites."""
    prefix = copy_checkpoint(written["sharded"], tmp_path_factory.mktemp("fuzz"))
    return prefix, prefix.with_name(prefix.name + ".index").read_bytes()


def _only_checkpoint_errors(prefix: Path, index: bytes) -> None:
    prefix.with_name(prefix.name + ".index").write_bytes(index)
    try:
        verify_checkpoint(read_checkpoint(prefix))
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(prefix.parent))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512), st.booleans())
def test_random_bytes_as_an_index_raise_only_checkpoint_errors(fuzz_site, garbage: bytes, with_magic: bool):
    prefix, _ = fuzz_site
    _only_checkpoint_errors(prefix, garbage + bundle_index.MAGIC.to_bytes(8, "little") * with_magic)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_indexes_raise_only_checkpoint_errors(fuzz_site, data: st.DataObject):
    """Mutations inside blocks whose CRCs are then fixed, so the parser meets them; plus cuts."""
    prefix, sound = fuzz_site
    spans = _block_spans(sound)
    mutated = bytearray(sound)
    inside = st.sampled_from(spans).flatmap(lambda span: st.integers(span[0], span[0] + max(span[1] - 1, 0)))
    for position, value in data.draw(st.lists(st.tuples(inside, st.integers(0, 255)), min_size=1, max_size=8)):
        mutated[position] = value
    _reseal(mutated, spans)
    if data.draw(st.booleans(), label="cut"):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)), label="length")]
    _only_checkpoint_errors(prefix, bytes(mutated))


# -- resolving what users pass ---------------------------------------------------------


@pytest.mark.parametrize("argument", ["ckpt-0", "ckpt-0.index", "ckpt-0.data-00000-of-00001", "."])
def test_prefix_index_data_file_and_directory_resolve_alike(written: dict[str, Path], monkeypatch, argument: str):
    prefix = written["zoo_like"]
    monkeypatch.chdir(prefix.parent)  # relative input, absolute answer
    assert resolve_prefix(argument) == prefix
    assert read_checkpoint(argument).prefix == prefix


def test_a_tf1_meta_file_resolves_to_its_prefix(written: dict[str, Path]):
    prefix = written["tf1"]
    assert resolve_prefix(prefix.with_name("model.ckpt.meta")) == prefix
    assert resolve_prefix(prefix.parent) == prefix  # through the Saver's state file


def touch_checkpoint(prefix: Path) -> Path:
    """Empty files named like a checkpoint: resolution looks at names only."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
        prefix.with_name(prefix.name + suffix).touch()
    return prefix


def test_a_directory_without_state_file_resolves_to_its_single_checkpoint(tmp_path: Path):
    prefix = touch_checkpoint(tmp_path / "resnet50.ckpt-1")
    assert resolve_prefix(tmp_path) == prefix


def test_a_tf2_zoo_model_directory_resolves_into_its_checkpoint_directory(tmp_path: Path):
    prefix = touch_checkpoint(tmp_path / "ssd" / "checkpoint" / "ckpt-0")
    (tmp_path / "ssd" / "pipeline.config").touch()
    assert resolve_prefix(tmp_path / "ssd") == prefix


def test_a_state_file_from_another_machine_resolves_next_to_itself(tmp_path: Path):
    prefix = touch_checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/builder/train/model.ckpt"\n')
    assert resolve_prefix(tmp_path) == prefix


@pytest.mark.parametrize(
    ("layout", "argument", "message"),
    [
        pytest.param(
            {"ckpt-0.data-00000-of-00001": ""},
            "ckpt-0",
            "{d}/ckpt-0.index is missing; only data shards are there (ckpt-0.data-00000-of-00001)",
            id="index-missing",
        ),
        pytest.param(
            {"ckpt-1.index": "", "ckpt-2.index": ""},
            "ckpt-0",
            "{d}/ckpt-0: no checkpoint there (ckpt-0.index does not exist; checkpoints there: ckpt-1, ckpt-2)",
            id="other-checkpoints",
        ),
        pytest.param(
            {},
            "ckpt-0",
            "{d}/ckpt-0: no checkpoint there (ckpt-0.index does not exist; {d} holds no *.index file)",
            id="empty-parent",
        ),
        pytest.param(
            {},
            "nowhere/ckpt-0",
            "{d}/nowhere/ckpt-0: no checkpoint there ({d}/nowhere is not a directory)",
            id="no-parent",
        ),
        pytest.param(
            {}, ".", "{d}: no checkpoint here (no 'checkpoint' state file, no *.index file)", id="empty-directory"
        ),
        pytest.param(
            {"ckpt-1.index": "", "ckpt-2.index": ""},
            ".",
            "{d}: several checkpoints (ckpt-1, ckpt-2) and no 'checkpoint' state file; pass a prefix",
            id="ambiguous",
        ),
        pytest.param(
            {"checkpoint": 'model_checkpoint_path: "ckpt-9"\n'},
            ".",
            "{d}/checkpoint: model_checkpoint_path 'ckpt-9' names no checkpoint ({d}/ckpt-9.index does not exist)",
            id="state-names-nothing",
        ),
        pytest.param(
            {"checkpoint": "garbage\n"},
            ".",
            "{d}/checkpoint: state file names no model_checkpoint_path",
            id="state-garbled",
        ),
    ],
)
def test_unresolvable_paths_say_what_was_found(tmp_path: Path, layout: dict[str, str], argument: str, message: str):
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(tmp_path / argument)
    assert str(caught.value) == message.format(d=tmp_path)
