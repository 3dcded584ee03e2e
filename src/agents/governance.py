"""The Governance agent: which decisions need a human, and the approval requests' life cycle.

A decision needs approval when any rule of ``governance.approval_policy``
applies (cost per contact, named treatments, customer value, low confidence) or
its treatment says ``requires_approval``. The request is opened by the
Allocation agent in the same ledger transaction that holds the capacity;
approving turns the hold into an allocation, rejecting or expiring releases it.
Approving first re-checks the customer's consent in today's data: a request the
customer has since said no to is withdrawn instead.
"""

from __future__ import annotations

from collections.abc import Callable

from cvm.agents.base import BaseAgent, expect, handles
from cvm.agents.messages import (
    Ack,
    ApprovalCheck,
    ApprovalList,
    ApprovalRequestInfo,
    CheckApproval,
    CustomerDataResponse,
    DecideApproval,
    ExpireApprovals,
    GetApproval,
    GetCustomerData,
    ListApprovals,
)
from cvm.tools.clock import Clock
from cvm.tools.ledger import ApprovalRow, ApprovalStatus, Ledger, decision_time_problem
from cvm.tools.results import AUTO_APPROVER as AUTO_APPROVER  # the approver name under --auto-approve, with the record
from cvm.utils.config import ApprovalPolicy, CVMConfig, Treatment
from cvm.utils.errors import ApprovalError, UnknownCustomerError, UsageError
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
    """Applies the approval policy and records approvers' decisions in the ledger.

    Approving re-checks the customer's consent in today's data, because a person's yes
    must never turn a hold into a contact the customer has said no to since the request
    was opened. ``data_for(customer_id)`` gives a Data agent that can read that customer
    (a run passes its own; ``cvm approvals approve`` one that reads only that customer's
    rows). Without it this agent lists, shows and rejects, and refuses to approve.
    """

    name = "GovernanceAgent"

    def __init__(
        self, config: CVMConfig, ledger: Ledger, clock: Clock, data_for: Callable[[str], BaseAgent] | None = None,
    ):
        self._config = config
        self._ledger = ledger
        self._clock = clock
        self._data_for = data_for

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
        if status == "approved":
            self._check_consent_still_given(message.request_id)
        row = self._ledger.decide_approval(message.request_id, status, by, reason, self._clock.now())
        return ApprovalRequestInfo.model_validate(_public(row))

    def _check_consent_still_given(self, request_id: str) -> None:
        """Refuse to approve a contact the customer no longer consents to (or a treatment no longer configured),
        and withdraw the request.

        A customer the data folder does not know is refused without any change: that is
        most likely the wrong folder, and consent that cannot be read is not consent.
        """
        # Imported here: the decision rules load numpy, which a command that only lists requests
        # (and cvm's start-up, which says how to install a missing numpy) must not need.
        from cvm.agents.allocation import waiting_refusal, withdraw_waiting
        from cvm.decision.policy import consent_problem

        request = self._ledger.approval(request_id)
        if request is None or request.status != "pending" or decision_time_problem(
            request_id, request.requested_at, request.expires_at, self._clock.now(),
        ) is not None:
            return  # decide_approval says what is wrong with it, and changes nothing
        if self._data_for is None:
            raise UsageError("approving re-checks the customer's consent in the data folder, and none was given; nothing changed")
        agent = self._data_for(request.customer_id)
        try:
            data = expect(agent.process(GetCustomerData(customer_id=request.customer_id)), CustomerDataResponse).data
        except UnknownCustomerError as exc:
            raise ApprovalError(
                f"cannot approve {request_id}: consent is re-checked in the data folder, and {exc}; run with the"
                " --data-dir the request was decided on; nothing changed"
            ) from exc
        refused = waiting_refusal(self._config, request.treatment_id, lambda t: consent_problem(t, data.permissions))
        if refused is None:
            return
        withdraw_waiting(self._ledger, request, *refused, self._clock.now())
        raise ApprovalError(
            f"not approved: {request.treatment_id} for {request.customer_id}: {refused[1]};"
            f" request {request_id} was withdrawn and its capacity released"
        )

    @handles(ExpireApprovals)
    def _expire(self, message: ExpireApprovals) -> Ack:
        expired = self._ledger.expire_approvals(self._clock.now())
        return Ack(detail=f"expired {len(expired)} request(s)" + (f": {', '.join(expired)}" if expired else ""))


def _public(row: ApprovalRow) -> dict[str, object]:
    """A ledger row without its internal idempotency key."""
    return row.model_dump(exclude={"idempotency_key"})
