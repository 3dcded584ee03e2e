"""Typed customer records, and the normalisation of messy table rows into them.

Real feeds carry the same fact under different names (``monthly_bill`` vs
``monthly_charge``, ``total_data_gb`` vs ``data_usage_gb``, charges as a number
or a list). Each model lists the spellings it accepts with ``AliasChoices``,
keeps unknown fields (``extra="allow"``), and rejects wrong types; a rejected
row becomes a ``DataQualityIssue`` for that customer instead of a crash.
"""

from __future__ import annotations

import re
from datetime import date as Date, datetime, time, timezone
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from cvm.utils.config import CHANNELS, PURPOSES

TABLES: tuple[str, ...] = (
    "customers",
    "billing_data",
    "usage_data",
    "network_data",
    "churn_score",
    "call_transcripts",
    "web_transcripts",
    "web_clicks",
    "offer_recommendations",
    "permissions",
)


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    customer_id: str


def instant_key(moment: datetime) -> datetime:
    """A sort key that orders aware times by instant (as naive UTC) beside naive ones."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _month_or_date(value: Any) -> Any:
    """Accept ``2026-11`` (a month) as the first day of that month."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}", value.strip()):
        return f"{value.strip()}-01"
    return value


class DataQualityIssue(BaseModel):
    """One problem found in the data, kept with the customer it concerns."""

    model_config = ConfigDict(frozen=True)

    table: str
    """The table the problem is in."""
    message: str
    """What is wrong, in words a data engineer can act on."""
    field: str | None = None
    """The offending field, when one is to blame."""


class CustomerProfile(_Record):
    name: str | None = None
    join_date: Date | None = Field(default=None, validation_alias=AliasChoices("join_date", "start_date", "activation_date"))
    segment: str | None = None
    plan: str | None = None


class Charge(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    description: str = "Additional charges"
    amount: float
    date: Date | None = None

    @property
    def is_roaming(self) -> bool:
        return "roaming" in self.description.lower()


class BillingRecord(_Record):
    date: Date = Field(validation_alias=AliasChoices("billing_date", "date", "bill_date", "month"))
    monthly_charge: float = Field(ge=0, validation_alias=AliasChoices("monthly_bill", "monthly_charge", "amount_due"))
    additional_charges: list[Charge] = []
    roaming_charges: float = Field(default=0.0, ge=0)
    plan: str | None = Field(default=None, validation_alias=AliasChoices("plan", "plan_name"))
    payment_status: str | None = None

    _normalise_date = field_validator("date", mode="before")(_month_or_date)

    @field_validator("additional_charges", mode="before")
    @classmethod
    def _number_or_list(cls, value: Any) -> Any:
        """A bare number is one unnamed charge; an empty value is none."""
        if value is None or value == "":
            return []
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            amount = float(value)
            return [] if amount == 0 else [{"description": "Additional charges", "amount": amount}]
        return value

    @property
    def extra_total(self) -> float:
        return sum(c.amount for c in self.additional_charges)

    @property
    def roaming_total(self) -> float:
        return self.roaming_charges + sum(c.amount for c in self.additional_charges if c.is_roaming)

    @property
    def total(self) -> float:
        return self.monthly_charge + self.extra_total + self.roaming_charges


class UsageRecord(_Record):
    date: Date = Field(validation_alias=AliasChoices("date", "month", "period", "usage_date"))
    data_gb: float = Field(ge=0, validation_alias=AliasChoices("total_data_gb", "data_usage_gb", "data_gb"))
    voice_minutes: float | None = Field(default=None, ge=0, validation_alias=AliasChoices("call_minutes", "voice_minutes"))
    sms_count: int | None = Field(default=None, ge=0, validation_alias=AliasChoices("sms_count", "sms"))
    roaming_data_gb: float = Field(default=0.0, ge=0)

    _normalise_date = field_validator("date", mode="before")(_month_or_date)


class NetworkRecord(_Record):
    date: Date = Field(validation_alias=AliasChoices("date", "timestamp", "measured_at"))
    latency_ms: float | None = Field(default=None, ge=0, validation_alias=AliasChoices("avg_latency_ms", "latency_ms", "latency"))
    dropped_calls: int | None = Field(default=None, ge=0)
    signal_strength_dbm: float | None = None
    download_speed_mbps: float | None = Field(default=None, ge=0)
    location: str | None = None

    @field_validator("date", mode="before")
    @classmethod
    def _day_of_timestamp(cls, value: Any) -> Any:
        if isinstance(value, str) and "T" in value:
            return value.split("T", 1)[0]
        return value


class ChurnRecord(_Record):
    probability: float = Field(ge=0, le=1, validation_alias=AliasChoices("churn_score", "churn_probability", "score"))
    date: Date | None = Field(default=None, validation_alias=AliasChoices("score_date", "date", "scored_at"))
    risk_factors: list[str] = []


class Transcript(BaseModel):
    """One conversation, from a call or a web chat, with the customer's own words apart."""

    model_config = ConfigDict(frozen=True)

    source: Literal["call_transcripts", "web_transcripts"]
    at: datetime
    text: str
    """The whole conversation as one string."""
    customer_text: str
    """Only what the customer said (for sentiment and intent)."""
    duration_seconds: float | None = None


class _TranscriptRow(_Record):
    at: datetime = Field(validation_alias=AliasChoices("timestamp", "date", "datetime", "started_at"))
    transcript: str | None = Field(default=None, validation_alias=AliasChoices("transcript", "text", "content"))
    messages: list[dict[str, Any]] | None = Field(default=None, validation_alias=AliasChoices("messages", "conversation", "turns"))
    duration_seconds: float | None = Field(default=None, ge=0)

    def to_transcript(self, table: str) -> Transcript:
        if self.messages is not None:
            turns = [(str(m.get("speaker", m.get("role", "unknown"))), str(m.get("text", m.get("content", "")))) for m in self.messages]
            text = "\n".join(f"{speaker.capitalize()}: {said}" for speaker, said in turns)
            customer = " ".join(said for speaker, said in turns if speaker.lower() in {"customer", "user", "client"})
        elif self.transcript is not None:
            text = self.transcript
            customer = " ".join(re.findall(r"Customer:\s*(.*?)(?=\s*\b(?:Agent|Advisor|Customer):|$)", text, flags=re.S))
            customer = customer or text
        else:
            raise ValueError("neither 'transcript' nor 'messages' is present")
        return Transcript(source=table, at=self.at, text=text, customer_text=customer, duration_seconds=self.duration_seconds)


class WebClick(_Record):
    at: datetime = Field(validation_alias=AliasChoices("timestamp", "date", "datetime"))
    page: str = Field(validation_alias=AliasChoices("page", "url", "path"))
    duration_seconds: float | None = Field(default=None, ge=0)


class OfferScore(_Record):
    offer_id: str = Field(validation_alias=AliasChoices("offer_id", "treatment", "treatment_id", "offer"))
    acceptance_probability: float = Field(ge=0, le=1, validation_alias=AliasChoices("acceptance_probability", "probability", "score"))
    model: str | None = None
    scored_at: Date | None = None


_TIME_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class TimeWindow(BaseModel):
    """A daily window such as 23:00-07:00 (it may wrap past midnight)."""

    model_config = ConfigDict(frozen=True)

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        match = _TIME_WINDOW.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a window like 23:00-07:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        return cls(start=time(h1, m1), end=time(h2, m2))

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class Permissions(BaseModel):
    """Consent per channel and purpose; only an explicit ``Y`` is consent."""

    model_config = ConfigDict(frozen=True)

    consents: dict[str, dict[str, bool]]
    do_not_disturb: TimeWindow | None = None
    preferred_contact_time: TimeWindow | None = None

    def allows(self, channel: str, purpose: str) -> bool:
        return self.consents.get(channel, {}).get(purpose, False)


DEFAULT_QUIET_HOURS = TimeWindow(start=time(21, 0), end=time(9, 0))


def _is_yes(value: Any) -> bool:
    return isinstance(value, str) and value.strip().upper() == "Y"


def parse_permissions(row: dict[str, Any]) -> tuple[Permissions, list[DataQualityIssue]]:
    """Read a permissions row (nested under ``permissions`` or flat).

    Raises ``ValueError`` when the consent part is unreadable: the caller then
    treats the customer as having given no consent at all.
    """
    issues: list[DataQualityIssue] = []
    block = row.get("permissions", row)
    if not isinstance(block, dict):
        raise ValueError(f"'permissions' must be an object of channels, got {type(block).__name__}")
    consents: dict[str, dict[str, bool]] = {}
    for channel in CHANNELS:
        purposes = block.get(channel)
        if purposes is None:
            continue
        if not isinstance(purposes, dict):
            issues.append(DataQualityIssue(table="permissions", field=channel, message=f"{channel} must map purposes to Y/N; treated as no consent"))
            continue
        consents[channel] = {p: _is_yes(purposes.get(p) if p in purposes else purposes.get(p.rstrip("s"))) for p in PURPOSES}
    if not consents:
        raise ValueError("no channel (email, sms, call, push_notifications) is present")
    windows: dict[str, TimeWindow | None] = {}
    for key in ("do_not_disturb", "preferred_contact_time"):
        text = row.get(key, block.get(key))
        windows[key] = None
        if text in (None, ""):
            continue
        try:
            windows[key] = TimeWindow.parse(str(text))
        except ValueError as exc:
            issues.append(DataQualityIssue(table="permissions", field=key, message=f"{exc}; using the default quiet hours" if key == "do_not_disturb" else str(exc)))
            if key == "do_not_disturb":
                windows[key] = DEFAULT_QUIET_HOURS
    return Permissions(consents=consents, **windows), issues


class CustomerData(BaseModel):
    """Everything known about one customer, normalised."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    profile: CustomerProfile | None = None
    billing: list[BillingRecord] = []
    usage: list[UsageRecord] = []
    network: list[NetworkRecord] = []
    churn: ChurnRecord | None = None
    transcripts: list[Transcript] = []
    clicks: list[WebClick] = []
    offers: list[OfferScore] = []
    permissions: Permissions | None = None
    data_quality: list[DataQualityIssue] = []
    tables_with_rows: list[str] = []
    """Tables that had at least one row for this customer (read or rejected)."""


_ROW_MODELS: dict[str, type[_Record]] = {
    "customers": CustomerProfile,
    "billing_data": BillingRecord,
    "usage_data": UsageRecord,
    "network_data": NetworkRecord,
    "churn_score": ChurnRecord,
    "call_transcripts": _TranscriptRow,
    "web_transcripts": _TranscriptRow,
    "web_clicks": WebClick,
    "offer_recommendations": OfferScore,
}


def _issue_from_validation(table: str, exc: ValidationError) -> DataQualityIssue:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return DataQualityIssue(table=table, field=field, message=f"row skipped: {field}: {first['msg']} (got {first.get('input')!r})")


def _parse_rows(table: str, rows: list[dict[str, Any]], issues: list[DataQualityIssue]) -> list[Any]:
    model = _ROW_MODELS[table]
    parsed = []
    for row in rows:
        try:
            record = model.model_validate(row)
            parsed.append(record.to_transcript(table) if isinstance(record, _TranscriptRow) else record)
        except ValidationError as exc:
            issues.append(_issue_from_validation(table, exc))
        except ValueError as exc:
            issues.append(DataQualityIssue(table=table, message=f"row skipped: {exc}"))
    return parsed


def normalise_customer(
    customer_id: str, rows_by_table: dict[str, list[dict[str, Any]]], table_issues: list[DataQualityIssue] = ()
) -> CustomerData:
    """Turn one customer's raw rows from every table into ``CustomerData``."""
    issues: list[DataQualityIssue] = list(table_issues)
    parsed = {table: _parse_rows(table, rows_by_table.get(table, []), issues) for table in _ROW_MODELS}
    permissions = None
    perm_rows = rows_by_table.get("permissions", [])
    if perm_rows:
        if len(perm_rows) > 1:
            issues.append(DataQualityIssue(table="permissions", message=f"{len(perm_rows)} rows for one customer; using the last"))
        try:
            permissions, perm_issues = parse_permissions(perm_rows[-1])
            issues.extend(perm_issues)
        except ValueError as exc:
            issues.append(DataQualityIssue(table="permissions", message=f"unreadable record ({exc}); treated as no consent"))
    churn_rows = sorted(parsed["churn_score"], key=lambda r: r.date or Date.min)
    return CustomerData(
        customer_id=customer_id,
        profile=parsed["customers"][-1] if parsed["customers"] else None,
        billing=sorted(parsed["billing_data"], key=lambda r: r.date),
        usage=sorted(parsed["usage_data"], key=lambda r: r.date),
        network=sorted(parsed["network_data"], key=lambda r: r.date),
        churn=churn_rows[-1] if churn_rows else None,
        transcripts=sorted(parsed["call_transcripts"] + parsed["web_transcripts"], key=lambda t: instant_key(t.at)),
        clicks=sorted(parsed["web_clicks"], key=lambda c: instant_key(c.at)),
        offers=parsed["offer_recommendations"],
        permissions=permissions,
        data_quality=issues,
        tables_with_rows=sorted(t for t, rows in rows_by_table.items() if rows),
    )
