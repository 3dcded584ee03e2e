"""Mission Control over time: a snapshot of KPIs per run, kept in the state database, and the trend across runs.

Two real runs on the sample go into one SQLite ledger; the first is reported on
(which keeps its snapshot), the second never is, so the trend takes its snapshot
itself. Every KPI is checked against SQL on the ledger file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvm.agents.messages import DecideApproval, GenerateReport, ReportArtifact, ReportTrend, TrendArtifact
from cvm.reporting.trend import Snapshot
from cvm.tools.snapshot_store import SnapshotStore
from tests.reporting.conftest import PNG, SAMPLE_IDS, sql

FIRST, SECOND = "run-trend-1", "run-trend-2"


@pytest.fixture
def two_runs(make_runtime):
    first = make_runtime(run_id=FIRST)
    first.orchestrator.decide_many(list(SAMPLE_IDS[:6]))
    second = make_runtime(run_id=SECOND)
    second.orchestrator.decide_many(list(SAMPLE_IDS[6:]))
    return first, second


def _snapshot(db_url: str, run_id: str) -> dict:
    [(body,)] = sql(db_url, "SELECT snapshot_json FROM portfolio_snapshots WHERE run_id = ?", run_id)
    return json.loads(body)


@pytest.mark.usefixtures("no_charts")
class TestSnapshots:
    def test_a_portfolio_report_keeps_the_runs_kpis(self, two_runs, db_url):
        first, _ = two_runs
        assert isinstance(first.report.process(GenerateReport(run_id=FIRST)), ReportArtifact)
        kept = _snapshot(db_url, FIRST)
        given = sql(db_url, "SELECT COUNT(*) FROM decisions WHERE run_id = ? AND status IN ('success', 'pending_approval')", FIRST)[0][0]
        pending = sql(db_url, "SELECT COUNT(*) FROM approval_requests WHERE run_id = ? AND status = 'pending'", FIRST)[0][0]
        held = sql(db_url, "SELECT COUNT(*) FROM allocations WHERE run_id = ? AND state = 'held'", FIRST)[0][0]
        values = [json.loads(r)["expected_value"] for (r,) in sql(
            db_url, "SELECT result_json FROM decisions WHERE run_id = ? AND status IN ('success', 'pending_approval')", FIRST)]
        assert (kept["customers"], kept["contacts"], kept["approvals_pending"]) == (6, given, pending)
        assert kept["capacity_held_by_run"] == held and kept["capacity_used_by_run"] == given - held
        assert kept["expected_value"] == pytest.approx(sum(values), abs=0.01)
        assert kept["measured_value"] is None, "no outcomes in the ledger: never estimated"
        assert sum(kept["churn_bands"].values()) == 6 and kept["at_risk"] == 2  # U125 and U127
        assert kept["approval_mean_hours"] is None and kept["oldest_pending_hours"] is not None
        assert len(json.dumps(kept)) < 2000, "aggregates only"
        assert sum(seg["customers"] for seg in kept["segments"].values()) == 6
        assert all(seg["forecast_mean"] is not None for seg in kept["segments"].values()), "the report forecast each segment"
        assert sql(db_url, "SELECT COUNT(*) FROM portfolio_snapshots")[0][0] == 1, "a customer view or another run keeps none"

    def test_reporting_again_refreshes_it_with_the_approval_delay(self, two_runs, db_url):
        first, _ = two_runs
        first.report.process(GenerateReport(run_id=FIRST))
        [(request,)] = sql(db_url, "SELECT request_id FROM approval_requests WHERE run_id = ?", FIRST)
        first.orchestrator.governance.process(DecideApproval(request_id=request, decision="approve", by="Ann"))
        first.report.process(GenerateReport(run_id=FIRST))
        kept = _snapshot(db_url, FIRST)
        [(hours,)] = sql(
            db_url, "SELECT (julianday(decided_at) - julianday(requested_at)) * 24 FROM approval_requests WHERE request_id = ?", request
        )
        assert kept["approvals_pending"] == 0 and kept["approvals_decided"] == 1
        assert kept["approval_mean_hours"] == pytest.approx(hours, abs=0.01) == kept["approval_max_hours"]
        assert kept["contacts_now"] == kept["contacts"]

    def test_the_store_keeps_one_per_run(self, tmp_path):
        store = SnapshotStore(tmp_path / "s.sqlite3")
        store.put("r1", "2026-11-23T10:00:00+00:00", "t1", {"a": 1})
        store.put("r1", "2026-11-23T10:00:00+00:00", "t2", {"a": 2})
        store.put("r0", "2026-11-22T10:00:00+00:00", "t3", {"a": 3})
        assert store.get("r1") == {"a": 2} and store.get("nope") is None
        assert list(store.all()) == ["r0", "r1"]


class TestTrend:
    @pytest.mark.slow
    def test_every_run_in_the_ledger_oldest_first_missing_snapshots_taken(self, two_runs, db_url, tmp_path):
        first, second = two_runs
        first.report.process(GenerateReport(run_id=FIRST))
        artifact = second.report.process(ReportTrend())
        assert isinstance(artifact, TrendArtifact), artifact
        assert artifact.runs == (FIRST, SECOND) and artifact.computed == (SECOND,)
        assert artifact.refreshed == (FIRST,), "its approval was pending: its ledger KPIs are read again"
        assert sql(db_url, "SELECT COUNT(*) FROM portfolio_snapshots")[0][0] == 2, "the missing one is kept too"
        doc = json.loads(Path(artifact.json_path).read_text(encoding="utf-8"))
        runs = [Snapshot.model_validate({k: v for k, v in r.items() if k != "capacity_use_pct"}) for r in doc["runs"]]
        assert [r.customers for r in runs] == [6, 6]
        for snap in runs:
            given = sql(db_url, "SELECT COUNT(*) FROM decisions WHERE run_id = ? AND status IN ('success', 'pending_approval')",
                        snap.run_id)[0][0]
            assert snap.contacts == given
        markdown = Path(artifact.markdown_path).read_text(encoding="utf-8")
        for heading in ("## Contacts and value", "## Churn bands", "## Churn by segment", "## Capacity", "## Approvals"):
            assert heading in markdown
        assert "not yet measured" in markdown and FIRST in markdown and SECOND in markdown
        assert [Path(c).name for c in artifact.charts] == ["trend.png"] and Path(artifact.charts[0]).read_bytes()[:8] == PNG
        assert Path(artifact.markdown_path).resolve().parent == (tmp_path / "output" / "reports").resolve()

        again = second.report.process(ReportTrend())
        assert isinstance(again, TrendArtifact) and again.computed == ()

    def test_a_decided_approval_moves_the_backlog_and_the_delay_churn_stays_as_first_read(self, two_runs, db_url, no_charts):
        first, _ = two_runs
        first.report.process(GenerateReport(run_id=FIRST))
        before = _snapshot(db_url, FIRST)
        [(request,)] = sql(db_url, "SELECT request_id FROM approval_requests WHERE run_id = ?", FIRST)
        first.orchestrator.governance.process(DecideApproval(request_id=request, decision="reject", by="Bob", reason="no"))
        artifact = first.report.process(ReportTrend())
        assert isinstance(artifact, TrendArtifact) and FIRST in artifact.refreshed
        after = _snapshot(db_url, FIRST)
        assert (after["approvals_pending"], after["approvals_decided"]) == (0, 1) and after["approval_mean_hours"] is not None
        assert after["contacts_now"] == before["contacts_now"] - 1 and after["contacts"] == before["contacts"]
        for kept in ("churn_bands", "at_risk", "churn_read_at", "segments", "forecast_horizon_days"):
            assert after[kept] == before[kept], kept
        assert FIRST not in first.report.process(ReportTrend()).refreshed, "nothing pending any more"

    def test_an_empty_ledger(self, make_runtime, monkeypatch):
        monkeypatch.setattr("cvm.reporting.charts._figure_class", lambda: None)
        artifact = make_runtime().report.process(ReportTrend())
        assert isinstance(artifact, TrendArtifact) and artifact.runs == ()
        assert "holds no recorded run yet" in Path(artifact.markdown_path).read_text(encoding="utf-8")
