"""Agent telemetry: the in-memory collector, its percentiles, the per-run store, and the hook in ``BaseAgent.process``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cvm.agents.data import DataAgent
from cvm.agents.messages import ListCustomers
from cvm.tools.data_source import FileDataSource
from cvm.tools.telemetry import (
    AGENT_CALLS,
    MAX_ACTION_CHARS,
    MAX_ACTIONS_PER_AGENT,
    OTHER_ACTION,
    CallStat,
    CallStats,
    TelemetryStore,
    bucket_of,
    bucket_top,
    percentile,
)


class TestHistogram:
    def test_a_bucket_holds_its_latency_within_five_percent(self):
        for seconds in (1e-6, 3.3e-5, 0.0021, 0.5, 1.0, 42.0):
            top = bucket_top(bucket_of(seconds))
            assert seconds <= top * (1 + 1e-9) and top <= seconds * 1.05 + 1e-12

    def test_percentiles_of_a_known_spread(self):
        values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1 s
        random.Random(7).shuffle(values)
        stat = CallStat("a", "b")
        for v in values:
            stat.add(v, error=False)
        p50, p95 = percentile(stat.histogram, 0.5), percentile(stat.histogram, 0.95)
        assert p50 is not None and 0.5 <= p50 <= 0.5 * 1.05
        assert p95 is not None and 0.95 <= p95 <= 0.95 * 1.05
        assert percentile({}, 0.5) is None

    def test_a_row_is_what_a_report_shows(self):
        stat = CallStat("DataAgent", "list_customers")
        stat.add(0.010, error=False)
        stat.add(0.030, error=True)
        row = stat.row()
        assert (row["calls"], row["errors"], row["error_rate"], row["max_ms"], row["mean_ms"]) == (2, 1, 0.5, 30.0, 20.0)


class TestCollectorAndStore:
    def test_drain_takes_everything_once(self):
        stats = CallStats()
        stats.record("A", "x", 0.01, False)
        stats.record("A", "x", 0.02, True)
        stats.record("B", "y", 0.01, False)
        taken = stats.drain()
        assert [(s.agent, s.action, s.calls, s.errors) for s in taken] == [("A", "x", 2, 1), ("B", "y", 1, 0)]
        assert stats.drain() == []

    def test_unknown_message_types_cannot_grow_the_collector_without_bound(self):
        stats = CallStats()
        stats.record("A", "x" * (MAX_ACTION_CHARS + 1), 0.01, True)
        for n in range(MAX_ACTIONS_PER_AGENT + 500):
            stats.record("A", f"hostile_{n}", 0.01, True)
        stats.record("B", "y", 0.01, False)
        taken = {(s.agent, s.action): s.calls for s in stats.drain()}
        assert len(taken) == MAX_ACTIONS_PER_AGENT + 1 and taken[("B", "y")] == 1
        assert taken[("A", OTHER_ACTION)] == 1 + 500 + 1  # the long name, and every name past the bound
        stats.record("A", "z", 0.01, False)  # a drain starts the bound again
        assert [(s.agent, s.action) for s in stats.drain()] == [("A", "z")]

    def test_a_resumed_run_adds_to_its_rows_and_runs_merge(self, tmp_path: Path):
        store = TelemetryStore(tmp_path / "state.sqlite3")
        first, again, other = CallStat("A", "x"), CallStat("A", "x"), CallStat("A", "x")
        first.add(0.01, False)
        again.add(0.02, True)
        other.add(0.04, False)
        store.flush("run-1", [first])
        store.flush("run-1", [again])  # the same run, resumed
        store.flush("run-2", [other])
        (one,) = store.rows("run-1")
        assert (one["calls"], one["errors"], one["max_ms"]) == (2, 1, 20.0)
        (both,) = TelemetryStore(tmp_path / "state.sqlite3").rows()
        assert (both["calls"], both["errors"], both["max_ms"]) == (3, 1, 40.0)


class TestAgentHook:
    @pytest.fixture(autouse=True)
    def _empty(self):
        AGENT_CALLS.drain()
        yield
        AGENT_CALLS.drain()

    def test_every_processed_message_is_counted_errors_too(self, sample_dir: Path):
        data = DataAgent(FileDataSource(sample_dir), r"^U\d+$")
        data.process(ListCustomers())
        data.process({"type": "list_customers"})
        data.process({"type": "get_customer_data", "customer_id": 7})  # invalid: an ErrorResponse
        data.process({"type": "no_such_thing"})
        rows = {(s.agent, s.action): (s.calls, s.errors) for s in AGENT_CALLS.drain()}
        name = type(data).name
        assert rows[(name, "list_customers")] == (2, 0)
        assert rows[(name, "get_customer_data")] == (1, 1)
        assert rows[(name, "no_such_thing")] == (1, 1)
