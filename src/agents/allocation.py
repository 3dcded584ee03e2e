"""The Allocation agent: daily capacity, the contact caps and allocation history, all on the ledger.

Checking and taking capacity happen in one ledger transaction
(``allocate_resource``), together with the per-purpose contact cap, the
per-customer daily cap and the repeat window; ``check_availability`` is advisory
(for dry runs and for telling a selector what is left), never a reservation.
``screen_contacts`` tells the per-customer path which treatments the contact rules
refuse a customer, through ``cvm.decision.screening.contact_blocks``: the masks
the batch path builds for every customer, here for one.

The module-level functions re-check a replayed decision (consent and contact
policy against today's data), which withdraws a decision that is no longer
allowed and releases its capacity once, and withdraw an earlier run's waiting
approval request whose customer has withdrawn consent; both decision paths use them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from cvm.agents.base import BaseAgent, handles
from cvm.agents.messages import (
    Ack,
    AllocateResource,
    AllocationHistoryResponse,
    AllocationRefusal,
    AllocationResponse,
    AllocationStatus,
    ApprovalDetails,
    ApprovalRequestInfo,
    AvailabilityResponse,
    CheckAvailability,
    CheckContactPolicy,
    ConstraintsResponse,
    ConstraintStatus,
    ContactPolicyResponse,
    ContactScreen,
    DecisionResult,
    GetAllocationHistory,
    GetConstraints,
    RejectionReason,
    ResetConstraints,
    ScreenContacts,
)
from cvm.decision import policy as rules
from cvm.decision.screening import ContactContext, contact_blocks
from cvm.tools.clock import Clock
from cvm.tools.ledger import WITHDRAWN_BY, AllocationRequest, ApprovalHold, ApprovalRow, Ledger
from cvm.utils.config import IGNORE_ID, ContactPolicy, CVMConfig, Treatment
from cvm.utils.errors import ApprovalError, UsageError
from cvm.utils.ids import decision_key as idempotency_key  # the one format of a decision key, as both paths use it
from cvm.utils.ids import new_approval_request_id

_DETAILS = {
    "allocated": "capacity taken",
    "duplicate": "already allocated for this run and customer; nothing new taken",
    "capacity_exhausted": "no capacity left today",
    "contact_limit": "the customer already had the maximum contacts for this purpose in the window",
    "repeat_limit": "the customer was given this treatment within the repeat window",
    "held": "capacity held until the approval request is decided",
    "pending_approval_limit": "too many requests for this treatment are already waiting for approval",
}


CONTACT_STATUSES = ("success", "pending_approval")
"""Decisions that take capacity and lead to a contact (once approved)."""


def refusal(status: AllocationStatus) -> AllocationRefusal:
    """An allocation status that took no capacity: the reason its treatment is an alternative."""
    if status == "allocated" or status == "held" or status == "duplicate":
        raise ValueError(f"allocation status {status!r} took capacity; it is not a refusal")
    return status


def daily_cap_problem(
    ledger: Ledger, contact: ContactPolicy, treatment: Treatment, customer_id: str, moment: datetime,
    *, counting_itself: bool = False,
) -> str | None:
    """Why the daily cap refuses the customer a contact on ``moment``'s local day, or None.

    ``counting_itself``: the contact is already among the ledger's live contacts (a replay
    re-check), so it is not counted against itself.
    """
    cap = rules.daily_cap(treatment, contact)
    if cap is None:
        return None
    start, end = rules.contact_day(moment)
    others = ledger.contacts_between(customer_id, start, end) - int(counting_itself)
    return rules.daily_cap_detail(others, cap, start) if others >= cap else None


def _purpose_cap_problem(ledger: Ledger, contact: ContactPolicy, treatment: Treatment, customer_id: str, moment: datetime) -> str | None:
    """For a replayed contact: do the customer's other contacts for its purpose now reach the cap?"""
    cap = rules.purpose_cap(contact, treatment.purpose)
    if cap is None:
        return None
    others = ledger.contacts_since(customer_id, treatment.purpose, moment - timedelta(days=contact.window_days)) - 1
    if others < cap:
        return None
    return f"{others} other {treatment.purpose} contact(s) within {contact.window_days} days (cap {cap})"


def recheck_replayed(
    ledger: Ledger, config: CVMConfig, result: DecisionResult, run_id: str, no_consent: str | None, now: datetime,
) -> DecisionResult:
    """A replayed contact decision, or its withdrawal when today's consent or contact policy no longer allows it.

    ``no_consent`` says why today's permissions refuse the treatment (None: they allow it);
    each path reads permissions its own way. A withdrawal is written once (the ledger
    guards it), releases the capacity, and closes a pending approval request.
    """
    if result.status not in CONTACT_STATUSES or result.selected_treatment is None:
        return result
    if no_consent is not None:
        return _withdrawn(ledger, result, run_id, "consent_withdrawn", f"consent withdrawn since the decision: {no_consent}", now)
    treatment = config.treatment(result.selected_treatment)
    taken = ledger.allocation_for(idempotency_key(run_id, result.customer_id))
    moment = datetime.fromisoformat(taken.contact_at).astimezone(now.tzinfo) if taken else now
    contact = config.policies.contact
    problem = _purpose_cap_problem(ledger, contact, treatment, result.customer_id, moment) or daily_cap_problem(
        ledger, contact, treatment, result.customer_id, moment, counting_itself=True
    )
    return result if problem is None else _withdrawn(ledger, result, run_id, "contact_limit", problem, now)


def _withdrawn(
    ledger: Ledger, result: DecisionResult, run_id: str, reason: RejectionReason, detail: str, now: datetime,
) -> DecisionResult:
    """Store the decision's withdrawal (once: the ledger guards it), releasing what it took; the record as stored."""
    withdrawn = rules.withdrawn(result, reason, detail)
    stored = withdrawn.model_dump(mode="json", exclude={"replayed"})
    if ledger.withdraw_decision(run_id, result.customer_id, stored, f"{reason}: {detail}", now):
        return withdrawn
    # Another replay withdrew it first: report what it stored.
    first = ledger.decision(run_id, result.customer_id)
    return DecisionResult.model_validate({**(first.result if first else stored), "replayed": True})


def waiting_refusal(
    config: CVMConfig, treatment_id: str, no_consent: Callable[[Treatment], str | None],
) -> tuple[RejectionReason, str] | None:
    """Why a request waiting from an earlier run may no longer go ahead, or None when it may.

    Its treatment left the configuration (a custom treatment removed), or today's permissions
    refuse it (``no_consent``: each path reads permissions its own way).
    """
    treatment = config.treatments.get(treatment_id)
    if treatment is None:
        return "disabled", f"treatment {treatment_id} is no longer in the configuration"
    problem = no_consent(treatment)
    return None if problem is None else ("consent_withdrawn", f"consent withdrawn since the request: {problem}")


def withdraw_waiting(
    ledger: Ledger, request: ApprovalRow | ApprovalRequestInfo, reason: RejectionReason, detail: str, now: datetime,
) -> None:
    """Close a request from an earlier run that may no longer go ahead (``waiting_refusal``), releasing its hold.

    Without this a later run would keep reporting the customer as waiting, and an
    approver could still turn the hold into a contact the customer has said no to.
    The earlier run's stored decision is withdrawn exactly as its own replay would
    withdraw it; a request whose run stopped before recording its decision is closed
    directly. Of two runs racing, one closes it and the other finds it closed.
    """
    stored = ledger.decision(request.run_id, request.customer_id)
    if stored is not None:
        result = DecisionResult.model_validate(stored.result)
        if result.status in CONTACT_STATUSES:
            _withdrawn(ledger, result, request.run_id, reason, detail, now)
    try:  # closed already when its decision was withdrawn above; else closed here
        ledger.decide_approval(request.request_id, "rejected", WITHDRAWN_BY, f"{reason}: {detail}", now)
    except ApprovalError:  # closed above, or decided or withdrawn by someone else in the meantime
        return


class AllocationAgent(BaseAgent):
    """Owns capacity; every answer is read from or written to the ledger."""

    name = "AllocationAgent"

    def __init__(self, config: CVMConfig, ledger: Ledger, clock: Clock):
        self._config = config
        self._ledger = ledger
        self._clock = clock

    def _today(self) -> str:
        return self._clock.now().date().isoformat()

    @handles(AllocateResource)
    def _allocate(self, message: AllocateResource) -> AllocationResponse:
        treatment = self._config.treatment(message.treatment_key)
        if treatment.id == IGNORE_ID:
            raise UsageError("'ignore' takes no capacity and cannot be allocated")
        now = self._clock.now()
        contact_at = message.scheduled_for or now
        policy = self._config.policies.contact
        daily_cap = rules.daily_cap(treatment, policy)
        outcome = self._ledger.allocate(
            AllocationRequest(
                idempotency_key=idempotency_key(message.run_id, message.customer_id),
                run_id=message.run_id,
                customer_id=message.customer_id,
                treatment_id=treatment.id,
                channel=treatment.channel,
                purpose=treatment.purpose,
                day=now.date().isoformat(),
                max_per_day=treatment.max_per_day,
                contact_at=contact_at,
                contact_window_start=contact_at - timedelta(days=policy.window_days),
                contact_cap=rules.purpose_cap(policy, treatment.purpose),
                scheduled_for=message.scheduled_for,
                repeat_window_start=self._repeat_window_start(contact_at),
                daily_cap=daily_cap,
                contact_day=rules.contact_day(contact_at),
                approval=self._hold(message.approval, treatment.priority, now) if message.approval else None,
            )
        )
        status: AllocationStatus
        if outcome.status == "daily_contact_limit":
            status, detail = "contact_limit", rules.daily_cap_detail(outcome.contacts or 0, daily_cap or 0, rules.contact_day(contact_at)[0])
        else:
            status, detail = outcome.status, _DETAILS[outcome.status]
        return AllocationResponse(
            treatment_key=outcome.treatment_id,
            customer_id=message.customer_id,
            allocated=outcome.allocated,
            status=status,
            detail=detail,
            scheduled_for=outcome.scheduled_for,
            request_id=outcome.request_id,
        )

    def _hold(self, details: ApprovalDetails, priority: int, now: datetime) -> ApprovalHold:
        policy = self._config.governance.approval_policy
        return ApprovalHold(
            request_id=new_approval_request_id(now),
            rule=details.rule, explanation=details.explanation, confidence=details.confidence,
            expected_value=details.expected_value, priority=priority, requested_at=now,
            expires_at=now + timedelta(hours=policy.expiry_hours), max_pending=policy.max_pending_per_treatment,
        )

    def _repeat_window_start(self, moment: datetime) -> datetime | None:
        days = self._config.policies.contact.repeat_window_days
        return moment - timedelta(days=days) if days else None

    def _availability(self, treatment_id: str, day: str) -> tuple[int, int | None]:
        treatment = self._config.treatment(treatment_id)
        used = self._ledger.used(treatment.id, day)
        remaining = None if treatment.max_per_day is None else max(0, treatment.max_per_day - used)
        return used, remaining

    @handles(CheckAvailability)
    def _check_availability(self, message: CheckAvailability) -> AvailabilityResponse:
        treatment = self._config.treatment(message.treatment_key)
        used, remaining = self._availability(treatment.id, self._today())
        return AvailabilityResponse(
            treatment_key=treatment.id, available=treatment.enabled and remaining != 0,
            max_per_day=treatment.max_per_day, used_today=used, remaining=remaining,
        )

    @handles(CheckContactPolicy)
    def _check_contact_policy(self, message: CheckContactPolicy) -> ContactPolicyResponse:
        policy = self._config.policies.contact
        cap = rules.purpose_cap(policy, message.purpose)
        since = self._clock.now() - timedelta(days=policy.window_days)
        count = self._ledger.contacts_since(message.customer_id, message.purpose, since)
        repeat_since = self._repeat_window_start(self._clock.now())
        repeat_blocked = bool(
            message.treatment_key and repeat_since is not None
            and self._ledger.given_since(message.customer_id, message.treatment_key, repeat_since)
        )
        return ContactPolicyResponse(
            customer_id=message.customer_id, purpose=message.purpose,
            allowed=(cap is None or count < cap) and not repeat_blocked,
            contacts_in_window=count, cap=cap, window_days=policy.window_days, repeat_blocked=repeat_blocked,
        )

    @handles(ScreenContacts)
    def _screen_contacts(self, message: ScreenContacts) -> ContactScreen:
        """The contact rules for one customer, through the same function the batch path runs over every customer."""
        now = self._clock.now()
        context = ContactContext(self._config.policies.contact, now, lambda _: message.quiet_until)
        contacts = self._ledger.live_contacts_since(context.since, customer_id=message.customer_id)
        repeat_start = context.repeat_start
        rejected = [] if repeat_start is None else self._ledger.approvals(
            status="rejected", customer_id=message.customer_id, decided_since=repeat_start)
        treatments = list(self._config.treatments.values())
        blocks = contact_blocks(contacts, rejected, {message.customer_id: 0}, 1, treatments, context)
        return ContactScreen(customer_id=message.customer_id, blocked=blocks.row(0, treatments))

    @handles(GetConstraints)
    def _get_constraints(self, message: GetConstraints) -> ConstraintsResponse:
        day = self._today()
        rows = []
        for t in sorted(self._config.treatments.values(), key=lambda t: (t.priority, t.id)):
            used, remaining = self._availability(t.id, day)
            rows.append(
                ConstraintStatus(
                    treatment_id=t.id, display_name=t.display_name, enabled=t.enabled, max_per_day=t.max_per_day,
                    used_today=used, remaining=remaining, cost_per_contact=t.cost_per_contact, priority=t.priority,
                )
            )
        return ConstraintsResponse(day=day, constraints=tuple(rows))

    @handles(ResetConstraints)
    def _reset_constraints(self, message: ResetConstraints) -> Ack:
        if message.treatment_key is not None:
            self._config.treatment(message.treatment_key)
        cleared = self._ledger.reset_usage(self._today(), message.treatment_key, self._clock.now())
        scope = message.treatment_key or "every treatment"
        return Ack(detail=f"reset today's capacity use for {scope} ({cleared} counter(s) cleared; audited)")

    @handles(GetAllocationHistory)
    def _history(self, message: GetAllocationHistory) -> AllocationHistoryResponse:
        rows = self._ledger.allocations(customer_id=message.customer_id, run_id=message.run_id, limit=message.limit)
        return AllocationHistoryResponse(allocations=tuple(rows))
