"""Agent performance: calls, errors and latency per agent and action, counted in memory, written once per run.

``BaseAgent.process`` records every message it handles into ``AGENT_CALLS``
(``record``: a lock, a dict update and a histogram bucket; no I/O per call).
When a run ends its stats are *drained* into the ``TelemetryStore``
(``flush``), one row per (run, agent, action), in the ledger's SQLite file.

Latency percentiles come from a log-scale histogram (buckets 5% wide, from 1
microsecond up), so memory stays bounded however many calls a run makes and
the rows of several runs merge exactly; a p50/p95 is the upper edge of its
bucket (within 5% of the true value). A call's latency includes the agents it
calls itself (the orchestrator's ``process_batch`` includes every decision).

One process-wide collector: runs that overlap in one process (an API server
deciding two requests at once) share it, and the first to flush takes both.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cvm.tools.sqlite_store import SQLiteStore

GROWTH = 1.05
MAX_ACTIONS_PER_AGENT = 200
MAX_ACTION_CHARS = 64
OTHER_ACTION = "<other>"
"""Where the calls of an agent's action go past ``MAX_ACTIONS_PER_AGENT`` names or with a name longer than
``MAX_ACTION_CHARS``: the action is the message's ``type`` as sent, so unknown types sent by a caller must not grow the
collector (one entry per distinct string) without bound."""
FLOOR_SECONDS = 1e-6
_LOG_GROWTH = math.log(GROWTH)


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a latency (bucket b holds ``(FLOOR * GROWTH**(b-1), FLOOR * GROWTH**b]``)."""
    if seconds <= FLOOR_SECONDS:
        return 0
    return math.ceil(math.log(seconds / FLOOR_SECONDS) / _LOG_GROWTH - 1e-9)


def bucket_top(bucket: int) -> float:
    return FLOOR_SECONDS * GROWTH**bucket


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of the latencies in ``histogram``, as its bucket's upper edge (None when empty)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_top(bucket)
    return bucket_top(max(histogram))


@dataclass
class CallStat:
    """One agent and action: calls, errors, total and worst latency, and the latency histogram."""

    agent: str
    action: str
    calls: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, seconds: float, error: bool, bucket: int | None = None) -> None:
        self.calls += 1
        self.errors += int(error)
        self.total_seconds += seconds
        if seconds > self.max_seconds:
            self.max_seconds = seconds
        b = bucket_of(seconds) if bucket is None else bucket
        self.histogram[b] = self.histogram.get(b, 0) + 1

    def merge(self, other: CallStat) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.total_seconds += other.total_seconds
        self.max_seconds = max(self.max_seconds, other.max_seconds)
        for b, n in other.histogram.items():
            self.histogram[b] = self.histogram.get(b, 0) + n

    def quantile(self, q: float) -> float | None:
        """From the histogram, never above the slowest call seen."""
        found = percentile(self.histogram, q)
        return None if found is None else min(found, self.max_seconds)

    def row(self) -> dict[str, object]:
        """What a report shows: calls, errors, error rate, mean, p50, p95 and max latency in milliseconds."""
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "agent": self.agent, "action": self.action, "calls": self.calls, "errors": self.errors,
            "error_rate": round(self.errors / self.calls, 4) if self.calls else 0.0,
            "mean_ms": ms(self.total_seconds / self.calls) if self.calls else None,
            "p50_ms": ms(self.quantile(0.50)), "p95_ms": ms(self.quantile(0.95)),
            "max_ms": ms(self.max_seconds),
        }


class CallStats:
    """The in-memory collector: thread-safe, bounded (one histogram per agent and action)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], CallStat] = {}
        self._actions: dict[str, int] = {}
        """How many action names each agent has in ``_stats``."""
        self.current_run: str | None = None
        """The run whose calls are being counted, when the process knows it (a flow run binds its id)."""

    def bind(self, run_id: str | None) -> None:
        """Say which run the calls from now on belong to (a report made inside that run can show them before they are written)."""
        self.current_run = run_id

    def record(self, agent: str, action: str, seconds: float, error: bool) -> None:
        """Count one call (about two microseconds; the bucket is computed outside the lock)."""
        bucket = bucket_of(seconds)
        with self._lock:
            stat = self._stats.get((agent, action))
            if stat is None:
                if len(action) > MAX_ACTION_CHARS or self._actions.get(agent, 0) >= MAX_ACTIONS_PER_AGENT:
                    action = OTHER_ACTION
                    stat = self._stats.get((agent, action))
                if stat is None:
                    stat = self._stats[(agent, action)] = CallStat(agent, action)
                    self._actions[agent] = self._actions.get(agent, 0) + 1
            stat.add(seconds, error, bucket)

    def snapshot(self) -> list[CallStat]:
        """A copy of what is counted so far, left in place."""
        with self._lock:
            copies = []
            for s in self._stats.values():
                copy = CallStat(s.agent, s.action)
                copy.merge(s)
                copies.append(copy)
        return sorted(copies, key=lambda s: (s.agent, s.action))

    def drain(self) -> list[CallStat]:
        """Everything counted since the last drain, and start again from zero."""
        with self._lock:
            taken, self._stats, self._actions = self._stats, {}, {}
        return sorted(taken.values(), key=lambda s: (s.agent, s.action))


AGENT_CALLS = CallStats()
"""The process's collector (``BaseAgent.process`` records here)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_call_stats (
    run_id         TEXT NOT NULL,
    agent          TEXT NOT NULL,
    action         TEXT NOT NULL,
    calls          INTEGER NOT NULL,
    errors         INTEGER NOT NULL,
    total_seconds  REAL NOT NULL,
    max_seconds    REAL NOT NULL,
    histogram_json TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, agent, action)
);
CREATE INDEX IF NOT EXISTS agent_call_stats_by_time ON agent_call_stats (recorded_at);
"""


class TelemetryStore(SQLiteStore):
    """Agent call stats per run in the ledger's database; a resumed run's stats add to its first ones."""

    SCHEMA = SCHEMA
    label = "telemetry store"

    def flush(self, run_id: str, stats: Iterable[CallStat], now: datetime | None = None) -> int:
        """Add ``stats`` to the run's rows (one transaction); returns how many agent/action rows were written."""
        at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
        written = 0
        with self._transaction() as conn:
            for s in stats:
                row = conn.execute(
                    "SELECT * FROM agent_call_stats WHERE run_id = ? AND agent = ? AND action = ?", (run_id, s.agent, s.action)
                ).fetchone()
                merged = CallStat(s.agent, s.action)
                if row is not None:
                    merged.merge(_stat(row))
                merged.merge(s)
                conn.execute(
                    "INSERT OR REPLACE INTO agent_call_stats (run_id, agent, action, calls, errors, total_seconds, max_seconds,"
                    " histogram_json, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, s.agent, s.action, merged.calls, merged.errors, merged.total_seconds, merged.max_seconds,
                     json.dumps(merged.histogram, sort_keys=True), at),
                )
                written += 1
        return written

    def stats(self, run_id: str | None = None, *, since: datetime | None = None) -> list[CallStat]:
        """Per agent and action: one run's stats, or every run's (recorded since ``since``) merged."""
        sql, params = "SELECT * FROM agent_call_stats WHERE 1 = 1", []
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        if since is not None:
            sql += " AND recorded_at >= ?"
            params.append(since.astimezone(timezone.utc).isoformat())
        found = [_stat(row) for row in self._connection().execute(sql, params).fetchall()]
        return merge_stats(found)

    def run_stats(self, run_id: str, live: CallStats | None = None) -> list[CallStat]:
        """One run's stats: what was written, plus what ``live`` counts for it and has not written yet (a report
        step inside a flow run sees its own run's calls)."""
        stored = self.stats(run_id)
        if live is None or live.current_run != run_id:
            return stored
        return merge_stats([*stored, *live.snapshot()])

    def rows(self, run_id: str | None = None, *, since: datetime | None = None) -> list[dict[str, object]]:
        """The report's table: agent, action, calls, errors, error_rate, mean/p50/p95/max in ms (``CallStat.row``)."""
        return [s.row() for s in self.stats(run_id, since=since)]


def merge_stats(stats: Iterable[CallStat]) -> list[CallStat]:
    """One ``CallStat`` per agent and action, sorted."""
    merged: dict[tuple[str, str], CallStat] = {}
    for s in stats:
        merged.setdefault((s.agent, s.action), CallStat(s.agent, s.action)).merge(s)
    return sorted(merged.values(), key=lambda s: (s.agent, s.action))


def _stat(row: sqlite3.Row) -> CallStat:
    histogram = {int(k): int(v) for k, v in json.loads(row["histogram_json"]).items()}
    return CallStat(row["agent"], row["action"], row["calls"], row["errors"], row["total_seconds"], row["max_seconds"], histogram)
