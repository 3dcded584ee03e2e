"""Loading and validating ``cvm_config.yaml`` and ``custom_treatments.json``.

The file keeps the prototype's shape (``treatments`` and ``constraints`` maps,
``settings``, ``model``, ``validation``) so the prototype's own file loads
unchanged; CVM adds ``channel``/``purpose`` per treatment and the
``policies``/``scoring`` sections. Every section has defaults, so a file with
only ``treatments`` and ``constraints`` is valid. Unknown keys are errors, and
every error names the file, the key and the fix.

Size: one small pydantic model per config section; together they are the config's schema and its
error messages, read as one file.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cvm.utils.conditions import Condition, ConditionError
from cvm.utils.errors import ConfigError

Channel = Literal["email", "sms", "call", "push_notifications"]
Purpose = Literal["marketing", "service_updates", "billing"]
CHANNELS: tuple[str, ...] = ("email", "sms", "call", "push_notifications")
PURPOSES: tuple[str, ...] = ("marketing", "service_updates", "billing")
IGNORE_ID = "ignore"

# The prototype's eleven standard treatments may omit channel and purpose; these
# are the documented defaults (DESIGN section 4).
STANDARD_CHANNELS: dict[str, Channel] = {
    "service_call_back": "call",
    "marketing_call_back": "call",
    "retention_email": "email",
    "early_upgrade": "email",
    "family_plan": "email",
    "personalized_offer": "email",
    "retention_sms": "sms",
    "service_sms": "sms",
    "data_boost": "sms",
    "loyalty_app": "push_notifications",
    "loyalty_points": "push_notifications",
}
STANDARD_PURPOSES: dict[str, Purpose] = {
    "service_call_back": "service_updates",
    "service_sms": "service_updates",
}

_PURPOSE_ALIASES: dict[str, Purpose] = {
    "service_update": "service_updates",
    "service": "service_updates",
    "service_updates": "service_updates",
    "marketing": "marketing",
    "billing": "billing",
}


def normalise_purpose(value: str) -> Purpose:
    """Map the prototype's ``permission_type`` spellings onto a purpose.

    Accepts a bare purpose (``marketing``, ``service_update``) or a
    channel-qualified one (``sms_marketing``, ``email.service_updates``).
    """
    text = value.strip().lower()
    for channel in sorted(CHANNELS, key=len, reverse=True):
        for sep in ("_", ".", ":"):
            if text.startswith(channel + sep):
                text = text[len(channel) + 1 :]
    if text not in _PURPOSE_ALIASES:
        raise ValueError(f"unknown purpose {value!r}; use one of {', '.join(PURPOSES)}")
    return _PURPOSE_ALIASES[text]


MAX_MONEY = 1_000_000.0
"""The largest cost or value per contact a config or custom treatment may state (a typo guard, and it keeps every sum finite)."""


class _Strict(BaseModel):
    # Infinity and NaN are never a setting: ``.inf`` in YAML or ``Infinity`` in JSON is an error naming the key.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Eligibility(_Strict):
    """Journey conditions a treatment requires; an unset bound does not apply."""

    min_tenure_months: float | None = None
    """Customers with a shorter tenure are not eligible."""
    max_tenure_months: float | None = None
    """Customers with a longer tenure are not eligible (e.g. new-joiner offers)."""
    min_churn_probability: float | None = Field(default=None, ge=0, le=1)
    """Retention spend only above this churn risk."""
    max_churn_probability: float | None = Field(default=None, ge=0, le=1)
    """Upsell only below this churn risk."""
    min_monthly_revenue: float | None = Field(default=None, ge=0)
    """Only customers paying at least this much a month."""
    required_signals: tuple[str, ...] = ()
    """Journey signals that must all be present (e.g. ``network_issue``)."""


class Treatment(_Strict):
    """One fully resolved treatment: what it is, who may get it, what it costs."""

    id: str
    """Stable identifier, e.g. ``retention_email``."""
    display_name: str
    """Name shown to people."""
    description: str = ""
    """What the treatment does; the rules selector reads it for relevance."""
    channel: Channel | Literal["none"]
    """The contact channel whose permission is needed (``none`` only for ignore)."""
    purpose: Purpose | Literal["none"]
    """The contact purpose whose permission is needed."""
    enabled: bool = True
    """A disabled treatment is never given."""
    max_per_day: int | None = Field(default=None, ge=0)
    """Daily capacity; None means unlimited."""
    cost_per_contact: float = Field(default=0.0, ge=0, le=MAX_MONEY)
    """Cost of one contact in the settings currency."""
    priority: int = Field(default=5, ge=1)
    """1 is highest; breaks ties between equal expected values."""
    requires_approval: bool = False
    """Decisions for this treatment need a human approval (governance)."""
    value_per_accept: float = Field(default=0.0, ge=0, le=MAX_MONEY)
    """Incremental revenue over the scoring horizon when the customer accepts (upsell)."""
    eligibility: Eligibility = Eligibility()
    """Journey conditions the customer must meet."""
    source: Literal["standard", "config", "custom"] = "config"
    """Where the treatment was defined."""


IGNORE = Treatment(
    id=IGNORE_ID,
    display_name="No action",
    description="Do not contact the customer.",
    channel="none",
    purpose="none",
    priority=99,
    source="standard",
)


class RawTreatment(_Strict):
    """``treatments.<id>`` as written in the YAML file."""

    display_name: str | None = None
    description: str = ""
    enabled: bool = True
    permission_type: str | None = None
    channel: Channel | None = None
    purpose: str | None = None
    requires_approval: bool = False
    value_per_accept: float = Field(default=0.0, ge=0, le=MAX_MONEY)
    eligibility: Eligibility = Eligibility()


class RawConstraint(_Strict):
    """``constraints.<id>`` as written in the YAML file."""

    max_per_day: int | None = Field(default=None, ge=0)
    remaining_availability: int | None = None
    """Accepted for compatibility and ignored: the ledger knows what remains."""
    cost_per_contact_pounds: float | None = Field(default=None, ge=0, le=MAX_MONEY)
    cost_per_contact: float | None = Field(default=None, ge=0, le=MAX_MONEY)
    priority: int = Field(default=5, ge=1)


class RotationSettings(_Strict):
    max_bytes: int = Field(default=10_485_760, gt=0)
    backup_count: int = Field(default=5, ge=0)


class LoggingSettings(_Strict):
    default_level: str = "INFO"
    file_output: str | bool | None = "logs/cvm.log"
    """Path of the JSON-lines log (``true`` means the default path, ``false`` none)."""
    format: str | None = None
    """Accepted for compatibility; console logs are structlog's, the file is JSON lines."""
    rotation: RotationSettings = RotationSettings()


class Settings(_Strict):
    reset_constraints_daily: bool = True
    """Kept for compatibility: capacity is keyed by day, so it always rolls over."""
    default_output_file: str = "cvm_results.json"
    currency: str = "GBP"
    timezone: str = "Europe/London"
    """Clock zone for day keys, do-not-disturb windows and naive ``--as-of`` times."""
    logging: LoggingSettings = LoggingSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/London") from None
        return value


class ModelSettings(_Strict):
    """The LLM selector's settings; ``MODEL_ID`` overrides ``id``."""

    id: str = "gpt-4o-mini"
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=400, gt=0)
    planning_interval: int | None = None
    """Accepted for compatibility; unused."""
    additional_imports: list[str] = []
    """Accepted for compatibility and ignored: CVM never executes model-written code."""
    timeout_seconds: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    """Requests in flight at once, across every thread of a run."""
    requests_per_second: float | None = Field(default=None, gt=0)
    """A rate limit shared by every thread of a run (None: no limit beyond max_concurrency)."""
    cache_size: int = Field(default=10_000, ge=0)
    circuit_breaker_failures: int = Field(default=3, ge=1, le=1000)
    """After this many consecutive failed or timed-out calls, a run stops calling the model and uses rules."""


class ValidationSettings(_Strict):
    customer_id_pattern: str = r"^[A-Za-z0-9_-]{1,64}$"
    max_customers_per_batch: int = Field(default=100_000, gt=0)
    required_journey_fields: list[str] = []
    """Journey feature names that must be known; a journey missing one is recorded as a data-quality issue."""

    @field_validator("customer_id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from exc
        return value


class ContactPolicy(_Strict):
    """At most ``max_contacts`` per purpose per customer over a rolling window,
    never the same treatment twice to one customer within ``repeat_window_days``,
    and at most ``max_contacts_per_day`` contacts per customer per calendar day
    (settings time zone, the day the contact happens) across every purpose,
    so that several runs or commands on one day never add up to spam.
    Only treatments named in ``daily_cap_exempt`` may go beyond the daily cap."""

    window_days: int = Field(default=7, ge=1, le=365)
    max_contacts: dict[Purpose, int] = {"marketing": 1}
    """Purposes not listed are not capped."""
    repeat_window_days: int = Field(default=7, ge=0, le=365)
    """0 allows the same treatment again at once."""
    max_contacts_per_day: int | None = Field(default=1, ge=1)
    """Contacts per customer per day across all purposes (None: no daily cap; a deliberate choice)."""
    daily_cap_exempt: tuple[str, ...] = ()
    """Service-critical treatment ids (e.g. an outage call-back) that the daily cap never refuses; they still count."""


class Policies(_Strict):
    contact: ContactPolicy = ContactPolicy()


class ScoringSettings(_Strict):
    """Knobs of the rules selector's expected-value model."""

    horizon_months: int = Field(default=12, ge=1, le=60)
    """Revenue at risk is monthly revenue times this horizon times churn probability."""
    default_acceptance: float = Field(default=0.2, ge=0, le=1)
    """P(accept) for a treatment the offer model did not score."""
    offer_history_weight: float = Field(default=4.0, ge=0, le=1000)
    """How many past offers the prior P(accept) is worth: each past accept or decline of the same kind of
    offer moves P(accept) as one observation against this many (0 ignores the offer history)."""
    default_churn_probability: float = Field(default=0.2, ge=0, le=1)
    """Churn probability assumed for a customer without a churn score."""
    high_churn_threshold: float = Field(default=0.6, ge=0, le=1)
    high_value_monthly_revenue: float = Field(default=70.0, ge=0)
    bill_shock_ratio: float = Field(default=1.5, gt=1)
    """Latest bill at least this many times the earlier average counts as bill shock."""
    poor_latency_ms: float = Field(default=80.0, gt=0)
    dropped_calls_threshold: int = Field(default=3, ge=0)


class ApprovalPolicy(_Strict):
    """When a decision needs a human: any rule that applies sends it for approval."""

    cost_per_contact_at_least: float | None = Field(default=None, ge=0)
    """Treatments costing at least this much per contact."""
    treatments: list[str] = []
    """Treatments that always need approval (as well as any with ``requires_approval``)."""
    customer_value_at_least: float | None = Field(default=None, ge=0)
    """Customers whose monthly revenue (latest bill) is at least this much."""
    confidence_below: float | None = Field(default=None, ge=0, le=1)
    """Decisions whose confidence is below this."""
    expiry_hours: float = Field(default=24.0, gt=0, le=24 * 90)
    """A request not decided within this time expires and releases its capacity."""
    max_pending_per_treatment: int | None = Field(default=None, ge=1)
    """At most this many pending requests per treatment; beyond it the next candidate is tried."""


class Governance(_Strict):
    approval_policy: ApprovalPolicy = ApprovalPolicy()


class ExecutiveTriggers(_Strict):
    """Thresholds that put a headline at the top of an executive report; None switches one off."""

    at_risk_customers_at_least: int | None = Field(default=3, ge=1)
    """Customers at or above scoring.high_churn_threshold."""
    pending_approvals_at_least: int | None = Field(default=1, ge=1)
    capacity_rejections_at_least: int | None = Field(default=1, ge=1)
    """Decisions where a wanted treatment was refused for lack of capacity."""
    open_errors_at_least: int | None = Field(default=1, ge=1)
    """Customers whose decision failed."""


class Reporting(_Strict):
    executive_triggers: ExecutiveTriggers = ExecutiveTriggers()
    top_at_risk: int = Field(default=10, ge=1, le=1000)
    """How many most-at-risk customers the report lists."""
    risk_owners: dict[str, str] = {}
    """Who owns the risk events each executive trigger raises (trigger name -> team or person; ``"*"`` for the
    rest; default ``cvm-operations``), shown by ``cvm risks list``."""


class BatchSettings(_Strict):
    """The columnar batch path (``cvm process --batch``)."""

    auto_threshold: int = Field(default=50_000, ge=1)
    """``--all_customers`` runs at or above this many customers take the batch path without ``--batch``."""
    json_results_max: int = Field(default=10_000, ge=0)
    """Up to this many results are written as the JSON result file; more go to Parquet."""
    budget_per_day: float | None = Field(default=None, ge=0)
    """Total contact cost a batch run may commit (None: no budget)."""


class TriggerSpec(_Strict):
    """A declarative trigger: a condition over journey features, and words to quote as evidence."""

    description: str = Field(min_length=1)
    condition: str = Field(min_length=1)
    """E.g. ``churn_probability >= 0.6 and network.latency_ms > 70`` (see cvm.utils.conditions)."""
    keywords: list[str] = []
    """Words whose mentions in conversations are quoted as evidence when the trigger fires."""


class ConfigFile(_Strict):
    """The whole YAML file, key for key."""

    treatments: dict[str, RawTreatment] = {}
    constraints: dict[str, RawConstraint] = {}
    settings: Settings = Settings()
    model: ModelSettings = ModelSettings()
    validation: ValidationSettings = ValidationSettings()
    policies: Policies = Policies()
    scoring: ScoringSettings = ScoringSettings()
    triggers: dict[str, TriggerSpec] = {}
    governance: Governance = Governance()
    reporting: Reporting = Reporting()
    batch: BatchSettings = BatchSettings()

    @model_validator(mode="after")
    def _constraints_name_treatments(self) -> ConfigFile:
        unknown = sorted(set(self.constraints) - set(self.treatments) - {IGNORE_ID})
        if unknown:
            raise ValueError(
                f"constraints for unknown treatment(s) {', '.join(unknown)}; add them under treatments or remove them"
            )
        return self

    @model_validator(mode="after")
    def _approval_treatments_exist(self) -> ConfigFile:
        unknown = sorted(set(self.governance.approval_policy.treatments) - set(self.treatments))
        if unknown:
            raise ValueError(
                f"governance.approval_policy.treatments names unknown treatment(s) {', '.join(unknown)}; fix the ids"
            )
        return self


class CVMConfig(_Strict):
    """The resolved configuration the agents receive."""

    treatments: dict[str, Treatment]
    settings: Settings = Settings()
    model: ModelSettings = ModelSettings()
    validation: ValidationSettings = ValidationSettings()
    policies: Policies = Policies()
    scoring: ScoringSettings = ScoringSettings()
    triggers: dict[str, TriggerSpec] = {}
    governance: Governance = Governance()
    reporting: Reporting = Reporting()
    batch: BatchSettings = BatchSettings()
    ignore: Treatment = IGNORE
    """The built-in no-action, with the display name and description the file gave it."""
    source: str = "<defaults>"

    def treatment(self, treatment_id: str) -> Treatment:
        """The treatment with this id (``ignore`` included)."""
        if treatment_id == IGNORE_ID:
            return self.ignore
        try:
            return self.treatments[treatment_id]
        except KeyError:
            raise ConfigError(unknown_treatment(treatment_id, self.treatments)) from None

    def with_treatments(self, extra: dict[str, Treatment]) -> CVMConfig:
        """A copy with more treatments (custom ones); an id clash keeps the config's own."""
        merged = {**extra, **self.treatments}
        return self.model_copy(update={"treatments": merged})


def unknown_treatment(treatment_id: str, known: Iterable[str]) -> str:
    """Says a treatment id is unknown, naming the similar ids first (a typo is the usual cause)."""
    ids = sorted(known)
    similar = difflib.get_close_matches(treatment_id, ids, n=3, cutoff=0.6)
    similar += [t for t in ids if t not in similar and len(treatment_id) >= 3 and (treatment_id in t or t in treatment_id)][: 3 - len(similar)]
    hint = f"did you mean {' or '.join(similar)}? " if similar else ""
    return f"unknown treatment {treatment_id!r}; {hint}known treatments: {', '.join(ids)}"


def describe_validation_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<top level>"
    kind = first["type"]
    if kind == "extra_forbidden":
        fix = "remove it or check its spelling"
        return f"{path}: unknown key {key}; {fix}"
    if kind == "missing":
        return f"{path}: {key} is required; add it"
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a whole-file rule: its message names the keys, the input would be the whole file
        return f"{path}: {message}"
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{path}: {key}: {message}; fix the value (input was {shown})"


def _resolve_treatment(treatment_id: str, raw: RawTreatment, constraint: RawConstraint | None, path: Path) -> Treatment:
    channel = raw.channel or STANDARD_CHANNELS.get(treatment_id)
    if channel is None:
        raise ConfigError(
            f"{path}: treatments.{treatment_id}.channel is missing; add channel: one of {', '.join(CHANNELS)}",
            path=str(path),
        )
    purpose_text = raw.purpose or raw.permission_type or STANDARD_PURPOSES.get(treatment_id, "marketing")
    try:
        purpose = normalise_purpose(purpose_text)
    except ValueError as exc:
        key = "purpose" if raw.purpose else "permission_type"
        raise ConfigError(f"{path}: treatments.{treatment_id}.{key}: {exc}", path=str(path)) from None
    constraint = constraint or RawConstraint()
    cost = constraint.cost_per_contact if constraint.cost_per_contact is not None else constraint.cost_per_contact_pounds
    return Treatment(
        id=treatment_id,
        display_name=raw.display_name or treatment_id.replace("_", " ").title(),
        description=raw.description,
        channel=channel,
        purpose=purpose,
        enabled=raw.enabled,
        max_per_day=constraint.max_per_day,
        cost_per_contact=cost or 0.0,
        priority=constraint.priority,
        requires_approval=raw.requires_approval,
        value_per_accept=raw.value_per_accept,
        eligibility=raw.eligibility,
        source="standard" if treatment_id in STANDARD_CHANNELS else "config",
    )


def parse_config(data: Any, path: Path) -> CVMConfig:
    """Validate an already-parsed YAML document into a ``CVMConfig``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold a mapping of sections, not {type(data).__name__}", path=str(path))
    try:
        raw = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc), path=str(path)) from None
    ignore = _resolve_ignore(raw.treatments.get(IGNORE_ID), raw.constraints.get(IGNORE_ID), path)
    treatments = {
        tid: _resolve_treatment(tid, rt, raw.constraints.get(tid), path) for tid, rt in raw.treatments.items() if tid != IGNORE_ID
    }
    for name, spec in raw.triggers.items():
        try:
            Condition(spec.condition)
        except ConditionError as exc:
            raise ConfigError(f"{path}: triggers.{name}.condition: {exc}; fix the expression", path=str(path)) from None
    return CVMConfig(
        treatments=treatments,
        settings=raw.settings,
        model=raw.model,
        validation=raw.validation,
        policies=raw.policies,
        scoring=raw.scoring,
        triggers=raw.triggers,
        governance=raw.governance,
        reporting=raw.reporting,
        batch=raw.batch,
        ignore=ignore,
        source=str(path),
    )


def _resolve_ignore(raw: RawTreatment | None, constraint: RawConstraint | None, path: Path) -> Treatment:
    """Map a file's ``ignore`` entry (the prototype lists "No Action") onto the built-in no-action.

    Its name and description are taken; its ``permission_type``, ``priority``
    and ``max_per_day`` are accepted and have no effect (no action needs no
    consent and is never rationed: nobody is contacted because no-action ran
    out). Anything that would make no-action contact someone is an error.
    """
    if raw is None and constraint is None:
        return IGNORE
    where = f"{path}: treatments.ignore"
    if raw is not None and raw.channel is not None:
        raise ConfigError(f"{where}.channel: no action contacts nobody and has no channel; remove the key", path=str(path))
    if raw is not None and not raw.enabled:
        raise ConfigError(f"{where}.enabled: no action is always available; remove the key or set it to true", path=str(path))
    if raw is not None and (raw.requires_approval or raw.value_per_accept):
        raise ConfigError(f"{where}: no action needs no approval and sells nothing; remove requires_approval/value_per_accept", path=str(path))
    cost = constraint and (constraint.cost_per_contact or constraint.cost_per_contact_pounds)
    if cost:
        raise ConfigError(f"{path}: constraints.ignore: no action contacts nobody, so it cannot cost {cost} per contact; set it to 0", path=str(path))
    if raw is None:
        return IGNORE
    return IGNORE.model_copy(update={"display_name": raw.display_name or IGNORE.display_name, "description": raw.description or IGNORE.description})


def load_config(path: str | Path) -> CVMConfig:
    """Read and validate the YAML config file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found; pass --config FILE or set CVM_CONFIG", path=str(path)
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML ({reason}); fix the syntax", path=str(path)) from None
    return parse_config(data, path)


class CustomTreatmentSpec(_Strict):
    """One entry of ``custom_treatments.json`` (the prototype's JSON shape plus channel/purpose)."""

    display_name: str = Field(min_length=1)
    description: str = ""
    enabled: bool = True
    channel: Channel
    purpose: Purpose = "marketing"
    requires_approval: bool = False
    value_per_accept: float = Field(default=0.0, ge=0, le=MAX_MONEY)
    constraints: RawConstraint = RawConstraint()

    @field_validator("purpose", mode="before")
    @classmethod
    def _known_purpose(cls, value: Any) -> Any:
        """The prototype's spellings (``service_update``, ``sms_marketing``) are accepted."""
        return normalise_purpose(value) if isinstance(value, str) else value

    def to_treatment(self, treatment_id: str) -> Treatment:
        c = self.constraints
        cost = c.cost_per_contact if c.cost_per_contact is not None else c.cost_per_contact_pounds
        return Treatment(
            id=treatment_id,
            display_name=self.display_name,
            description=self.description,
            channel=self.channel,
            purpose=self.purpose,
            enabled=self.enabled,
            max_per_day=c.max_per_day,
            cost_per_contact=cost or 0.0,
            priority=c.priority,
            requires_approval=self.requires_approval,
            value_per_accept=self.value_per_accept,
            source="custom",
        )


def load_custom_treatments(path: str | Path) -> dict[str, Treatment]:
    """Read ``custom_treatments.json``; a missing file means no custom treatments."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: not valid JSON ({exc}); fix or remove the file (it is never overwritten by a failed load)",
            path=str(path),
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a JSON object mapping treatment ids to treatments", path=str(path))
    treatments: dict[str, Treatment] = {}
    for tid, spec in data.items():
        if tid == IGNORE_ID:
            raise ConfigError(f"{path}: {tid}: 'ignore' is built in and cannot be a custom treatment; remove it", path=str(path))
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: {tid}: must be a JSON object with display_name, channel, ...", path=str(path))
        try:
            treatments[tid] = CustomTreatmentSpec.model_validate(spec).to_treatment(tid)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: {tid}.{key}: {first['msg']}; fix the entry", path=str(path)) from None
    return treatments
