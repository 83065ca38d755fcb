"""Safe extraction of zoo tarballs and the check that they hold a checkpoint.

tarfile's ``data`` filter is the base; on top of it, members that name an
absolute path or ``..``, device files, and archives that expand far past
their own size are refused outright instead of being rewritten.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zoo.errors import IntegrityError, UnsafeArchiveError, ZooError
from zoo.fsutil import writing

_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may expand to."""

    max_members: int = 10_000
    expansion_ratio: float = 20.0
    slack_bytes: int = 16 << 20

    def max_total(self, archive_size: int) -> int:
        return int(archive_size * self.expansion_ratio) + self.slack_bytes


def extract_archive(archive: Path, dest: Path, limits: Limits = Limits()) -> None:
    """Extract ``archive`` into ``dest`` in one streaming pass, or raise.

    On failure ``dest`` may hold a part of the archive; the caller owns it
    and deletes it (it is a staging directory, never a published entry).
    """
    if not hasattr(tarfile, "data_filter"):
        raise ZooError("this Python lacks tarfile's data filter; use 3.10.12+ or 3.11.4+")
    guard = _Guard(limits, archive.stat().st_size, archive)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with writing(dest), tarfile.open(archive, mode="r|*") as tar:
            tar.extractall(dest, filter=guard)
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{archive}: unsafe member refused: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O problem, already turned into a ZooError by writing()
        raise IntegrityError(f"{archive}: not a readable .tar.gz archive: {exc}") from None


class _Guard:
    """A tarfile filter that counts what it lets through."""

    def __init__(self, limits: Limits, archive_size: int, archive: Path) -> None:
        self.limits = limits
        self.max_total = limits.max_total(archive_size)
        self.archive = archive
        self.members = 0
        self.total = 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        self.members += 1
        self.total += member.size
        self._refuse_if(self.members > self.limits.max_members,
                        f"more than {self.limits.max_members} members")
        self._refuse_if(self.total > self.max_total,
                        f"expands past {self.max_total} bytes (at member {member.name!r}); "
                        "a decompression bomb?")
        self._refuse_if(member.name.startswith("/") or ":" in member.name.split("/")[0],
                        f"member {member.name!r} has an absolute path")
        self._refuse_if(".." in PurePosixPath(member.name).parts,
                        f"member {member.name!r} climbs out with '..'")
        self._refuse_if(member.isdev(), f"member {member.name!r} is a device or FIFO")
        return tarfile.data_filter(member, dest)

    def _refuse_if(self, condition: bool, reason: str) -> None:
        if condition:
            raise UnsafeArchiveError(f"{self.archive}: {reason}; nothing was installed")


def find_checkpoint(root: Path, expected: str | None) -> Path:
    """The checkpoint prefix in an extracted archive, with every shard present.

    ``expected`` is the registry's prefix relative to the archive's top
    directory; without one, the single checkpoint outside ``saved_model/`` is
    taken.
    """
    candidates = _prefixes(root, expected)
    if len(candidates) != 1:
        found = ", ".join(str(p.relative_to(root)) for p in candidates) or "none"
        wanted = f"'{expected}.index'" if expected else "one checkpoint '.index' file"
        raise IntegrityError(f"{root}: archive should hold {wanted}; found: {found}")
    prefix = candidates[0]
    _check_shards(prefix, root)
    return prefix


def _prefixes(root: Path, expected: str | None) -> list[Path]:
    if expected:
        places = [root / expected, *(top / expected for top in root.iterdir() if top.is_dir())]
        return [p for p in places if p.with_name(p.name + ".index").is_file()]
    return sorted(
        index.with_suffix("")
        for index in root.rglob("*.index")
        if "saved_model" not in index.relative_to(root).parts
    )


def _check_shards(prefix: Path, root: Path) -> None:
    counts = set()
    present = set()
    for shard in prefix.parent.glob(prefix.name + ".data-*-of-*"):
        match = _SHARD.search(shard.name)
        if match and shard.name == prefix.name + match.group(0):
            present.add(int(match.group(1)))
            counts.add(int(match.group(2)))
    label = prefix.relative_to(root)
    if not counts:
        raise IntegrityError(f"{root}: checkpoint {label} has no data shard ({prefix.name}.data-*)")
    if len(counts) > 1:
        raise IntegrityError(f"{root}: checkpoint {label} mixes shard sets of {sorted(counts)}")
    count = counts.pop()
    missing = sorted(set(range(count)) - present)
    if missing:
        names = ", ".join(f"{prefix.name}.data-{i:05d}-of-{count:05d}" for i in missing)
        raise IntegrityError(f"{root}: checkpoint {label} is missing data shard(s) {names}")


def find_pipeline_config(root: Path) -> Path | None:
    """The archive's own pipeline.config, at its top or one directory down."""
    for place in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (place / "pipeline.config").is_file():
            return place / "pipeline.config"
    return None
