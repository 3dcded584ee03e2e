"""The Orchestrator: one customer through Data -> Journey -> Treatment -> policy -> Allocation.

    get_customer_data -> build_journey
    -> screen every treatment (disabled, eligibility, consent, contact caps incl. the daily cap, capacity left)
    -> recommend_treatment(allowed ids)          the selector ranks what is allowed
    -> screen the ranked list again (code has the last word, whatever the selector said)
    -> check_approval: when a policy rule applies, hold the capacity and open an approval request
    -> allocate_resource(first) -fail-> next ... -> ignore
    -> record the decision and its input digest in the ledger (idempotent per run and customer)

Every treatment not given is listed in ``alternatives`` with its reason. With a
treatment proposed by an analyst (``process_customer_with_treatment``) the
selector is skipped, but the same screens and allocation apply: the customer
gets that treatment or no action, never anything the policy forbids.

A re-run of a run id replays the stored decision (``replayed: true``), re-checked
against today's data: a contact the customer no longer consents to, or that the
contact policy no longer allows, is withdrawn. It is reported as ``no_action``
whose first alternative is the given-up treatment with reason ``consent_withdrawn``
(or ``contact_limit``), and its capacity is released in the ledger exactly once.
Likewise an approval request still waiting from an earlier run is withdrawn when
today's permissions refuse its treatment, and the customer is decided afresh.

Size: the per-customer walk (screen, rank, approval, allocation, fallback, replay) is one sequence
with one set of invariants, kept whole so the order of the checks reads top to bottom.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import structlog

from cvm.agents.allocation import (
    CONTACT_STATUSES,
    AllocationAgent,
    recheck_replayed,
    refusal,
    waiting_refusal,
    withdraw_waiting,
)
from cvm.agents.base import BaseAgent, expect, forward, handles
from cvm.agents.data import DataAgent
from cvm.agents.governance import AUTO_APPROVER, GovernanceAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.messages import (
    Ack,
    AllocateResource,
    AllocationHistoryResponse,
    AllocationResponse,
    Alternative,
    ApprovalCheck,
    ApprovalDetails,
    ApprovalList,
    ApprovalRequestInfo,
    AvailabilityResponse,
    BatchResult,
    BuildJourney,
    Candidate,
    CheckApproval,
    CheckAvailability,
    ContactScreen,
    CustomerDataResponse,
    DecideApproval,
    DecisionResult,
    ExpireApprovals,
    FindAlternative,
    GetAllocationHistory,
    GetApproval,
    GetCustomerData,
    Journey,
    JourneyResponse,
    ListApprovals,
    ProcessBatch,
    ProcessCustomer,
    ProcessCustomerWithTreatment,
    Recommendation,
    RecommendTreatment,
    ScreenContacts,
    TriggerAndProcess,
    TriggerAndProcessResult,
    TriggerCustomers,
    TriggerResult,
)
from cvm.agents.treatment import TreatmentAgent
from cvm.agents.trigger import TriggerAgent
from cvm.decision import policy, screening
from cvm.tools.clock import Clock
from cvm.tools.ledger import AllocationRow, Ledger, utc_text
from cvm.tools.records import Permissions
from cvm.tools.results import stored_form
from cvm.utils.config import IGNORE_ID, CVMConfig, Treatment
from cvm.utils.errors import CVMError, UnknownCustomerError, UsageError
from cvm.utils.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from cvm.engine.deciding import Decider

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[DecisionResult], None]


class _CommonFields(TypedDict):
    """The fields every ``DecisionResult`` of ``_result`` shares, whatever was decided."""

    customer_id: str
    confidence: float | None
    alternatives: tuple[Alternative, ...]
    selector: str | None
    selector_fallback: str | None
    insights: tuple[str, ...]
    data_quality: tuple[str, ...]
    dry_run: bool


@dataclass(frozen=True)
class Pick:
    """The candidate the walk settled on, and how: given, or held for approval."""

    candidate: Candidate
    scheduled_for: datetime | str | None = None
    request_id: str | None = None
    rule: str | None = None
    """The approval rule that applies (None: no approval needed)."""
    approved_by: str | None = None


class OrchestratorAgent(BaseAgent):
    """Coordinates the agents; enforces consent, contact policy and capacity in code."""

    name = "OrchestratorAgent"

    def __init__(
        self,
        *,
        config: CVMConfig,
        data: DataAgent,
        journey: JourneyAgent,
        treatment: TreatmentAgent,
        allocation: AllocationAgent,
        trigger: TriggerAgent,
        governance: GovernanceAgent,
        ledger: Ledger,
        clock: Clock,
        zone: tzinfo,
        run_id: str,
        dry_run: bool = False,
        max_workers: int = 1,
        auto_approve: bool = False,
    ):
        self.config = config
        self.data = data
        self.journey = journey
        self.treatment = treatment
        self.allocation = allocation
        self.trigger = trigger
        self.governance = governance
        self.ledger = ledger
        self.clock = clock
        self.zone = zone
        self.run_id = run_id
        self.dry_run = dry_run
        self.max_workers = max(1, max_workers)
        self.auto_approve = auto_approve
        self._dry_run_taken: Counter[str] = Counter()
        self._dry_run_lock = threading.Lock()

    # -- entry points -------------------------------------------------------

    @handles(ProcessCustomer)
    def _process_customer(self, message: ProcessCustomer) -> DecisionResult:
        return self.decide(message.customer_id, message.run_id or self.run_id)

    @handles(ProcessBatch)
    def _process_batch(self, message: ProcessBatch) -> BatchResult:
        run_id = message.run_id or self.run_id
        return BatchResult(run_id=run_id, results=tuple(self.decide_many(message.customer_ids, run_id)))

    @handles(ProcessCustomerWithTreatment)
    def _process_with_treatment(self, message: ProcessCustomerWithTreatment) -> DecisionResult:
        self.config.treatment(message.treatment_key)
        return self.decide(message.customer_id, message.run_id or self.run_id, proposed=message.treatment_key)

    _trigger_customers = forward(TriggerCustomers, "trigger")
    """The trigger agent answers (the prototype asked the orchestrator to find customers)."""

    @handles(TriggerAndProcess)
    def _trigger_and_process(self, message: TriggerAndProcess) -> TriggerAndProcessResult:
        if message.treatment_key is not None:
            self.config.treatment(message.treatment_key)
        found = expect(self.trigger.process(message.trigger), TriggerResult)
        run_id = message.run_id or self.run_id
        ids = [m.customer_id for m in found.matches]
        results = self.decide_many(ids, run_id, proposed=message.treatment_key)
        # Customers the trigger could not even evaluate stay in the results, as errors.
        unevaluated = [
            DecisionResult(customer_id=e["customer_id"], status="error", error=e["error"], dry_run=self.dry_run)
            for e in found.errors
        ]
        return TriggerAndProcessResult(trigger=found, batch=BatchResult(run_id=run_id, results=tuple(results + unevaluated)))

    def decide_many(
        self, customer_ids: tuple[str, ...] | list[str], run_id: str | None = None,
        progress: ProgressCallback | None = None, proposed: str | None = None,
    ) -> list[DecisionResult]:
        """Decide for every customer, ``max_workers`` at a time; results keep the input order."""
        limit = self.config.validation.max_customers_per_batch
        if len(customer_ids) > limit:
            raise UsageError(
                f"{len(customer_ids)} customers exceed validation.max_customers_per_batch ({limit}); split the batch or raise the limit"
            )
        run_id = run_id or self.run_id
        if not self.dry_run:
            expect(self.governance.process(ExpireApprovals()), Ack)

        def one(cid: str) -> DecisionResult:
            result = self.decide(cid, run_id, proposed=proposed)
            if progress is not None:
                progress(result)
            return result

        if self.max_workers == 1 or len(customer_ids) <= 1:
            return [one(cid) for cid in customer_ids]
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="cvm-decide") as pool:
            return list(pool.map(one, customer_ids))

    def decide(self, customer_id: str, run_id: str | None = None, proposed: str | None = None) -> DecisionResult:
        """One customer's decision (with the analyst's ``proposed`` treatment, if any); errors become an error record."""
        run_id = run_id or self.run_id
        with structlog.contextvars.bound_contextvars(run_id=run_id, customer_id=customer_id):
            try:
                result = self._decide(customer_id, run_id, proposed)
            except CVMError as exc:
                result = DecisionResult(customer_id=customer_id, status="error", error=str(exc), dry_run=self.dry_run)
                log.warning("customer_failed", error=str(exc))
            except Exception as exc:  # a bug: keep the batch going, keep the traceback in the log file
                log.exception("customer_crashed")
                result = DecisionResult(
                    customer_id=customer_id, status="error", dry_run=self.dry_run,
                    error=f"internal error ({type(exc).__name__}: {exc}); details in the log file",
                )
            if result.status == "error" and not self.dry_run:
                self.ledger.audit("decision_error", {"error": result.error}, self.clock.now(), run_id=run_id, customer_id=customer_id)
            log.info("customer_decided", status=result.status, treatment=result.selected_treatment, selector=result.selector)
            return result

    # -- the decision -------------------------------------------------------

    def _decide(self, customer_id: str, run_id: str, proposed: str | None = None) -> DecisionResult:
        if not self.dry_run:
            stored = self.ledger.decision(run_id, customer_id)
            if stored is not None:
                return self._replayed(stored.result, run_id)
        data = expect(self.data.process(GetCustomerData(customer_id=customer_id)), CustomerDataResponse).data
        journey = expect(self.journey.process(BuildJourney(customer_id=customer_id, customer_data=data)), JourneyResponse).journey
        recovered = None if self.dry_run else self._allocation_of_this_run(customer_id, run_id)
        waiting = None if recovered is not None else self._still_allowed(self._pending_request(customer_id), data.permissions)
        if recovered is not None:
            result = self._recovered_result(journey, recovered)
        elif waiting is not None:
            result = self._waiting_result(journey, waiting)
        else:
            rejected = self._screen_all(journey)
            allowed = tuple(tid for tid in self.config.treatments if tid not in rejected)
            if proposed is not None:
                rejected = {tid: alt for tid, alt in rejected.items() if tid == proposed}
                allowed = tuple(tid for tid in allowed if tid == proposed)
                recommendation = self._analyst_recommendation(journey, proposed, allowed)
            else:
                recommendation = expect(self.treatment.process(RecommendTreatment(journey=journey, allowed=allowed)), Recommendation)
            pick = self._walk(recommendation, journey, allowed, rejected, run_id)
            result = self._result(journey, recommendation, pick, rejected)
        if not self.dry_run:
            self.ledger.record_decision(run_id, customer_id, stored_form(result), journey.digest, self.clock.now())
        return result

    def _replayed(self, stored: dict, run_id: str) -> DecisionResult:
        """The stored decision of this run, brought up to date: the approver's verdict, today's consent and contact policy."""
        result = self._as_approved_now(DecisionResult.model_validate({**stored, "replayed": True}))
        if result.status not in CONTACT_STATUSES or result.selected_treatment is None:
            return result
        treatment = self.config.treatment(result.selected_treatment)
        no_consent = policy.consent_problem(treatment, self._permissions_today(result.customer_id))
        return recheck_replayed(self.ledger, self.config, result, run_id, no_consent, self.clock.now())

    def _permissions_today(self, customer_id: str) -> Permissions | None:
        """The customer's permissions in today's data; a customer no table mentions any more has none."""
        try:
            return expect(self.data.process(GetCustomerData(customer_id=customer_id)), CustomerDataResponse).data.permissions
        except UnknownCustomerError:
            return None

    def _allocation_of_this_run(self, customer_id: str, run_id: str) -> AllocationRow | None:
        """An allocation this run made before it was interrupted (before its decision was recorded)."""
        history = expect(
            self.allocation.process(GetAllocationHistory(customer_id=customer_id, run_id=run_id, limit=1)),
            AllocationHistoryResponse,
        )
        return history.allocations[0] if history.allocations else None

    def _recovered_result(self, journey: Journey, allocation: AllocationRow) -> DecisionResult:
        """Finish an interrupted decision: the capacity was already taken, so the decision is that treatment."""
        tid = allocation.treatment_id
        recommendation = expect(
            self.treatment.process(FindAlternative(journey=journey, excluded=(), allowed=(tid,))), Recommendation
        )
        chosen = next((c for c in recommendation.candidates if c.treatment_id == tid), None)
        if chosen is None:  # the treatment was disabled or removed since: report it as given, without a score
            treatment = self.config.treatment(tid)
            chosen = Candidate(
                treatment_id=tid, display_name=treatment.display_name, channel=treatment.channel,
                purpose=treatment.purpose, expected_value=0.0, p_accept=0.0, value_at_stake=0.0,
                cost=treatment.cost_per_contact, relevance=0.0,
            )
        note = Recommendation(
            customer_id=journey.customer_id, candidates=(chosen,), selector=recommendation.selector,
            explanation=f"Completed an interrupted attempt of this run: {chosen.display_name} was already allocated. "
            + recommendation.explanation,
            confidence=recommendation.confidence,
        )
        requests = expect(self.governance.process(ListApprovals(customer_id=journey.customer_id)), ApprovalList).requests
        request = next((r for r in requests if r.run_id == allocation.run_id), None)
        pick = Pick(chosen, allocation.scheduled_for)
        if request is not None:
            pick = replace(pick, request_id=request.request_id, rule=request.rule,
                           approved_by=request.decided_by if request.status == "approved" else None)
        return self._as_approved_now(self._result(journey, note, pick, {}))

    # -- approvals ------------------------------------------------------------

    def _pending_request(self, customer_id: str) -> ApprovalRequestInfo | None:
        """A request already waiting for a human about this customer (from any run)."""
        waiting = expect(self.governance.process(ListApprovals(status="pending", customer_id=customer_id)), ApprovalList)
        # A dry run leaves expired requests in the ledger: past its deadline a request waits for nothing.
        now = utc_text(self.clock.now())
        return next((r for r in waiting.requests if r.expires_at > now), None)

    def _still_allowed(self, request: ApprovalRequestInfo | None, permissions: Permissions | None) -> ApprovalRequestInfo | None:
        """A waiting request, unless it may no longer go ahead (``waiting_refusal``): then it is withdrawn (in a real
        run) and the customer is decided afresh, as the batch path does."""
        if request is None:
            return None
        refused = waiting_refusal(self.config, request.treatment_id, lambda t: policy.consent_problem(t, permissions))
        if refused is None:
            return request
        if not self.dry_run:
            withdraw_waiting(self.ledger, request, *refused, self.clock.now())
        return None

    def _waiting_result(self, journey: Journey, request: ApprovalRequestInfo) -> DecisionResult:
        return waiting_result(self.config, journey, request, self.dry_run)

    def _as_approved_now(self, result: DecisionResult) -> DecisionResult:
        """A replayed pending decision shows what the approver has decided since."""
        if result.status != "pending_approval" or result.approval_request_id is None:
            return result
        request = expect(self.governance.process(GetApproval(request_id=result.approval_request_id)), ApprovalRequestInfo)
        if request.status == "approved":
            explanation = f"Approved by {request.decided_by}. " + result.explanation.split("capacity is held. ", 1)[-1]
            return result.model_copy(update={"status": "success", "approved_by": request.decided_by, "explanation": explanation})
        if request.status == "pending":
            return result
        given_up = Alternative(
            treatment_id=request.treatment_id, reason="approval_rejected" if request.status == "rejected" else "approval_expired",
            detail=f"{request.status} by {request.decided_by}: {request.reason}", expected_value=result.expected_value,
        )
        return result.model_copy(update={
            "status": "no_action", "selected_treatment": IGNORE_ID, "display_name": "No action", "channel": "none",
            "purpose": None, "expected_value": 0.0, "alternatives": (given_up, *result.alternatives),
            "explanation": f"No action: {result.display_name} was {request.status} by {request.decided_by}"
            f" ({request.reason}); its capacity was released.",
        })

    def _approval_needed(self, candidate: Candidate, recommendation: Recommendation, journey: Journey) -> ApprovalDetails | None:
        check = expect(
            self.governance.process(CheckApproval(
                treatment_key=candidate.treatment_id, confidence=recommendation.confidence,
                customer_value=journey.features.monthly_revenue,
            )),
            ApprovalCheck,
        )
        if not check.required:
            return None
        return ApprovalDetails(
            rule=check.rule or "", explanation="; ".join(candidate.reasons), confidence=recommendation.confidence,
            expected_value=candidate.expected_value,
        )

    def _analyst_recommendation(self, journey: Journey, proposed: str, allowed: tuple[str, ...]) -> Recommendation:
        """The proposed treatment first (scored by rules for the record), then no action."""
        scored = expect(self.treatment.process(FindAlternative(journey=journey, excluded=(), allowed=allowed)), Recommendation)
        ordered = sorted(scored.candidates, key=lambda c: c.treatment_id != proposed)
        name = self.config.treatment(proposed).display_name
        return Recommendation(
            customer_id=journey.customer_id, candidates=tuple(ordered), selector="analyst",
            explanation=f"{name} was proposed by the analyst; " + "; ".join(ordered[0].reasons) + ".",
            confidence=scored.confidence,
        )

    def _screen_all(self, journey: Journey) -> dict[str, Alternative]:
        """Every treatment that may not be given to this customer now, with the reason, then today's capacity.

        The rules are the batch path's masks on this one customer (``cvm.decision.screening``): disabled, eligibility and
        consent from the journey; the contact caps, repeat window, daily cap and approvers' rejections from the
        Allocation agent, which reads the ledger.
        """
        treatments = list(self.config.treatments.values())
        quiet_until = policy.quiet_shift(journey.permissions, self.clock.now())
        contacts = expect(self.allocation.process(ScreenContacts(customer_id=journey.customer_id, quiet_until=quiet_until)),
                          ContactScreen)
        blocks = screening.Blocks.of_one(contacts.blocked, treatments)
        blocks.masks.update(screening.one_customer_policy_blocks(journey, treatments))
        return screening.refusals(blocks.masks, blocks.details, 0, treatments, journey, capacity=lambda _, treatment:
                                  self._capacity_problem(treatment, already_taken=self._dry_run_taken[treatment.id]))

    def _dry_run_take(self, treatment: Treatment) -> Alternative | None:
        """In a dry run, count what this run would take, so its plan never exceeds capacity either."""
        with self._dry_run_lock:
            problem = self._capacity_problem(treatment, already_taken=self._dry_run_taken[treatment.id])
            if problem is None:
                self._dry_run_taken[treatment.id] += 1
            return problem

    def _capacity_problem(self, treatment: Treatment, already_taken: int = 0) -> Alternative | None:
        availability = expect(self.allocation.process(CheckAvailability(treatment_key=treatment.id)), AvailabilityResponse)
        if availability.available and (availability.remaining is None or availability.remaining > already_taken):
            return None
        return Alternative(
            treatment_id=treatment.id, reason="capacity_exhausted",
            detail=f"all {availability.max_per_day} of today's slots are used",
        )

    def _walk(
        self, recommendation: Recommendation, journey: Journey, allowed: tuple[str, ...],
        rejected: dict[str, Alternative], run_id: str,
    ) -> Pick | None:
        """Try the ranked candidates in order until one is allocated (or held for approval); None means no action."""
        by_id = {c.treatment_id: c for c in recommendation.candidates}
        for candidate in recommendation.candidates:
            if candidate.treatment_id == IGNORE_ID:
                return None
            treatment = self.config.treatment(candidate.treatment_id)
            problem = None
            if treatment.id not in allowed:  # code has the last word: the screen refused it, or the selector strayed
                problem = rejected.get(treatment.id) or Alternative(
                    treatment_id=treatment.id, reason="invalid_selector_choice",
                    detail="the selector proposed a treatment outside the allowed set",
                )
            if problem is not None:
                rejected[treatment.id] = problem.model_copy(update={"expected_value": candidate.expected_value})
                continue
            scheduled_for = policy.next_contact_time(treatment.channel, self.clock.now(), journey.permissions)
            approval = self._approval_needed(candidate, recommendation, journey)
            rule = approval.rule if approval else None
            if self.dry_run:
                problem = self._dry_run_take(treatment)
                if problem is None:
                    return Pick(candidate, scheduled_for, rule=rule, approved_by=AUTO_APPROVER if rule and self.auto_approve else None)
                rejected[treatment.id] = problem.model_copy(update={"expected_value": candidate.expected_value})
                continue
            response = expect(
                self.allocation.process(AllocateResource(
                    treatment_key=treatment.id, customer_id=journey.customer_id, run_id=run_id,
                    scheduled_for=scheduled_for, approval=approval,
                )),
                AllocationResponse,
            )
            if response.allocated:
                # A duplicate from an interrupted earlier attempt of this run keeps what it allocated then.
                pick = Pick(by_id.get(response.treatment_key, candidate), response.scheduled_for, response.request_id, rule)
                if response.status == "held" and self.auto_approve and response.request_id is not None:
                    expect(self.governance.process(DecideApproval(
                        request_id=response.request_id, decision="approve", by=AUTO_APPROVER, reason="--auto-approve",
                    )), ApprovalRequestInfo)
                    pick = replace(pick, approved_by=AUTO_APPROVER)
                return pick
            rejected[treatment.id] = Alternative(
                treatment_id=treatment.id, reason=refusal(response.status), detail=response.detail,
                expected_value=candidate.expected_value,
            )
        return None

    def _result(
        self, journey: Journey, recommendation: Recommendation, pick: Pick | None, rejected: dict[str, Alternative],
    ) -> DecisionResult:
        return decision_result(self.config, self.zone, self.dry_run, journey, recommendation, pick, rejected)


def waiting_result(config: CVMConfig, journey: Journey, request: ApprovalRequestInfo, dry_run: bool) -> DecisionResult:
    """While a request is pending, the customer gets no second request and no other contact."""
    treatment = config.treatment(request.treatment_id)
    return DecisionResult(
        customer_id=journey.customer_id, status="pending_approval", selected_treatment=treatment.id,
        display_name=treatment.display_name, channel=treatment.channel, purpose=treatment.purpose,
        expected_value=request.expected_value, confidence=request.confidence,
        explanation=(
            f"Waiting for approval of {treatment.display_name} (request {request.request_id} from run {request.run_id},"
            f" expires {request.expires_at}); no new request or other contact until it is decided."
        ),
        approval_request_id=request.request_id, approval_rule=request.rule,
        insights=journey.insights, dry_run=dry_run,
    )


def _local_time(moment: datetime | str | None, zone: tzinfo) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(zone).isoformat()


def decision_result(
    config: CVMConfig, zone: tzinfo, dry_run: bool, journey: Journey, recommendation: Recommendation, pick: Pick | None,
    rejected: dict[str, Alternative],
) -> DecisionResult:
    """The result record of a decision: what was picked (or no action), every alternative with its reason, in words.

    Both paths word their decisions here: the per-customer path after its walk, the batch path
    (``cvm.engine.batch``) after the optimiser, so the same decision reads the same.
    """
    chosen = pick.candidate if pick else None
    alternatives = list(rejected.values())
    for candidate in recommendation.candidates:
        tid = candidate.treatment_id
        if tid in rejected or tid == IGNORE_ID or (chosen is not None and tid == chosen.treatment_id):
            continue
        below = candidate.expected_value <= 0
        alternatives.append(Alternative(
            treatment_id=tid, reason="below_no_action" if below else "lower_ranked",
            detail="expected value not above doing nothing" if below else "a higher-ranked treatment was given",
            expected_value=candidate.expected_value,
        ))
    common = _CommonFields(
        customer_id=journey.customer_id,
        confidence=recommendation.confidence,
        alternatives=tuple(alternatives),
        selector=recommendation.selector,
        selector_fallback=recommendation.selector_fallback,
        insights=journey.insights,
        data_quality=tuple(f"{i.table}: {i.message}" for i in journey.data_quality),
        dry_run=dry_run,
    )
    if pick is None or chosen is None:
        return DecisionResult(
            status="no_action", selected_treatment=IGNORE_ID, display_name="No action", channel="none",
            expected_value=0.0, explanation=_no_action_explanation(recommendation, rejected), **common,
        )
    treatment = config.treatment(chosen.treatment_id)
    first = recommendation.candidates[0]
    explanation = recommendation.explanation
    if chosen.treatment_id != first.treatment_id:
        why = rejected.get(first.treatment_id)
        reason = f" ({why.reason}: {why.detail})" if why else ""
        explanation = (
            f"First choice {first.display_name} could not be given{reason}; fell back to {chosen.display_name}: "
            + "; ".join(chosen.reasons) + "."
        )
    waiting = pick.rule is not None and pick.approved_by is None
    if waiting:
        explanation = f"Needs approval ({pick.rule}); capacity is held. " + explanation
    elif pick.approved_by:
        explanation = f"Approved by {pick.approved_by}. " + explanation
    return DecisionResult(
        status="pending_approval" if waiting else "success", selected_treatment=treatment.id,
        display_name=treatment.display_name, channel=treatment.channel, purpose=treatment.purpose,
        expected_value=chosen.expected_value, reasons=chosen.reasons, explanation=explanation,
        scheduled_for=_local_time(pick.scheduled_for, zone), requires_approval=treatment.requires_approval,
        approval_request_id=pick.request_id, approval_rule=pick.rule, approved_by=pick.approved_by, **common,
    )


def _no_action_explanation(recommendation: Recommendation, rejected: dict[str, Alternative]) -> str:
    if recommendation.selector == "analyst" and rejected:
        alt = next(iter(rejected.values()))
        return f"No action: the proposed {alt.treatment_id} could not be given ({alt.reason}: {alt.detail})."
    if recommendation.candidates and recommendation.candidates[0].treatment_id == IGNORE_ID and recommendation.selector == "llm":
        return f"The LLM selector chose no action: {recommendation.explanation}"
    counts: dict[str, int] = {}
    for alt in rejected.values():
        counts[alt.reason] = counts.get(alt.reason, 0) + 1
    if counts:
        parts = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(counts.items()))
        return f"No action: no treatment could be given ({parts}), and nothing else is worth more than doing nothing."
    return "No action: no treatment has a positive expected value for this customer."


class PathChoosingOrchestrator(OrchestratorAgent):
    """The orchestrator whose decide messages (``process_batch``, ``trigger_and_process``) choose the path.

    ``Runtime`` builds this one, so a flow's decide steps (and any caller of those
    messages) decide like ``cvm process``. A message's answer holds every decision,
    so at most ``validation.max_customers_per_batch`` customers are decided per
    message on either path.
    """

    def __init__(self, *, data_dir: Path, selector: str, **parts: Any):
        """``parts`` are the ``OrchestratorAgent``'s; ``data_dir`` and ``selector`` are what the Decider needs to count
        the customers and to know whether the batch path may be taken."""
        super().__init__(**parts)
        self.data_dir = Path(data_dir)
        self.selector = selector
        self._decider = self.decider()

    def decider(
        self, notify: Callable[[str], None] | None = None, status: Callable[[str], None] | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> Decider:
        """A ``Decider`` over this orchestrator; ``notify`` gets the one-line notices (default: stderr), ``progress``
        the batch path's stages."""
        from cvm.engine.deciding import Decider  # the engine sits beside the agents and builds on this module

        return Decider(orchestrator=self, data_dir=self.data_dir, selector=self.selector, notify=notify, status=status,
                       progress=progress)

    def _limit(self) -> int:
        return self.config.validation.max_customers_per_batch

    def _process_batch(self, message: ProcessBatch) -> BatchResult:
        run_id = message.run_id or self.run_id
        decided = self._decider.decide(
            list(message.customer_ids), run_id=run_id, records_max=self._limit(), max_customers=self._limit(),
        )
        return BatchResult(run_id=run_id, results=tuple(decided.results or ()))

    def _trigger_and_process(self, message: TriggerAndProcess) -> TriggerAndProcessResult:
        run_id = message.run_id or self.run_id
        found, decided = self._decider.trigger_then_decide(
            message.trigger, treatment=message.treatment_key, run_id=run_id, records_max=self._limit(),
            max_customers=self._limit(),
        )
        return TriggerAndProcessResult(trigger=found, batch=BatchResult(run_id=run_id, results=tuple(decided.results or ())))
