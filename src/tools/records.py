"""Typed customer records, and the normalisation of messy table rows into them.

Real feeds carry the same fact under different names (``monthly_bill`` vs
``monthly_charge``, ``total_data_gb`` vs ``data_usage_gb``, charges as a number
or a list). Each model lists the spellings it accepts with ``AliasChoices``,
keeps unknown fields (``extra="allow"``), and rejects wrong types; a rejected
row becomes a ``DataQualityIssue`` for that customer instead of a crash.

Size: one model per table and per feed shape (ours and the prototype's); together they show every
accepted spelling in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import date as Date
from datetime import datetime, time, timezone
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
    # Infinity and NaN are never a measurement: a row carrying one is rejected with a note.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True, allow_inf_nan=False)

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
    """One line of a bill beyond the plan: ``{type, amount, description}`` or a bare amount."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    type: str | None = None
    """The feed's kind of charge (``roaming``, ``data_overage``, ...), when it says."""
    description: str = "Additional charges"
    amount: float = Field(ge=0)
    date: Date | None = None

    def _is(self, kind: str) -> bool:
        return (self.type or "").strip().lower() == kind or kind.replace("_", " ") in self.description.lower()

    @property
    def is_roaming(self) -> bool:
        return self._is("roaming")

    @property
    def is_overage(self) -> bool:
        return self._is("data_overage") or "overage" in self.description.lower()


def _charges(value: Any) -> Any:
    """A bare number is one unnamed charge; an empty value is none; a list is kept as charges."""
    if value is None or value == "":
        return []
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        amount = float(value)
        return [] if amount == 0 else [{"description": "Additional charges", "amount": amount}]
    return value


class BillingRecord(_Record):
    date: Date = Field(
        validation_alias=AliasChoices("billing_date", "date", "bill_date", "month", "billing_period", "statement_date")
    )
    monthly_charge: float = Field(ge=0, validation_alias=AliasChoices("monthly_bill", "monthly_charge", "amount_due"))
    additional_charges: list[Charge] = []
    roaming_charges: float = Field(default=0.0, ge=0)
    discounts: list[Charge] = []
    """Discounts applied to the bill (informational: the monthly charge is what was billed)."""
    plan: str | None = Field(default=None, validation_alias=AliasChoices("plan", "plan_name"))
    payment_status: str | None = None
    payment_method: str | None = None
    auto_pay: bool | None = None
    paperless_billing: bool | None = None
    payment_issues: Any = None
    """A flag, a count or a list of issues, as the feed gives it; see ``has_payment_issues``."""

    _normalise_date = field_validator("date", mode="before")(_month_or_date)
    _number_or_list = field_validator("additional_charges", "discounts", mode="before")(_charges)

    @property
    def extra_total(self) -> float:
        return sum(c.amount for c in self.additional_charges)

    @property
    def roaming_total(self) -> float:
        return self.roaming_charges + sum(c.amount for c in self.additional_charges if c.is_roaming)

    @property
    def overage_total(self) -> float:
        return sum(c.amount for c in self.additional_charges if c.is_overage)

    @property
    def has_payment_issues(self) -> bool:
        """True for an overdue bill or any payment issue the feed reports (true, a count above 0, a non-empty list)."""
        issues = self.payment_issues
        if isinstance(issues, str):
            issues = issues.strip().lower() not in ("", "none", "no", "false", "0")
        return (self.payment_status or "").lower() == "overdue" or bool(issues)

    @property
    def total(self) -> float:
        return self.monthly_charge + self.extra_total + self.roaming_charges


class UsageRecord(_Record):
    date: Date = Field(validation_alias=AliasChoices("date", "month", "period", "usage_date", "usage_period", "billing_period"))
    data_gb: float = Field(ge=0, validation_alias=AliasChoices("total_data_gb", "data_usage_gb", "data_gb"))
    voice_minutes: float | None = Field(default=None, ge=0, validation_alias=AliasChoices("call_minutes", "voice_minutes"))
    sms_count: int | None = Field(default=None, ge=0, validation_alias=AliasChoices("sms_count", "sms"))
    roaming_data_gb: float = Field(default=0.0, ge=0, validation_alias=AliasChoices("roaming_data_gb", "roaming_usage_gb"))
    data_by_app: dict[str, float] = {}
    """GB per app (``{"video_streaming": 12.5, ...}``)."""
    peak_usage_hour: int | None = Field(default=None, ge=0, le=23)
    weekend_usage_percent: float | None = Field(default=None, ge=0, le=100)

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
    date: Date | None = Field(default=None, validation_alias=AliasChoices("score_date", "date", "scored_at", "last_updated"))
    risk_factors: list[str] = []
    lifetime_months: float | None = Field(
        default=None, ge=0, le=1200, validation_alias=AliasChoices("customer_lifetime_months", "tenure_months", "lifetime_months")
    )
    """Tenure as the churn model saw it."""
    satisfaction_score: float | None = Field(
        default=None, ge=0, le=10, validation_alias=AliasChoices("recent_satisfaction_score", "satisfaction_score", "csat")
    )
    """Recent satisfaction on a 0-10 scale (a 1-5 survey fits inside it; see the journey's low-satisfaction signal)."""

    @field_validator("risk_factors", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        return [value] if isinstance(value, str) else value


Sentiment = Literal["positive", "neutral", "negative"]


class Transcript(BaseModel):
    """One conversation, from a call or a web chat, with the customer's own words apart."""

    model_config = ConfigDict(frozen=True)

    source: Literal["call_transcripts", "web_transcripts"]
    at: datetime
    text: str
    """The whole conversation as one string."""
    customer_text: str
    """Only what the customer said (for sentiment and intent); a feed's ``summary`` is taken as the customer's words."""
    duration_seconds: float | None = None
    topic: str | None = None
    """The feed's kind of contact (``type``: ``billing_inquiry``, ``technical_support`` ...)."""
    sentiment_label: Sentiment | None = None
    """The feed's own sentiment label, when it gives one."""
    resolution: str | None = None
    channel: str | None = None


class _TranscriptRow(_Record):
    at: datetime = Field(validation_alias=AliasChoices("timestamp", "date", "datetime", "started_at"))
    transcript: str | None = Field(default=None, validation_alias=AliasChoices("transcript", "text", "content"))
    summary: str | None = None
    messages: list[dict[str, Any]] | None = Field(default=None, validation_alias=AliasChoices("messages", "conversation", "turns"))
    duration_seconds: float | None = Field(default=None, ge=0)
    duration_minutes: float | None = Field(default=None, ge=0)
    topic: str | None = Field(default=None, validation_alias=AliasChoices("type", "topic", "category", "reason"))
    sentiment: Sentiment | None = None
    resolution: str | None = None
    channel: str | None = None

    @field_validator("sentiment", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def _words(self) -> tuple[str, str]:
        """(whole text, the customer's words) from turns, a transcript or a summary."""
        if self.messages is not None:
            turns = [(str(m.get("speaker", m.get("role", "unknown"))), str(m.get("text", m.get("content", "")))) for m in self.messages]
            text = "\n".join(f"{speaker.capitalize()}: {said}" for speaker, said in turns)
            return text, " ".join(said for speaker, said in turns if speaker.lower() in {"customer", "user", "client"})
        if self.transcript is not None:
            customer = " ".join(re.findall(r"Customer:\s*(.*?)(?=\s*\b(?:Agent|Advisor|Customer):|$)", self.transcript, flags=re.S))
            return self.transcript, customer or self.transcript
        if self.summary is not None:
            return self.summary, self.summary
        raise ValueError("none of 'transcript', 'messages' or 'summary' is present")

    def to_transcript(self, table: Literal["call_transcripts", "web_transcripts"]) -> Transcript:
        text, customer = self._words()
        seconds = self.duration_seconds if self.duration_seconds is not None else (
            self.duration_minutes * 60 if self.duration_minutes is not None else None
        )
        return Transcript(
            source=table, at=self.at, text=text, customer_text=customer, duration_seconds=seconds,
            topic=self.topic, sentiment_label=self.sentiment, resolution=self.resolution, channel=self.channel,
        )


class WebClick(_Record):
    at: datetime = Field(validation_alias=AliasChoices("timestamp", "date", "datetime"))
    page: str = Field(validation_alias=AliasChoices("page", "url", "path"))
    duration_seconds: float | None = Field(default=None, ge=0)
    session_duration_minutes: float | None = Field(default=None, ge=0)
    click_path: tuple[str, ...] = ()
    """Pages visited in the session, in order (a list, or text such as ``home > plans > family``)."""
    device: str | None = Field(default=None, validation_alias=AliasChoices("device", "device_type"))
    browser: str | None = None

    @field_validator("click_path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(p.strip() for p in re.split(r"\s*(?:>|->|,|\|)\s*", value) if p.strip())
        return value

    @property
    def pages(self) -> tuple[str, ...]:
        """The page and every page on its click path."""
        return (self.page, *(p for p in self.click_path if p != self.page))

    @property
    def seconds(self) -> float | None:
        if self.duration_seconds is not None:
            return self.duration_seconds
        return self.session_duration_minutes * 60 if self.session_duration_minutes is not None else None


class OfferScore(_Record):
    """A flat offer-model score: how likely the customer is to accept an offer."""

    offer_id: str = Field(validation_alias=AliasChoices("offer_id", "treatment", "treatment_id", "offer"))
    acceptance_probability: float = Field(ge=0, le=1, validation_alias=AliasChoices("acceptance_probability", "probability", "score"))
    model: str | None = None
    scored_at: Date | None = None
    offer_name: str | None = None
    offer_description: str | None = None
    discount_amount: float | None = Field(default=None, ge=0)
    original_price: float | None = Field(default=None, ge=0)
    personalization_factors: list[str] = []
    expiration_date: Date | None = None


OfferStatus = Literal["accepted", "declined", "pending"]


class PastOffer(BaseModel):
    """One offer made to the customer before, and what they did with it: real response data."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    type: str | None = None
    name: str | None = None
    description: str | None = None
    offered_on: Date | None = None
    status: OfferStatus = "pending"
    decided_on: Date | None = None
    value: float | None = None
    """A numeric value where the feed gives one (``value``, ``value_per_month``, ``amount`` or ``discount``)."""

    @property
    def label(self) -> str:
        return self.name or (self.type or "offer").replace("_", " ")

    def words(self) -> str:
        """Everything the offer says about itself, to tell which kind of treatment it was."""
        return " ".join(filter(None, (self.type, self.name, self.description)))


class _OfferOutcome(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    status: OfferStatus = "pending"
    decision_date: Date | None = None
    last_updated: Date | None = None
    follow_up_scheduled: Any = None

    @field_validator("status", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("decision_date", "last_updated", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return value.split("T", 1)[0].split(" ", 1)[0] if isinstance(value, str) else value


class _RecommendedOffer(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    type: str | None = None
    name: str | None = None
    description: str | None = None
    value: float | str | None = None
    """A number, or text such as "2GB extra" (kept as words)."""
    value_per_month: float | None = None
    amount: float | None = None
    discount: float | str | None = None


class OfferHistoryRow(_Record):
    """A nested offer-history row: the offers recommended on a date, and the outcome."""

    date: Date | None = Field(default=None, validation_alias=AliasChoices("date", "recommended_at", "created_at"))
    recommended_offers: list[_RecommendedOffer] = Field(min_length=1)
    total_value: float | None = None
    priority: str | int | None = None
    expiration_date: Date | None = None
    outcome: _OfferOutcome = _OfferOutcome()

    @field_validator("date", "expiration_date", mode="before")
    @classmethod
    def _day(cls, value: Any) -> Any:
        return value.split("T", 1)[0].split(" ", 1)[0] if isinstance(value, str) else value

    def past_offers(self) -> list[PastOffer]:
        def number(offer: _RecommendedOffer) -> float | None:
            for value in (offer.value, offer.value_per_month, offer.amount, offer.discount):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return float(value)
            return None

        return [
            PastOffer(
                type=o.type, name=o.name,
                description=" ".join(filter(None, (o.description, o.value if isinstance(o.value, str) else None))) or None,
                offered_on=self.date, status=self.outcome.status,
                decided_on=self.outcome.decision_date or self.outcome.last_updated, value=number(o),
            )
            for o in self.recommended_offers
        ]


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


# ``preferred_contact_time`` as a word (the prototype's feed) -> the daily window it means.
# ``any`` means no preference (no window).
CONTACT_TIME_WORDS: dict[str, tuple[time, time] | None] = {
    "morning": (time(9, 0), time(12, 0)),
    "afternoon": (time(12, 0), time(17, 0)),
    "evening": (time(17, 0), time(21, 0)),
    "business_hours": (time(9, 0), time(17, 0)),
    "any": None,
}


def parse_contact_time(text: str) -> TimeWindow | None:
    """``18:00-20:00`` or a word of ``CONTACT_TIME_WORDS`` (``business hours`` and ``anytime`` too)."""
    word = re.sub(r"[\s-]+", "_", text.strip().lower())
    word = {"anytime": "any", "any_time": "any", "business": "business_hours", "working_hours": "business_hours"}.get(word, word)
    if word in CONTACT_TIME_WORDS:
        bounds = CONTACT_TIME_WORDS[word]
        return TimeWindow(start=bounds[0], end=bounds[1]) if bounds else None
    try:
        return TimeWindow.parse(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a window like 18:00-20:00 or one of {', '.join(CONTACT_TIME_WORDS)}") from None


class Permissions(BaseModel):
    """Consent per channel and purpose; only an explicit ``Y`` is consent."""

    model_config = ConfigDict(frozen=True)

    consents: dict[str, dict[str, bool]]
    do_not_disturb: TimeWindow | None = None
    preferred_contact_time: TimeWindow | None = None
    preferred_language: str | None = None
    updated: dict[str, str] = {}
    """Per channel, when the customer last changed it (the feed's ``last_updated``), as given."""

    def allows(self, channel: str, purpose: str) -> bool:
        return self.consents.get(channel, {}).get(purpose, False)


DEFAULT_QUIET_HOURS = TimeWindow(start=time(21, 0), end=time(9, 0))


def _is_yes(value: Any) -> bool:
    return isinstance(value, str) and value.strip().upper() == "Y"


def _channel_consents(block: dict[str, Any], issues: list[DataQualityIssue]) -> tuple[dict[str, dict[str, bool]], dict[str, str]]:
    consents: dict[str, dict[str, bool]] = {}
    updated: dict[str, str] = {}
    for channel in CHANNELS:
        purposes = block.get(channel)
        if purposes is None:
            continue
        if not isinstance(purposes, dict):
            issues.append(DataQualityIssue(table="permissions", field=channel, message=f"{channel} must map purposes to Y/N; treated as no consent"))
            continue
        consents[channel] = {p: _is_yes(purposes.get(p) if p in purposes else purposes.get(p.rstrip("s"))) for p in PURPOSES}
        if purposes.get("last_updated") not in (None, ""):
            updated[channel] = str(purposes["last_updated"])
    return consents, updated


def _windows(row: dict[str, Any], block: dict[str, Any], issues: list[DataQualityIssue]) -> dict[str, TimeWindow | None]:
    windows: dict[str, TimeWindow | None] = {}
    for key, parse in (("do_not_disturb", TimeWindow.parse), ("preferred_contact_time", parse_contact_time)):
        text = row.get(key, block.get(key))
        windows[key] = None
        if text in (None, ""):
            continue
        try:
            windows[key] = parse(str(text))
        except ValueError as exc:
            issues.append(DataQualityIssue(table="permissions", field=key, message=f"{exc}; using the default quiet hours" if key == "do_not_disturb" else str(exc)))
            if key == "do_not_disturb":
                windows[key] = DEFAULT_QUIET_HOURS
    return windows


def parse_permissions(row: dict[str, Any]) -> tuple[Permissions, list[DataQualityIssue]]:
    """Read a permissions row (nested under ``permissions`` or flat).

    Raises ``ValueError`` when the consent part is unreadable: the caller then
    treats the customer as having given no consent at all.
    """
    issues: list[DataQualityIssue] = []
    block = row.get("permissions", row)
    if not isinstance(block, dict):
        raise ValueError(f"'permissions' must be an object of channels, got {type(block).__name__}")
    consents, updated = _channel_consents(block, issues)
    if not consents:
        raise ValueError("no channel (email, sms, call, push_notifications) is present")
    language = row.get("preferred_language", block.get("preferred_language"))
    return Permissions(
        consents=consents, updated=updated, preferred_language=str(language) if language not in (None, "") else None,
        **_windows(row, block, issues),
    ), issues


def merge_permissions(rows: Sequence[dict[str, Any]]) -> tuple[Permissions | None, list[DataQualityIssue]]:
    """One customer's consent from all their permission rows: the most restrictive answer wins.

    A channel and purpose is consented only when every readable row says ``Y``
    (a row without that channel says no), so a later all-``Y`` row never undoes
    an opt-out. Disagreeing rows are noted. An unreadable row means no consent at all.
    """
    issues: list[DataQualityIssue] = []
    parsed: list[Permissions] = []
    for row in rows:
        try:
            permissions, row_issues = parse_permissions(row)
        except ValueError as exc:
            issues.append(DataQualityIssue(table="permissions", message=f"unreadable record ({exc}); treated as no consent"))
            return None, issues
        parsed.append(permissions)
        issues.extend(row_issues)
    if len(parsed) <= 1:
        return (parsed[0] if parsed else None), issues
    merged = {
        channel: {purpose: all(p.allows(channel, purpose) for p in parsed) for purpose in PURPOSES}
        for channel in CHANNELS
        if any(channel in p.consents for p in parsed)
    }
    conflicts = sorted(
        f"{channel}.{purpose}" for channel in merged for purpose in PURPOSES
        if len({p.allows(channel, purpose) for p in parsed}) > 1
    )
    detail = f"; they disagree on {', '.join(conflicts)}, so the most restrictive answer (no consent) is used" if conflicts else ""
    issues.append(DataQualityIssue(table="permissions", message=f"{len(parsed)} rows for one customer{detail}"))
    last = parsed[-1]
    quiet = next((p.do_not_disturb for p in reversed(parsed) if p.do_not_disturb is not None), None)
    return last.model_copy(update={"consents": merged, "do_not_disturb": quiet}), issues


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
    offer_history: list[PastOffer] = []
    """Offers made before and their outcomes (accepted, declined, pending), oldest first."""
    permissions: Permissions | None = None
    data_quality: list[DataQualityIssue] = []
    tables_with_rows: list[str] = []
    """Tables that had at least one row for this customer (read or rejected)."""


def _offer_model(row: dict[str, Any]) -> type[_Record]:
    """``offer_recommendations`` mixes flat scores with nested offer histories."""
    return OfferHistoryRow if "recommended_offers" in row else OfferScore


_ROW_MODELS: dict[str, Callable[[dict[str, Any]], type[_Record]]] = {
    "customers": lambda _: CustomerProfile,
    "billing_data": lambda _: BillingRecord,
    "usage_data": lambda _: UsageRecord,
    "network_data": lambda _: NetworkRecord,
    "churn_score": lambda _: ChurnRecord,
    "call_transcripts": lambda _: _TranscriptRow,
    "web_transcripts": lambda _: _TranscriptRow,
    "web_clicks": lambda _: WebClick,
    "offer_recommendations": _offer_model,
}

# Money in a bill that may be dropped on its own (the rest of the bill stays usable).
_OPTIONAL_MONEY = ("roaming_charges",)
_CHARGE_LISTS = ("additional_charges", "discounts")


def _amount_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable amount of money, or None when it is."""
    if isinstance(value, bool):
        return "is not a number"
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None  # not a number at all: the model's own validation says so
    if not math.isfinite(amount):
        return "is not a finite amount"
    if amount < 0:
        return "is negative"
    return None


def _screen_money(row: dict[str, Any], issues: list[DataQualityIssue]) -> dict[str, Any]:
    """Drop optional amounts that are non-finite or negative, each with a note; the field becomes unknown."""
    clean = dict(row)
    for key in _OPTIONAL_MONEY:
        if key in clean and (problem := _amount_problem(clean[key])):
            issues.append(DataQualityIssue(table="billing_data", field=key, message=f"{key} {problem} ({clean.pop(key)!r}); treated as unknown"))
    for key in _CHARGE_LISTS:
        value = clean.get(key)
        if isinstance(value, list):
            kept = []
            for item in value:
                problem = _amount_problem(item.get("amount")) if isinstance(item, dict) else None
                if problem:
                    issues.append(DataQualityIssue(table="billing_data", field=f"{key}.amount", message=f"a charge amount {problem} ({item.get('amount')!r}); that charge is treated as unknown"))
                else:
                    kept.append(item)
            clean[key] = kept
        elif value is not None and (problem := _amount_problem(value)):
            issues.append(DataQualityIssue(table="billing_data", field=key, message=f"{key} {problem} ({clean.pop(key)!r}); treated as unknown"))
    return clean


def _issue_from_validation(table: str, exc: ValidationError) -> DataQualityIssue:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return DataQualityIssue(table=table, field=field, message=f"row skipped: {field}: {first['msg']} (got {shown})")


def _parse_rows(table: str, rows: list[dict[str, Any]], issues: list[DataQualityIssue]) -> list[Any]:
    pick_model = _ROW_MODELS[table]
    parsed: list[Any] = []
    for row in rows:
        if table == "billing_data":
            row = _screen_money(row, issues)
        try:
            record = pick_model(row).model_validate(row)
            if isinstance(record, _TranscriptRow):
                parsed.append(record.to_transcript("call_transcripts" if table == "call_transcripts" else "web_transcripts"))
            elif isinstance(record, OfferHistoryRow):
                parsed.extend(record.past_offers())
            else:
                parsed.append(record)
        except ValidationError as exc:
            issues.append(_issue_from_validation(table, exc))
        except ValueError as exc:
            issues.append(DataQualityIssue(table=table, message=f"row skipped: {exc}"))
    return parsed


def normalise_customer(
    customer_id: str, rows_by_table: dict[str, list[dict[str, Any]]], table_issues: Sequence[DataQualityIssue] = ()
) -> CustomerData:
    """Turn one customer's raw rows from every table into ``CustomerData``."""
    issues: list[DataQualityIssue] = list(table_issues)
    parsed = {table: _parse_rows(table, rows_by_table.get(table, []), issues) for table in _ROW_MODELS}
    permissions, permission_issues = merge_permissions(rows_by_table.get("permissions", []))
    issues.extend(permission_issues)
    churn_rows = sorted(parsed["churn_score"], key=lambda r: r.date or Date.min)
    offers = parsed["offer_recommendations"]
    return CustomerData(
        customer_id=customer_id,
        profile=parsed["customers"][-1] if parsed["customers"] else None,
        billing=sorted(parsed["billing_data"], key=lambda r: r.date),
        usage=sorted(parsed["usage_data"], key=lambda r: r.date),
        network=sorted(parsed["network_data"], key=lambda r: r.date),
        churn=churn_rows[-1] if churn_rows else None,
        transcripts=sorted(parsed["call_transcripts"] + parsed["web_transcripts"], key=lambda t: instant_key(t.at)),
        clicks=sorted(parsed["web_clicks"], key=lambda c: instant_key(c.at)),
        offers=[o for o in offers if isinstance(o, OfferScore)],
        offer_history=sorted((o for o in offers if isinstance(o, PastOffer)), key=lambda o: o.offered_on or Date.min),
        permissions=permissions,
        data_quality=issues,
        tables_with_rows=sorted(t for t, rows in rows_by_table.items() if rows),
    )
