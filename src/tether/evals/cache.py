"""A small on-disk JSON cache (SQLite, one file, readable by its owner only): judge verdicts and,
when a run opts in, the feature's model calls, keyed by a hash of everything that decides the
answer. Safe to share between concurrent runs (WAL; last write wins)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tether.evals.types import content_hash


class DiskCache:
    """``get(key)`` / ``put(key, value)`` of JSON values in ``path`` (created 0600). Counts
    ``hits`` and ``misses``. Calls are short and synchronous (one indexed row)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @staticmethod
    def key(*parts: Any) -> str:
        """The key of a JSON-able description of a call (model, prompt, parameters)."""
        return content_hash(list(parts))

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT)")
            self._db = db
        return self._db

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT value FROM entries WHERE key = ?", (key,))
                .fetchone()
            )
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False)
        with self._lock:
            db = self._connection()
            db.execute("INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)", (key, text))
            db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
