"""Segmented downloads: the missing byte ranges of one file over several
connections, handed over strictly in order.

Workers write each segment at its offset in the partial file and record it in
a ``Coverage``; the transfer's own thread waits for the contiguous prefix to
grow and reads the new bytes back once, for the hashes and the extractor.
Segments are small next to the file and handed out in file order, so the
prefix grows at nearly the aggregate rate and extraction overlaps the
download; N equal parts would stall the extractor until the very end.

This module knows nothing of HTTP: the transfer gives the workers a
``connect`` (one connection's state, e.g. a session) and a ``fetch`` that
moves one job's bytes through ``Workers.write``.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass
from typing import Any, TypeGuard

MIN_SEGMENT = 1 << 20
MAX_SEGMENT = 8 << 20
# Less than this to fetch: one stream. Opening more connections costs round
# trips that a few MiB do not win back.
MIN_SPLIT = 4 << 20
SEGMENTS_PER_CONNECTION = 4  # enough that the last segments do not leave connections idle for long

log = logging.getLogger("zoo")

Span = tuple[int, int]  # [start, end)


def worth_splitting(remaining: int, connections: int) -> bool:
    return connections > 1 and remaining >= MIN_SPLIT


def segment_size(remaining: int, connections: int) -> int:
    share = remaining // (max(1, connections) * SEGMENTS_PER_CONNECTION)
    return max(MIN_SEGMENT, min(MAX_SEGMENT, share))


def plan(holes: Iterable[Span], size: int) -> list[Span]:
    """The holes cut into segments of at most ``size`` bytes, in file order."""
    return [(start, min(start + size, end)) for first, end in holes for start in range(first, end, size)]


def sane_spans(spans: Any, length: int) -> TypeGuard[list[list[int]]]:
    """Whether ``spans`` (from a sidecar: outside input) is a list of sorted,
    disjoint, merged [start, end) pairs inside a file of ``length`` bytes."""
    if not isinstance(spans, list):
        return False
    previous = -1
    for span in spans:
        if not (isinstance(span, list) and len(span) == 2 and all(type(n) is int for n in span)):
            return False
        start, end = span
        if not previous < start < end <= length:
            return False
        previous = end
    return True


class Coverage:
    """The byte ranges of the file that are on disk, merged, shared between
    the workers that add to it and the thread that hands the prefix over."""

    def __init__(self, spans: Iterable[Span] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._changed = threading.Condition()
        self.failure: BaseException | None = None
        for start, end in spans:
            self._insert(start, end)

    def add(self, start: int, end: int) -> None:
        with self._changed:
            self._insert(start, end)
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        """Wake the waiting thread with the first error a worker met."""
        with self._changed:
            if self.failure is None:
                self.failure = error
            self._changed.notify_all()

    def frontier(self) -> int:
        """The end of the contiguous prefix: every byte before it is on disk."""
        with self._changed:
            return self._frontier()

    def covered(self) -> int:
        with self._changed:
            return sum(end - start for start, end in zip(self._starts, self._ends))

    def spans(self) -> list[list[int]]:
        with self._changed:
            return [[start, end] for start, end in zip(self._starts, self._ends)]

    def holes(self, start: int, end: int) -> list[Span]:
        """What is missing of [start, end)."""
        missing, position = [], start
        for first, last in zip(*self._snapshot()):
            if last <= position:
                continue
            if first >= end:
                break
            if first > position:
                missing.append((position, first))
            position = max(position, last)
        if position < end:
            missing.append((position, end))
        return missing

    def wait_beyond(self, position: int, timeout: float) -> int:
        """The frontier, once it passes ``position``, a worker failed, or ``timeout`` passed."""
        with self._changed:
            self._changed.wait_for(lambda: self._frontier() > position or self.failure is not None, timeout)
            return self._frontier()

    def _snapshot(self) -> tuple[list[int], list[int]]:
        with self._changed:
            return list(self._starts), list(self._ends)

    def _frontier(self) -> int:
        return self._ends[0] if self._starts and self._starts[0] == 0 else 0

    def _insert(self, start: int, end: int) -> None:
        if start >= end:
            return
        # Every span that touches [start, end) merges into one.
        first = bisect.bisect_left(self._ends, start)
        last = bisect.bisect_right(self._starts, end)
        if first < last:
            start, end = min(start, self._starts[first]), max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]


@dataclass
class Job:
    """One segment: ``position`` is its next byte to fetch, ``end`` its first byte past."""

    position: int
    end: int
    opened: Generator[bytes, None, None] | None = None  # a response already streaming this job's bytes

    def describe(self) -> str:
        return f"bytes {self.position}-{self.end - 1}"


class Stopped(Exception):
    """The workers were told to stop; nothing more is written."""


class Workers:
    """Threads taking jobs in file order, each over its own connection.

    ``write`` is the only way bytes reach the file, and ``stop`` fences it: once
    ``stop`` returns, no worker writes again, whether or not it has noticed yet.
    """

    def __init__(
        self,
        jobs: list[Job],
        count: int,
        *,
        connect: Callable[[], AbstractContextManager[Any]],
        fetch: Callable[[Any, Job, Workers], None],
        sink: Callable[[int, bytes], None],
        coverage: Coverage,
        name: str,
    ) -> None:
        self.coverage = coverage
        self._jobs = deque(jobs)
        self._connect = connect
        self._fetch = fetch
        self._sink = sink
        self._fence = threading.Condition()
        self._writing = 0  # writes in progress: ``stop`` waits for them, they never wait for each other
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()
        self.live = 0
        self.most = 0  # the most connections live at once
        first = self._jobs.popleft() if self._jobs and self._jobs[0].opened is not None else None
        self._threads = [
            threading.Thread(target=self._work, args=(first if i == 0 else None,), name=f"{name}-{i}", daemon=True)
            for i in range(max(1, min(count, len(jobs))))
        ]

    def __enter__(self) -> Workers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        # A worker blocked on a silent server notices at its read timeout; the
        # fence already keeps it from writing, so it is not awaited for long.
        deadline = time.monotonic() + 1
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def write(self, job: Job, data: bytes) -> bool:
        """Keep ``data`` at the job's position, never past its end; True once the job is complete."""
        data = data[: job.end - job.position]
        with self._fence:
            if self._stopping.is_set():
                raise Stopped
            self._writing += 1
        try:
            self._sink(job.position, data)
        finally:
            with self._fence:
                self._writing -= 1
                self._fence.notify_all()
        self.coverage.add(job.position, job.position + len(data))
        job.position += len(data)
        return job.position >= job.end

    def pause(self, seconds: float) -> None:
        """Sleep before a retry, unless told to stop."""
        if self._stopping.wait(seconds):
            raise Stopped

    def stop(self) -> None:
        with self._fence:
            self._stopping.set()
            self._fence.wait_for(lambda: self._writing == 0)

    def _work(self, first: Job | None) -> None:
        try:
            with self._connect() as connection:
                job = first or self._next()
                while job is not None:
                    self._run(connection, job)
                    job = self._next()
        except Stopped:
            pass
        except BaseException as exc:  # the transfer's thread raises it
            self.coverage.fail(exc)
            self.stop()

    def _run(self, connection: Any, job: Job) -> None:
        with self._count_lock:
            self.live += 1
            self.most = max(self.most, self.live)
        try:
            with closing(job.opened) if job.opened is not None else nullcontext():
                self._fetch(connection, job, self)
        finally:
            with self._count_lock:
                self.live -= 1

    def _next(self) -> Job | None:
        if self._stopping.is_set():
            raise Stopped
        try:
            return self._jobs.popleft()
        except IndexError:
            return None

