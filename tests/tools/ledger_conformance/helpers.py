"""What the conformance tests share: requests with sensible defaults, and worker OS processes on one ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import tests
from cvm.tools.ledger import AllocationRequest, ApprovalHold
from tests.tools.ledger_conformance.backends import LedgerBackend

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
DAY = "2026-11-23"
TREATMENT = "early_upgrade"
REPO = Path(tests.__file__).resolve().parents[1]

# The start of every worker script: open the ledger of the backend under test, say so with a "ready" file,
# then wait for the "go" file so that all workers start together. The script's own arguments follow the first three.
WORKER_PRELUDE = r"""
import os, sys, time
from pathlib import Path
from tests.tools.ledger_conformance.backends import connect
kind, location, go = sys.argv[1:4]
args = sys.argv[4:]
ledger = connect(kind, location)
ledger.approvals()  # connected, schema read, before the start signal
Path(f"{go}.ready.{os.getpid()}").touch()
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.001)
"""


def request(
    key: str,
    *,
    customer_id: str = "U1",
    treatment_id: str = "retention_email",
    channel: str = "email",
    purpose: str = "marketing",
    day: str = DAY,
    max_per_day: int | None = 10,
    contact_at: datetime = NOW,
    window_start: datetime = NOW - timedelta(days=7),
    contact_cap: int | None = None,
    scheduled_for: datetime | None = None,
    run_id: str = "run-1",
) -> AllocationRequest:
    """An allocation request with sensible defaults for the test at hand."""
    return AllocationRequest(
        idempotency_key=key,
        run_id=run_id,
        customer_id=customer_id,
        treatment_id=treatment_id,
        channel=channel,
        purpose=purpose,
        day=day,
        max_per_day=max_per_day,
        contact_at=contact_at,
        contact_window_start=window_start,
        contact_cap=contact_cap,
        scheduled_for=scheduled_for,
    )


def hold(request_id: str, *, max_pending: int | None = None, expires_in: timedelta = timedelta(hours=24)) -> ApprovalHold:
    return ApprovalHold(
        request_id=request_id, rule="cost per contact 60.00 is at or above 50.00", explanation="test",
        confidence=0.9, expected_value=100.0, priority=2, requested_at=NOW, expires_at=NOW + expires_in,
        max_pending=max_pending,
    )


def held_request(
    key: str, customer_id: str, request_id: str | None, *, treatment_id: str = TREATMENT, max_per_day: int | None = 50,
    max_pending: int | None = None, contact_cap: int | None = None, run_id: str = "run-1",
) -> AllocationRequest:
    """An allocation request that holds capacity for approval (no hold when ``request_id`` is None)."""
    return AllocationRequest(
        idempotency_key=key, run_id=run_id, customer_id=customer_id, treatment_id=treatment_id, channel="email",
        purpose="marketing", day=DAY, max_per_day=max_per_day, contact_at=NOW, contact_window_start=NOW - timedelta(days=7),
        contact_cap=contact_cap, approval=hold(request_id, max_pending=max_pending) if request_id else None,
    )


def run_workers(backend: LedgerBackend, script: str, argvs: list[list[str]]) -> list:
    """One OS process per argument list, each running ``WORKER_PRELUDE + script`` on the backend's ledger,
    released together once every one has opened it; returns what each printed (JSON)."""
    go = backend.root / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_PRELUDE + script, backend.name, backend.location(), str(go), *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for argv in argvs
    ]
    deadline = time.monotonic() + 60
    while len(list(backend.root.glob("go.ready.*"))) < len(procs) and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            break  # a worker died before it was ready: its error is reported below
        time.sleep(0.005)
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs
