"""Where a file can be fetched from: mirrors first, then its upstream URL.

A mirror holds each file at ``<host>/<path>`` of its upstream URL under the
mirror's base (the layout ``wget -x`` makes), so any static file server over
a copied directory, or the directory itself, serves as a mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Pin:
    """What the bytes must be, where something (registry, lock, mirror) says so."""

    sha256: str | None = None
    size: int | None = None

    def merge(self, other: Pin) -> Pin | None:
        """Both pins at once, or None where they contradict each other."""
        if _clash(self.sha256, other.sha256) or _clash(self.size, other.size):
            return None
        return Pin(self.sha256 or other.sha256, self.size if self.size is not None else other.size)


def _clash(a: object, b: object) -> bool:
    return a is not None and b is not None and a != b


@dataclass(frozen=True)
class Source:
    """One place to fetch a file from, with what its bytes must be."""

    url: str
    pin: Pin = Pin()


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


def candidate_urls(
    upstream: str, mirrors: Sequence[str], offline: bool, mirror_only: bool = False
) -> list[str]:
    """Ordered places to try: mirrors, then (unless mirror-only) upstream.

    Offline keeps only those that open no connection.
    """
    candidates = [mirror_url(base, upstream) for base in mirrors]
    if not mirror_only:
        candidates.append(upstream)
    unique = list(dict.fromkeys(candidates))
    return [url for url in unique if is_local(url)] if offline else unique
