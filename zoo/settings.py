"""Where zoo reads its settings: explicit arguments first, then the environment."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import UsageError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
LOCK_MODES = ("auto", "flock", "none")
# Parallel ranged connections per download (ZOO_CONNECTIONS, --connections). 16, by
# measurement: at 8 MiB/s per connection 8 lose to hf_transfer on a 40 MB model and
# 16 do not; on a fast link the default stays one stream anyway (tests/bench/fetch.py --links).
DEFAULT_CONNECTIONS = 16
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class LockPolicy:
    """How zoo locks (ZOO_LOCKS, ZOO_LOCK_TIMEOUT): ``flock``; ``none``, for a
    shared file system where flock does nothing: O_EXCL lock files with a
    heartbeat, taken over once ``timeout`` seconds stale; ``auto``: flock, and
    lock files where flock fails."""

    mode: str = "auto"
    timeout: float = 60.0


def lock_policy(env: Mapping[str, str]) -> LockPolicy:
    mode = env.get("ZOO_LOCKS", "").strip().lower() or "auto"
    if mode not in LOCK_MODES:
        raise UsageError(f"ZOO_LOCKS={env['ZOO_LOCKS']!r} is not one of {', '.join(LOCK_MODES)}")
    return LockPolicy(mode, _number(env, "ZOO_LOCK_TIMEOUT", LockPolicy.timeout, low=0.1, high=86_400.0))


@dataclass(frozen=True)
class Settings:
    """Everything a fetch needs to know besides the model name."""

    cache_dir: Path
    # Read-only caches searched after cache_dir, in order; zoo never writes them.
    cache_layers: tuple[Path, ...] = ()
    mirrors: tuple[str, ...] = ()
    offline: bool = False
    mirror_only: bool = False
    registry_files: tuple[Path, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5
    # The largest zoo tarball is about 1.5 GB: a source that declares no size
    # and sends more than this is streaming garbage, not a checkpoint.
    max_download: int = 4 << 30
    # Downloads stop before the cache's disk is this close to full, so other
    # programs (and the extraction that follows) still have room.
    min_free: int = 256 << 20
    # Plain http:// to the zoo's hosts instead of the https:// upgrade.
    allow_http: bool = False
    # Refuse a download that no pin, mirror index or server hash vouches for.
    require_verified: bool = False
    # The CA bundle TLS is verified against (else certifi's, as in requests):
    # REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, then SSL_CERT_FILE, which requests
    # alone would ignore.
    ca_bundle: str | None = None
    # TEST ONLY (ZOO_TEST_HOST_MAP): connect to another address for a host,
    # keeping its name for TLS, so tests play download.tensorflow.org on
    # 127.0.0.1 without DNS. ((host:port, address:port), ...).
    host_map: tuple[tuple[str, str], ...] = ()
    locks: LockPolicy = LockPolicy()
    # Connections one download may open when its source serves byte ranges.
    connections: int = DEFAULT_CONNECTIONS
    # The default count splits only once one stream proved slow; a count the
    # user gave (ZOO_CONNECTIONS, --connections) splits at once.
    probe_first: bool = True

    @property
    def verify(self) -> str | bool:
        """requests' ``verify`` argument: given on every request, so the
        environment these settings were built from decides, not os.environ."""
        return self.ca_bundle or True

    @classmethod
    def from_env(
        cls,
        *,
        cache_dir: Path | str | None = None,
        cache_layers: Iterable[Path | str] = (),
        mirrors: Iterable[str] = (),
        offline: bool | None = None,
        mirror_only: bool | None = None,
        registry_files: Iterable[Path | str] = (),
        allow_http: bool | None = None,
        require_verified: bool | None = None,
        connections: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from arguments, falling back on ZOO_* variables.

        Mirrors and cache layers given as arguments come before those in
        ZOO_MIRROR and ZOO_CACHE_LAYERS; registry
        files given as arguments are layered after (so over) those in
        ZOO_REGISTRY.
        """
        env = os.environ if env is None else env
        return cls(
            cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(env),
            cache_layers=tuple(Path(p) for p in cache_layers if str(p).strip())
            + tuple(Path(p) for p in _split(env.get("ZOO_CACHE_LAYERS", ""), os.pathsep)),
            # An empty --mirror "$UNSET" is no mirror (as an empty ZOO_MIRROR), not the root directory.
            mirrors=tuple(m for m in mirrors if m.strip()) + _split(env.get("ZOO_MIRROR", ""), ","),
            offline=_flag(env, "ZOO_OFFLINE") if offline is None else offline,
            mirror_only=_flag(env, "ZOO_MIRROR_ONLY") if mirror_only is None else mirror_only,
            registry_files=tuple(
                Path(p) for p in _split(env.get("ZOO_REGISTRY", ""), os.pathsep)
            )
            + tuple(Path(p) for p in registry_files),
            read_timeout=_number(env, "ZOO_TIMEOUT", 60.0, low=0.001, high=86_400.0),
            retries=int(_number(env, "ZOO_RETRIES", 5, high=1000.0, whole=True)),
            backoff=_number(env, "ZOO_BACKOFF", 0.5, high=3600.0),
            max_download=_size(env, "ZOO_MAX_DOWNLOAD", cls.max_download),
            min_free=_size(env, "ZOO_MIN_FREE", cls.min_free),
            allow_http=_flag(env, "ZOO_ALLOW_HTTP") if allow_http is None else allow_http,
            require_verified=_flag(env, "ZOO_REQUIRE_VERIFIED") if require_verified is None else require_verified,
            ca_bundle=next((env[name] for name in CA_BUNDLE_VARIABLES if env.get(name)), None),
            host_map=_host_map(env.get("ZOO_TEST_HOST_MAP", "")),
            locks=lock_policy(env),
            connections=_connections(env) if connections is None else _checked_connections(connections),
            probe_first=connections is None and not env.get("ZOO_CONNECTIONS", "").strip(),
        )


def default_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("ZOO_CACHE_DIR"):
        return Path(env["ZOO_CACHE_DIR"])
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "zoo"


def _split(value: str, separator: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(separator) if part.strip())


def _host_map(value: str) -> tuple[tuple[str, str], ...]:
    """``host:port=address:port,...`` (ZOO_TEST_HOST_MAP, for tests only)."""
    pairs = tuple(tuple(_split(item, "=")) for item in _split(value, ","))
    if any(len(pair) != 2 or any(":" not in side for side in pair) for pair in pairs):
        raise UsageError(f"ZOO_TEST_HOST_MAP={value!r}: expected host:port=address:port,...")
    return pairs  # type: ignore[return-value]


def _connections(env: Mapping[str, str]) -> int:
    return int(_number(env, "ZOO_CONNECTIONS", DEFAULT_CONNECTIONS, low=1, high=MAX_CONNECTIONS, whole=True))


def _checked_connections(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CONNECTIONS:
        raise UsageError(f"--connections {count!r} is not a whole number from 1 to {MAX_CONNECTIONS}")
    return count


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise UsageError(f"{name}={env[name]!r} is not a yes/no value (use 1 or 0)")


def _number(
    env: Mapping[str, str], name: str, default: float, low: float = 0.0, high: float = 1e6, whole: bool = False
) -> float:
    """A number in [low, high]; nan, inf and a timeout of 0 reach requests as
    tracebacks, so they are refused here."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{name}={raw!r} is not {kind} from {low:g} to {high:g}")
    return value


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    """A byte count such as ``4G``, ``512MiB`` or ``1048576`` (binary units)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    match = _SIZE.fullmatch(raw)
    if match is None:
        raise UsageError(f"{name}={raw!r} is not a size (a byte count, or a number with K, M, G or T)")
    return int(float(match[1]) * SIZE_UNITS[match[2].upper()])
