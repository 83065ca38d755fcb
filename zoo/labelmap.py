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
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike

from zoo.errors import ConfigError
from zoo.textproto import Document, Field, Message, Node, Scalar, parse, parse_file

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

    @property
    def num_classes(self) -> int:
        return max(item.id for item in self.items)

    @property
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
    with _collector_paused():
        return label_map_of(parse_file(path_or_text, "label map"))


def parse_label_map(text: str, source: str = "<label map>") -> LabelMap:
    with _collector_paused():
        return label_map_of(parse(text, source))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The parse tree is acyclic and freed by reference counting as soon as
    the items are read; the collections its ~25 objects per item would
    trigger find nothing and were half the time of a 100,000-item map."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def label_map_of(doc: Document) -> LabelMap:
    """Validate a parsed label map; see the module docstring for the rules."""
    items: list[LabelMapItem] = []
    first_line: dict[int, int] = {}
    for where, node in _item_nodes(doc):
        item = _read_item(where, node)
        if item.id == 0:
            continue  # the background item, the one id 0 that _read_item lets through
        if item.id in first_line:
            raise where.error(f"duplicate id {item.id} (first used on line {first_line[item.id]})")
        first_line[item.id] = item.line
        items.append(item)
    if not items:
        raise ConfigError(f"{doc.source}: the label map has no items", doc.source)
    return LabelMap(doc.source, tuple(items))


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
    name, display_name = strings.get("name", ""), strings.get("display_name")
    if item_id < 0:
        raise where.error(f"id {item_id} is negative; class ids start at 1")
    if item_id == 0 and _BACKGROUND not in (name, display_name):
        raise where.error("id 0 is reserved for the background class; class ids start at 1")
    return LabelMapItem(item_id, name, display_name, where.line)


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

