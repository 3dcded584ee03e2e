"""The Governance agent: which decisions need a human, and the approval requests' life cycle.

A decision needs approval when any rule of ``governance.approval_policy``
applies (cost per contact, named treatments, customer value, low confidence) or
its treatment says ``requires_approval``. The request is opened by the
Allocation agent in the same ledger transaction that holds the capacity;
approving turns the hold into an allocation, rejecting or expiring releases it.
"""

from __future__ import annotations

from cvm.agents.base import BaseAgent, handles
from cvm.agents.messages import (
    Ack,
    ApprovalCheck,
    ApprovalList,
    ApprovalRequestInfo,
    CheckApproval,
    DecideApproval,
    ExpireApprovals,
    GetApproval,
    ListApprovals,
)
from cvm.tools.clock import Clock
from cvm.tools.ledger import ApprovalRow, ApprovalStatus, Ledger
from cvm.tools.results import AUTO_APPROVER as AUTO_APPROVER  # the approver name under --auto-approve, with the record
from cvm.utils.config import ApprovalPolicy, CVMConfig, Treatment
from cvm.utils.errors import ApprovalError, UsageError
from cvm.utils.text import first_control, without_controls


def approval_rule(
    treatment: Treatment, policy: ApprovalPolicy, *, confidence: float | None, customer_value: float | None
) -> str | None:
    """The first approval rule that applies, in words, or None when no human is needed."""
    where = "governance.approval_policy"
    if treatment.requires_approval:
        return f"treatment {treatment.id} has requires_approval"
    if treatment.id in policy.treatments:
        return f"treatment {treatment.id} is listed in {where}.treatments"
    if policy.cost_per_contact_at_least is not None and treatment.cost_per_contact >= policy.cost_per_contact_at_least:
        return (
            f"cost per contact {treatment.cost_per_contact:.2f} is at or above "
            f"{policy.cost_per_contact_at_least:.2f} ({where}.cost_per_contact_at_least)"
        )
    if policy.customer_value_at_least is not None and customer_value is not None and customer_value >= policy.customer_value_at_least:
        return (
            f"customer value {customer_value:.2f}/month is at or above {policy.customer_value_at_least:.2f} "
            f"({where}.customer_value_at_least)"
        )
    if policy.confidence_below is not None and confidence is not None and confidence < policy.confidence_below:
        return f"confidence {confidence:.2f} is below {policy.confidence_below:.2f} ({where}.confidence_below)"
    return None


def approver_name(by: str) -> str:
    """Who decides, as recorded in the audit log: not blank, and no control characters.

    A name is an identity in the audit trail, so it is refused rather than altered:
    an escape sequence or line break in it could forge or hide lines where it is shown.
    """
    name = by.strip()
    if not name:
        raise UsageError("--by is blank; say who decides (it goes in the audit log)")
    if (char := first_control(name)) is not None:
        raise UsageError(f"--by contains a control character (U+{ord(char):04X}); give a plain name")
    return name


def approval_reason(reason: str | None) -> str | None:
    """Why, as stored and shown: free text, so control characters are removed rather than refused."""
    cleaned = without_controls(reason).strip() if reason is not None else ""
    return cleaned or None


class GovernanceAgent(BaseAgent):
    """Applies the approval policy and records approvers' decisions in the ledger."""

    name = "GovernanceAgent"

    def __init__(self, config: CVMConfig, ledger: Ledger, clock: Clock):
        self._config = config
        self._ledger = ledger
        self._clock = clock

    @handles(CheckApproval)
    def _check(self, message: CheckApproval) -> ApprovalCheck:
        rule = approval_rule(
            self._config.treatment(message.treatment_key), self._config.governance.approval_policy,
            confidence=message.confidence, customer_value=message.customer_value,
        )
        return ApprovalCheck(required=rule is not None, rule=rule)

    @handles(ListApprovals)
    def _list(self, message: ListApprovals) -> ApprovalList:
        rows = self._ledger.approvals(status=message.status, customer_id=message.customer_id)
        return ApprovalList(requests=tuple(ApprovalRequestInfo.model_validate(_public(r)) for r in rows))

    @handles(GetApproval)
    def _get(self, message: GetApproval) -> ApprovalRequestInfo:
        row = self._ledger.approval(message.request_id)
        if row is None:
            raise ApprovalError(f"no approval request {message.request_id!r}; see 'cvm approvals list'")
        return ApprovalRequestInfo.model_validate(_public(row))

    @handles(DecideApproval)
    def _decide(self, message: DecideApproval) -> ApprovalRequestInfo:
        by, reason = approver_name(message.by), approval_reason(message.reason)
        if message.decision == "reject" and reason is None:
            raise UsageError("rejecting needs --reason TEXT: the customer's record keeps why")
        status: ApprovalStatus = "approved" if message.decision == "approve" else "rejected"
        row = self._ledger.decide_approval(message.request_id, status, by, reason, self._clock.now())
        return ApprovalRequestInfo.model_validate(_public(row))

    @handles(ExpireApprovals)
    def _expire(self, message: ExpireApprovals) -> Ack:
        expired = self._ledger.expire_approvals(self._clock.now())
        return Ack(detail=f"expired {len(expired)} request(s)" + (f": {', '.join(expired)}" if expired else ""))


def _public(row: ApprovalRow) -> dict[str, object]:
    """A ledger row without its internal idempotency key."""
    return row.model_dump(exclude={"idempotency_key"})
