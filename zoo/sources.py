"""Where a file can be fetched from: mirrors first, then its upstream URL.

A mirror holds each file at ``<host>/<path>`` of its upstream URL under the
mirror's base (the layout ``wget -x`` makes), so any static file server over
a copied directory, or the directory itself, serves as a mirror.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit


def is_local(url: str) -> bool:
    """True for file:// URLs and plain paths: reading them opens no connection."""
    return not url.startswith(("http://", "https://"))


def local_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    return Path(url)


def mirror_url(base: str, upstream: str) -> str:
    """The address of ``upstream`` inside the mirror rooted at ``base``."""
    parts = urlsplit(upstream)
    if parts.scheme == "file" or not parts.scheme:
        relative = "localhost" + local_path(upstream).as_posix()
    else:
        relative = parts.netloc.lower() + parts.path
    return base.rstrip("/") + "/" + relative.lstrip("/")


def candidate_urls(upstream: str, mirrors: Sequence[str], offline: bool) -> list[str]:
    """Ordered sources to try; offline keeps only those that open no connection."""
    candidates = [mirror_url(base, upstream) for base in mirrors] + [upstream]
    unique = list(dict.fromkeys(candidates))
    return [url for url in unique if is_local(url)] if offline else unique
