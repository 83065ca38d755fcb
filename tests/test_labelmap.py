"""Label maps: the wild ones read as INDEX.md describes, and every way an id
can be wrong is an error naming the file, line and item."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.config import textproto
from zoo.config.labelmap import (
    _classes,
    _scanned_items,
    _Unscannable,
    label_map_of,
    parse_label_map,
    read_label_map,
)
from zoo.errors import ConfigError

WILD = Path(__file__).parent / "data" / "wild_configs"


def wild(prefix: str) -> Path:
    (path,) = WILD.glob(f"{prefix}_*.pbtxt")
    return path


@pytest.mark.parametrize(
    ("prefix", "num_classes", "names"),
    [
        ("31", 1, ["screw"]),  # tabs, no space after the colon
        ("32", 3, ["blue_block", "red_block", "yellow_block"]),  # trailing commas
        ("33", 11, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]),  # ids out of order
        ("34", 7, ["resistors", "transistors", "capacitors", "ICs", "diodes", "inductors", "transducers"]),
        ("36", 1, ["heart gesture"]),  # space before the colon
        ("37", 4, ["vehicle", "pedestrian", "cyclist"]),  # ids 1, 2, 4
        ("38", 3, ["helmet", "head", "person"]),  # item{ with no space
    ],
)
def test_wild_label_maps_read(prefix, num_classes, names):
    label_map = read_label_map(wild(prefix))
    assert label_map.num_classes == num_classes
    assert [item.name for item in label_map.items] == names


def test_details_of_the_wild_maps():
    crlf = read_label_map(wild("34"))
    assert [(item.id, item.line) for item in crlf.items][:2] == [(1, 1), (2, 5)]
    assert not crlf.warnings
    out_of_order = read_label_map(wild("33"))
    assert [item.id for item in out_of_order.items][-1] == 3
    assert out_of_order.items[0].display_name == "Alpukat"
    gap = read_label_map(wild("37"))
    assert gap.missing_ids == [3]
    assert gap.warnings == [f"{wild('37')}: no item has id 3; num_classes is still 4, the highest id"]


def test_the_curly_quoted_wild_map_fails_precisely():
    with pytest.raises(ConfigError) as caught:
        read_label_map(wild("35"))
    assert str(caught.value).startswith(
        f"{wild('35')}:3:7: unexpected character '\u2018' (U+2018 LEFT SINGLE QUOTATION MARK): "
        "a typographic quote; write ' or \""
    )
    assert (caught.value.line, caught.value.column) == (3, 7)


def test_text_and_path_are_both_accepted(tmp_path):
    text = "item: {\n  id: 2\n  name: 'dog'\n}\nitem [{ id: 1 name: 'cat' }]\n"
    assert read_label_map(text).num_classes == 2
    path = tmp_path / "label_map.pbtxt"
    path.write_text(text)
    assert [(item.id, item.name, item.line) for item in read_label_map(path).items] == [
        (2, "dog", 1),
        (1, "cat", 5),
    ]
    assert read_label_map(str(path)).num_classes == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "item { id: 1 name: 'cat' }\nitem { id: 1 name: 'dog' }",
            "2:1: duplicate id 1 (first used on line 1) near 'item { id: 1 name: 'dog' }'",
        ),
        (
            "item {\n  id: 0\n  name: 'cat'\n}",
            (
                "1:1: id 0 is reserved for the background class; class ids start at 1 "
                "near 'item { id: 0 name: 'cat' }'"
            ),
        ),
        ("item { id: -2 name: 'cat' }", "1:1: id -2 is negative; class ids start at 1"),
        ("item { name: 'cat' }", "1:1: item has no 'id' near 'item { name: 'cat' }'"),
        ("item { id: '1' name: 'cat' }", "1:12: expected an integer near ''1''"),
        ("item { id: 1.5 }", "1:12: expected an integer near '1.5'"),
        ("item { id: 1 name: cat }", "1:20: expected a quoted string near 'cat'"),
        ("item { id: 1 id: 2 }", "1:14: 'id' given twice in one item (first on line 1)"),
        ("item { id: 1 nmae: 'cat' }", "1:14: unknown field 'nmae' in a label map item"),
        ("label { id: 1 }", "1:1: unknown field 'label': a label map holds only 'item' blocks"),
        ("item: 1", "1:7: 'item' must be a block"),
        ("item { id: 1 name: [ 'a' ] }", "1:14: 'name' must be a single value"),
        ("item [{ id: 1 }, { id: 1 }]", "1:18: duplicate id 1 (first used on line 1) near '{ id: 1 }'"),
        # Past int()'s 4,300-digit limit: a ConfigError, not Python's ValueError.
        (f"item {{ id: {'9' * 5000} name: 'cat' }}", "1:12: expected an integer"),
    ],
)
def test_label_map_errors_name_file_line_and_item(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse_label_map(text, "lm.pbtxt")
    assert str(caught.value).startswith(f"lm.pbtxt:{expected}")


def test_empty_label_maps_are_errors():
    for text in ("", "# nothing here\n", "item { id: 0 name: 'background' }"):
        with pytest.raises(ConfigError, match="lm.pbtxt: the label map has no items"):
            parse_label_map(text, "lm.pbtxt")


def test_background_at_id_0_is_accepted_and_not_a_class():
    label_map = parse_label_map("item { id: 0 name: 'background' }\nitem { id: 1 name: 'cat' }")
    assert [item.id for item in label_map.items] == [1]
    assert label_map.num_classes == 1


def test_duplicate_names_are_a_warning_not_an_error():
    label_map = parse_label_map(
        "item { id: 1 name: 'cat' display_name: 'Cat' }\nitem { id: 2 name: 'cat' display_name: 'Kitten' }",
        "lm.pbtxt",
    )
    assert label_map.num_classes == 2
    assert label_map.warnings == ["lm.pbtxt:2: name 'cat' is used by ids 1, 2"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 6) | st.none(), st.sampled_from(["a", "b", "c"]) | st.none()),
        max_size=6,
    )
)
def test_any_list_of_items_reads_or_fails_with_a_config_error(items):
    lines = [
        "item {"
        + ("" if item_id is None else f" id: {item_id}")
        + ("" if name is None else f" name: '{name}'")
        + " }"
        for item_id, name in items
    ]
    try:
        label_map = parse_label_map("\n".join(lines), "lm.pbtxt")
    except ConfigError as exc:
        assert re.match(r"^lm\.pbtxt:(\d+:\d+:)? [^\n]+$", str(exc))
        return
    ids = [item_id for item_id, _ in items]
    assert label_map.num_classes == max(ids)  # type: ignore[type-var]
    assert sorted(item.id for item in label_map.items) == sorted(i for i in ids if i)


# -- size: linear work, and a clear error past a sane size


def test_a_long_item_list_is_read_in_linear_work(monkeypatch):
    """``item: [{...}, ...]`` once copied the whole list once per item: count the copies."""
    from zoo.config.textproto import Field

    copied = []
    items = Field.items
    monkeypatch.setattr(Field, "items", property(lambda f: copied.append(len(items.fget(f))) or items.fget(f)))
    n = 2000
    label_map = parse_label_map("item: [" + ", ".join(f"{{ id: {i} name: 'c{i}' }}" for i in range(1, n + 1)) + "]")
    assert label_map.num_classes == n
    assert sum(copied) <= 2 * n


def test_a_label_map_past_the_token_limit_is_one_clear_error(monkeypatch, tmp_path):
    from zoo.config import textproto

    monkeypatch.setattr(textproto, "MAX_TOKENS", 1000)
    path = tmp_path / "huge.pbtxt"
    path.write_text("".join(f"item {{ id: {i} name: 'c{i}' }}\n" for i in range(1, 200)))
    with pytest.raises(ConfigError) as caught:
        read_label_map(path)
    assert str(caught.value) == f"{path}:112:6: more than 1,000 tokens: too large for a config or label map"


# -- the scanner: plain maps skip the parser's tree, and both readers always agree


def _outcome(read, text):
    try:
        return read(text)
    except ConfigError as exc:
        return str(exc)


def _parsed(text):
    return _outcome(lambda t: label_map_of(textproto.parse(t, "lm.pbtxt")), text)


def _scanned(text):
    """The scanner's own answer, or None where it hands the text to the parser."""
    try:
        return _outcome(lambda t: _classes("lm.pbtxt", _scanned_items(t)), text)
    except _Unscannable:
        return None


def assert_readers_agree(text):
    expected = _parsed(text)
    scanned = _scanned(text)
    assert scanned is None or scanned == expected
    assert _outcome(lambda t: parse_label_map(t, "lm.pbtxt"), text) == expected
    return scanned


@pytest.mark.parametrize("path", sorted(WILD.glob("*.pbtxt")), ids=lambda p: p.name[:2])
def test_the_scanner_reads_every_plain_wild_map_as_the_parser_does(path):
    text = textproto.read_text(path)
    scanned = assert_readers_agree(text)
    assert (scanned is None) == path.name.startswith("35_")  # only the curly-quoted one needs the parser


@pytest.mark.parametrize(
    "text",
    [
        "item { id: 1 }",
        "item { name: 'a' id: 2 }",  # any field order, one to three fields
        "item: < display_name: 'x'; id: 3, name: \"n\" >;",
        "item{id:1}item{id:2},",
        "\r\n# head\r\nitem {\r\n\tid: 7 # seven } item { id: 8 }\r\n\tname: 'c#t' # }\r\n}\r\n# tail",
        "item { id: 0 name: 'background' }\nitem { id: 1 display_name: 'x' }",
        "item { id: 2 name: 'a' }\nitem { id: 3 name: 'a' }",  # a shared name: a warning only
        "item { id: 1 name: '{}<>:,;#' }",
        "item { id: 0x10 }\nitem { id: 010 }",  # hex and octal, as protobuf reads them
    ],
)
def test_the_scanner_takes_plain_maps_itself(text):
    assert assert_readers_agree(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "item [{ id: 1 }, { id: 2 }]",  # list form
        "item { id: 1 keypoints { id: 0 label: 'nose' } }",  # other fields
        "item { id: 1 name: 'a\\tb' }",  # escapes
        "item { id: 1 name: 'a' 'b' }",  # adjacent strings
        "item { id: 1 name: 'cat' }\nitem { id: 1 name: 'dog' }",  # every error
        "item { id: 1 id: 1 }",
        "item { id: 1 } junk",
        "item { id: 1 >",
        "item { id: 1 # }",
        "item { id: 1name: 'a' }",
    ],
)
def test_the_scanner_hands_everything_else_to_the_parser(text):
    assert assert_readers_agree(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "item { id: 1 name: 'a' }\nitem { id: 2 name: 'b' }\n",
        "item: { id: 1, name: 'a', display_name: 'A', };\nitem: < id: 2; >,\n",
    ],
)
def test_the_scanner_counts_tokens_as_the_parser_does(monkeypatch, text):
    tokens = len(textproto._tokenize(textproto._Source.of(text, "lm.pbtxt")))
    monkeypatch.setattr(textproto, "MAX_TOKENS", tokens)
    assert assert_readers_agree(text) is not None
    monkeypatch.setattr(textproto, "MAX_TOKENS", tokens - 1)
    assert assert_readers_agree(text) is None
    assert "too large for a config or label map" in _parsed(text)


_TRIVIA = st.sampled_from(["", " ", " ", " ", "\n", "\r\n", "\t", " # note } item {\n", "\n\n  "])
_ODD_IDS = st.sampled_from(["0", "-1", "07", "0x2", "1.5", "2e3", "1name", "'1'", "[1]", "1 id: 2"])
_STRINGS = st.sampled_from(["'cat'", '"dog"', "'background'", "'{}#:'", "''"])
_ODD_STRINGS = st.sampled_from(["'a\\'b'", "'a' 'b'", "'x", "cat", "'\u00e9'", "{}", "1", "'a\\x'"])
_ODD_FIELDS = st.sampled_from(["keypoints { id: 1 }", "nmae: 'a'", "item { id: 9 }", "frequency: FREQUENT"])


@st.composite
def _label_map_texts(draw):
    """Mostly plain maps, each part now and then a near miss of one."""
    odd = st.integers(0, 60).map(lambda n: n == 0)
    parts = []
    for number in range(1, draw(st.integers(0, 4)) + 1):
        opener = draw(st.sampled_from(["{", "{", "<"]))
        parts += [draw(_TRIVIA), "item", draw(_TRIVIA), draw(st.sampled_from(["", ":"])), draw(_TRIVIA), opener]
        names = draw(st.permutations(["id", *draw(st.sampled_from([[], ["name"], ["name", "display_name"]]))]))
        if draw(odd):
            names.insert(draw(st.integers(0, len(names))), draw(st.sampled_from(["id", "name", ""])))
        if draw(odd):
            names.remove("id")
        for name in names:
            value = str(number) if name == "id" else draw(_STRINGS)
            if draw(odd):
                value = draw(_ODD_IDS if name == "id" else _ODD_STRINGS)
            if not name:
                name, value = draw(_ODD_FIELDS).split(" ", 1)
            parts += [draw(_TRIVIA), name, draw(_TRIVIA), "" if draw(odd) else ":"]
            parts += [draw(_TRIVIA), value, draw(st.sampled_from(["", "", ",", ";"] + [",,"] * draw(odd)))]
        closer = {"{": "}", "<": ">"}[opener] if not draw(odd) else draw(st.sampled_from("}>"))
        parts += [draw(_TRIVIA), closer, draw(st.sampled_from(["", "", ",", ";"]))]
    return "".join(parts) + draw(_TRIVIA) + draw(st.sampled_from(["", "# no newline", "#x\nitem {"]))


@settings(max_examples=400, deadline=None)
@given(_label_map_texts())
def test_the_readers_agree_on_generated_maps(text):
    assert_readers_agree(text)


@settings(max_examples=300, deadline=None)
@given(_label_map_texts(), st.data())
def test_the_readers_agree_on_mutated_maps(text, data):
    """One character inserted or deleted anywhere: near misses of plain maps."""
    text = text or "item { id: 1 name: 'a' }"
    at = data.draw(st.integers(0, len(text)))
    if data.draw(st.booleans()):
        text = text[:at] + data.draw(st.sampled_from(list("{}<>:;,'\"#\\\n -0a["))) + text[at:]
    else:
        text = text[:at] + text[at + 1 :]
    assert_readers_agree(text)
