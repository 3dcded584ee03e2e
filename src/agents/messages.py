"""Every message the agents exchange, and every result they return, in one place.

Requests and responses are frozen pydantic models with a ``type`` tag. A request
names its response model as its type parameter (``class GetCustomerData(
Request[CustomerDataResponse])``): the handler that serves it must return that
model (or an ``ErrorResponse``), flows read it to check references, and
``BaseAgent.process`` is typed by it. ``AgentRequest`` and ``AgentResponse`` are
the two tagged unions; ``request_adapter()`` turns a plain dict at the boundary
into the right request model and ``response_adapter()`` a stored answer into its
response model. The request type names are the prototype's
(``get_customer_data``, ``build_journey``, ``recommend_treatment``,
``allocate_resource`` ...), plus the flow pseudo-agent's ``goal``, ``plan`` and
``wait``.

An ``ErrorResponse`` carries a stable error code (``error_type``) from the
registry of ``cvm.utils.errors``; ``ErrorResponse.error()`` is the exception it
stands for.

Size: every request and response of every agent, in one place by design (one union each).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import AliasChoices, BaseModel, Discriminator, Field, TypeAdapter, field_validator, model_validator

# The decision's vocabulary lives in the pure domain package; part of the messages' vocabulary too.
from cvm.decision.models import Candidate as Candidate
from cvm.decision.models import Journey as Journey
from cvm.decision.models import JourneyFeatures as JourneyFeatures
from cvm.decision.models import NetworkQuality as NetworkQuality
from cvm.decision.models import SentimentTrend as SentimentTrend
from cvm.decision.models import TimelineEvent as TimelineEvent
from cvm.decision.models import Trend as Trend

# A segment's churn trajectory is a row of the report as it is (one model, not a copy per layer).
from cvm.reporting.model import SegmentLine as SegmentTrajectory
from cvm.tools.ledger_models import AllocationRow
from cvm.tools.records import CustomerData

# The result record lives below the agents (the result file and the reports read it); part of the messages' vocabulary.
from cvm.tools.results import Alternative as Alternative
from cvm.tools.results import DecisionResult as DecisionResult
from cvm.tools.results import DecisionStatus as DecisionStatus
from cvm.tools.results import RejectionReason as RejectionReason
from cvm.utils.errors import ERROR_CODES, CVMError, error_class
from cvm.utils.models import FrozenModel as _Model

TriggerSource = Literal["built-in", "config"]
AllocationRefusal = Literal["capacity_exhausted", "contact_limit", "repeat_limit", "pending_approval_limit"]
"""Allocation statuses that take no capacity (each is also a ``RejectionReason``)."""
AllocationStatus = Literal["allocated", "held", "duplicate", AllocationRefusal]


class ConstraintStatus(_Model):
    treatment_id: str
    display_name: str
    enabled: bool
    max_per_day: int | None
    used_today: int
    remaining: int | None
    cost_per_contact: float
    priority: int


class TriggerEvidence(_Model):
    """What made a trigger fire: a quoted snippet or a measured value, with its source."""

    kind: Literal["quote", "value"]
    source: str
    """The table it came from."""
    date: str | None = None
    text: str


class TriggerMatch(_Model):
    customer_id: str
    reason: str
    evidence: tuple[TriggerEvidence, ...] = ()
    score: float | None = None
    """The semantic matcher's score (0-1); None for rule and keyword triggers."""


class TriggerInfo(_Model):
    name: str
    description: str
    source: TriggerSource
    condition: str | None = None
    keywords: tuple[str, ...] = ()


# --- responses --------------------------------------------------------------


class ErrorResponse(_Model):
    """What an agent answers instead of raising: a typed error that crosses agents as data."""

    type: Literal["error"] = "error"
    error_type: str
    """A stable error code of ``cvm.utils.errors.ERROR_CODES``: ``unknown_message_type``,
    ``invalid_message``, ``unknown_customer``, ``usage_error`` ..."""
    message: str
    customer_id: str | None = None

    @field_validator("error_type")
    @classmethod
    def _registered(cls, code: str) -> str:
        if error_class(code) is None:
            raise ValueError(f"unknown error code {code!r}; the codes are: {', '.join(sorted(ERROR_CODES))}")
        return code

    @classmethod
    def of(cls, exc: CVMError) -> ErrorResponse:
        """The answer that stands for ``exc`` (its class's code, message and customer)."""
        return cls(error_type=exc.code, message=exc.message, customer_id=exc.customer_id)

    def error(self) -> CVMError:
        """The exception this answer stands for, of the class its code names."""
        error_type = error_class(self.error_type)
        assert error_type is not None  # validated on construction
        return error_type(self.message, customer_id=self.customer_id)


class CustomerDataResponse(_Model):
    type: Literal["customer_data"] = "customer_data"
    data: CustomerData


class CustomerListResponse(_Model):
    type: Literal["customer_list"] = "customer_list"
    customer_ids: tuple[str, ...]


class Ack(_Model):
    type: Literal["ack"] = "ack"
    detail: str


class JourneyResponse(_Model):
    type: Literal["journey"] = "journey"
    journey: Journey


class JourneyAnalysis(_Model):
    type: Literal["journey_analysis"] = "journey_analysis"
    customer_id: str
    signals: dict[str, str]
    insights: tuple[str, ...]


class JourneySummary(_Model):
    type: Literal["journey_summary"] = "journey_summary"
    customer_id: str
    summary: str


class Recommendation(_Model):
    type: Literal["recommendation"] = "recommendation"
    customer_id: str
    candidates: tuple[Candidate, ...]
    """Best first; ``ignore`` is always present and everything below it has negative value."""
    selector: Literal["rules", "llm", "analyst"]
    selector_fallback: str | None = None
    explanation: str
    confidence: float


class AllocationResponse(_Model):
    type: Literal["allocation"] = "allocation"
    treatment_key: str
    customer_id: str
    allocated: bool
    status: AllocationStatus
    detail: str
    scheduled_for: str | None = None
    request_id: str | None = None
    """The approval request, for a hold."""


class AvailabilityResponse(_Model):
    type: Literal["availability"] = "availability"
    treatment_key: str
    available: bool
    max_per_day: int | None
    used_today: int
    remaining: int | None


class ContactPolicyResponse(_Model):
    type: Literal["contact_policy"] = "contact_policy"
    customer_id: str
    purpose: str
    allowed: bool
    """The purpose's cap is not reached (and, with a treatment, it was not given recently)."""
    contacts_in_window: int
    cap: int | None
    window_days: int
    repeat_blocked: bool = False
    """The treatment was given to this customer within ``repeat_window_days``."""


class ContactScreen(_Model):
    """What the contact policy refuses one customer now, by rule (``cvm.decision.screening.contact_blocks`` with N = 1)."""

    type: Literal["contact_screen"] = "contact_screen"
    customer_id: str
    blocked: dict[str, dict[str, str]] = {}
    """Rule (``repeat_limit``, ``contact_limit``, ``daily_contact_limit``, ``approval_rejected``) -> treatment id -> why."""


class ConstraintsResponse(_Model):
    type: Literal["constraints"] = "constraints"
    day: str
    constraints: tuple[ConstraintStatus, ...]


class AllocationHistoryResponse(_Model):
    type: Literal["allocation_history"] = "allocation_history"
    allocations: tuple[AllocationRow, ...]


class BatchResult(_Model):
    type: Literal["batch_result"] = "batch_result"
    run_id: str
    results: tuple[DecisionResult, ...]


class TriggerCatalog(_Model):
    type: Literal["trigger_catalog"] = "trigger_catalog"
    triggers: tuple[TriggerInfo, ...]


class TriggerResult(_Model):
    """The JSON output contract of ``trigger_customers_cli trigger``."""

    type: Literal["trigger_result"] = "trigger_result"
    trigger_type: str
    matcher: str
    """Which matcher ran: ``condition``, ``keyword``, ``lexical-tfidf`` or ``llm``."""
    total_customers: int
    total_matches: int
    matches: tuple[TriggerMatch, ...]
    errors: tuple[dict[str, str], ...] = ()
    """Customers that could not be evaluated (unknown id...): ``customer_id``, ``error``, ``error_type`` (its stable error code)."""


class TriggerAndProcessResult(_Model):
    type: Literal["trigger_and_process_result"] = "trigger_and_process_result"
    trigger: TriggerResult
    batch: BatchResult

    @property
    def processed(self) -> tuple[DecisionResult, ...]:
        """The decisions for the matched customers (the prototype's ``result["processed"]``)."""
        return self.batch.results

    @property
    def matches(self) -> tuple[TriggerMatch, ...]:
        return self.trigger.matches


class ApprovalCheck(_Model):
    type: Literal["approval_check"] = "approval_check"
    required: bool
    rule: str | None = None


class ApprovalRequestInfo(_Model):
    """One approval request as stored in the ledger."""

    type: Literal["approval_request"] = "approval_request"
    request_id: str
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
    status: Literal["pending", "approved", "rejected", "expired"]
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None


class ApprovalList(_Model):
    type: Literal["approval_list"] = "approval_list"
    requests: tuple[ApprovalRequestInfo, ...]


class AtRiskCustomer(_Model):
    customer_id: str
    churn_probability: float | None
    signals: tuple[str, ...]
    reasons: tuple[str, ...]
    """The evidence of each signal, in words."""


class PortfolioChurn(_Model):
    """The churn picture of a run's customers: every score counted, the most at risk and the segments' trajectories."""

    type: Literal["portfolio_churn"] = "portfolio_churn"
    horizon_days: int
    threshold: float
    customers: int
    scored: int
    at_risk: int
    bands: tuple[int, ...]
    """Customers per band of ``ForecastPortfolio.bands``."""
    histogram: tuple[tuple[int, int], ...]
    """Ten bins of width 0.1: (below the threshold, at or above it)."""
    most_at_risk: tuple[AtRiskCustomer, ...]
    unknown_ids: tuple[str, ...] = ()
    """The first customers (by id) with no churn score."""
    segments: tuple[SegmentTrajectory, ...]
    sample_per_segment: int
    errors: tuple[dict[str, str], ...] = ()


class SignalFusion(_Model):
    type: Literal["signal_fusion"] = "signal_fusion"
    customers: int
    customer_ids: tuple[str, ...]
    """Everyone whose journey was read (the input to later steps)."""
    signal_counts: dict[str, int]
    customers_by_signal: dict[str, tuple[str, ...]]
    at_risk: tuple[AtRiskCustomer, ...]
    """Customers at or above the high-churn threshold, most at risk first."""
    errors: tuple[dict[str, str], ...] = ()


class ChurnTrajectory(_Model):
    customer_id: str
    churn_now: float | None
    churn_at_horizon: float | None
    trend: Trend
    drivers: tuple[str, ...]


class ChurnForecast(_Model):
    type: Literal["churn_forecast"] = "churn_forecast"
    horizon_days: int
    customers: tuple[ChurnTrajectory, ...]
    rising: tuple[str, ...]
    """Ids whose churn probability rises over the horizon, steepest first."""
    errors: tuple[dict[str, str], ...] = ()


class ReportArtifact(_Model):
    """Where a report was written, which executive triggers fired, and its headline numbers."""

    type: Literal["report"] = "report"
    run_id: str
    view: Literal["portfolio", "customer"]
    customer_id: str | None = None
    markdown_path: str
    json_path: str
    charts: tuple[str, ...] = ()
    """Paths of the PNG charts beside the report (none when matplotlib is not installed)."""
    charts_note: str | None = None
    """Why charts are missing (e.g. matplotlib missing from a broken install, and how to reinstall)."""
    executive_triggers_fired: tuple[str, ...] = ()
    """Names of the fired triggers: at_risk_customers, pending_approvals, capacity_rejections, open_errors."""
    headlines: tuple[str, ...] = ()
    """The fired triggers in words, with their numbers."""
    customers: int = 0
    by_status: dict[str, int] = {}
    """As recorded when decided (``error``: customers whose decision failed)."""
    by_status_now: dict[str, int] = {}
    """After the approvals decided since the run."""
    expected_value_total: float = 0.0
    contact_cost_total: float = 0.0
    currency: str = "GBP"
    at_risk_customers: int = 0
    pending_approvals: int = 0
    capacity_rejections: int = 0
    open_errors: int = 0


class TrendArtifact(_Model):
    """Where the KPIs-over-runs report was written, and which runs it covers."""

    type: Literal["report_trend_artifact"] = "report_trend_artifact"
    markdown_path: str
    json_path: str
    charts: tuple[str, ...] = ()
    charts_note: str | None = None
    runs: tuple[str, ...] = ()
    """Every run in the ledger, oldest first."""
    computed: tuple[str, ...] = ()
    """Runs whose snapshot was taken for this trend (never reported on before)."""
    refreshed: tuple[str, ...] = ()
    """Runs whose snapshot was refreshed from the ledger (approvals were pending when it was taken)."""


class FlowGoalResponse(_Model):
    type: Literal["flow_goal"] = "flow_goal"
    flow_id: str
    version: str
    goal: str
    description: str
    inputs: dict[str, Any]


class FlowPlanResponse(_Model):
    type: Literal["flow_plan"] = "flow_plan"
    plan: dict[str, Any]
    """The plan artifact as JSON (what ``cvm flows plan --output json`` prints)."""
    steps: list[str]
    """Each step in order, in words."""
    markdown: str


class Waited(_Model):
    type: Literal["waited"] = "waited"
    seconds: float


NotificationChannel = Literal["email", "webhook"]


class NotificationDeliveryInfo(_Model):
    """What one target answered: an e-mail recipient, or a webhook URL shown without user, password or query."""

    target: str
    delivered: bool
    detail: str
    attempts: int


class NotificationsSent(_Model):
    """What ``send_notifications`` did: one delivery per recipient (e-mail) or per configured webhook URL, all delivered."""

    type: Literal["notifications_sent"] = "notifications_sent"
    notification_id: str
    """Also the ``X-CVM-Notification-Id`` header of the e-mail or the webhook request."""
    channel: NotificationChannel
    recipients: tuple[str, ...]
    subject: str
    """As sent (the template filled)."""
    body_sha256: str
    deliveries: tuple[NotificationDeliveryInfo, ...]
    attachments: tuple[str, ...] = ()
    """File names attached."""
    audited: bool
    """Recorded in the ledger's audit log (``notification_sent``); False only when the ledger refused the write."""


class CalendarEventCreated(_Model):
    """The .ics file ``create_calendar_event`` wrote, and the notification it was attached to (when asked)."""

    type: Literal["calendar_event"] = "calendar_event"
    path: str
    """Pass it to ``send_notifications`` as an attachment: ``${steps.STEP.output.path}``."""
    uid: str
    summary: str
    start: str
    """ISO instant, UTC."""
    end: str
    notification: NotificationsSent | None = None


class RenewalRiskAssessment(_Model):
    """How much a customer's contract renewal is at risk (the decision agent's ``assess_renewal_risk``)."""

    type: Literal["renewal_risk"] = "renewal_risk"
    customer_id: str
    risk_level: Literal["low", "medium", "high"]
    risk_score: float
    """0-1: churn probability, plus the renewal falling in the window, plus risk signals (``cvm.decision.renewal``)."""
    churn_probability: float | None
    renewal_date: str | None
    """ISO date: the row's renewal or contract-end date, else the next term anniversary of the join date."""
    renewal_date_source: str
    days_to_renewal: int | None
    reasons: tuple[str, ...]


class RenewalRecommendations(_Model):
    """The treatments worth offering at renewal, best first (the decision agent's ``generate_renewal_recommendations``)."""

    type: Literal["renewal_recommendations"] = "renewal_recommendations"
    customer_id: str
    risk_level: Literal["low", "medium", "high"] | None
    recommendations: tuple[Candidate, ...]
    """The treatment agent's ranking, best first, keeping only positive expected values; empty when none is worth a contact."""
    explanation: str


AgentResponse = Annotated[
    ErrorResponse
    | CustomerDataResponse
    | CustomerListResponse
    | Ack
    | JourneyResponse
    | JourneyAnalysis
    | JourneySummary
    | Recommendation
    | AllocationResponse
    | AvailabilityResponse
    | ContactPolicyResponse
    | ContactScreen
    | ConstraintsResponse
    | AllocationHistoryResponse
    | DecisionResult
    | BatchResult
    | TriggerCatalog
    | TriggerResult
    | TriggerAndProcessResult
    | ApprovalCheck
    | ApprovalRequestInfo
    | ApprovalList
    | SignalFusion
    | ChurnForecast
    | PortfolioChurn
    | ReportArtifact
    | TrendArtifact
    | FlowGoalResponse
    | FlowPlanResponse
    | Waited
    | NotificationsSent
    | CalendarEventCreated
    | RenewalRiskAssessment
    | RenewalRecommendations,
    Discriminator("type"),
]
"""Every answer an agent gives: the one response union."""
@cache
def response_adapter() -> TypeAdapter[Any]:
    """Validates a stored answer into its response model (built on first use: a command that never asks pays nothing)."""
    return TypeAdapter(AgentResponse)
RESPONSE_MODELS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {model.model_fields["type"].default: model for model in get_args(get_args(AgentResponse)[0])}
)
"""Response type -> response model, for every member of ``AgentResponse``."""


# --- requests ---------------------------------------------------------------

R_co = TypeVar("R_co", bound=BaseModel, covariant=True)
"""A request's response model (covariant: a request answered by X is one answered by any supertype of X)."""


class Request(_Model, Generic[R_co]):
    """A message an agent handles; ``Request[JourneyResponse]`` declares that its answer is a ``JourneyResponse``.

    ``response_type`` is that model, set when the subclass is made (read by the
    dispatch, which checks every answer against it, and by the flow catalog).
    """

    response_type: ClassVar[type[BaseModel]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for base in cls.__mro__:
            meta = getattr(base, "__pydantic_generic_metadata__", None)
            args = meta["args"] if meta and meta["origin"] is Request else ()
            if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                cls.response_type = args[0]
                return
        if "type" in cls.model_fields and not hasattr(cls, "response_type"):
            raise TypeError(f"request {cls.__name__} must declare its response model: class {cls.__name__}(Request[SomeResponse])")


class GetCustomerData(Request[CustomerDataResponse]):
    type: Literal["get_customer_data"] = "get_customer_data"
    customer_id: str


class ListCustomers(Request[CustomerListResponse]):
    type: Literal["list_customers"] = "list_customers"


class CheckCustomerIds(Request[CustomerListResponse]):
    """Check ids against ``validation.customer_id_pattern`` (no data is read); the answer lists them unchanged."""

    type: Literal["check_customer_ids"] = "check_customer_ids"
    customer_ids: tuple[str, ...]


class ClearCache(Request[Ack]):
    type: Literal["clear_cache"] = "clear_cache"


class BuildJourney(Request[JourneyResponse]):
    type: Literal["build_journey"] = "build_journey"
    customer_id: str
    customer_data: CustomerData


class AnalyzeJourney(Request[JourneyAnalysis]):
    type: Literal["analyze_journey"] = "analyze_journey"
    journey: Journey


class SummarizeJourney(Request[JourneySummary]):
    type: Literal["summarize_journey"] = "summarize_journey"
    journey: Journey


class RecommendTreatment(Request[Recommendation]):
    type: Literal["recommend_treatment"] = "recommend_treatment"
    journey: Journey
    allowed: tuple[str, ...] | None = None
    """Treatment ids still allowed for this customer; None means every enabled one."""


class FindAlternative(Request[Recommendation]):
    type: Literal["find_alternative"] = "find_alternative"
    journey: Journey
    excluded: tuple[str, ...]
    """Treatments already tried or refused."""
    allowed: tuple[str, ...] | None = None


class ApprovalDetails(_Model):
    """Why a decision needs approval, stored with the request for the approver."""

    rule: str
    explanation: str
    confidence: float | None = None
    expected_value: float | None = None


class AllocateResource(Request[AllocationResponse]):
    type: Literal["allocate_resource"] = "allocate_resource"
    treatment_key: str
    customer_id: str
    run_id: str
    scheduled_for: datetime | None = None
    approval: ApprovalDetails | None = None
    """When set, hold the capacity and open an approval request instead of giving the treatment."""


class CheckAvailability(Request[AvailabilityResponse]):
    type: Literal["check_availability"] = "check_availability"
    treatment_key: str


class CheckContactPolicy(Request[ContactPolicyResponse]):
    type: Literal["check_contact_policy"] = "check_contact_policy"
    customer_id: str
    purpose: str
    treatment_key: str | None = None
    """When given, also check that this treatment was not given within the repeat window."""


class ScreenContacts(Request[ContactScreen]):
    """Which treatments the contact policy refuses this customer now: purpose caps, the repeat window, the daily cap
    and an approver's recent rejection, for every treatment at once."""

    type: Literal["screen_contacts"] = "screen_contacts"
    customer_id: str
    quiet_until: datetime | None = None
    """Where do-not-disturb moves an interrupting contact to (``policy.quiet_shift``); None: now is fine."""


class GetConstraints(Request[ConstraintsResponse]):
    type: Literal["get_constraints"] = "get_constraints"


class ResetConstraints(Request[Ack]):
    type: Literal["reset_constraints"] = "reset_constraints"
    treatment_key: str | None = None
    """None resets every treatment's use for today."""


class GetAllocationHistory(Request[AllocationHistoryResponse]):
    type: Literal["get_allocation_history"] = "get_allocation_history"
    customer_id: str | None = None
    run_id: str | None = None
    limit: int = Field(default=1000, ge=1, le=100_000)


class ProcessCustomer(Request[DecisionResult]):
    type: Literal["process_customer"] = "process_customer"
    customer_id: str
    run_id: str | None = None


class ProcessBatch(Request[BatchResult]):
    type: Literal["process_batch"] = "process_batch"
    customer_ids: tuple[str, ...]
    run_id: str | None = None


class CheckApproval(Request[ApprovalCheck]):
    type: Literal["check_approval"] = "check_approval"
    treatment_key: str
    confidence: float | None = None
    customer_value: float | None = None
    """The customer's monthly revenue."""


class ListApprovals(Request[ApprovalList]):
    type: Literal["list_approvals"] = "list_approvals"
    status: Literal["pending", "approved", "rejected", "expired"] | None = None
    customer_id: str | None = None


class GetApproval(Request[ApprovalRequestInfo]):
    type: Literal["get_approval"] = "get_approval"
    request_id: str


class DecideApproval(Request[ApprovalRequestInfo]):
    type: Literal["decide_approval"] = "decide_approval"
    request_id: str
    decision: Literal["approve", "reject"]
    by: str = Field(min_length=1)
    reason: str | None = None


class ExpireApprovals(Request[Ack]):
    type: Literal["expire_approvals"] = "expire_approvals"


class FuseSignals(Request[SignalFusion]):
    """Count the journey signals across customers and list who carries which."""

    type: Literal["fuse_signals"] = "fuse_signals"
    customer_ids: tuple[str, ...] | None = None
    """None means every customer in the data folder."""


class ForecastChurn(Request[ChurnForecast]):
    """Project each customer's churn probability over a horizon from their journey's trends."""

    type: Literal["forecast_churn"] = "forecast_churn"
    customer_ids: tuple[str, ...] | None = None
    horizon_days: int = Field(default=90, ge=1, le=730)


RISK_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))


class ForecastPortfolio(Request[PortfolioChurn]):
    """The churn picture of a run's customers at any size: scores counted in the columnar reader, journeys read only
    for the ``top`` most at risk and a fixed sample per segment (``sample_per_segment``), whose trajectories are forecast."""

    type: Literal["forecast_portfolio"] = "forecast_portfolio"
    run_id: str = Field(min_length=1)
    horizon_days: int = Field(default=90, ge=1, le=730)
    top: int = Field(default=10, ge=0, le=1000)
    sample_per_segment: int = Field(default=200, ge=0, le=5000)
    bands: tuple[tuple[float, float], ...] = RISK_BANDS


class ListTriggers(Request[TriggerCatalog]):
    type: Literal["list_triggers"] = "list_triggers"


class TriggerCustomers(Request[TriggerResult]):
    """Find the customers a trigger fires for (``customer_ids`` None means everyone)."""

    type: Literal["trigger_customers"] = "trigger_customers"
    trigger_type: str
    """A built-in or config trigger name, or ``custom``."""
    customer_ids: tuple[str, ...] | None = None
    description: str | None = None
    """For ``custom``: what to look for, in words (semantic matching)."""
    keywords: tuple[str, ...] = ()
    """For ``custom``: keywords or phrases (keyword matching)."""
    keyword_match: Literal["stemmed", "exact"] = "stemmed"
    """``stemmed`` matches word forms ("drop" finds "dropped"); ``exact`` the words as written."""
    data_types: tuple[str, ...] = ("call_transcripts", "web_transcripts")
    min_score: float | None = Field(default=None, ge=0, le=1)


class ProcessCustomerWithTreatment(Request[DecisionResult]):
    """Decide one customer with an analyst's proposed treatment; consent, contact policy and capacity still apply."""

    type: Literal["process_customer_with_treatment"] = "process_customer_with_treatment"
    customer_id: str
    treatment_key: str = Field(validation_alias=AliasChoices("treatment_key", "treatment_id"))
    """The treatment id (the prototype's messages call it ``treatment_id``)."""
    run_id: str | None = None


class TriggerAndProcess(Request[TriggerAndProcessResult]):
    """Find the customers a trigger fires for and decide for each.

    Accepts the prototype's flat form too: ``{"type": "trigger_and_process",
    "trigger_type": ..., "customer_ids": [...], "treatment_id": ...}``.
    """

    type: Literal["trigger_and_process"] = "trigger_and_process"
    trigger: TriggerCustomers
    treatment_key: str | None = Field(default=None, validation_alias=AliasChoices("treatment_key", "treatment_id"))
    run_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_trigger(cls, data: Any) -> Any:
        """Lift the prototype's flat trigger keys into ``trigger``."""
        if not isinstance(data, dict) or "trigger" in data:
            return data
        trigger_keys = set(TriggerCustomers.model_fields) - {"type"}
        lifted = {k: v for k, v in data.items() if k in trigger_keys}
        rest = {k: v for k, v in data.items() if k not in trigger_keys}
        return {**rest, "trigger": lifted}


class GenerateReport(Request[ReportArtifact]):
    """Write the executive report of a run (portfolio), or of one of its customers, under output/reports/<run_id>/."""

    type: Literal["generate_report"] = "generate_report"
    run_id: str = Field(min_length=1)
    customer_id: str | None = None
    """The single-customer view; None means the whole run (portfolio)."""
    goal: str | None = None
    """What the run was for (a flow's goal); None: a default goal for the run."""
    plan: list[str] | dict[str, Any] | None = None
    """The flow's plan (steps in words, or the plan artifact); None: the standard decision pipeline."""
    title: str | None = None
    allow_empty: bool = False
    """Write an empty report for a run the ledger knows nothing of (a flow whose trigger matched nobody)."""


class ReportTrend(Request[TrendArtifact]):
    """Mission Control over time: a snapshot of KPIs for every run in the ledger (taken now where missing), as a trend."""

    type: Literal["report_trend"] = "report_trend"


class FlowGoal(Request[FlowGoalResponse]):
    """Record the flow's goal in the run (the ``flow`` pseudo-agent)."""

    type: Literal["goal"] = "goal"


class FlowPlan(Request[FlowPlanResponse]):
    """Record the plan artifact (goal, steps in order, dependencies, outputs, stages) in the run."""

    type: Literal["plan"] = "plan"


class FlowWait(Request[Waited]):
    """Pause before the next steps (let a feed land, spread load)."""

    type: Literal["wait"] = "wait"
    seconds: float = Field(ge=0, le=3600)


def _one_or_many(value: Any) -> Any:
    """A single string is a list of one; a string with commas is split (``"a@x, b@y"``); None is empty."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class SendNotifications(Request[NotificationsSent]):
    """Notify operators and admins by e-mail (SMTP) or by a signed webhook (the execution agent).

    ``subject`` and ``template`` may hold ``${name}`` / ``${name.field}``
    placeholders filled from ``context`` (in a flow, write ``$${name}``: the
    runner turns it into ``${name}`` and resolves ``${steps...}`` itself).
    Customers are not notified here: a ``customer.<ID>`` recipient is refused
    unless ``decision_id`` is that customer's allocated decision, and even then
    only a webhook (to the operator's delivery system) carries it.
    """

    type: Literal["send_notifications"] = "send_notifications"
    channel: NotificationChannel = "email"
    recipients: tuple[str, ...] = ()
    """E-mail: bare addresses (one string, a comma-separated string or a list); none means ``CVM_NOTIFY_TO``.
    Webhook: who it is for (addresses, team names), carried in the payload; the URLs come from ``CVM_WEBHOOK_URLS``."""
    subject: str = Field(min_length=1, max_length=2000)
    template: str = Field(default="", max_length=200_000)
    """The body text."""
    context: dict[str, Any] = {}
    """The values the placeholders read: a flow passes the step outputs here."""
    attachments: tuple[str, ...] = ()
    """Paths of files under the output folder (``CVM_OUTPUT_DIR``), e.g. the ``path`` of ``create_calendar_event``."""
    run_id: str | None = None
    """The run the notification belongs to (recorded in the audit log)."""
    decision_id: str | None = None
    """``<run id>:<customer id>`` of an allocated decision: needed for any ``customer.<ID>`` recipient."""

    _split_recipients = field_validator("recipients", "attachments", mode="before")(_one_or_many)


class CreateCalendarEvent(Request[CalendarEventCreated]):
    """Write an iCalendar (.ics) event under ``<output>/calendar/``; with ``notify``, send it attached."""

    type: Literal["create_calendar_event"] = "create_calendar_event"
    summary: str = Field(min_length=1, max_length=1000)
    """One line; placeholders filled from ``context``."""
    description: str = Field(default="", max_length=200_000)
    """Placeholders filled from ``context``."""
    context: dict[str, Any] = {}
    start: datetime
    """A time without an offset is in ``settings.timezone`` of the config."""
    end: datetime | None = None
    duration_minutes: float | None = Field(default=None, gt=0, le=31 * 24 * 60)
    """Instead of ``end``; neither means 60 minutes."""
    location: str | None = Field(default=None, max_length=1000)
    organizer: str | None = None
    """An e-mail address."""
    attendees: tuple[str, ...] = ()
    """E-mail addresses (one string, a comma-separated string or a list)."""
    uid: str | None = Field(default=None, min_length=1, max_length=255)
    """None: made from ``run_id``, summary and start when a run is given (a retried step writes the same event), else random."""
    file_name: str | None = Field(default=None, min_length=1, max_length=100)
    """A plain file name (``.ics`` added); None: made from the summary and the UID."""
    run_id: str | None = None
    notify: SendNotifications | None = None
    """Also send a notification with the .ics attached (its own attachments are kept)."""

    _split_attendees = field_validator("attendees", mode="before")(_one_or_many)

    @model_validator(mode="after")
    def _end_or_duration(self) -> CreateCalendarEvent:
        if self.end is not None and self.duration_minutes is not None:
            raise ValueError("give end or duration_minutes, not both")
        return self


class AssessRenewalRisk(Request[RenewalRiskAssessment]):
    type: Literal["assess_renewal_risk"] = "assess_renewal_risk"
    customer_id: str
    window_days: int = Field(default=30, ge=1, le=3650)
    """A renewal within this many days makes the risk higher."""


class GenerateRenewalRecommendations(Request[RenewalRecommendations]):
    type: Literal["generate_renewal_recommendations"] = "generate_renewal_recommendations"
    customer_id: str
    risk_level: Literal["low", "medium", "high"] | None = None
    """From ``assess_renewal_risk`` (recorded with the answer; a high risk puts retention offers first)."""
    max_recommendations: int = Field(default=3, ge=1, le=20)


AgentRequest = Annotated[
    GetCustomerData
    | ListCustomers
    | CheckCustomerIds
    | ClearCache
    | BuildJourney
    | AnalyzeJourney
    | SummarizeJourney
    | RecommendTreatment
    | FindAlternative
    | AllocateResource
    | CheckAvailability
    | CheckContactPolicy
    | ScreenContacts
    | GetConstraints
    | ResetConstraints
    | GetAllocationHistory
    | ProcessCustomer
    | ProcessBatch
    | CheckApproval
    | ListApprovals
    | GetApproval
    | DecideApproval
    | ExpireApprovals
    | FuseSignals
    | ForecastChurn
    | ForecastPortfolio
    | ListTriggers
    | TriggerCustomers
    | ProcessCustomerWithTreatment
    | TriggerAndProcess
    | GenerateReport
    | ReportTrend
    | FlowGoal
    | FlowPlan
    | FlowWait
    | SendNotifications
    | CreateCalendarEvent
    | AssessRenewalRisk
    | GenerateRenewalRecommendations,
    Discriminator("type"),
]
"""Every request an agent handles: the one request union."""
@cache
def request_adapter() -> TypeAdapter[Any]:
    """Validates a plain dict into the request model its ``type`` names (built on first use)."""
    return TypeAdapter(AgentRequest)
REQUEST_MODELS: Mapping[str, type[Request[Any]]] = MappingProxyType(
    {model.model_fields["type"].default: model for model in get_args(get_args(AgentRequest)[0])}
)
"""Message type -> request model, for every member of ``AgentRequest``."""
