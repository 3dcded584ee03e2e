"""The ledger backends the conformance suite runs against, one factory each.

A new backend (PostgreSQL...) is added by writing one ``LedgerBackend`` subclass and
registering it in ``BACKENDS``: every test in this package then runs against it too,
the multi-process ones included (worker processes open it through ``connect``).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from contextlib import closing
from pathlib import Path
from typing import ClassVar, Literal

from cvm.tools.ledger import Ledger, SQLiteLedger

TABLES = ("capacity_usage", "allocations", "decisions", "approval_requests", "audit_log")


class LedgerBackend(ABC):
    """Creates isolated ledgers for one test (under ``root``) and looks at them behind the ``Ledger`` contract."""

    name: ClassVar[str]

    def __init__(self, root: Path):
        self.root = root
        self._opened: list[Ledger] = []

    @abstractmethod
    def location(self, ledger: str = "ledger") -> str:
        """Where the test's ledger named ``ledger`` lives, as text another OS process can open with ``connect``."""

    @classmethod
    @abstractmethod
    def connect(cls, location: str) -> Ledger:
        """Open the ledger at ``location``, creating it when new (also called in worker processes)."""

    @abstractmethod
    def snapshot(self, ledger: str = "ledger") -> object:
        """Everything the ledger stores, raw, comparable with ``==`` (to check that a refused call changed nothing)."""

    @abstractmethod
    def forge_audit(self, how: Literal["update", "delete"], ledger: str = "ledger") -> None:
        """Rewrite or delete audit entries behind the ledger's back; must raise (the audit log is append-only)."""

    def open(self, ledger: str = "ledger") -> Ledger:
        """A ledger object on the named ledger (a new object on the same data when it exists); closed after the test."""
        opened = self.connect(self.location(ledger))
        self._opened.append(opened)
        return opened

    def cleanup(self) -> None:
        for opened in self._opened:
            opened.close()


class SQLiteBackend(LedgerBackend):
    """``SQLiteLedger``: one file per ledger in the test's temp dir."""

    name = "sqlite"

    def location(self, ledger: str = "ledger") -> str:
        return str(self.root / "state" / f"{ledger}.sqlite3")

    @classmethod
    def connect(cls, location: str) -> Ledger:
        return SQLiteLedger(location)

    def snapshot(self, ledger: str = "ledger") -> object:
        with closing(sqlite3.connect(self.location(ledger))) as conn:
            return {table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES}

    def forge_audit(self, how: Literal["update", "delete"], ledger: str = "ledger") -> None:
        statement = {"update": "UPDATE audit_log SET event = 'forged'", "delete": "DELETE FROM audit_log"}[how]
        with closing(sqlite3.connect(self.location(ledger))) as conn:
            try:
                conn.execute(statement)
            finally:
                conn.rollback()


BACKENDS: dict[str, type[LedgerBackend]] = {backend.name: backend for backend in (SQLiteBackend,)}


def connect(kind: str, location: str) -> Ledger:
    """For worker processes: open the ledger of backend ``kind`` at ``location``."""
    return BACKENDS[kind].connect(location)
