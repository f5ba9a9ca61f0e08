"""The trace writer's child process: database work off the gateway's process (and its GIL).

::

    gateway process                                  child: python -c … tether.store.process
    TraceWriter ──batch: pickled list of dicts──▶ stdin ──▶ TraceStore.write_many (own engine)
                ◀── ("ok", written) | ("error", …) ── stdout
                stdin closed (aclose, or the parent died) ──▶ the child finishes and exits

* **Frames in order.** Each message is a 4-byte length and a pickle; the child handles batches
  one at a time and answers in order, while the parent may send the next one early
  (:attr:`WriterProcess.in_flight`). The parent only pickles plain dicts: building rows,
  encoding JSON and talking to the database happen here.
* **Never an orphan.** The child exits on end of input, which the kernel delivers when the
  parent exits for any reason, SIGKILL included; a watchdog thread also exits it if it is
  re-parented while a write is in progress (a transaction cut short is rolled back).
* **The parent decides when to stop.** The child ignores SIGINT and SIGTERM, which a terminal or
  a service manager sends to the whole process group: the parent flushes, then closes stdin.
* **A dead child is replaced.** If it exits, every batch it had not answered fails (the writer
  retries them) and the next write starts a new child.
* **No secrets on the command line.** The URL (with its password) travels over the pipe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

TraceDict = dict[str, Any]

_HEADER = struct.Struct(">I")
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from tether.store.process import main; main()"


class WriterProcessError(RuntimeError):
    """The writer process could not start, or could not write a batch (the message says why)."""


class RemoteTraceback(Exception):
    """The child's traceback, attached as ``__cause__`` so logs show where it failed."""

    def __str__(self) -> str:
        return f"\n\nin the trace writer process:\n{self.args[0]}"


def can_reopen(url: str | URL) -> bool:
    """Whether another process can open the same database: PostgreSQL or a SQLite file (an
    in-memory SQLite database exists only inside the process that created it)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return True
    database = parsed.database or ""
    memory = ":memory:" in database or "mode=memory" in database
    return (
        backend == "sqlite"
        and bool(database)
        and not memory
        and parsed.query.get("mode") != "memory"
    )


class WriterProcess:
    """Writes batches of ``Trace.to_dict()`` dicts in a child process that opens its own engine.

    Give it to :class:`~tether.store.writer.TraceWriter` (``Store.writer()`` does when the
    database can be reopened). ``start()`` spawns the child (about half a second: a fresh
    interpreter imports SQLAlchemy); ``aclose()`` lets it finish and waits for it to exit.
    """

    in_flight = 2
    """Batches the writer may send before the first is answered: the child finds the next
    batch waiting in its pipe instead of waiting for this process to send it."""

    def __init__(
        self,
        url: str | URL,
        *,
        busy_timeout_s: float = 5.0,
        start_timeout_s: float = 60.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        parsed = make_url(url)
        if not can_reopen(parsed):
            raise ValueError(
                f"{parsed.render_as_string(hide_password=True)} cannot be opened from another "
                "process (an in-memory database): write its traces in a thread instead"
            )
        self._url = parsed.render_as_string(hide_password=False)  # sent over the pipe, not argv
        self._busy_timeout = busy_timeout_s
        self._synchronous = synchronous
        self._start_timeout = start_timeout_s
        self._child: _Child | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The child's process id (``None`` before ``start()`` and after ``aclose()``)."""
        return None if self._child is None else self._child.proc.pid

    async def start(self) -> None:
        """Spawn the child and wait until it is ready (idempotent)."""
        async with self._lock:
            await self._ready()

    async def write_many(self, batch: list[TraceDict]) -> int:
        """Write ``batch`` in the child; returns how many traces were new.

        Raises :class:`WriterProcessError` when the child refused the batch (its error, with
        its traceback as ``__cause__``) or exited (the next call starts a new one).
        """
        async with self._lock:  # requests leave whole and in order; replies come back in order
            child = await self._ready()
            answer = child.request(batch)
            await child.drain()
        reply = await answer
        if reply[0] == "ok":
            return int(reply[1])
        raise WriterProcessError(reply[1]) from RemoteTraceback(reply[2])

    async def aclose(self) -> None:
        """Close the child's input; it answers every batch it was sent, then exits."""
        async with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            await child.stop(timeout_s=30.0)

    async def _ready(self) -> _Child:
        if self._closed:
            raise WriterProcessError("this WriterProcess was closed; create a new one")
        if self._child is not None:
            if not self._child.exited:
                return self._child
            await self._child.stop(timeout_s=0.0)  # reap the one that died
            self._child = None
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            str(Path(__file__).resolve().parents[2]),  # the folder this tether is imported from
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        child = _Child(proc)
        try:
            async with asyncio.timeout(self._start_timeout):
                answer = child.request(
                    {
                        "url": self._url,
                        "busy_timeout_s": self._busy_timeout,
                        "synchronous": self._synchronous,
                        "parent_pid": os.getpid(),
                    }
                )
                await child.drain()
                reply = await answer
        except (TimeoutError, WriterProcessError) as exc:
            code = await child.stop(timeout_s=0.0)
            raise WriterProcessError(
                f"the trace writer process did not start (exit code {code}); see its error "
                "output above"
            ) from exc
        except BaseException:
            child.kill()
            raise
        if reply[0] != "ready":
            await child.stop(timeout_s=5.0)
            raise WriterProcessError(f"the trace writer process could not start: {reply[1]}")
        self._child = child
        return child


class _Child:
    """One child process: its pipes, the answers it owes (in order), the task reading them."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.exited = False
        self._stdin, self._stdout = proc.stdin, proc.stdout
        self._owed: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"tether-trace-writer-replies-{proc.pid}"
        )

    def request(self, message: Any) -> asyncio.Future[Any]:
        """Hand ``message`` to the pipe, whole (no await: a cancelled caller cannot cut a
        frame); the future gets the child's answer."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._owed.append(answer)
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._stdin.write(_HEADER.pack(len(payload)))
        self._stdin.write(payload)
        return answer

    async def drain(self) -> None:
        """Wait while the pipe is full. A child that died fails the answers it owes instead."""
        with contextlib.suppress(ConnectionError):
            await self._stdin.drain()

    async def stop(self, *, timeout_s: float) -> int:
        """Close the child's input (it answers what it was sent, then exits), kill it if it
        has not exited after ``timeout_s``; returns its exit code."""
        self._stdin.close()
        try:
            async with asyncio.timeout(timeout_s):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
        code = await self.proc.wait()
        await self._reader
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                self.proc.kill()

    async def _read(self) -> None:
        try:
            while True:
                (size,) = _HEADER.unpack(await self._stdout.readexactly(_HEADER.size))
                reply = pickle.loads(await self._stdout.readexactly(size))
                answer = self._owed.popleft()
                if not answer.done():  # its caller may have been cancelled
                    answer.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.exited = True  # end of its output: it exited, or is exiting
        if self._owed:
            code = await self.proc.wait()
            error = WriterProcessError(
                f"the trace writer process (pid {self.proc.pid}) exited with code {code}; "
                "a new one starts with the next write"
            )
            while self._owed:
                answer = self._owed.popleft()
                if not answer.done():
                    answer.set_exception(error)


# ---------------------------------------------------------------------------- the child side


def main() -> None:
    """The child's entry point (started by :class:`WriterProcess`, never by hand)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = _protocol_streams()
    try:
        settings = _receive(requests)
        if settings is None:
            return
        threading.Thread(
            target=_exit_when_orphaned, args=(settings["parent_pid"],), daemon=True
        ).start()
        _serve(settings, requests, replies)
    except BrokenPipeError:  # the parent went away while we answered
        return


def _serve(settings: dict[str, Any], requests: IO[bytes], replies: IO[bytes]) -> None:
    from tether.store.traces import TraceStore

    try:
        engine = _open(settings)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, raised by its start()
        _send(replies, ("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        store = TraceStore(engine)
        _send(replies, ("ready", os.getpid()))
        while (batch := _receive(requests)) is not None:
            try:
                written = store.write_many(batch)
            except Exception as exc:  # noqa: BLE001 - the parent retries, isolates and logs it
                _send(replies, ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            else:
                _send(replies, ("ok", written))
    finally:
        engine.dispose()


def _open(settings: dict[str, Any]) -> Engine:
    """The child's own engine, connected once: a database it cannot reach fails ``start()``,
    and the first batch does not wait for a connection."""
    from tether.store.engine import create_store_engine

    engine = create_store_engine(
        settings["url"],
        busy_timeout_s=settings["busy_timeout_s"],
        synchronous=settings.get("synchronous", "NORMAL"),
    )
    try:
        with engine.connect():
            pass
    except BaseException:
        engine.dispose()
        raise
    return engine


def _protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Private copies of stdin and stdout for the protocol; fd 1 then points at stderr, so a
    stray ``print`` (ours or a library's) can never corrupt a reply."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return requests, replies


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None  # end of input: the parent closed it, or exited
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return pickle.loads(payload) if len(payload) == size else None


def _send(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _exit_when_orphaned(parent_pid: int) -> None:
    """End of input stops an idle child; this stops one busy in a write when the parent died
    (the child is then re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(3)
