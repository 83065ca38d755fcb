"""Where a file can be fetched from: mirrors first, then its upstream URL, each
with what its bytes must be.

A mirror holds each file at ``<host>/<path>`` of its upstream URL under the
mirror's base (the layout ``wget -x`` makes), so any static file server over
a copied directory, or the directory itself, serves as a mirror. Its index,
``zoo-mirror.json``, lists every file's upstream URL, sha256 and size and the
registry entries it covers; a client that finds it pins what it downloads
from that mirror, so a download through a mirror is verified end to end even
for models the registry does not pin.

The zoo's own hosts are always fetched over https://, even where the registry
says http://: the registry's URL stays the file's identity (mirror layout,
lock files, cache entries), only the connection changes.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from zoo.errors import IntegrityError
from zoo.fsutil import MAX_INPUT_BYTES, check_key, read_input, read_limited
from zoo.settings import Settings

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class Pin:
    """What the bytes must be, where something (registry, lock, mirror) says so."""

    sha256: str | None = None
    size: int | None = None
    # Base64, as Cloud Storage's x-goog-hash sends them (CRC32C big-endian).
    crc32c: str | None = None
    md5: str | None = None

    def merge(self, other: Pin) -> Pin | None:
        """Both pins at once, or None where they contradict each other."""
        pairs = list(zip(astuple(self), astuple(other)))
        if any(_clash(a, b) for a, b in pairs):
            return None
        return Pin(*(a if a is not None else b for a, b in pairs))


def _clash(a: object, b: object) -> bool:
    return a is not None and b is not None and a != b


# How a cached file's bytes were verified, as its cache entry records it.
PINNED = "pinned sha256"  # the registry or a lock file
MIRROR_INDEX = "mirror index sha256"
SERVER = "server"  # + the hashes the server sent: "server crc32c+md5"
FIRST_USE = "none: recorded on first use"


@dataclass(frozen=True)
class Source:
    """One place to fetch a file from, with what its bytes must be and who
    says so (``sha256_from``: PINNED or MIRROR_INDEX)."""

    url: str
    pin: Pin = Pin()
    sha256_from: str = PINNED


class Scheme(enum.Enum):
    """How a URL is read: the one place that dispatches on a URL's scheme."""

    LOCAL = "local"  # file:// and plain paths: reading opens no connection
    HTTP = "http"  # http:// and https://, through requests
    FSSPEC = "fsspec"  # anything else (s3://, gs:// ...), through fsspec


def scheme_of(url: str) -> Scheme:
    if url.startswith(("http://", "https://")):
        return Scheme.HTTP
    return Scheme.LOCAL if is_local(url) else Scheme.FSSPEC


def is_local(url: str) -> bool:
    """True for file:// URLs and plain paths: reading them opens no connection."""
    return url.startswith("file://") or "://" not in url


def local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    return Path(url)


def mirror_relative(upstream: str) -> str:
    """Where ``upstream`` sits inside any mirror: ``<host>/<path>``."""
    parts = urlsplit(upstream)
    if is_local(upstream):
        return "localhost/" + local_path(upstream).as_posix().lstrip("/")
    return parts.netloc.lower() + "/" + unquote(parts.path).lstrip("/")


def mirror_url(base: str, upstream: str) -> str:
    """The address of ``upstream`` inside the mirror rooted at ``base``."""
    return base.rstrip("/") + "/" + mirror_relative(upstream)


HTTPS_HOSTS = frozenset({"download.tensorflow.org", "storage.googleapis.com"})
"""Hosts that serve every object over https:// too: an http:// URL of theirs is
fetched over https:// unless the user allows plain HTTP."""


def https_url(url: str) -> str:
    """``url`` over https:// when its host is one of HTTPS_HOSTS, else unchanged."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in HTTPS_HOSTS or parts.port not in (None, 80):
        return url  # another port is not the CDN: leave it as the registry says
    return urlunsplit(parts._replace(scheme="https", netloc=parts.hostname))


def upstream_fetch_url(upstream: str, allow_http: bool) -> str:
    """Where to fetch ``upstream`` itself: over https:// where its host serves
    it, unless the user allowed plain HTTP (then with a warning)."""
    secure = https_url(upstream)
    if secure == upstream or not allow_http:
        return secure
    log.warning("%s: plain HTTP as --allow-http / ZOO_ALLOW_HTTP asks; nothing protects the bytes in transit", upstream)
    return upstream


def candidate_urls(
    upstream: str, mirrors: Sequence[str], offline: bool, mirror_only: bool = False, allow_http: bool = False
) -> list[str]:
    """Ordered places to try: mirrors (as the user gave them), then (unless
    mirror-only) upstream, over https:// where it can be.

    Offline keeps only those that open no connection.
    """
    candidates = [mirror_url(base, upstream) for base in mirrors]
    if not mirror_only and (is_local(upstream) or not offline):
        candidates.append(upstream_fetch_url(upstream, allow_http))
    unique = list(dict.fromkeys(candidates))
    return [url for url in unique if is_local(url)] if offline else unique


# -- mirror indexes ------------------------------------------------------------

INDEX_NAME = "zoo-mirror.json"
INDEX_FORMAT = 1
INDEX_TTL = 60.0
"""Seconds a mirror's index (or the fact that it has none) is reused before it is
read again, so a long-running process sees a mirror that gained or changed one."""


@dataclass(frozen=True)
class MirrorFile:
    url: str
    sha256: str
    size: int
    # The upstream server's own hashes (x-goog-hash), when it sent them, so
    # clients of the mirror check what upstream vouched for. Optional: an
    # index without them stays format 1 and readable by older zoo versions.
    crc32c: str | None = None
    md5: str | None = None

    def pin(self) -> Pin:
        return Pin(self.sha256, self.size, self.crc32c, self.md5)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value is not None}


@dataclass
class MirrorIndex:
    files: dict[str, MirrorFile] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def pin(self, relative: str) -> Pin:
        known = self.files.get(relative)
        return known.pin() if known else Pin()

    def to_json(self) -> str:
        data = {
            "format": INDEX_FORMAT,
            "files": {path: f.to_dict() for path, f in sorted(self.files.items())},
            "models": dict(sorted(self.models.items())),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> MirrorIndex:
        try:
            data = json.loads(text)
            if data.get("format") != INDEX_FORMAT:
                raise ValueError(f"format must be {INDEX_FORMAT}")
            files = {path: _mirror_file(f) for path, f in data["files"].items()}
            models = dict(data.get("models", {}))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{where}: not a valid mirror index: {exc}") from None
        # Keys become paths on whichever side reads or writes the files.
        for path in files:
            check_key(path, where, IntegrityError)
        return cls(files, models)


def _mirror_file(data: dict[str, Any]) -> MirrorFile:
    optional = {key: str(data[key]) for key in ("crc32c", "md5") if data.get(key) is not None}
    return MirrorFile(str(data["url"]), str(data["sha256"]), int(data["size"]), **optional)


def plan_sources(upstream: str, pin: Pin, settings: Settings) -> list[Source]:
    """Where to fetch ``upstream`` from, in order, each with what its bytes must be.

    A mirror whose index is broken, or contradicts the caller's pin (it
    serves other bytes than the ones asked for), is skipped with a warning.
    """
    relative = mirror_relative(upstream)
    candidates = candidate_urls(
        upstream, settings.mirrors, settings.offline, settings.mirror_only, settings.allow_http
    )
    sources = []
    for url in candidates:
        base = _mirror_base(url, settings.mirrors)
        if base is None:
            sources.append(Source(url, pin))
            continue
        check_key(relative, upstream, IntegrityError)  # it is joined under the mirror's base
        index = read_index(base, settings)
        if isinstance(index, IntegrityError):
            continue  # read_index said why
        merged = pin.merge(index.pin(relative)) if index else pin
        if merged is None:
            log.warning("%s: its index pins other bytes than expected for %s; skipping it", base, upstream)
            continue
        sources.append(Source(url, merged, PINNED if pin.sha256 else MIRROR_INDEX))
    if candidates and not sources:
        raise IntegrityError(f"{upstream}: every mirror was skipped and upstream is off (offline or mirror-only)")
    return sources


def _mirror_base(url: str, mirrors: Iterable[str]) -> str | None:
    return next((base for base in mirrors if url.startswith(base.rstrip("/") + "/")), None)


_indexes: dict[str, tuple[float, MirrorIndex | IntegrityError | None]] = {}


def read_index(base: str, settings: Settings) -> MirrorIndex | IntegrityError | None:
    """A mirror's index; None when it has none or cannot be reached (then the
    download itself reports what is wrong); the error when it is broken.

    What was read is reused for INDEX_TTL seconds; a broken index is reported
    on stderr when it is read, once per mirror, not once per file.
    """
    base = base.rstrip("/")
    read_at, index = _indexes.get(base, (float("-inf"), None))
    if time.monotonic() - read_at < INDEX_TTL:
        return index
    where = f"{base}/{INDEX_NAME}"
    try:
        text = _fetch_small(where, settings)
        index = MirrorIndex.parse(text, where) if text is not None else None
    except IntegrityError as exc:
        log.warning("%s; skipping this mirror", exc)
        index = exc
    _indexes[base] = (time.monotonic(), index)
    return index


def _fetch_small(url: str, settings: Settings) -> bytes | None:
    """The bytes at ``url``, None when there are none or it can't be reached, an
    IntegrityError when what is there can't be an index (too large, not a file)."""
    scheme = scheme_of(url)
    if scheme is Scheme.LOCAL:
        path = local_path(url)
        return read_input(path, "mirror index", IntegrityError) if path.exists() else None
    try:
        if scheme is Scheme.HTTP:
            return _fetch_http(url, settings)
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        with fs.open(path, "rb") as handle:
            return read_limited(handle, MAX_INPUT_BYTES, url, IntegrityError)
    except IntegrityError:
        raise
    except Exception:  # noqa: BLE001 - an unreachable mirror: the download says why
        return None


def _fetch_http(url: str, settings: Settings) -> bytes | None:
    import requests

    timeout = (settings.connect_timeout, settings.connect_timeout)
    with requests.get(url, timeout=timeout, stream=True, verify=settings.verify) as response:
        if response.status_code != 200:
            return None
        response.raw.decode_content = True
        return read_limited(response.raw, MAX_INPUT_BYTES, url, IntegrityError)
