"""Reading one run back from the ledger: its decisions, failures, allocations, approvals and capacity.

``collect_run`` reads the ``decisions`` table's rows for the run (validated
as the result record, ``cvm.tools.results.DecisionResult``), the customers
whose decision failed (``decision_error`` audit entries with no decision
after them), its allocations, its approval requests and the capacity
counters of the day(s) it allocated on. ``CustomerRisk`` is the churn risk
the Report agent reads through the Data and Journey agents. Nothing here
changes the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Protocol

from pydantic import ValidationError

from cvm.tools.ledger_models import AllocationRow, ApprovalRow, ApprovalStatus, AuditEntry, StoredDecision
from cvm.tools.results import DecisionResult, finite_only
from cvm.tools.run_aggregates import OpenError as ErrorRecord
from cvm.utils.errors import LedgerError, UsageError


class ReportLedger(Protocol):
    """What a report reads from the ledger (never writes): a part of ``cvm.tools.ledger.Ledger``."""

    def decided_in_run(self, run_id: str) -> dict[str, StoredDecision]: ...
    def decision(self, run_id: str, customer_id: str) -> StoredDecision | None: ...
    def audit_entries(self, customer_id: str | None = None, run_id: str | None = None) -> list[AuditEntry]: ...
    def allocations(self, customer_id: str | None = None, run_id: str | None = None, limit: int = 1000) -> list[AllocationRow]: ...
    def approvals(self, status: ApprovalStatus | None = None, customer_id: str | None = None) -> list[ApprovalRow]: ...
    def used(self, treatment_id: str, day: str) -> int: ...


@dataclass(frozen=True)
class DecisionRecord:
    """One row of the ledger's ``decisions`` table, read back as the result record."""

    customer_id: str
    result: DecisionResult


@dataclass(frozen=True)
class RunRecords:
    """Everything the ledger holds about one run."""

    run_id: str
    decisions: dict[str, DecisionRecord]
    errors: dict[str, ErrorRecord]
    allocations: list[AllocationRow]
    approvals: list[ApprovalRow]
    capacity_used: dict[tuple[str, str], int]
    """(treatment id, day) -> units used that day by every run (the ``capacity_usage`` table)."""
    days: tuple[str, ...]
    audit: list[AuditEntry]

    @property
    def customer_ids(self) -> list[str]:
        """Every customer of the run, decided or failed, in the order they were first handled."""
        return list(dict.fromkeys([*self.decisions, *self.errors]))


@dataclass(frozen=True)
class CustomerRisk:
    """A customer's churn risk as read from the data when the report is made."""

    customer_id: str
    churn_probability: float | None = None
    signals: Mapping[str, str] = field(default_factory=dict)
    """Journey signal -> its evidence in words."""
    error: str | None = None
    """Why the data could not be read (the risk is then unknown)."""


def _local_day(instant: str, tz: tzinfo) -> str:
    return datetime.fromisoformat(instant).astimezone(tz).date().isoformat()


def unknown_run(run_id: str) -> UsageError:
    return UsageError(
        f"unknown run id {run_id!r}: the ledger has no decisions for it (dry runs are not recorded); "
        "the run id is printed by cvm process and stored in its result file"
    )


def collect_run(
    ledger: ReportLedger, run_id: str, tz: tzinfo, treatment_ids: Iterable[str] = (), *, allow_empty: bool = False,
    customer_id: str | None = None,
) -> RunRecords:
    """Read one run from the ledger; ``UsageError`` when the ledger knows nothing of it (unless ``allow_empty``).

    Decisions are the ``decisions`` table's rows for the run (per-customer and batch
    paths alike); errors are ``decision_error`` audit entries of customers the run
    never recorded a decision for (a failed decision is audited, not recorded).
    With ``customer_id``, only that customer's rows are read (a customer view of a
    million-customer run reads one decision, not a million).
    """
    if customer_id is None:
        stored_rows = ledger.decided_in_run(run_id)
    else:
        one = ledger.decision(run_id, customer_id)
        stored_rows = {customer_id: one} if one is not None else {}
    decisions: dict[str, DecisionRecord] = {}
    for cid, stored in sorted(stored_rows.items()):
        try:
            decisions[cid] = DecisionRecord(cid, DecisionResult.model_validate(finite_only(stored.result)))
        except ValidationError as exc:
            first = exc.errors()[0]
            field_name = ".".join(str(p) for p in first["loc"]) or "<record>"
            raise LedgerError(f"the decision of {cid} in run {run_id} cannot be read ({field_name}: {first['msg']})") from None
    audit = ledger.audit_entries(customer_id=customer_id, run_id=run_id)
    failed: dict[str, AuditEntry] = {}
    for entry in audit:
        if entry.event == "decision_error" and entry.customer_id:
            failed[entry.customer_id] = entry  # the latest failure
    errors = {
        cid: ErrorRecord(cid, str(entry.payload.get("error") or "unknown error"), entry.at)
        for cid, entry in sorted(failed.items())
        if cid not in decisions
    }
    allocations = ledger.allocations(customer_id=customer_id, run_id=run_id, limit=10**9)
    referenced = {d.result.approval_request_id for d in decisions.values() if d.result.approval_request_id}
    approvals = [a for a in ledger.approvals(customer_id=customer_id) if a.run_id == run_id or a.request_id in referenced]
    if not (decisions or errors or allocations or approvals or allow_empty):
        raise unknown_run(run_id)
    days = sorted({a.day for a in allocations} | {a.day for a in approvals if a.run_id == run_id})
    if not days:  # nothing allocated: the day(s) the run's ledger entries were written
        days = sorted({_local_day(e.at, tz) for e in audit})
    used_ids = {a.treatment_id for a in allocations}
    capacity = {(tid, day): ledger.used(tid, day) for day in days for tid in sorted(set(treatment_ids) | used_ids)}
    return RunRecords(run_id, decisions, errors, allocations, approvals, capacity, tuple(days), audit)
