"""The ledger's rows, typed: what every ``Ledger`` backend returns and what a batch run writes.

Rows read back (``AllocationRow``, ``ApprovalRow``, ``StoredDecision``, ``AuditEntry``)
are frozen models on the records' base (``cvm.utils.models.FrozenModel``), so they travel
inside messages and dump to JSON as they are. Instants are UTC ISO text, as stored:
they compare correctly as strings.

Rows a batch run writes in one transaction (``NewAllocation``, ``NewApprovalRequest``,
``NewDecision``, ``CapacityTake``) are named tuples: a million of them cost little more
than plain tuples, and their field order is the column order every backend inserts.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from cvm.utils.models import FrozenModel

ApprovalStatus = Literal["pending", "approved", "rejected", "expired"]
AllocationState = Literal["allocated", "held", "released"]
"""``held``: capacity kept for a pending approval; ``released``: it counts for nothing any more."""


class AllocationRow(FrozenModel):
    """One allocation: a unit of a treatment's daily capacity taken (or held) for a customer in a run."""

    idempotency_key: str
    run_id: str
    customer_id: str
    treatment_id: str
    channel: str
    purpose: str
    day: str
    """The capacity day (``YYYY-MM-DD``) the unit was taken from."""
    contact_at: str
    """When the contact happens (UTC): the scheduled time when do-not-disturb moved it."""
    scheduled_for: str | None = None
    created_at: str
    state: AllocationState = "allocated"


class ApprovalRow(FrozenModel):
    """One approval request and, once decided, its decision."""

    request_id: str
    idempotency_key: str
    """The allocation holding the request's capacity."""
    run_id: str
    customer_id: str
    treatment_id: str
    day: str
    rule: str
    explanation: str
    confidence: float | None = None
    expected_value: float | None = None
    priority: int
    requested_at: str
    expires_at: str
    status: ApprovalStatus = "pending"
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None


class StoredDecision(FrozenModel):
    """One recorded decision of a run for a customer."""

    run_id: str
    customer_id: str
    status: str | None = None
    treatment_id: str | None = None
    result: dict[str, Any]
    """The result record as stored (JSON), read back as written."""
    input_digest: str
    decided_at: str


class AuditEntry(FrozenModel):
    """One entry of the append-only audit log."""

    id: int
    """Increasing in the order entries were written."""
    at: str
    event: str
    run_id: str | None = None
    customer_id: str | None = None
    treatment_id: str | None = None
    input_digest: str | None = None
    payload: dict[str, Any]


class LiveContact(NamedTuple):
    """An allocation that still counts against the contact caps (given or held)."""

    customer_id: str
    purpose: str
    treatment_id: str
    contact_at: str


class CapacityTake(NamedTuple):
    """The units of one treatment a batch run takes on its day, and the day's maximum (None: unlimited)."""

    taken: int
    max_per_day: int | None


class NewAllocation(NamedTuple):
    """An allocation a batch run writes (the columns of ``AllocationRow``, in order)."""

    idempotency_key: str
    run_id: str
    customer_id: str
    treatment_id: str
    channel: str
    purpose: str
    day: str
    contact_at: str
    scheduled_for: str | None
    created_at: str
    state: AllocationState


class NewApprovalRequest(NamedTuple):
    """An approval request a batch run writes (the columns of ``ApprovalRow``, in order)."""

    request_id: str
    idempotency_key: str
    run_id: str
    customer_id: str
    treatment_id: str
    day: str
    rule: str
    explanation: str
    confidence: float | None
    expected_value: float | None
    priority: int
    requested_at: str
    expires_at: str
    status: ApprovalStatus
    decided_by: str | None
    decided_at: str | None
    reason: str | None


class NewDecision(NamedTuple):
    """A decision a batch run records (``result_json``: the result record as JSON text)."""

    run_id: str
    customer_id: str
    status: str
    treatment_id: str | None
    result_json: str
    input_digest: str
    decided_at: str
