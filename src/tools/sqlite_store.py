"""What every SQLite-backed store shares: the file from a URL, one WAL connection per thread,
and write transactions that take the write lock at their first statement."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from cvm.utils.errors import ConfigError, LedgerError


def sqlite_path(db_url: str) -> Path:
    """The file behind a ``sqlite:///path`` URL (``sqlite:////abs/path`` for absolute paths)."""
    if db_url.startswith("sqlite:///"):
        path = db_url[len("sqlite:///") :]
        if path in ("", ":memory:"):
            raise ConfigError("CVM_DB_URL: an in-memory SQLite ledger cannot be shared; use sqlite:///state/cvm.sqlite3")
        return Path(path)
    scheme = db_url.split(":", 1)[0]
    raise ConfigError(
        f"CVM_DB_URL: unsupported database {scheme!r}; this version stores state in SQLite (sqlite:///path/to/file.sqlite3)"
    )


class SQLiteStore:
    """A store in one SQLite file; subclasses give ``SCHEMA``, a ``label`` and may ``migrate``."""

    SCHEMA = ""
    label = "store"

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connection()
            conn.executescript(self.SCHEMA)
            self.migrate(conn)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the {self.label} {self.path} ({exc}); check CVM_DB_URL and the file's permissions") from None

    @classmethod
    def from_url(cls, db_url: str) -> Self:
        return cls(sqlite_path(db_url))

    def migrate(self, conn: sqlite3.Connection) -> None:
        """Bring a file written by an earlier version up to date (nothing by default)."""

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database's write lock from its first statement."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
