"""The text-format editor: lossless round trips, typed values, edits that
touch only what they must, and precise errors on everything else."""

from __future__ import annotations

import difflib
import enum
import functools
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.config.textproto import (
    STRING,
    Document,
    Identifier,
    Scalar,
    _collect_tokens,
    _Parser,
    _Source,
    _tokenize,
    find_placeholders,
    int_value,
    meta_architecture,
    num_classes_path,
    parse,
    parse_file,
)
from zoo.errors import ConfigError, UsageError

DATA = Path(__file__).parent / "data"
SAMPLES = sorted((DATA / "tf2_sample_configs").glob("*.config"))
WILD = sorted((DATA / "wild_configs").glob("[0-9][0-9]_*"))
BROKEN_CONFIG = DATA / "wild_configs" / "10_Arkadian404_FruitsDetection_pipeline_20230514095942.config"
BROKEN_LABEL_MAP = (
    DATA / "wild_configs" / "35_DataTurks-Engg_Automatic_Number_Plate_Detection_number-plate-detection.pbtxt"
)
PARSEABLE = SAMPLES + [p for p in WILD if p not in (BROKEN_CONFIG, BROKEN_LABEL_MAP)]
CONFIGS = [p for p in PARSEABLE if p.suffix == ".config"]
ERROR_FORMAT = re.compile(r"^[^\n]+:\d+:\d+: [^\n]+$")


def wild(prefix: str) -> Path:
    (path,) = (DATA / "wild_configs").glob(f"{prefix}_*")
    return path


@functools.cache
def text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def ids(paths: list[Path]) -> list[str]:
    return [p.name[:40] for p in paths]


def test_the_reference_data_is_all_there():
    assert len(SAMPLES) == 47
    assert len(WILD) == 38
    assert len(CONFIGS) == 47 + 29


# -- round trip


def owned_spans(doc: Document) -> list[tuple[int, int]]:
    """(start of its trivia, end) of every token the tree holds, in tree order."""
    tokens: list = []
    _collect_tokens(doc.root, tokens)
    return [(token.lead, token.end) for token in tokens]


@pytest.mark.parametrize("path", PARSEABLE, ids=ids(PARSEABLE))
def test_round_trip_is_byte_identical(path):
    doc = parse_file(path)
    spans = owned_spans(doc)
    # Every byte belongs to exactly one token or the trivia before it: the spans tile the file.
    assert [start for start, _ in spans] == [0] + [end for _, end in spans[:-1]]
    assert spans[-1][1] == len(text_of(path))
    assert str(doc) == text_of(path)  # rebuilt from the tree, not the text it was given


def test_the_round_trip_fails_when_the_parser_drops_a_field(monkeypatch):
    fields = _Parser.fields
    monkeypatch.setattr(_Parser, "fields", lambda self, opener, depth: fields(self, opener, depth)[:-1])
    text = "a: 1  # one\nb { c: 2 }\n"
    assert str(parse(text)) == "a: 1\n"  # b, and the comment before it, are gone


def test_the_broken_wild_config_names_line_column_and_text():
    with pytest.raises(ConfigError) as caught:
        parse_file(BROKEN_CONFIG)
    assert str(caught.value) == (
        f"{BROKEN_CONFIG}:135:3: 'batch_size' has no value "
        "(line 136 starts field 'data_augmentation_options') near 'batch_size:'"
    )
    assert (caught.value.line, caught.value.column, caught.value.source) == (135, 3, str(BROKEN_CONFIG))
    assert caught.value.exit_code == 11


# -- patching every sample config

PATCH = {
    "train_config.fine_tune_checkpoint": "/models/zoo/checkpoint/ckpt-0",
    "train_config.fine_tune_checkpoint_type": "detection",
    "train_config.fine_tune_checkpoint_version": Identifier("V2"),
    "train_config.batch_size": 8,
    "train_config.num_steps": 2500,
    "train_input_reader.label_map_path": "/data/label_map.pbtxt",
    "eval_input_reader[0].label_map_path": "/data/label_map.pbtxt",
}
PATCH_ALL = {
    "train_input_reader.tf_record_input_reader.input_path": ["/data/train-0.rec", "/data/train-1.rec"],
    "eval_input_reader[0].tf_record_input_reader.input_path": ["/data/val.tfrecord"],
}
# Lines a patch may add besides the patched fields: parents it had to create.
CREATED_PARENTS = {"eval_input_reader {", "tf_record_input_reader {", "}"}


def patch(doc):
    for path, value in PATCH.items():
        doc.set(path, value)
    doc.set(num_classes_path(doc), 3)
    for path, values in PATCH_ALL.items():
        doc.set_all(path, values)


def lines_of(doc, paths):
    return {node.line for path in paths for node in doc.nodes(path)}


@pytest.mark.parametrize("path", SAMPLES, ids=ids(SAMPLES))
def test_patch_sample_config_changes_only_the_patched_lines(path):
    doc = parse_file(path)
    before = str(doc)
    patched = [*PATCH, *PATCH_ALL, num_classes_path(doc)]
    allowed = lines_of(doc, patched)
    patch(doc)

    again = parse(str(doc))
    for field, value in PATCH.items():
        assert again.get(field) == value
    assert isinstance(again.get("train_config.fine_tune_checkpoint_version"), Identifier)
    assert again.get(num_classes_path(again)) == 3
    for field, values in PATCH_ALL.items():
        assert again.get_all(field) == values

    leaves = tuple(p.rsplit(".", 1)[-1].split("[")[0] + ":" for p in patched)
    old, new = before.splitlines(), str(doc).splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        assert set(range(i1 + 1, i2 + 1)) <= allowed, old[i1:i2]
        for line in new[j1:j2]:
            assert line.strip().startswith(leaves) or line.strip() in CREATED_PARENTS, line


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_patch_then_print_then_parse_gives_the_same_values(path):
    doc = parse(text_of(path), str(path))
    patch(doc)
    assert dict(parse(str(doc)).walk()).keys() == dict(doc.walk()).keys()
    assert [n.value for _, n in parse(str(doc)).walk()] == [n.value for _, n in doc.walk()]


# -- insertion follows the file's own style


def test_missing_version_goes_beside_its_siblings():
    doc = parse_file(wild("11"))
    doc.set("train_config.fine_tune_checkpoint_version", Identifier("V2"))
    assert '  fine_tune_checkpoint_type: "detection"\n  fine_tune_checkpoint_version: V2\n}\n' in str(doc)


def test_insertion_keeps_crlf_and_the_sibling_indentation():
    doc = parse_file(wild("29"))
    doc.set("train_config.fine_tune_checkpoint_version", Identifier("V2"))
    assert "  fine_tune_checkpoint_type: 'detection'\r\n  fine_tune_checkpoint_version: V2\r\n" in str(doc)
    assert "\n" not in str(doc).replace("\r\n", "")


@pytest.mark.parametrize("unit", ["  ", "    ", "\t"])
def test_created_parents_use_the_detected_indent_unit(unit):
    doc = parse(f"model {{\n{unit}ssd {{\n{unit}{unit}num_classes: 1\n{unit}}}\n}}\n")
    doc.set("train_input_reader.tf_record_input_reader.input_path", "/d/train.tfrecord")
    doc.set("model.ssd.box_coder.faster_rcnn_box_coder.y_scale", 10.0)
    assert str(doc) == (
        f"model {{\n{unit}ssd {{\n{unit}{unit}num_classes: 1\n"
        f"{unit}{unit}box_coder {{\n{unit * 3}faster_rcnn_box_coder {{\n{unit * 4}y_scale: 10.0\n"
        f"{unit * 3}}}\n{unit}{unit}}}\n{unit}}}\n}}\n"
        f"train_input_reader {{\n{unit}tf_record_input_reader {{\n"
        f'{unit}{unit}input_path: "/d/train.tfrecord"\n{unit}}}\n}}\n'
    )


def test_a_file_without_final_newline_keeps_it_that_way():
    doc = parse("a {\n  b: 1\n}")
    doc.set("c.d", 2)
    assert str(doc) == "a {\n  b: 1\n}\nc {\n  d: 2\n}"
    doc.delete("c")
    assert str(doc) == "a {\n  b: 1\n}"


def test_one_line_and_empty_messages_get_inline_fields():
    doc = parse("item { id: 1 }\nsimilarity_calculator {}\n")
    doc.set("item.name", "cat")
    doc.set("similarity_calculator.iou_similarity.x", 1)
    assert str(doc) == 'item { id: 1 name: "cat" }\nsimilarity_calculator { iou_similarity { x: 1 } }\n'


def test_quote_style_follows_the_value_then_the_file():
    doc = parse("a: 'x'\nb: 'y'\nc: \"z\"\n")
    doc.set("c", "it's")
    doc.set("a", 'say "hi"')
    doc.set("d", "new")
    assert str(doc) == "a: 'say \"hi\"'\nb: 'y'\nc: \"it's\"\nd: 'new'\n"


def test_setting_keeps_separators_and_comments():
    doc = parse("eval_config: {\n  batch_size: 1;  # one image\n  x: 2,\n}\n")
    doc.set("eval_config.batch_size", 4)
    doc.set("eval_config.x", 3)
    assert str(doc) == "eval_config: {\n  batch_size: 4;  # one image\n  x: 3,\n}\n"


# -- values


VALUES = """\
a: .04  b: 1e-8  c: -4.6  d: 0x10  e: 010  f: 1.0f  g: -inf  h: true  i: False  j: V2
k: 'it\\'s'  l: "C:\\\\Temp"  m: "\\x41\\101\\u00e9"  n: "ab" 'cd'  o: "C:\\Temp"
p: [1, 2, 3]  q: []  r: 7;  s: nan  t: Infinity  u: 08
"""


def test_typed_values_and_spellings():
    doc = parse(VALUES)
    expected = {"a": 0.04, "b": 1e-8, "c": -4.6, "d": 16, "e": 8, "f": 1.0, "g": float("-inf")}
    expected |= {"h": True, "i": False, "j": "V2", "k": "it's", "l": "C:\\Temp", "m": "AAé"}
    expected |= {"n": "abcd", "o": "C:\\Temp", "p[1]": 2, "r": 7, "t": float("inf"), "u": 8.0}
    assert {key: doc.get(key) for key in expected} == expected
    assert math.isnan(doc.get("s"))  # type: ignore[arg-type]
    assert type(doc.get("j")) is Identifier and type(doc.get("k")) is str
    assert doc.get_all("p") == [1, 2, 3] and doc.get_all("q") == [] and doc.get("q") is None
    assert doc.get("missing", "default") == "default" and "missing" not in doc and "p" in doc
    node = doc.nodes("h")[0]
    assert (node.line, node.column, node.text, node.kind) == (1, 65, "true", "identifier")
    assert str(doc) == VALUES


@pytest.mark.parametrize(
    ("spelling", "value"),
    [("7", 7), ("0", 0), ("-12", -12), ("0x1F", 31), ("-0X10", -16), ("010", 8), ("08", None), (".04", None),
     ("1.0", None), ("1e3", None), ("-inf", None), ("12abc", None)],
)  # fmt: skip
def test_int_value_reads_integers_as_protobuf_does(spelling, value):
    assert int_value(spelling) == value


@pytest.mark.parametrize(
    ("key", "accessor", "message"),
    [
        ("j", Scalar.as_str, "expected a quoted string near 'V2'"),
        ("a", Scalar.as_int, "expected an integer near '.04'"),
        ("j", Scalar.as_float, "expected a floating-point number near 'V2'"),
        ("d", Scalar.as_float, "expected a floating-point number near '0x10'"),
        ("u", Scalar.as_int, "expected an integer near '08'"),
        ("d", Scalar.as_bool, "expected true or false near '0x10'"),
        ("k", Scalar.as_identifier, "expected an unquoted enum value"),
    ],
)
def test_typed_accessors_refuse_what_tensorflow_would(key, accessor, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        accessor(parse(VALUES).nodes(key)[0])


def test_several_values_need_get_all_or_an_index():
    doc = parse_file(wild("02"))
    path = "train_input_reader.tf_record_input_reader.input_path"
    assert len(doc.get_all(path)) == 86
    assert len(doc.get_all("eval_input_reader.tf_record_input_reader.input_path")) == 10
    with pytest.raises(ConfigError, match="has 86 values .* use get_all or an index"):
        doc.get(path)
    with pytest.raises(ConfigError, match="use set_all or an index"):
        doc.set(path, "x")
    assert doc.get(path + "[85]") == doc.get_all(path)[-1]


def test_set_all_rewrites_repeated_lines_in_place_and_keeps_lists_as_lists():
    doc = parse_file(wild("02"))
    lines = len(str(doc).splitlines())
    path = "train_input_reader.tf_record_input_reader.input_path"
    doc.set_all(path, ["/a", "/b"])
    assert doc.get_all(path) == ["/a", "/b"]
    assert len(str(doc).splitlines()) == lines - 84
    assert '    input_path: "/a"\n    input_path: "/b"\n  }\n' in str(doc)

    listed = parse("anchor { aspect_ratios: [1.0, 2.0] }\n")
    listed.set_all("anchor.aspect_ratios", [0.5])
    assert str(listed) == "anchor { aspect_ratios: [0.5] }\n"
    listed.set_all("anchor.aspect_ratios", [])
    assert str(listed) == "anchor { }\n"


def test_delete_removes_whole_lines_with_their_comment_or_just_the_field_inline():
    doc = parse_file(wild("06"))
    assert doc.delete("train_config.use_bfloat16") == 1
    assert "use_bfloat16" not in str(doc) and "True if using TPU" not in str(doc)
    assert doc.delete("train_config.use_bfloat16") == 0
    inline = parse("item { id: 1 name: 'x' }\nitem { name: 'y' id: 2 }\n")
    assert inline.delete("item.id") == 2
    assert str(inline) == "item { name: 'x' }\nitem { name: 'y' }\n"


# -- unquoted placeholders (the lenient choice)


def test_unquoted_placeholder_parses_and_is_reported_then_fixed():
    doc = parse_file(DATA / "tf2_sample_configs" / "centernet_hg104_512x512_coco17_tpu-8.config")
    value = doc.get("train_config.fine_tune_checkpoint")
    assert value == "PATH_TO_BE_CONFIGURED" and isinstance(value, Identifier)
    with pytest.raises(ConfigError, match=r":116:25: expected a quoted string near 'PATH_TO_BE_CONFIGURED'"):
        doc.nodes("train_config.fine_tune_checkpoint")[0].as_str()
    found = {f.path: (f.line, f.node.kind) for f in find_placeholders(doc)}
    assert found["train_config.fine_tune_checkpoint"] == (116, "identifier")
    assert found["train_input_reader.label_map_path"] == (121, "string")
    doc.set("train_config.fine_tune_checkpoint", "/m/ckpt-0")
    assert '  fine_tune_checkpoint: "/m/ckpt-0"\n' in str(doc)
    assert "train_config.fine_tune_checkpoint" not in {f.path for f in find_placeholders(doc)}


def test_placeholders_are_listed_with_paths_and_lines():
    found = [(f.path, f.line) for f in find_placeholders(parse_file(wild("01")))]
    assert found == [
        ("train_config.fine_tune_checkpoint", 161),
        ("train_input_reader.label_map_path", 172),
        ("train_input_reader.tf_record_input_reader.input_path", 174),
        ("eval_input_reader.label_map_path", 182),
        ("eval_input_reader.tf_record_input_reader.input_path", 186),
    ]


# -- paths and architecture


def test_extension_fields_and_indexed_paths():
    doc = parse_file(DATA / "tf2_sample_configs" / "centernet_resnet50_v2_512x512_coco17_tpu-8.config")
    ext = "[object_detection.protos.GoogleInputReader.google_input_reader]"
    path = f"eval_input_reader[0].external_input_reader.{ext}.ss_table_input_reader.data_type"
    assert doc.get(path) == "TF_EXAMPLE"
    doc.set(path, Identifier("TF_SEQUENCE_EXAMPLE"))
    assert parse(str(doc)).get(path) == "TF_SEQUENCE_EXAMPLE"


def test_path_errors():
    doc = parse("model { ssd { num_classes: 1 } }\neval_input_reader { }\n")
    with pytest.raises(UsageError, match="invalid field path"):
        doc.get("model..ssd")
    with pytest.raises(ConfigError, match="'num_classes' is a value, not a message"):
        doc.get("model.ssd.num_classes.x")
    with pytest.raises(ConfigError, match="'model.ssd' is a message, not a value"):
        doc.get("model.ssd")
    with pytest.raises(ConfigError, match=r"cannot create 'eval_input_reader\[2\]'.*: 1 present"):
        doc.set("eval_input_reader[2].label_map_path", "x")
    doc.set("eval_input_reader[1].label_map_path", "x")
    assert doc.get_all("eval_input_reader.label_map_path") == ["x"]
    assert len(doc.nodes("eval_input_reader")) == 2


class Version(enum.Enum):
    V1 = 1
    V2 = 2


def test_what_set_accepts():
    doc = parse("a: 1\n")
    doc.set("a", Version.V2)
    assert str(doc) == "a: V2\n"
    for value, spelling in [(float("nan"), "nan"), (float("-inf"), "-inf"), (1e-8, "1e-08"), (False, "false")]:
        doc.set("a", value)
        assert str(doc) == f"a: {spelling}\n"
    with pytest.raises(UsageError, match="not an enum identifier"):
        doc.set("a", Identifier("V 2"))
    with pytest.raises(TypeError):
        doc.set("a", [1])  # type: ignore[arg-type]


@pytest.mark.parametrize("path", CONFIGS, ids=ids(CONFIGS))
def test_meta_architecture_of_every_config(path):
    doc = parse(text_of(path), str(path))
    assert meta_architecture(doc) in ("ssd", "faster_rcnn", "center_net")
    assert isinstance(doc.get(num_classes_path(doc)), int)


def test_meta_architecture_errors():
    with pytest.raises(ConfigError, match="no 'model' block"):
        meta_architecture(parse("train_config {}"))
    with pytest.raises(ConfigError, match=":1:7: 'model' must hold exactly one .* found: ssd, faster_rcnn"):
        meta_architecture(parse("model { ssd {} faster_rcnn {} }"))


# -- errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a: "abc', "1:4: string is not closed on its line near '\"abc'"),
        ("a {\n  b: 1\n", "3:1: '{' opened on line 1 is not closed, found the end of the file"),
        ("a: 12abc", "1:4: malformed number near '12abc'"),
        ("a: 1.2.3", "1:4: malformed number near '1.2.3'"),
        ('a: "C:\\Users"', "1:7: malformed \\U escape: in a path, write forward slashes (C:/Users/...), which "
                           "TensorFlow reads on Windows too, or \\\\ for a backslash near '\\Users'"),
        # A config saved as a Python dict (or JSON) says so and how to write text format.
        ("{'model': {'ssd': {}}}", "1:1: this is a Python dict or JSON, not protobuf text format; write the config "
                                   "as text (model { ssd { ... } }), e.g. with google.protobuf.text_format."
                                   "MessageToString(pipeline_config) near '{'"),
        ("}", "1:1: expected a field name near '}'"),
        ("a 1", "1:3: expected ':' or '{' after 'a' near '1'"),
        ("a: [1, 2", "1:9: expected ',' or ']' in the list, found the end of the file"),
        ("a: [1, ]", "1:8: expected a value near ']'"),
        ("a [1]", "1:4: a list of values needs ':' after the field name near '1'"),
        ("a: \u2018x\u2019", "1:4: unexpected character '\u2018' (U+2018 LEFT SINGLE QUOTATION MARK)"),
        ("a:\n}", "1:1: 'a' has no value near '}'"),
        ("a:", "1:1: 'a' has no value near 'a:'"),
        ("a { b: 1 >", "1:10: expected a field name near '>'"),
        ("[a.b { }", "1:6: expected ']' to end the extension name near '{'"),
        ("a: -", "1:4: unexpected character '-'"),
        ("a {" * 102, "1:303: messages nested deeper than 100 levels near '{'"),
    ],
)
def test_parse_errors_are_one_precise_line(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse(text, "x.config")
    assert str(caught.value).startswith(f"x.config:{expected}")
    assert ERROR_FORMAT.match(str(caught.value))


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="absent.config: no such file"):
        parse_file(tmp_path / "absent.config")
    latin1 = tmp_path / "latin1.config"
    latin1.write_bytes(b'a: 1\nb: "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1.config:2:8: not UTF-8 text: byte 0xe9"):
        parse_file(latin1)


# -- property tests


def values_like(node: Scalar) -> st.SearchStrategy:
    """New values of the type the node already holds."""
    value = node.value
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-(2**63), 2**64)
    if isinstance(value, float):
        return st.floats(allow_nan=False)  # nan != nan; its spelling is covered below
    if isinstance(value, Identifier):
        names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
        return names.filter(lambda n: n not in ("true", "false", "True", "False")).map(Identifier)
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_edits_change_only_the_edited_value(data):
    source = data.draw(st.sampled_from(CONFIGS), label="file")
    doc = parse(text_of(source))
    nodes = dict(doc.walk())
    before = {path: node.text for path, node in nodes.items()}
    path = data.draw(st.sampled_from(sorted(nodes)), label="field")
    node = nodes[path]
    value = data.draw(values_like(node), label="value")
    doc.set(path, value)

    again = parse(str(doc))
    assert again.get(path) == value
    after = {p: n.text for p, n in again.walk()}
    assert after.keys() == before.keys()
    assert {p for p in before if before[p] != after[p]} <= {path}
    old, new = text_of(source), str(doc)
    tail = len(old) - node.end
    assert new[: node.start] == old[: node.start] and new[len(new) - tail :] == old[node.end :]
    assert "\n" not in new[node.start : len(new) - tail]  # the new value stays on one line


SYNTAX = st.sampled_from(list("{}<>[]:;,.#'\"\\-\n\r\t 0129eExfabc_") + ["\u2018", "é", "\x00"])
GARBAGE = st.text(SYNTAX | st.characters(), max_size=200)


def parse_or_config_error(text: str) -> None:
    try:
        doc = parse(text)
    except ConfigError as exc:
        assert ERROR_FORMAT.match(str(exc)), str(exc)
        return
    assert str(doc) == text
    for _, node in doc.walk():
        try:
            assert node.value is not None
        except ConfigError:
            pass  # e.g. octal escapes that are not UTF-8


@settings(max_examples=300, deadline=None)
@given(GARBAGE)
def test_garbage_never_raises_anything_but_config_error(text):
    parse_or_config_error(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_configs_never_raise_anything_but_config_error(data):
    text = text_of(data.draw(st.sampled_from(CONFIGS), label="file"))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        start = data.draw(st.integers(0, len(text)), label="at")
        end = data.draw(st.integers(start, min(len(text), start + 40)), label="to")
        text = text[:start] + data.draw(GARBAGE.map(lambda s: s[:20]), label="insert") + text[end:]
    parse_or_config_error(text)


# The string pattern as first written: one alternation per character, slow.
_PLAIN_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="\"'\\\nab \t#"))
def test_the_string_pattern_matches_what_the_plain_one_did(text):
    assert [m.group() for m in re.finditer(STRING, text)] == [m.group() for m in _PLAIN_STRING.finditer(text)]


@pytest.mark.parametrize("text", ["", "a: 1", "a: 1\n", "a: 1  # done", "\n\n"])
def test_exactly_one_end_token_closes_the_file(text):
    tokens = _tokenize(_Source.of(text, "x"))
    assert [token.kind for token in tokens].count("end") == 1
    assert tokens[-1].kind == "end" and tokens[-1].end == len(text)
