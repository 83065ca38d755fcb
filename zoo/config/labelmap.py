"""Label maps (``label_map.pbtxt``): ``item { id: 1 name: 'cat' }`` blocks.

Read with the same text-format parser as pipeline configs, then held to what
TensorFlow's ``label_map_util`` and the ``StringIntLabelMap`` proto accept,
plus what the issue requires:

- every item needs an integer ``id``; ``name`` and ``display_name`` must be
  quoted strings; unknown fields and a field given twice in one item are
  errors (TensorFlow's parser rejects both);
- ids must be positive. ``id: 0`` is allowed only for an item named
  ``background``, which ``label_map_util`` explicitly permits and never
  counts as a class; it is skipped here too;
- ids must be unique. TensorFlow silently keeps the first item of a
  duplicated id and drops the other class, so zoo refuses it;
- duplicate *names* are a warning, not an error: TensorFlow accepts them
  (its name-to-id dict keeps the last), and a map can legitimately reuse a
  name while ``display_name`` tells the classes apart;
- ``num_classes`` is the highest id (as ``get_max_label_map_index``); ids
  missing below it are a warning, since the model then has classes no
  example can carry.

Every error is a ``ConfigError`` naming the file, line and offending item.

Maps of plain ``id``/``name``/``display_name`` items (nearly all, and the big
ones) skip the parser's lossless tree: a scanner reads them with one regex
match per item, built from the tokenizer's own token patterns. It accepts only
text that the parser reads the same way and hands anything else, every error
included, to the parser, so the two readers agree on every input.
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from os import PathLike

from zoo.config import textproto
from zoo.config.textproto import (
    COMMENT,
    IDENT,
    NUMBER,
    SPACE,
    STRING,
    Document,
    Field,
    Message,
    Node,
    Scalar,
    int_value,
    parse,
    read_text,
)
from zoo.errors import ConfigError

_STRING_FIELDS = ("name", "display_name")
# Other StringIntLabelMapItem fields: accepted, not interpreted.
_OTHER_FIELDS = frozenset(
    {"keypoints", "ancestor_ids", "descendant_ids", "frequency", "instance_count"}
)
_REPEATED = frozenset({"keypoints", "ancestor_ids", "descendant_ids"})
_BACKGROUND = "background"


@dataclass(frozen=True)
class LabelMapItem:
    id: int
    name: str
    display_name: str | None
    line: int


@dataclass(frozen=True)
class LabelMap:
    source: str
    items: tuple[LabelMapItem, ...]  # the classes, in file order; never empty, no background

    # Cached: the checks ask several times, and each answer walks every item.
    @cached_property
    def num_classes(self) -> int:
        return max(item.id for item in self.items)

    @cached_property
    def missing_ids(self) -> list[int]:
        present = {item.id for item in self.items}
        return [i for i in range(1, self.num_classes + 1) if i not in present]

    @property
    def warnings(self) -> list[str]:
        """Legal for TensorFlow but probably not meant: shared names, missing ids."""
        by_name: defaultdict[str, list[LabelMapItem]] = defaultdict(list)
        for item in self.items:
            by_name[item.name].append(item)
        warnings = [
            f"{self.source}:{same[1].line}: name '{name}' is used by ids "
            + ", ".join(str(item.id) for item in same)
            for name, same in by_name.items()
            if len(same) > 1
        ]
        if self.missing_ids:
            missing = ", ".join(map(str, self.missing_ids))
            warnings.append(
                f"{self.source}: no item has id {missing}; num_classes is still "
                f"{self.num_classes}, the highest id"
            )
        return warnings


def read_label_map(path_or_text: str | PathLike[str]) -> LabelMap:
    """A label map from a file, or from its text when given a ``str`` holding ``{``
    (no label map path contains a brace; every non-empty label map text does)."""
    if isinstance(path_or_text, str) and "{" in path_or_text:
        return parse_label_map(path_or_text)
    return parse_label_map(read_text(path_or_text, "label map"), str(path_or_text))


def parse_label_map(text: str, source: str = "<label map>") -> LabelMap:
    """The fast scanner reads plain maps; whatever it declines (every error
    included) goes through the full parser, which alone words errors."""
    with _collector_paused():
        try:
            return _classes(source, _scanned_items(text))
        except _Unscannable:
            return label_map_of(parse(text, source))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Both readers build acyclic objects, freed by reference counting; the
    collections that ~25 objects per item would trigger find nothing and were
    half the time of a 100,000-item map."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# An item's error, located where the reader found it: ``Node.error`` or, in the
# scanner, a request to hand the text to the full parser.
_ErrorAt = Callable[[str], Exception]


def _classes(source: str, entries: Iterable[tuple[LabelMapItem, _ErrorAt]]) -> LabelMap:
    """The id rules of the module docstring, shared by both readers."""
    items: list[LabelMapItem] = []
    first_line: dict[int, int] = {}
    for item, error in entries:
        if item.id < 0:
            raise error(f"id {item.id} is negative; class ids start at 1")
        if item.id == 0:
            if _BACKGROUND in (item.name, item.display_name):
                continue  # label_map_util's background item: not a class
            raise error("id 0 is reserved for the background class; class ids start at 1")
        if item.id in first_line:
            raise error(f"duplicate id {item.id} (first used on line {first_line[item.id]})")
        first_line[item.id] = item.line
        items.append(item)
    if not items:
        raise ConfigError(f"{source}: the label map has no items", source)
    return LabelMap(source, tuple(items))


# -- the scanner: label maps as people write them, one regex match per item

class _Unscannable(Exception):
    """Not a plain label map, or a wrong one: the full parser takes over."""


def _unscannable(what: str) -> _Unscannable:
    return _Unscannable(what)


# Trivia as the tokenizer reads it, written so that backtracking can neither
# split a run of spaces (exponential) nor end a comment early (whose tail
# would then read as tokens): a comment must reach the end of its line.
_T = rf"{SPACE}*(?:{COMMENT}(?![^\n]){SPACE}*)*"
# Whole tokens only: a match may not stop inside a longer word or number.
_WORD = rf"(?:{IDENT})(?![0-9A-Za-z_])"
_NUM = rf"(?:{NUMBER})(?![0-9A-Za-z_.+-])"
# `name: value` with one literal (adjacent strings join: the parser's job)
# and an optional separator; groups: name, number, string, separator.
_FIELD = rf"{_T}({_WORD}){_T}:{_T}(?:({_NUM})|({STRING}))(?:{_T}([,;]))?"
# id, name, display_name: a fourth field would be a repeat or an unknown one.
_MAX_FIELDS = 3
_ITEM = re.compile(
    rf"{_T}(?P<item>item)(?![0-9A-Za-z_]){_T}(?:(?P<colon>:){_T})?(?:(?P<brace>\{{)|<)"
    + f"(?:{_FIELD}" * _MAX_FIELDS + ")?" * _MAX_FIELDS  # fields fill the slots in order
    + rf"{_T}(?(brace)\}}|>)(?:{_T}(?P<separator>[,;]))?"
)
# In ``match.groups()`` (0-based): the optional `:`, the 4 groups per field, the separator.
_COLON, _SEPARATOR = _ITEM.groupindex["colon"] - 1, _ITEM.groupindex["separator"] - 1
_FIELD_GROUPS = slice(_ITEM.groupindex["brace"], _SEPARATOR)
_REST = re.compile(rf"{_T}\Z")


def _scanned_items(text: str) -> Iterator[tuple[LabelMapItem, _ErrorAt]]:
    """``item {...}`` blocks of ``id``, ``name`` and ``display_name`` only,
    read as the parser would; raises _Unscannable at anything else."""
    pos = line_start = 0
    line, tokens = 1, 1  # the parser's last token: the end of the file
    while match := _ITEM.match(text, pos):
        start = match.start("item")
        line += text.count("\n", line_start, start)
        line_start, pos = start, match.end()
        groups = match.groups()
        fields = groups[_FIELD_GROUPS]
        tokens += _token_count(groups, fields)
        yield _scanned_item(fields, line), _unscannable
    if not _REST.match(text, pos) or tokens > textproto.MAX_TOKENS:
        raise _Unscannable("not a plain label map")  # the parser says what is wrong


def _token_count(groups: tuple[str | None, ...], fields: tuple[str | None, ...]) -> int:
    """As the parser counts toward MAX_TOKENS: `item`, an optional `:`, `{`,
    `}`, an optional separator; per field its name, `:`, value and separator."""
    names, separators = fields[0::4], fields[3::4]
    optional = (groups[_COLON] is not None) + (groups[_SEPARATOR] is not None)
    return 3 + optional + 3 * (len(names) - names.count(None)) + len(separators) - separators.count(None)


def _scanned_item(fields: tuple[str | None, ...], line: int) -> LabelMapItem:
    values: dict[str, int | str] = {}
    for i in range(0, len(fields), 4):
        name, number, string = fields[i : i + 3]
        if name is None:
            break  # no more fields
        if name in values:
            raise _Unscannable(f"'{name}' given twice")
        values[name] = _scanned_value(name, number, string)
    if "id" not in values:
        raise _Unscannable("no id")
    return LabelMapItem(values["id"], values.get("name", ""), values.get("display_name"), line)  # type: ignore[arg-type]


def _scanned_value(name: str, number: str | None, string: str | None) -> int | str:
    if name == "id" and number:
        value = int_value(number)
        if value is not None:
            return value
    elif name in _STRING_FIELDS and string and "\\" not in string:
        return string[1:-1]  # escapes are the parser's
    raise _Unscannable(f"'{name}' is not a plain value")


# -- the full parser's tree: every other label map, and every error


def label_map_of(doc: Document) -> LabelMap:
    """Validate a parsed label map; see the module docstring for the rules."""
    return _classes(doc.source, ((_read_item(where, node), where.error) for where, node in _item_nodes(doc)))


def _item_nodes(doc: Document) -> list[tuple[Node, Message]]:
    """Each item block with the node its errors point at: the whole
    ``item { ... }`` field, or the block alone inside ``item: [{...}, {...}]``."""
    nodes: list[tuple[Node, Message]] = []
    for f in doc.root.fields:
        if f.name != "item":
            raise f.error(f"unknown field '{f.name}': a label map holds only 'item' blocks")
        items = f.items  # a new list per call: read once, or a long `item: [...]` goes quadratic
        for node in items:
            if not isinstance(node, Message):
                raise node.error("'item' must be a block: item { id: 1 name: '...' }")
            nodes.append((f if len(items) == 1 else node, node))
    return nodes


def _read_item(where: Node, node: Message) -> LabelMapItem:
    fields = _fields_by_name(node)
    if "id" not in fields:
        raise where.error("item has no 'id'")
    item_id = _scalar(fields["id"]).as_int()
    strings = {name: _scalar(fields[name]).as_str() for name in _STRING_FIELDS if name in fields}
    return LabelMapItem(item_id, strings.get("name", ""), strings.get("display_name"), where.line)


def _fields_by_name(node: Message) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for f in node.fields:
        if f.name not in _OTHER_FIELDS and f.name not in ("id", *_STRING_FIELDS):
            raise f.error(f"unknown field '{f.name}' in a label map item")
        if f.name in fields and f.name not in _REPEATED:
            raise f.error(f"'{f.name}' given twice in one item (first on line {fields[f.name].line})")
        fields[f.name] = f
    return fields


def _scalar(f: Field) -> Scalar:
    if not isinstance(f.value, Scalar):
        raise f.error(f"'{f.name}' must be a single value")
    return f.value

