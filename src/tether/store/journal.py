"""The crash journal: an acknowledged trace is in a local file before its response leaves.

::

    TraceWriter.write(trace) ── one os.write of one JSON line ──▶ DIR/<instance>.<n>.jsonl
          └──▶ queue ──▶ store commit ──▶ settle(): a journal file whose every trace is
                                          stored is deleted
    next start-up ──▶ the files of processes that died are stored again (idempotent: by id)

* **A process kill loses nothing.** The line is handed to the kernel with one ``write`` before
  the caller sees its trace id; the kernel keeps it whatever happens to the process. ``fsync``
  (``interval``, ``always``) adds a machine crash to that (see
  :class:`~tether.config.store.JournalConfig` for each setting's guarantee).
* **Segments, never truncation.** Lines go to the current segment. It is retired when it
  reaches ``segment_bytes`` or when every trace in it is stored; a retired segment is deleted
  once every trace in it is stored. A trace appended while a batch commits is in a segment that
  is not deleted yet, so deleting can never take it along.
* **One owner per segment.** Each journal holds an ``flock`` on its ``<instance>.lock`` for its
  life. At start-up a writer takes over the segments of every instance whose lock it can take
  (its process died; the kernel released the lock): several processes on one machine can share
  a journal folder, and none replays another's live segments.
* **Torn lines are skipped.** A line cut by a crash (or a full disk) is skipped with a warning;
  every other line is stored.
* **Private.** The folder is created 0700, every file 0600, whatever the umask.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.config.store import FsyncPolicy, JournalConfig

TraceDict = dict[str, Any]

NO_SEGMENT = -1
"""What :meth:`Journal.append` callers record for a trace that is not in the journal."""

_SUFFIX = ".jsonl"
_LOCK = ".lock"


class JournalError(OSError):
    """The journal folder cannot be used (the message says which and what to do)."""


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    fd: int
    size: int = 0
    appended: int = 0
    settled: int = 0
    failed: int = 0

    @property
    def done(self) -> bool:
        return self.settled >= self.appended


class Journal:
    """The journal of one trace writer (one process). ``open()`` before the first ``append``,
    ``aclose()`` after the last ``settle``; :meth:`leftovers` finds what crashed processes
    left."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fsync: FsyncPolicy = "none",
        fsync_interval_s: float = 1.0,
        segment_bytes: int = 8 * 1024 * 1024,
        logger: logging.Logger | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.fsync: FsyncPolicy = fsync
        self._interval = fsync_interval_s
        self._segment_bytes = segment_bytes
        self._log = logger or logging.getLogger("tether.store.journal")
        self.instance = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._next_number = 1
        self._kept: list[Path] = []
        self._appended = 0  # lines appended in total (group commit waits on this)
        self._synced = 0
        self._dirty: dict[int, int] = {}  # segment number -> fd, lines not on disk yet
        self._dir_dirty = False
        self._syncing: asyncio.Task[None] | None = None
        self._close_later: list[int] = []
        self._ticker: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, directory: str | Path, config: JournalConfig) -> Journal:
        return cls(
            directory,
            fsync=config.fsync,
            fsync_interval_s=config.fsync_interval_s,
            segment_bytes=config.segment_bytes,
        )

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Create the folder (0700) and take this journal's lock. Raises :class:`JournalError`."""
        if self._lock_fd is not None:
            return
        try:
            fd = self._lock()
            if self.fsync != "none":
                self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._dir_dirty = True
        except OSError as exc:
            raise JournalError(
                exc.errno,
                f"the trace journal folder {self.directory} cannot be used ({exc.strerror}); "
                "make it writable by this user, set store.journal.path to a local folder that "
                "is, or set store.journal: off (acknowledged traces may then be lost in a "
                "crash)",
            ) from exc
        self._lock_fd = fd

    def _lock(self) -> int:
        """Create the folder and this journal's lock file, locked; returns its descriptor."""
        # Created under a hidden name, locked, then renamed: a start-up that lists the folder
        # never sees this lock unlocked.
        hidden = self.directory / f".{self.instance}{_LOCK}"
        self._make_folder()
        try:
            fd = _create_private(hidden)
        except FileNotFoundError:  # another process removed the empty folder as it stopped
            self._make_folder()
            fd = _create_private(hidden)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(hidden, self._lock_path(self.instance))
        return fd

    def _make_folder(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            os.chmod(self.directory, 0o700)

    async def start(self) -> None:
        """Start flushing every ``fsync_interval_s`` (``fsync: interval`` only)."""
        if self.fsync == "interval" and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick(), name="tether-trace-journal-fsync"
            )

    async def aclose(self) -> None:
        """Stop the background fsync, delete every segment whose traces are all stored (they
        are committed: nothing to flush), release the lock. Segments with traces not stored
        are kept for the next start-up."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._syncing is not None:
            with contextlib.suppress(OSError):
                await asyncio.shield(self._syncing)
        self.close()

    def close(self) -> None:
        """:meth:`aclose` without the final flush (synchronous)."""
        for segment in list(self._segments.values()):
            self._retire(segment)
            if segment.number in self._segments:  # not all stored: kept
                del self._segments[segment.number]
                self._kept.append(segment.path)
                os.close(segment.fd)
        self._current = None
        for fd in self._close_later:
            os.close(fd)
        self._close_later.clear()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
        if self._lock_fd is None:
            return
        if self._kept:
            self._log.warning(
                "%d trace journal file(s) in %s hold traces not stored yet; the next start "
                "stores them",
                len(self._kept),
                self.directory,
            )
        else:
            with contextlib.suppress(FileNotFoundError):
                self._lock_path(self.instance).unlink()
        os.close(self._lock_fd)  # releases the lock
        self._lock_fd = None
        with contextlib.suppress(OSError):
            self.directory.rmdir()  # only when empty: nothing left to replay, nobody else in it

    # ------------------------------------------------------------------ the request path

    def append(self, trace: Mapping[str, Any]) -> int:
        """Write ``trace`` as one line; returns its segment number (for :meth:`settle`).

        Raises ``OSError`` when the disk refuses the line (the segment is then retired: a
        partial line stays the last line of its file, skipped at replay), ``TypeError`` /
        ``ValueError`` when the trace is not JSON.
        """
        if self._lock_fd is None:
            raise RuntimeError("the trace journal is not open: call open() first")
        line = json.dumps(trace, default=str, separators=(",", ":")).encode() + b"\n"
        segment = self._current or self._new_segment()
        try:
            _write_all(segment.fd, line)
        except OSError:
            self._retire(segment)
            raise
        segment.size += len(line)
        segment.appended += 1
        self._appended += 1
        if self.fsync != "none":
            self._dirty[segment.number] = segment.fd
        if segment.size >= self._segment_bytes:
            self._retire(segment)
        return segment.number

    async def sync(self) -> None:
        """Wait until every line appended so far is on disk (group commit: one ``fsync`` for
        every line appended while the previous one ran). Raises ``OSError`` from ``fsync``."""
        if self._dir_fd is None:
            return  # fsync: none
        target = self._appended
        while self._synced < target:
            await asyncio.shield(self._sync_task())

    # ------------------------------------------------------------------ the writer side

    def settle(self, segments: Iterable[int], failed: Iterable[int] = ()) -> None:
        """The traces appended to ``segments`` (one number per trace) are stored; those in
        ``failed`` (one number per trace) could not be, and keep their segment for the next
        start. A retired segment whose traces are all settled is deleted (or kept)."""
        touched: set[int] = set()
        for number in segments:
            segment = self._segments.get(number)
            if segment is not None:
                segment.settled += 1
                touched.add(number)
        for number in failed:
            segment = self._segments.get(number)
            if segment is not None:
                segment.failed += 1
        for number in touched:
            segment = self._segments.get(number)
            if segment is not None and segment.done:
                self._retire(segment)

    def leftovers(self) -> list[Leftover]:
        """The segments of journals whose process died (their lock is free), each taken over
        (locked) by this process until :meth:`Leftover.release`. Oldest segment first."""
        segments: dict[str, list[Path]] = {}
        for path in self.directory.iterdir():
            instance, _, rest = path.name.partition(".")
            if not instance or instance == self.instance:
                continue
            if rest.endswith(_SUFFIX):
                segments.setdefault(instance, []).append(path)
            elif "." + rest == _LOCK:
                segments.setdefault(instance, [])
        found: list[Leftover] = []
        for instance, paths in sorted(segments.items()):
            lock = self._lock_path(instance)
            try:
                fd: int | None = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = None  # its owner was taken over and released meanwhile, or was removed
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # a live process: its segments are its own
                    continue
            found.append(Leftover(lock, fd, sorted(paths), self._log))
        return found

    # ------------------------------------------------------------------ internals

    def _lock_path(self, instance: str) -> Path:
        return self.directory / f"{instance}{_LOCK}"

    def _new_segment(self) -> _Segment:
        number = self._next_number
        self._next_number += 1
        path = self.directory / f"{self.instance}.{number:08d}{_SUFFIX}"
        segment = _Segment(number, path, _create_private(path, append=True))
        self._segments[number] = segment
        self._current = segment
        self._dir_dirty = self._dir_fd is not None
        return segment

    def _retire(self, segment: _Segment) -> None:
        """No more lines go to ``segment``; delete it now if every trace in it is stored."""
        if self._current is segment:
            self._current = None
        if not segment.done:
            return
        del self._segments[segment.number]
        self._dirty.pop(segment.number, None)
        if segment.failed:
            self._kept.append(segment.path)  # for the next start-up's replay
        else:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
        if self._syncing is None:
            os.close(segment.fd)
        else:
            self._close_later.append(segment.fd)  # an fsync in a thread may be using it

    def _sync_task(self) -> asyncio.Task[None]:
        """The fsync running now, or a new one (one at a time)."""
        if self._syncing is None:
            self._syncing = asyncio.get_running_loop().create_task(
                self._sync_once(), name="tether-trace-journal-sync"
            )
        return self._syncing

    async def _sync_once(self) -> None:
        upto = self._appended
        dirty, self._dirty = self._dirty, {}
        dir_fd = self._dir_fd if self._dir_dirty else None  # new segments: their names too
        self._dir_dirty = False
        try:
            await asyncio.to_thread(_fsync_all, list(dirty.values()), dir_fd)
        except OSError:
            self._dir_dirty = self._dir_dirty or dir_fd is not None
            for number, fd in dirty.items():
                if number in self._segments:
                    self._dirty.setdefault(number, fd)
            raise
        finally:
            self._syncing = None
            for fd in self._close_later:
                os.close(fd)
            self._close_later.clear()
        self._synced = max(self._synced, upto)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._dirty or self._dir_dirty:
                try:
                    await asyncio.shield(self._sync_task())
                except OSError as exc:
                    self._log.error("flushing the trace journal to disk failed: %s", exc)


@dataclass
class Leftover:
    """The segments a dead process left, locked by this one until :meth:`release`."""

    lock: Path
    lock_fd: int | None
    segments: list[Path]
    log: logging.Logger

    def read(self, path: Path) -> list[TraceDict]:
        """The traces in ``path``; a line that is not whole JSON is skipped with a warning."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []  # another start-up took it over and finished meanwhile
        return parse_segment(data, path, self.log)

    def discard(self, path: Path) -> None:
        """Every trace in ``path`` is stored: delete it."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def release(self) -> None:
        """Delete the dead journal's lock file and unlock it."""
        if self.lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.lock.unlink()
        os.close(self.lock_fd)
        self.lock_fd = None


def parse_segment(data: bytes, path: Path, log: logging.Logger) -> list[TraceDict]:
    """The JSON objects of a segment's lines; torn or unreadable lines are skipped (logged)."""
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless the last line was cut short
    traces: list[TraceDict] = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            trace = json.loads(line)
        except ValueError:
            trace = None
        if isinstance(trace, dict):
            traces.append(trace)
        else:
            log.warning(
                "trace journal %s: line %d is not a whole trace (cut short by a crash or a "
                "full disk); skipped",
                path,
                number,
            )
    if tail:
        log.warning(
            "trace journal %s: the last line (%d bytes) was cut short by a crash; skipped",
            path,
            len(tail),
        )
    return traces


def _create_private(path: Path, *, append: bool = False) -> int:
    """A new file at ``path``, mode 0600 whatever the umask; returns its descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    if append:
        flags |= os.O_APPEND
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_all(fds: list[int], dir_fd: int | None) -> None:
    sync_data = getattr(os, "fdatasync", os.fsync)  # the data and the size, not the times
    for fd in fds:
        sync_data(fd)
    if dir_fd is not None:
        os.fsync(dir_fd)
