"""Protocol-buffer text format without the protos: parse, query and edit a
``pipeline.config`` while keeping every byte the user did not ask to change.

Parsing builds a concrete syntax tree that owns every byte: each token (a
name, a value, ``{``, ``:``, a ``,``/``;`` separator ...) carries the trivia
before it (blank lines, indentation, comments, CRLF, tabs), the last one the
trailing trivia of the file, and every token belongs to exactly one node.
``Document.text`` is rebuilt from the tree, so ``str(parse(text)) == text``
holds only if the parser kept everything. Nodes also carry their exact span of
the text (as tree-sitter does). An edit splices new text into the spans it touches and
parses the result again, so the tree, and every node's 1-based ``line`` and
``column``, always describe the current text. Nodes taken before an edit keep
describing the text before it.

We cannot ship the OD API's generated protos, so the parser does not know
field types. It follows the text-format grammar (names, ``:``, ``{ }`` or
``< >`` messages, ``[a, b]`` lists, ``[ext.name]`` extension fields, quoted
strings with C escapes, adjacent strings concatenated, numbers such as
``.04``, ``1e-8``, ``-4.6``, ``0x10``, ``1.0f``, ``-inf``, and identifiers for
enums and booleans). Types appear only when a value is read (``Scalar.as_int``
and friends say what TensorFlow would reject) or written (the Python type of
the new value picks its spelling).

Unquoted placeholders: two stale sample configs write ``fine_tune_checkpoint:
PATH_TO_BE_CONFIGURED`` without quotes. The grammar allows a bare identifier
as a value (that is how enums are written); only the field's string type makes
TensorFlow reject it. So parsing is lenient: the value reads back as an
``Identifier`` (a ``str`` subclass, so placeholder tests work on quoted and
unquoted values alike), ``Scalar.as_str`` refuses it as TensorFlow would, and
``find_placeholders`` reports it with ``kind == "identifier"`` so a checker can
say both "still a placeholder" and "TensorFlow cannot parse this line".
Setting the field writes a quoted string, which fixes both.

Anything that is not text format raises ``ConfigError`` with
``<source>:<line>:<column>: <what> near '<text>'``, and nothing else.
"""

from __future__ import annotations

import bisect
import enum
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import NamedTuple

from zoo.errors import ConfigError, UsageError
from zoo.fsutil import read_input

PLACEHOLDER = "PATH_TO_BE_CONFIGURED"

# A pipeline config has about a thousand tokens, a label map of 100,000
# classes 1.2 million; past this, parsing is minutes of work and gigabytes.
MAX_TOKENS = 2_000_000
# protobuf's own parsers stop at 100 levels; deeper input is garbage, and the
# limit keeps the recursive descent far from Python's recursion limit.
_MAX_DEPTH = 100
_SNIPPET_CHARS = 60


class Identifier(str):
    """An unquoted word value: an enum (``V2``, ``SIGMOID``) or a bare placeholder.

    Pass one to ``Document.set`` to write an enum value without quotes.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Identifier({str.__repr__(self)})"


Value = str | int | float | bool  # an Identifier is a str
NewValue = Value | enum.Enum  # an Enum member is written as its name


# --------------------------------------------------------------------------
# Source text and errors


@dataclass(frozen=True)
class _Source:
    """One immutable text with its name, shared by every node parsed from it."""

    name: str
    text: str
    line_starts: tuple[int, ...]

    @classmethod
    def of(cls, text: str, name: str) -> _Source:
        starts = [0] + [m.end() for m in re.finditer("\n", text)]
        return cls(name, text, tuple(starts))

    def position(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return index + 1, offset - self.line_starts[index] + 1

    def error(self, offset: int, what: str, near: str | None = None) -> ConfigError:
        line, column = self.position(offset)
        message = f"{self.name}:{line}:{column}: {what}"
        snippet = _snippet(near or "")
        if snippet:
            message += f" near '{snippet}'"
        return ConfigError(message, self.name, line, column)


def _snippet(text: str) -> str:
    """One short line: error messages stay one line even for a whole block."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 3] + "..."


# --------------------------------------------------------------------------
# Tokens

# Token spellings, shared with zoo.config.labelmap's scanner so that both read one language.
SPACE = r"[ \t\r\n\v\f]"
COMMENT = r"\#[^\n]*"
# A string: one line, escapes kept; written as an unrolled loop, which matches
# the same text as "(?:[^"\\\n]|\\.)*" but several times faster.
STRING = r""""[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'"""
NUMBER = r"-?\.?[0-9][0-9A-Za-z_.+-]*|-[A-Za-z_][0-9A-Za-z_]*"
IDENT = r"[A-Za-z_][0-9A-Za-z_]*"
_TRIVIA = rf"(?:{SPACE}+|{COMMENT})*"
# One match per token, trivia first. The trivia sits in a lookahead and is then
# taken by backreference: an atomic group, so a failed token never backtracks
# into a comment and reads its tail as a token.
_TOKEN = re.compile(
    rf"""
    (?=(?P<trivia>{_TRIVIA}))(?P=trivia)
    (?:
      (?P<string>{STRING})
    | (?P<unterminated>["'])
    | (?P<number>{NUMBER})
    | (?P<ident>{IDENT})
    | (?P<punct>[{{}}<>\[\]:,;./])
    | (?P<end>\Z)
    )
    """,
    re.VERBOSE,
)
_SKIP_TRIVIA = re.compile(_TRIVIA)
# Spellings as protobuf's Python parser (TensorFlow's) reads them: integers
# in decimal, hex or leading-zero octal; floats through float(), so "08" is a
# float but not an integer, and hex is an integer but not a float.
_INT = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_FLOAT = re.compile(
    r"""-?(?:
        [0-9]+
      | (?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?
      | [0-9]+[eE][+-]?[0-9]+[fF]?
      | [0-9]+[fF]
      | (?i:inf(?:inity)?|nan)[fF]?
    )""",
    re.VERBOSE,
)
_IDENT = re.compile(IDENT)
_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([xuU])|(.))",
    re.DOTALL,
)
_SIMPLE_ESCAPES = {
    "a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t",
    "v": b"\v", "\\": b"\\", "'": b"'", '"': b'"', "?": b"?",
}  # fmt: skip
_TRUE = frozenset({"true", "True", "t"})
_FALSE = frozenset({"false", "False", "f"})
_CLOSER = {"{": "}", "<": ">"}
# A "{" where a top-level field must start: a config saved as a Python dict or JSON.
_NOT_TEXT_FORMAT = (
    "this is a Python dict or JSON, not protobuf text format; write the config as text "
    "(model { ssd { ... } }), e.g. with google.protobuf.text_format.MessageToString(pipeline_config)"
)


class _Token(NamedTuple):
    kind: str  # string | number | ident | punct | end (the empty last token)
    text: str
    start: int
    end: int
    lead: int  # where the trivia before it starts: the token owns text[lead:end]


def _tokenize(src: _Source) -> list[_Token]:
    """Every token, the last one ``end`` with the file's trailing trivia."""
    text, tokens, pos = src.text, [], 0
    for match in _TOKEN.finditer(text):  # the last match is the "end" token
        if match.start() != pos:  # finditer skipped what no token matches
            raise _bad_character(src, _SKIP_TRIVIA.match(text, pos).end())  # type: ignore[union-attr]
        kind = match.lastgroup or ""
        start, end = match.span(kind)
        if len(tokens) == MAX_TOKENS:
            raise src.error(start, f"more than {MAX_TOKENS:,} tokens: too large for a config or label map")
        word = match[kind]
        if kind == "unterminated":
            raise src.error(start, "string is not closed on its line", text[start:].split("\n")[0])
        # Plain digits and strings without escapes are most values: skip the costly checks.
        if kind == "number" and not word.isdigit() and not (_INT.fullmatch(word) or _FLOAT.fullmatch(word)):
            raise src.error(start, "malformed number", word)
        if kind == "string" and "\\" in word:
            _unescape(word[1:-1], src, start + 1)  # reject bad escapes where they stand
        tokens.append(_Token(kind, word, start, end, pos))
        pos = end
        if kind == "end":  # after trailing trivia finditer would match "end" again, empty
            break
    return tokens


_MAX_INT_SPELLING = 32  # "-0x" and 22 octal digits spell 2**64; longer is no protobuf integer


def int_value(spelling: str) -> int | None:
    """The integer a number token spells (decimal, hex, leading-zero octal), or
    None when protobuf would not read it as one."""
    if len(spelling) > _MAX_INT_SPELLING:
        return None  # past any 64-bit field, and past int()'s digit limit
    if spelling.isdigit() and spelling[0] != "0":  # plain decimal: nearly every integer
        return int(spelling)
    if not _INT.fullmatch(spelling):
        return None
    digits = spelling.lstrip("-")
    sign = -1 if spelling.startswith("-") else 1
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits, 16)
    return sign * int(digits, 8 if len(digits) > 1 and digits[0] == "0" else 10)


def _bad_character(src: _Source, pos: int) -> ConfigError:
    char = src.text[pos]
    what = f"unexpected character {char!r} (U+{ord(char):04X} {unicodedata.name(char, '?')})"
    if unicodedata.category(char) in ("Pi", "Pf"):
        what += ": a typographic quote; write ' or \""
    return src.error(pos, what, src.text[pos:].split("\n")[0])


def _unescape(body: str, src: _Source, offset: int) -> bytes:
    """C-style escapes as protobuf reads them; ``offset`` locates ``body`` for errors.

    Unknown escapes such as ``\\T`` in ``"C:\\Temp"`` keep their backslash,
    as protobuf's Python parser (the one TensorFlow uses) does.
    """
    out, pos = bytearray(), 0
    for match in _ESCAPE.finditer(body):
        out += body[pos : match.start()].encode("utf-8")
        out += _escape_bytes(match, src, offset + match.start(), body[match.start() :])
        pos = match.end()
    out += body[pos:].encode("utf-8")
    return bytes(out)


def _escape_bytes(match: re.Match[str], src: _Source, offset: int, near: str) -> bytes:
    octal, hex2, hex4, hex8, truncated, simple = match.groups()
    if octal:
        if int(octal, 8) > 0xFF:
            raise src.error(offset, "octal escape above \\377", near)
        return bytes([int(octal, 8)])
    if hex2:
        return bytes([int(hex2, 16)])
    if truncated:
        raise src.error(offset, f"malformed \\{truncated} escape: in a path, write forward slashes "
                        "(C:/Users/...), which TensorFlow reads on Windows too, or \\\\ for a backslash", near)
    if simple is not None:
        return _SIMPLE_ESCAPES.get(simple, b"\\" + simple.encode("utf-8"))
    try:
        return chr(int(hex4 or hex8, 16)).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        raise src.error(offset, "escape is not a Unicode character", near) from None


# --------------------------------------------------------------------------
# Nodes


@dataclass(eq=False, kw_only=True, slots=True)
class Node:
    """A span of the source text and the tokens and nodes it is made of, in
    order; equality is identity."""

    src: _Source = field(repr=False)
    start: int
    end: int
    children: tuple[_Token | Node, ...] = field(repr=False)

    @property
    def line(self) -> int:
        return self.src.position(self.start)[0]

    @property
    def column(self) -> int:
        return self.src.position(self.start)[1]

    @property
    def text(self) -> str:
        """Exactly the source text of this node."""
        return self.src.text[self.start : self.end]

    def error(self, what: str, near: str | None = None) -> ConfigError:
        """A ConfigError located at this node, quoting its text unless told otherwise."""
        return self.src.error(self.start, what, self.text if near is None else near)


@dataclass(eq=False, kw_only=True, slots=True)
class Scalar(Node):
    """One value: a string (adjacent literals joined), a number or an identifier."""

    kind: str  # "string" | "number" | "identifier"

    @property
    def parts(self) -> tuple[str, ...]:
        """The literal tokens; several only for "a" "b"."""
        return tuple(token.text for token in self.children)  # type: ignore[union-attr]

    @property
    def value(self) -> Value:
        """The natural Python value: str; int or float as spelled; bool for
        true/false; float for inf/nan (as protobuf prints them); else Identifier."""
        if self.kind == "string":
            return self.as_str()
        if _INT.fullmatch(self.text):
            return self.as_int()
        if _FLOAT.fullmatch(self.text):
            return self.as_float()
        if self.text in ("true", "True", "false", "False"):
            return self.text.lower() == "true"
        return Identifier(self.text)

    def as_bytes(self) -> bytes:
        if self.kind != "string":
            raise self.error("expected a quoted string")
        return b"".join(_unescape(part[1:-1], self.src, self.start) for part in self.parts)

    def as_str(self) -> str:
        literal = self.children[0].text  # type: ignore[union-attr]
        if self.kind == "string" and len(self.children) == 1 and "\\" not in literal:
            return literal[1:-1]  # one literal, no escapes: most strings (every label map name)
        try:
            return self.as_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("string is not valid UTF-8 once unescaped") from None

    def as_int(self) -> int:
        value = int_value(self.text) if self.kind == "number" else None
        if value is None:
            raise self.error("expected an integer")
        return value

    def as_float(self) -> float:
        if self.kind == "string" or not _FLOAT.fullmatch(self.text):
            raise self.error("expected a floating-point number")  # identifiers pass as inf/nan
        spelling = self.text.lower()
        if spelling.endswith("f") and not spelling.endswith("inf"):
            spelling = spelling[:-1]
        return float(spelling)

    def as_bool(self) -> bool:
        if self.text in _TRUE or self.text == "1":
            return True
        if self.text in _FALSE or self.text == "0":
            return False
        raise self.error("expected true or false")

    def as_identifier(self) -> Identifier:
        if self.kind != "identifier":
            raise self.error("expected an unquoted enum value")
        return Identifier(self.text)


@dataclass(eq=False, kw_only=True, slots=True)
class Message(Node):
    """``{ fields }`` or ``< fields >``; the document root has no braces (``open == ""``)."""

    open: str
    fields: list[Field]

    @property
    def body_start(self) -> int:
        return self.start + len(self.open)


@dataclass(eq=False, kw_only=True, slots=True)
class ListValue(Node):
    """``[a, b]``: the items of one field written as a list."""

    items: list[Scalar | Message]


Item = Scalar | Message


@dataclass(eq=False, kw_only=True, slots=True)
class Field(Node):
    """``name: value`` or ``name { ... }``; ``end`` stops before a trailing ``,``/``;``."""

    name: str  # "train_config", or "[pkg.ext]" for an extension
    value: Scalar | Message | ListValue
    sep_end: int  # end including the trailing separator, if any

    @property
    def items(self) -> list[Item]:
        return list(self.value.items) if isinstance(self.value, ListValue) else [self.value]


# --------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, src: _Source) -> None:
        self.src = src
        self.tokens = _tokenize(src)
        self.pos = 0

    def document(self) -> Message:
        fields = self.fields(None, 0)
        end = self.take()  # the end token: the trivia after the last field
        return Message(src=self.src, start=0, end=len(self.src.text), children=(*fields, end), open="", fields=fields)

    # Only punctuation tokens can read "{", "}", "[", ":" ..., so comparing a
    # token's text is enough; accept() checks the kind for clarity anyway.

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, *texts: str) -> _Token | None:
        token = self.tokens[self.pos]
        if token.kind == "punct" and token.text in texts:
            self.pos += 1
            return token
        return None

    def fail(self, token: _Token, what: str) -> ConfigError:
        if token.kind == "end":
            return self.src.error(len(self.src.text), f"{what}, found the end of the file")
        return self.src.error(token.start, what, token.text)

    def fields(self, opener: _Token | None, depth: int) -> list[Field]:
        closer = _CLOSER[opener.text] if opener else "end of file"
        fields: list[Field] = []
        while True:
            token = self.peek()
            if token.kind == "end" and opener is not None:
                line = self.src.position(opener.start)[0]
                raise self.fail(token, f"'{opener.text}' opened on line {line} is not closed")
            if token.kind == "end" or token.text == closer:
                return fields
            fields.append(self.field(depth))

    def field(self, depth: int) -> Field:
        name_token = self.take()
        if name_token.kind == "ident":
            name, head = name_token.text, [name_token]
        elif name_token.text == "[":
            name, head = self.extension_name(name_token)
        elif depth == 0 and name_token.text == "{":
            raise self.fail(name_token, _NOT_TEXT_FORMAT)
        else:
            raise self.fail(name_token, "expected a field name")
        colon = self.accept(":")
        if colon is not None:
            head.append(colon)
        token = self.peek()
        value: Scalar | Message | ListValue
        if token.text in _CLOSER:
            value = self.message(depth + 1)
        elif token.text == "[":
            value = self.list_value(depth + 1, scalars=colon is not None)
        elif colon is not None:
            value = self.scalar((name, name_token.start))
        else:
            raise self.fail(token, f"expected ':' or '{{' after '{name}'")
        separator = self.accept(",", ";")
        tail = (separator,) if separator else ()
        return Field(
            src=self.src, start=name_token.start, end=value.end, children=(*head, value, *tail),
            name=name, value=value, sep_end=separator.end if separator else value.end,
        )  # fmt: skip

    def extension_name(self, opener: _Token) -> tuple[str, list[_Token]]:
        tokens = [opener, self.identifier()]
        while separator := self.accept(".", "/"):
            tokens += [separator, self.identifier()]
        closer = self.accept("]")
        if closer is None:
            raise self.fail(self.peek(), "expected ']' to end the extension name")
        return "".join(token.text for token in tokens) + "]", [*tokens, closer]

    def identifier(self) -> _Token:
        token = self.peek()
        if token.kind != "ident":
            raise self.fail(token, "expected a name")
        return self.take()

    def message(self, depth: int) -> Message:
        opener = self.take()
        if depth > _MAX_DEPTH:
            raise self.fail(opener, f"messages nested deeper than {_MAX_DEPTH} levels")
        fields = self.fields(opener, depth)
        closer = self.take()
        return Message(
            src=self.src, start=opener.start, end=closer.end, children=(opener, *fields, closer),
            open=opener.text, fields=fields,
        )  # fmt: skip

    def list_value(self, depth: int, scalars: bool) -> ListValue:
        opener = self.take()
        children: list[_Token | Node] = [opener]
        items: list[Item] = []
        closer = self.accept("]")
        if closer is None:
            items.append(self.list_item(depth, scalars))
            children.append(items[-1])
            while comma := self.accept(","):
                items.append(self.list_item(depth, scalars))
                children += [comma, items[-1]]
            closer = self.accept("]")
            if closer is None:
                raise self.fail(self.peek(), "expected ',' or ']' in the list")
        children.append(closer)
        return ListValue(src=self.src, start=opener.start, end=closer.end, children=tuple(children), items=items)

    def list_item(self, depth: int, scalars: bool) -> Item:
        token = self.peek()
        if token.text in _CLOSER:
            return self.message(depth)
        if not scalars:
            raise self.fail(token, "a list of values needs ':' after the field name")
        return self.scalar(None)

    def scalar(self, owner: tuple[str, int] | None) -> Scalar:
        """A value; ``owner`` (field name, offset) lets errors point at its field."""
        token = self.peek()
        if token.kind in ("punct", "end"):
            raise self.no_value(owner, token)
        parts = [self.take()]
        while token.kind == "string" and self.peek().kind == "string":
            parts.append(self.take())
        following = self.peek()
        if owner and token.kind == "ident" and following.kind == "punct" and following.text in (":", "{", "<"):
            # `batch_size:` left empty swallows the next line's field name.
            line = self.src.position(token.start)[0]
            raise self.no_value(owner, None, f" (line {line} starts field '{token.text}')")
        kind = "identifier" if token.kind == "ident" else token.kind
        return Scalar(src=self.src, start=token.start, end=parts[-1].end, children=tuple(parts), kind=kind)

    def no_value(
        self, owner: tuple[str, int] | None, found: _Token | None, why: str = ""
    ) -> ConfigError:
        if owner is None:  # a list item: no field name to point at
            return self.fail(found, "expected a value")  # type: ignore[arg-type]
        name, offset = owner
        near = found.text if found and found.kind != "end" else f"{name}:"
        return self.src.error(offset, f"'{name}' has no value{why}", near)


def parse(text: str, source: str = "<string>") -> Document:
    """The document for ``text``; ``source`` names it in error messages."""
    return Document(text, source)


def parse_file(path: str | PathLike[str], what: str = "config") -> Document:
    """Read a UTF-8 file (CRLF kept) and parse it, naming the path in errors."""
    return parse(read_text(path, what), str(path))


def read_text(path: str | PathLike[str], what: str = "config") -> str:
    """A file's text exactly: no newline translation, and ConfigError for bad
    bytes, for anything but a regular file, or past MAX_INPUT_BYTES."""
    name = str(path)
    data = read_input(name, what, error=lambda message: ConfigError(message, name))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        src = _Source.of(good, name)
        raise src.error(len(good), f"not UTF-8 text: byte 0x{data[exc.start]:02x}") from None


# --------------------------------------------------------------------------
# Paths


@dataclass(frozen=True)
class _Step:
    name: str
    index: int | None


_PATH_STEP = re.compile(r"(\[[A-Za-z0-9_./]+\]|[A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]+)\])?")


def _parse_path(path: str) -> list[_Step]:
    """``a.b[2].[ext.name].c`` -> steps; extension names keep their brackets."""
    steps, pos = [], 0
    while True:
        match = _PATH_STEP.match(path, pos)
        if match is None:
            raise UsageError(f"invalid field path {path!r} at character {pos + 1}")
        steps.append(_Step(match[1], int(match[2]) if match[2] else None))
        pos = match.end()
        if pos == len(path):
            return steps
        if path[pos] != ".":
            raise UsageError(f"invalid field path {path!r} at character {pos + 1}")
        pos += 1


def _occurrences(message: Message, name: str) -> list[tuple[Field, Item]]:
    """Every value of ``name`` in ``message``: repeated lines and list items alike."""
    return [(f, item) for f in message.fields if f.name == name for item in f.items]


# --------------------------------------------------------------------------
# Document


@dataclass(frozen=True)
class Style:
    """How the file writes new lines: line ending, indent unit, quote character."""

    eol: str
    indent: str
    quote: str


@dataclass(frozen=True)
class _Splice:
    start: int
    end: int
    text: str


_REST_OF_LINE_BLANK = re.compile(r"[ \t\f\v\r]*(?:#[^\n]*)?(?:\n|\Z)")


class Document:
    """A parsed text-format file that edits like a careful human would."""

    def __init__(self, text: str, source: str = "<string>") -> None:
        self.source = source
        self._load(text)

    def _load(self, text: str) -> None:
        self.root = _Parser(_Source.of(text, self.source)).document()
        self._style: Style | None = None
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The text rebuilt from the tree: each token with the trivia before it."""
        if self._text is None:
            tokens: list[_Token] = []
            _collect_tokens(self.root, tokens)
            source = self.root.src.text
            self._text = "".join(source[token.lead : token.end] for token in tokens)
        return self._text

    def __str__(self) -> str:
        return self.text

    def __contains__(self, path: str) -> bool:
        return bool(self._resolve(_parse_path(path)))

    # -- reading

    def nodes(self, path: str) -> list[Item]:
        """Every node at ``path``. A step without an index takes all its
        occurrences (repeated fields and ``[a, b]`` items); ``name[i]`` takes
        the i-th within each parent."""
        return [item for _, item in self._resolve(_parse_path(path))]

    def get(self, path: str, default: Value | None = None) -> Value | None:
        """The one value at ``path``, or ``default`` when the field is absent.

        ConfigError when the path holds a message or several values (then use
        ``get_all`` or an index): a caller never silently gets one of many.
        """
        items = self.nodes(path)
        if not items:
            return default
        if len(items) > 1:
            lines = ", ".join(str(item.line) for item in items[:5])
            what = f"'{path}' has {len(items)} values (lines {lines}); use get_all or an index"
            raise items[1].error(what)
        return _scalar(items[0], path).value

    def get_all(self, path: str) -> list[Value]:
        """All values at ``path`` (repeated lines and list items), in file order."""
        return [_scalar(item, path).value for item in self.nodes(path)]

    def walk(self) -> Iterator[tuple[str, Scalar]]:
        """Every scalar with a path that ``get``/``set`` resolve to exactly it."""
        yield from _walk(self.root, "")

    # -- editing

    def set(self, path: str, value: NewValue) -> None:
        """Replace the one value at ``path``, or insert the field (and any
        missing parent messages) beside its closest-named sibling, in the
        file's indentation, line ending and quote style."""
        steps = _parse_path(path)
        found = self._resolve(steps)
        if len(found) > 1:
            raise found[1][1].error(f"'{path}' has {len(found)} values; use set_all or an index")
        if found:
            node = _scalar(found[0][1], path)
            self._apply([_Splice(node.start, node.end, self._spell(value, _quote_of(node)))])
            return
        parent, missing = self._parent_for_insert(steps, path)
        leaf = f"{steps[-1].name}: {self._spell(value, None)}"
        self._apply([self._insertion(parent, missing or [steps[-1].name], _nest(missing, [leaf]))])

    def set_all(self, path: str, values: Sequence[NewValue]) -> None:
        """Make the repeated scalar at ``path`` hold exactly ``values``.

        ``[a, b]`` list syntax stays a list; repeated lines become one line per
        value where the first one stood; an empty sequence deletes the field.
        """
        steps = _parse_path(path)
        if steps[-1].index is not None:
            raise UsageError(f"set_all takes a repeated field, not one element: {path!r}")
        parent, missing = self._parent_for_insert(steps, path)
        name = steps[-1].name
        fields = [] if missing else [f for f in parent.fields if f.name == name]
        scalars = [_scalar(item, path) for f in fields for item in f.items]
        quote = next((_quote_of(s) for s in scalars if s.kind == "string"), None)
        spelled = [self._spell(value, quote) for value in values]
        lines = [f"{name}: {text}" for text in spelled]
        if not fields:
            if lines:
                self._apply([self._insertion(parent, missing or [name], _nest(missing, lines))])
            return
        if not spelled:
            self._apply([self._removal(f) for f in fields])
            return
        self._apply([self._rewrite(fields[0], spelled, lines)] + [self._removal(f) for f in fields[1:]])

    def delete(self, path: str) -> int:
        """Remove every field at ``path`` (whole lines where they stand alone,
        with their end-of-line comments); returns how many were removed."""
        steps = _parse_path(path)
        found = self._resolve(steps)
        fields = list(dict.fromkeys(f for f, _ in found))
        if steps[-1].index is not None and any(isinstance(f.value, ListValue) for f in fields):
            raise fields[0].error(f"'{path}' is one item of a list; use set_all to change the list")
        if fields:
            self._apply([self._removal(f) for f in fields])
        return len(fields)

    # -- internals

    def _resolve(self, steps: list[_Step]) -> list[tuple[Field, Item]]:
        messages = [self.root]
        found: list[tuple[Field, Item]] = []
        for depth, step in enumerate(steps):
            found = []
            for message in messages:
                occurrences = _occurrences(message, step.name)
                found += occurrences if step.index is None else occurrences[step.index : step.index + 1]
            if depth < len(steps) - 1:
                messages = [_message(item, step.name) for _, item in found]
        return found

    def _parent_for_insert(self, steps: list[_Step], path: str) -> tuple[Message, list[str]]:
        """The message to insert the leaf into, and the names of the messages
        still to create under it (then the leaf goes into the innermost)."""
        message = self.root
        for depth, step in enumerate(steps):
            occurrences = [item for _, item in _occurrences(message, step.name)]
            chosen = occurrences if step.index is None else occurrences[step.index : step.index + 1]
            if depth == len(steps) - 1 or not chosen:
                _check_appendable(steps[depth:], len(occurrences), message, path)
                return message, [s.name for s in steps[depth:-1]]
            if len(chosen) > 1:
                what = f"'{step.name}' occurs {len(chosen)} times; name one with an index in '{path}'"
                raise chosen[1].error(what)
            message = _message(chosen[0], step.name)
        raise AssertionError("unreachable: the loop returns at the last step")

    @property
    def style(self) -> Style:
        if self._style is None:
            self._style = _detect_style(self.root)
        return self._style

    def _spell(self, value: NewValue, quote: str | None) -> str:
        if isinstance(value, enum.Enum):
            value = Identifier(value.name)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, Identifier):
            if not _IDENT.fullmatch(value):
                raise UsageError(f"not an enum identifier: {value!r}")
            return str(value)
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return _spell_float(value)
        if isinstance(value, str):
            return _quote(value, quote or self.style.quote)
        raise TypeError(f"cannot write a {type(value).__name__} into a config: {value!r}")

    def _insertion(self, parent: Message, names: list[str], lines: list[tuple[int, str]]) -> _Splice:
        """Where and how a new field goes: on its own line after its anchor
        sibling when that sibling ends its line, else inline after it."""
        text = self.text
        anchor = _anchor(parent.fields, names[0])
        if anchor is not None:
            pos = anchor.sep_end
        else:
            pos = parent.body_start if parent.open else len(text)
        if not _REST_OF_LINE_BLANK.match(text, pos):
            pad = " " if text[pos : pos + 1] in ("}", ">") else ""
            return _Splice(pos, pos, " " + " ".join(line for _, line in lines) + pad)
        indent = self._indent_for(parent, anchor)
        block = self.style.eol.join(indent + self.style.indent * depth + line for depth, line in lines)
        line_end = _line_end(text, pos)
        if line_end == len(text) and text and not text.endswith("\n"):
            return _Splice(line_end, line_end, self.style.eol + block)  # keep "no final newline"
        return _Splice(line_end, line_end, block + self.style.eol)

    def _indent_for(self, parent: Message, anchor: Field | None) -> str:
        if anchor is not None and _starts_line(self.text, anchor.start):
            return _line_indent(self.text, anchor.start)
        if not parent.open:
            return ""
        return _line_indent(self.text, parent.start) + self.style.indent

    def _rewrite(self, first: Field, spelled: list[str], lines: list[str]) -> _Splice:
        """``first`` rewritten to hold all values, in its own syntax."""
        if isinstance(first.value, ListValue):
            return _Splice(first.value.start, first.value.end, "[" + ", ".join(spelled) + "]")
        if _starts_line(self.text, first.start):
            joiner = self.style.eol + _line_indent(self.text, first.start)
        else:
            joiner = " "
        return _Splice(first.start, first.end, joiner.join(lines))

    def _removal(self, target: Field) -> _Splice:
        """Whole lines when the field stands alone on them, else just its text."""
        text, start, end = self.text, target.start, target.sep_end
        line_start = text.rfind("\n", 0, start) + 1
        if _starts_line(text, start) and _REST_OF_LINE_BLANK.match(text, end):
            line_end = _line_end(text, end)
            if line_end == len(text) and not text.endswith("\n") and line_start > 0:
                line_start -= 2 if text[line_start - 2 : line_start] == "\r\n" else 1
            return _Splice(line_start, line_end, "")
        after = _hspace_end(text, end)
        if after < len(text) and text[after] not in "\r\n":
            return _Splice(start, after, "")
        before = start
        while before > line_start and text[before - 1] in " \t":
            before -= 1
        return _Splice(before, after, "")

    def _apply(self, splices: list[_Splice]) -> None:
        text = self.text
        merged: list[_Splice] = []
        for splice in sorted(splices, key=lambda s: (s.start, s.end)):
            if merged and splice.start < merged[-1].end:
                # Two removals on one line may overlap by the space between them.
                if splice.text or merged[-1].text:
                    raise AssertionError(f"overlapping edits {merged[-1]} and {splice}")
                merged[-1] = _Splice(merged[-1].start, max(merged[-1].end, splice.end), "")
            else:
                merged.append(splice)
        for splice in reversed(merged):
            text = text[: splice.start] + splice.text + text[splice.end :]
        self._load(text)


def _collect_tokens(node: Node, tokens: list[_Token]) -> None:
    for child in node.children:
        if isinstance(child, Node):
            _collect_tokens(child, tokens)
        else:
            tokens.append(child)


def _walk(message: Message, prefix: str) -> Iterator[tuple[str, Scalar]]:
    occurrences = [(f.name, item) for f in message.fields for item in f.items]
    counts = Counter(name for name, _ in occurrences)
    seen: Counter[str] = Counter()
    for name, item in occurrences:
        path = f"{prefix}{name}[{seen[name]}]" if counts[name] > 1 else prefix + name
        seen[name] += 1
        if isinstance(item, Message):
            yield from _walk(item, path + ".")
        else:
            yield path, item


def _scalar(item: Item, path: str) -> Scalar:
    if isinstance(item, Message):
        raise item.error(f"'{path}' is a message, not a value")
    return item


def _message(item: Item, name: str) -> Message:
    if isinstance(item, Scalar):
        raise item.error(f"'{name}' is a value, not a message")
    return item


def _check_appendable(steps: list[_Step], present: int, parent: Message, path: str) -> None:
    """A new occurrence may only be ``name`` or ``name[count]``: no gaps.

    ``present`` counts the first step's occurrences; the later steps will be
    created empty, so only index 0 (or none) fits them."""
    for step, count in zip(steps, [present] + [0] * (len(steps) - 1)):
        if step.index is not None and step.index != count:
            where = "the file" if not parent.open else f"line {parent.line}"
            raise parent.error(
                f"cannot create '{step.name}[{step.index}]' for '{path}': {count} present in {where}", ""
            )


def _nest(parents: list[str], leaves: list[str]) -> list[tuple[int, str]]:
    """Lines (depth, text) of ``leaves`` wrapped in new ``parents`` messages."""
    depth = len(parents)
    return (
        [(d, f"{name} {{") for d, name in enumerate(parents)]
        + [(depth, leaf) for leaf in leaves]
        + [(d, "}") for d in reversed(range(depth))]
    )


def _anchor(fields: list[Field], name: str) -> Field | None:
    """The sibling a new field goes after: the last one sharing the most
    leading words (``fine_tune_checkpoint_version`` lands beside
    ``fine_tune_checkpoint_type``), else the last field."""
    words = name.split("_")
    best, best_shared = None, 0
    for sibling in fields:
        shared = 0
        for mine, theirs in zip(words, sibling.name.split("_")):
            if mine != theirs:
                break
            shared += 1
        if shared and shared >= best_shared:
            best, best_shared = sibling, shared
    return best or (fields[-1] if fields else None)


def _detect_style(root: Message) -> Style:
    text = root.src.text
    crlf = text.count("\r\n")
    eol = "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"
    indents: Counter[str] = Counter()
    quotes: Counter[str] = Counter()
    stack = [root]
    while stack:
        message = stack.pop()
        parent_indent = _line_indent(text, message.start)
        for f in message.fields:
            own = _line_indent(text, f.start)
            # Root fields have no parent to measure against; a tab/space mix
            # (``own`` not extending the parent's indent) says nothing about the unit.
            if message.open and _starts_line(text, f.start) and own.startswith(parent_indent):
                indents[own[len(parent_indent) :]] += 1
            for item in f.items:
                if isinstance(item, Message):
                    stack.append(item)
                elif item.kind == "string":
                    quotes[item.parts[0][0]] += 1
    indents.pop("", None)
    indent = indents.most_common(1)[0][0] if indents else "  "
    quote = "'" if quotes["'"] > quotes['"'] else '"'
    return Style(eol, indent, quote)


def _line_indent(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    return text[start : _hspace_end(text, start)]


def _hspace_end(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _starts_line(text: str, offset: int) -> bool:
    start = text.rfind("\n", 0, offset) + 1
    return not text[start:offset].strip()


def _line_end(text: str, offset: int) -> int:
    newline = text.find("\n", offset)
    return len(text) if newline < 0 else newline + 1


def _quote_of(node: Scalar) -> str | None:
    return node.parts[0][0] if node.kind == "string" else None


def _quote(value: str, quote: str) -> str:
    escaped = value.translate(_ESCAPES_FOR[quote])
    return f"{quote}{escaped}{quote}"


def _escape_table(quote: str) -> dict[int, str]:
    table = {code: f"\\{code:03o}" for code in [*range(0x20), 0x7F]}
    table.update({ord("\\"): "\\\\", ord(quote): "\\" + quote, 10: "\\n", 13: "\\r", 9: "\\t"})
    return table


_ESCAPES_FOR = {quote: _escape_table(quote) for quote in "\"'"}


def _spell_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)  # shortest spelling that reads back to the same float


# --------------------------------------------------------------------------
# Pipeline helpers


@dataclass(frozen=True)
class Found:
    """A scalar found by ``find_all``, with the path that reaches it."""

    path: str
    node: Scalar

    @property
    def line(self) -> int:
        return self.node.line


def find_all(doc: Document, predicate: Callable[[str, Scalar], bool]) -> list[Found]:
    """Every scalar for which ``predicate(path, node)`` holds, in file order."""
    return [Found(path, node) for path, node in doc.walk() if predicate(path, node)]


def find_placeholders(doc: Document, marker: str = PLACEHOLDER) -> list[Found]:
    """Strings containing ``marker`` and bare identifiers equal to it.

    Tested on the literal text so a value with a broken escape is still found.
    """

    def holds(_path: str, node: Scalar) -> bool:
        return node.kind in ("string", "identifier") and marker in node.text

    return find_all(doc, holds)


def meta_architecture(doc: Document) -> str:
    """The one message inside ``model``: ``ssd``, ``faster_rcnn``, ``center_net`` ..."""
    models = doc.nodes("model")
    if not models:
        raise ConfigError(f"{doc.source}: no 'model' block", doc.source)
    if len(models) > 1:
        raise models[1].error(f"'model' given {len(models)} times")
    model = _message(models[0], "model")
    inner = [f.name for f in model.fields if isinstance(f.value, Message)]
    if len(inner) != 1:
        found = ", ".join(inner) or "none"
        raise model.error(f"'model' must hold exactly one meta-architecture block, found: {found}")
    return inner[0]


def num_classes_path(doc: Document) -> str:
    """Where this config keeps ``num_classes``, e.g. ``model.center_net.num_classes``."""
    return f"model.{meta_architecture(doc)}.num_classes"
