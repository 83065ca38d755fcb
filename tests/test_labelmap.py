"""Label maps: the wild ones read as INDEX.md describes, and every way an id
can be wrong is an error naming the file, line and item."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.errors import ConfigError
from zoo.labelmap import parse_label_map, read_label_map

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
    from zoo.textproto import Field

    copied = []
    items = Field.items
    monkeypatch.setattr(Field, "items", property(lambda f: copied.append(len(items.fget(f))) or items.fget(f)))
    n = 2000
    label_map = parse_label_map("item: [" + ", ".join(f"{{ id: {i} name: 'c{i}' }}" for i in range(1, n + 1)) + "]")
    assert label_map.num_classes == n
    assert sum(copied) <= 2 * n


def test_a_label_map_past_the_token_limit_is_one_clear_error(monkeypatch, tmp_path):
    from zoo import textproto

    monkeypatch.setattr(textproto, "MAX_TOKENS", 1000)
    path = tmp_path / "huge.pbtxt"
    path.write_text("".join(f"item {{ id: {i} name: 'c{i}' }}\n" for i in range(1, 200)))
    with pytest.raises(ConfigError) as caught:
        read_label_map(path)
    assert str(caught.value) == f"{path}:112:6: more than 1,000 tokens: too large for a config or label map"
