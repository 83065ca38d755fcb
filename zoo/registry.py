"""The model registry: which zoo models exist, where they live, what they are.

The built-in ``registry.json`` ships inside the wheel; teams layer their own
files on top (``ZOO_REGISTRY``, ``--registry``). Later files win per model.
Validation is strict and every error names the file, the entry and the field.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import RegistryError, UnknownModelError
from zoo.fsutil import read_input

FAMILIES = ("tf2-detection", "tf2-classification", "tf1-detection")
DETECTION_FAMILIES = frozenset({"tf2-detection", "tf1-detection"})
FORMAT = 1

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# Names and aliases become cache directory names, from any registry file:
# one plain path component, so none can climb out of the cache or hide a file.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME_RULE = "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"
_URL_SCHEMES = ("http://", "https://", "file://", "/")


@dataclass(frozen=True)
class SampleConfig:
    path: str
    url: str
    commit: str | None = None  # the upstream commit ``url`` is pinned to

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "commit": self.commit, "url": self.url}


@dataclass(frozen=True)
class Model:
    name: str
    family: str
    url: str
    aliases: tuple[str, ...] = ()
    checkpoint: str | None = None
    sample_config: SampleConfig | None = None
    sample_config_note: str | None = None  # why there is no usable sample config
    meta_architecture: str | None = None
    feature_extractor: str | None = None
    input_size: tuple[int, int] | None = None
    coco_map: str | None = None
    metric: str | None = None  # the table column coco_map came from; None: "COCO mAP"
    speed_ms: float | None = None
    speed_device: str | None = None  # where speed_ms was measured; None: the zoo's desktop GPU
    display_name: str | None = None  # the zoo table's title, e.g. "EfficientDet D6 1280x1280"
    outputs: str | None = None
    sha256: str | None = None
    size: int | None = None
    source: str = ""

    @property
    def is_detection(self) -> bool:
        return self.family in DETECTION_FAMILIES

    @property
    def trainer(self) -> str:
        """The trainer its checkpoint is for: TF1 checkpoints are name-based."""
        return "tf1" if self.family == "tf1-detection" else "tf2"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "aliases": list(self.aliases),
            "family": self.family,
            "url": self.url,
            "checkpoint": self.checkpoint,
            "sample_config": self.sample_config.to_dict() if self.sample_config else None,
            "sample_config_note": self.sample_config_note,
            "meta_architecture": self.meta_architecture,
            "feature_extractor": self.feature_extractor,
            "input_size": list(self.input_size) if self.input_size else None,
            "coco_map": self.coco_map,
            "metric": self.metric,
            "speed_ms": self.speed_ms,
            "speed_device": self.speed_device,
            "outputs": self.outputs,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
        }


def builtin_registry_path() -> Path:
    """registry.json beside this module: the file in a wheel, a link to the
    checkout's top-level registry.json in the repository."""
    return Path(__file__).resolve().parent / "registry.json"


class Registry:
    """Models by canonical name, with alias and case-insensitive lookup."""

    def __init__(self, models: dict[str, Model], defaults: dict[str, str]) -> None:
        self.models = models
        self.defaults = defaults
        self._aliases = _alias_groups(models.values())

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def resolve(self, name: str) -> Model:
        """Exact name, then alias, then either of them ignoring case."""
        found = self._exact(name) or self._exact_casefold(name)
        if found is None:
            raise UnknownModelError(name, self.suggest(name))
        return found

    def variants(self, model: Model) -> list[Model]:
        """Other models sharing one of this model's aliases."""
        names = {n for alias in model.aliases for n in self._aliases.get(alias, ())}
        return [self.models[n] for n in sorted(names) if n != model.name]

    def alias_default(self, alias: str) -> str | None:
        claimers = self._aliases.get(alias, [])
        if len(claimers) == 1:
            return claimers[0]
        return self.defaults.get(alias)

    def suggest(self, name: str, limit: int = 5) -> list[str]:
        keys = list(self.models) + list(self._aliases)
        lowered = {k.lower(): k for k in keys}
        query = name.lower()
        close = difflib.get_close_matches(query, list(lowered), n=limit, cutoff=0.6)
        containing = sorted((k for k in lowered if query and query in k), key=len)
        picked = list(dict.fromkeys(close + containing))[:limit]
        return [lowered[k] for k in picked]

    def _exact(self, name: str) -> Model | None:
        if name in self.models:
            return self.models[name]
        target = self.alias_default(name)
        return self.models[target] if target else None

    def _exact_casefold(self, name: str) -> Model | None:
        folded = name.casefold()
        for key in list(self.models) + list(self._aliases):
            if key.casefold() == folded:
                return self._exact(key)
        return None


def load_registry(extra_files: Iterable[Path] = ()) -> Registry:
    """The built-in registry with each extra file layered on top, in order.

    An entry naming a model an earlier file defined changes only the fields
    it gives, so a team can pin ``sha256`` and ``size`` or point ``url`` at
    an internal copy without repeating the rest.
    """
    raw: dict[str, dict[str, Any]] = {}
    models: dict[str, Model] = {}
    defaults: dict[str, str] = {}
    for path in (builtin_registry_path(), *extra_files):
        entries, file_defaults = read_registry_file(Path(path))
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            where = _Where(str(path)).entry(index, entry)
            merged = {**raw.get(str(entry.get("name")), {}), **entry} if isinstance(entry, dict) else entry
            model = _parse_model(merged, where)
            if model.name in seen:
                raise where.error(f"duplicate model name {model.name!r}")
            seen.add(model.name)
            raw[model.name], models[model.name] = merged, model
        defaults.update(file_defaults)
        _check_aliases(models, defaults, str(path))
    return Registry(models, defaults)


def read_registry_file(path: Path) -> tuple[list[Any], dict[str, str]]:
    try:
        text = read_input(path, "registry file", error=lambda message: RegistryError(message, path=path)).decode()
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}",
                            path=path) from None  # fmt: skip
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", path=path
        ) from None
    return parse_document(data, str(path))


def parse_document(data: Any, source: str) -> tuple[list[Any], dict[str, str]]:
    """Check the document's shape; entries are checked as they are layered."""
    where = _Where(source)
    if not isinstance(data, dict):
        raise where.error("top level must be a JSON object")
    _no_unknown_keys(data, {"format", "defaults", "models"}, where)
    if data.get("format") != FORMAT:
        raise where.error(f"field 'format' must be {FORMAT}, got {data.get('format')!r}")
    entries = data.get("models")
    if not isinstance(entries, list):
        raise where.error("field 'models' must be a list")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in defaults.items()
    ):
        raise where.error("field 'defaults' must map alias names to model names")
    return entries, dict(defaults)


class _Where:
    """Builds error messages that say where in which file a problem is."""

    def __init__(self, source: str, entry: str = "") -> None:
        self.source = source
        self.entry_label = entry

    def entry(self, index: int, entry: Any) -> _Where:
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"models[{index}]" + (f" ({name})" if isinstance(name, str) else "")
        return _Where(self.source, label)

    def error(self, message: str, field: str | None = None) -> RegistryError:
        parts = [self.source]
        if self.entry_label:
            parts.append(self.entry_label)
        if field:
            parts.append(f"field '{field}'")
        return RegistryError(": ".join(parts) + ": " + message, path=self.source)


_MODEL_KEYS = {
    "name", "display_name", "aliases", "family", "url", "checkpoint", "sample_config", "sample_config_note",
    "meta_architecture", "feature_extractor", "input_size", "coco_map", "metric",
    "speed_ms", "speed_device", "outputs", "sha256", "size",
}  # fmt: skip


def _parse_model(entry: Any, where: _Where) -> Model:
    if not isinstance(entry, dict):
        raise where.error("each model must be a JSON object")
    _no_unknown_keys(entry, _MODEL_KEYS, where)
    name = entry.get("name")
    if not isinstance(name, str) or not _is_name(name):
        raise where.error(f"{_NAME_RULE}; got {name!r}", "name")
    family = _text(entry, "family", where, required=True)
    if family not in FAMILIES:
        raise where.error(f"must be one of {', '.join(FAMILIES)}; got {family!r}", "family")
    return Model(
        name=name,
        family=family,
        url=_url(entry.get("url"), where, "url"),
        aliases=_aliases(entry.get("aliases", []), where),
        checkpoint=_relative_path(entry, "checkpoint", where),
        sample_config=_sample_config(entry.get("sample_config"), where),
        sample_config_note=_sample_config_note(entry, where),
        meta_architecture=_text(entry, "meta_architecture", where),
        feature_extractor=_text(entry, "feature_extractor", where),
        input_size=_input_size(entry.get("input_size"), where),
        coco_map=_text(entry, "coco_map", where),
        metric=_text(entry, "metric", where),
        speed_ms=_number(entry.get("speed_ms"), where, "speed_ms"),
        speed_device=_text(entry, "speed_device", where),
        display_name=_text(entry, "display_name", where),
        outputs=_text(entry, "outputs", where),
        sha256=_sha256(entry.get("sha256"), where),
        size=_size(entry.get("size"), where),
        source=where.source,
    )


def _no_unknown_keys(obj: dict[str, Any], allowed: set[str], where: _Where) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise where.error(
            f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _text(entry: dict[str, Any], key: str, where: _Where, required: bool = False) -> Any:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise where.error(f"must be a non-empty string, got {value!r}", key)
    return _printable(value, where, key)


def _url(value: Any, where: _Where, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(_URL_SCHEMES):
        raise where.error(f"must be an http(s):// or file:// URL or an absolute path, got {value!r}", key)
    return _printable(value, where, key)


def _printable(value: str, where: _Where, key: str) -> str:
    # Registry text reaches the terminal (zoo info, warnings): no escape sequences, no NULs.
    if _CONTROL.search(value):
        raise where.error(f"must not hold control characters, got {value!r}", key)
    return value


def _is_name(value: str) -> bool:
    return bool(_NAME.fullmatch(value)) and ".." not in value


def _aliases(value: Any, where: _Where) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise where.error("must be a list of non-empty strings", "aliases")
    for alias in value:
        if not _is_name(alias):
            raise where.error(f"{_NAME_RULE}; got {alias!r}", "aliases")
    if len(set(value)) != len(value):
        raise where.error("lists an alias twice", "aliases")
    return tuple(value)


def _relative_path(entry: dict[str, Any], key: str, where: _Where) -> str | None:
    value = _text(entry, key, where)
    if value is not None and (value.startswith("/") or ".." in value.split("/")):
        raise where.error(f"must be a relative path inside the archive, got {value!r}", key)
    return value


def _sample_config(value: Any, where: _Where) -> SampleConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"path", "url"} <= set(value) <= {"path", "commit", "url"}:
        raise where.error("must be null or an object with 'path', 'url' and optionally 'commit'", "sample_config")
    if not isinstance(value["path"], str) or not value["path"]:
        raise where.error("path must be a non-empty string", "sample_config")
    url = _url(value["url"], where, "sample_config.url")
    commit = value.get("commit")
    if commit is not None and (not isinstance(commit, str) or not _COMMIT.fullmatch(commit) or commit not in url):
        # A commit the URL does not name would let the two disagree about which file is meant.
        raise where.error(f"commit must be 40 lowercase hex digits that the url names, got {commit!r}",
                          "sample_config")  # fmt: skip
    return SampleConfig(value["path"], url, commit)


def _sample_config_note(entry: dict[str, Any], where: _Where) -> str | None:
    note = _text(entry, "sample_config_note", where)
    # Only a missing config needs explaining; a layered file that adds one need not clear the note.
    return note if entry.get("sample_config") is None else None


def _input_size(value: Any, where: _Where) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise where.error(f"must be [height, width] positive integers, got {value!r}", "input_size")
    return (value[0], value[1])


def _number(value: Any, where: _Where, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise where.error(f"must be a non-negative number, got {value!r}", key)
    return value


def _sha256(value: Any, where: _Where) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise where.error(f"must be 64 lowercase hex digits or null, got {value!r}", "sha256")
    return value


def _size(value: Any, where: _Where) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise where.error(f"must be a positive integer (bytes) or null, got {value!r}", "size")
    return value


def _alias_groups(models: Iterable[Model]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for model in models:
        for alias in model.aliases:
            groups.setdefault(alias, []).append(model.name)
    return groups


def _check_aliases(models: dict[str, Model], defaults: dict[str, str], source: str) -> None:
    """Every name must lead to exactly one model once this file is layered in."""
    where = _Where(source)
    groups = _alias_groups(models.values())
    for alias, claimers in groups.items():
        if alias in models:
            raise where.error(f"alias {alias!r} of {claimers[0]} is also a model name")
        if len(claimers) > 1 and defaults.get(alias) not in claimers:
            raise where.error(
                f"alias {alias!r} is shared by {', '.join(claimers)}; "
                "'defaults' must name one of them"
            )
    for alias, target in defaults.items():
        if alias not in groups:
            raise where.error(f"defaults: {alias!r} is not an alias of any model")
        if target not in groups[alias]:
            raise where.error(f"defaults: {alias!r} -> {target!r} is not a model with that alias")
