"""A portfolio report of a generated 200,000-customer run stays within a memory budget (issue 12 item 1).

``cvm data generate`` writes 200,000 customers once for this module. Deciding them
with the batch path takes a minute on a busy 2-core machine, and the report does
not care how a decision was made, only what the ledger holds; so the run is
recorded the way the batch path records one, through the ledger's own
``commit_batch``: every customer's decision in its stored form (the batch's
no-action rows for most, a treatment for as many as each treatment's daily
capacity allows, approval requests holding capacity for the treatment that needs
approval), with the allocations and the capacity taken. ``cvm report`` then runs
as its own process under a small Python parent that reads the child's peak
resident memory (``RUSAGE_CHILDREN`` of a parent with no other child), so the
figure is the report's alone. Before the report was aggregated in SQL it grew by
about 28 KB a customer (1.4 GB at 50,000): 5.6 GB here. The report's numbers are
checked against SQL on the ledger file, so a cheap report cannot be a wrong one.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cvm.tools.ledger import BatchCommit, CapacityTake, NewAllocation, NewApprovalRequest, NewDecision, SQLiteLedger, utc_text
from cvm.tools.results import DecisionResult, stored_form
from cvm.utils.config import Treatment, load_config
from tests.conftest import CONFIG, isolated_cli_env, run_console_script

CUSTOMERS = 200_000
BUDGET_MB = 1024
"""Peak resident memory of the report process: the whole CLI (Python, DuckDB, matplotlib) and the report."""

_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


APPROVAL_TREATMENT = "early_upgrade"
"""The configured treatment whose cost sends it for approval (as in the sample's runs)."""
RUN_ID = "run-scale-200k"
AT = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def _decision(cid: str, treatment: Treatment | None, treatment_id: str, value: float) -> NewDecision:
    """One decision in the stored form the batch path writes."""
    status = "no_action" if treatment is None else ("pending_approval" if treatment_id == APPROVAL_TREATMENT else "success")
    result = DecisionResult(
        customer_id=cid, status=status, selected_treatment=treatment_id if treatment else "ignore",
        display_name=treatment.display_name if treatment else "No action", channel=treatment.channel if treatment else "none",
        purpose=treatment.purpose if treatment else None, expected_value=value if treatment else 0.0, confidence=1.0,
        explanation="decided by the batch optimiser", selector="rules",
        approval_request_id=f"apr-scale-{cid}" if status == "pending_approval" else None,
    )
    body = json.dumps(stored_form(result), sort_keys=True)
    return NewDecision(RUN_ID, cid, status, result.selected_treatment, body, format(hash(cid) & 0xFFFFFFFF, "016x"), utc_text(AT))


def _record_run(db: Path, customer_ids: list[str]) -> None:
    """The run as the batch path commits one: decisions, allocations, held approvals and the capacity taken."""
    config = load_config(CONFIG)
    day, at = AT.date().isoformat(), utc_text(AT)
    capped = [(tid, t) for tid, t in sorted(config.treatments.items()) if t.enabled and t.max_per_day]
    chosen: dict[str, tuple[str, Treatment]] = {}
    position = 0
    for tid, t in capped:
        for cid in customer_ids[position: position + (t.max_per_day or 0)]:
            chosen[cid] = (tid, t)
        position += t.max_per_day or 0
    allocations, approvals = [], []
    for cid, (tid, t) in chosen.items():
        key = f"{RUN_ID}:{cid}:{tid}"
        held = tid == APPROVAL_TREATMENT
        allocations.append(NewAllocation(key, RUN_ID, cid, tid, t.channel, t.purpose, day, at, None, at, "held" if held else "allocated"))
        if held:
            approvals.append(NewApprovalRequest(
                f"apr-scale-{cid}", key, RUN_ID, cid, tid, day, "cost per contact at or above the limit", "needs a human", 1.0,
                300.0, t.priority, at, utc_text(AT + timedelta(days=1)), "pending", None, None, None,
            ))
    taken = Counter(tid for tid, _ in chosen.values())
    ledger = SQLiteLedger(db)
    ledger.commit_batch(BatchCommit(
        run_id=RUN_ID, day=day, at=AT, capacity={tid: CapacityTake(taken[tid], t.max_per_day) for tid, t in capped},
        allocations=allocations, approvals=approvals, summary={"customers": len(customer_ids)},
        decisions=(
            _decision(cid, chosen[cid][1] if cid in chosen else None, chosen[cid][0] if cid in chosen else "ignore", 120.5)
            for cid in customer_ids
        ),
    ))
    ledger.close()


@pytest.fixture(scope="module")
def decided_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """200,000 generated customers and a run of all of them in the ledger, once for the module."""
    folder = tmp_path_factory.mktemp("scale")
    db = folder / "state" / "cvm.sqlite3"
    env = isolated_cli_env(folder, f"sqlite:///{db}")
    data = folder / "data"
    made = run_console_script("cvm", "data", "generate", "--customers", str(CUSTOMERS), "--out", str(data), env=env, cwd=folder, timeout=600)
    assert made.returncode == 0, made.stderr
    ids = sorted(str(c) for c in pq.read_table(data / "customers.parquet", columns=["customer_id"]).column(0).to_pylist())
    assert len(ids) == CUSTOMERS
    _record_run(db, ids)
    return {"folder": folder, "env": env, "data": data, "db": db, "run_id": RUN_ID}


def _report_with_peak(run: dict[str, Any], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``cvm report ...`` as the only child of a fresh Python process; (the run, the report's peak RSS in MB)."""
    cvm = str(Path(sys.executable).parent / "cvm")
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, cvm, "report", "--data-dir", str(run["data"]), "--output", "json", *args],
        capture_output=True, text=True, cwd=run["folder"], env=run["env"], timeout=600, stdin=subprocess.DEVNULL,
    )
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return done, peak_kb / 1024


def _sql(run: dict[str, Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(run["db"])
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_portfolio_report_of_200k_customers_within_the_memory_budget(decided_run):
    done, peak_mb = _report_with_peak(decided_run, "--run-id", decided_run["run_id"])
    assert done.returncode == 0, done.stderr
    assert peak_mb < BUDGET_MB, f"the report of {CUSTOMERS:,} customers peaked at {peak_mb:.0f} MB (budget {BUDGET_MB} MB)"

    artifact = json.loads(done.stdout)
    doc = json.loads(Path(artifact["json_path"]).read_text(encoding="utf-8"))
    by_status = dict(_sql(decided_run, "SELECT status, COUNT(*) FROM decisions WHERE run_id = ? GROUP BY status", decided_run["run_id"]))
    assert doc["totals"]["customers"] == CUSTOMERS and doc["totals"]["by_status"] == by_status
    pending = _sql(decided_run, "SELECT COUNT(*) FROM approval_requests WHERE run_id = ? AND status = 'pending'", decided_run["run_id"])[0][0]
    assert doc["totals"]["pending_approvals"] == pending and len(doc["approvals_pending"]) == min(pending, doc["list_limit"])
    assert sum(b["customers"] for b in doc["risk_distribution"]) == CUSTOMERS
    assert sum(b["below"] + b["at_risk"] for b in doc["churn_histogram"]) == CUSTOMERS - doc["risk_distribution"][-1]["customers"]
    assert doc["totals"]["at_risk_customers"] == sum(b["at_risk"] for b in doc["churn_histogram"])
    assert sum(s["customers"] for s in doc["segments"]) == CUSTOMERS and all(0 < s["sampled"] <= 200 for s in doc["segments"])
    assert len(doc["at_risk"]) == min(doc["totals"]["at_risk_customers"], 10) and all(a["reasons"] for a in doc["at_risk"])
    given = _sql(decided_run, "SELECT COUNT(*) FROM decisions WHERE run_id = ? AND status <> 'no_action'", decided_run["run_id"])[0][0]
    assert doc["totals"]["given"] == given and doc["totals"]["expected_value_total"] == pytest.approx(120.5 * given)
    held = {c["treatment_id"]: c["held_by_run"] for c in doc["capacity"] if c["held_by_run"]}
    assert held == {APPROVAL_TREATMENT: pending}
    assert {Path(c).name for c in artifact["charts"]} == {"decisions_by_treatment.png", "capacity_use.png", "risk_distribution.png"}

    [(snapshot,)] = _sql(decided_run, "SELECT snapshot_json FROM portfolio_snapshots WHERE run_id = ?", decided_run["run_id"])
    kept = json.loads(snapshot)
    assert kept["customers"] == CUSTOMERS and kept["contacts"] == doc["totals"]["given"] and kept["measured_value"] is None
