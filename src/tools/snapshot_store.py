"""Per-run portfolio snapshots (Mission Control over time), in the state database beside the ledger.

One row per run: its KPIs as a JSON document of aggregates (a few hundred bytes,
whatever the run's size), replaced when the run is reported on again. The
reporting package says what a snapshot holds (``cvm.reporting.trend.Snapshot``);
this store only keeps the documents.
"""

from __future__ import annotations

import json
from typing import Any

from cvm.tools.sqlite_store import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS portfolio_snapshots (
    run_id        TEXT PRIMARY KEY,
    run_at        TEXT,
    taken_at      TEXT NOT NULL,
    snapshot_json TEXT NOT NULL
);
"""


class SnapshotStore(SQLiteStore):
    """``portfolio_snapshots`` in the SQLite file of ``CVM_DB_URL``."""

    SCHEMA = SCHEMA
    label = "snapshot store"

    def put(self, run_id: str, run_at: str | None, taken_at: str, snapshot: dict[str, Any]) -> None:
        """Keep the run's latest snapshot (a newer one replaces it)."""
        body = json.dumps(snapshot, sort_keys=True, allow_nan=False)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO portfolio_snapshots (run_id, run_at, taken_at, snapshot_json) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, taken_at = excluded.taken_at,"
                " snapshot_json = excluded.snapshot_json",
                (run_id, run_at, taken_at, body),
            )

    def get(self, run_id: str) -> dict[str, Any] | None:
        row = self._connection().execute("SELECT snapshot_json FROM portfolio_snapshots WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def all(self) -> dict[str, dict[str, Any]]:
        """run id -> snapshot, oldest run first."""
        rows = self._connection().execute("SELECT run_id, snapshot_json FROM portfolio_snapshots ORDER BY run_at, run_id")
        return {run_id: dict(json.loads(body)) for run_id, body in rows}
