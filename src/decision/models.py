"""The decision's own vocabulary: a customer's journey, its features, and the ranked candidates.

Pure data, below the agents: the per-customer path, the batch path and anything
later (a service, distributed workers) describe a customer with these models.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from cvm.tools.records import DataQualityIssue, PastOffer, Permissions, Transcript
from cvm.utils.models import FrozenModel as _Model

SentimentTrend = Literal["improving", "stable", "worsening", "unknown"]
NetworkQuality = Literal["good", "fair", "poor", "unknown"]
Trend = Literal["rising", "stable", "falling", "unknown"]
"""Usage over the journey, churn risk over the horizon."""


class TimelineEvent(_Model):
    """One dated fact in a customer's journey."""

    at: datetime
    source: str
    """The table it came from."""
    kind: str
    """``bill``, ``usage``, ``network``, ``call``, ``chat``, ``click``, ``churn_score``."""
    summary: str
    """The fact in plain words (never a transcript's full text)."""


class JourneyFeatures(_Model):
    """Numbers computed from the journey; ``None`` means the data was not there."""

    churn_probability: float | None = None
    monthly_revenue: float | None = None
    """The latest bill's total."""
    tenure_months: float | None = None
    sentiment_score: float | None = None
    """Latest conversation's sentiment, -1 (angry) to 1 (happy)."""
    sentiment_trend: SentimentTrend = "unknown"
    network_quality: NetworkQuality = "unknown"
    avg_latency_ms: float | None = None
    dropped_calls: int | None = None
    bill_shock: bool = False
    bill_change_pct: float | None = None
    """Latest bill against the average of the earlier ones, in percent."""
    roaming: bool = False
    roaming_charges: float = 0.0
    usage_trend: Trend = "unknown"
    usage_change_pct: float | None = None
    latest_data_gb: float | None = None
    overdue_payment: bool = False
    interests: tuple[str, ...] = ()
    """Topics the customer looked at or asked about (``family_plan``, ``upgrade``...)."""
    offer_scores: dict[str, float] = {}
    """Offer-model acceptance probability per treatment id."""
    satisfaction_score: float | None = None
    """The latest recent-satisfaction score (0-10), when the churn feed gives one."""
    risk_factors: tuple[str, ...] = ()
    """The churn model's own risk factors, as it names them."""
    overage_charges: float = 0.0
    """Data-overage charges on recent bills."""


class Journey(_Model):
    """A customer's journey: timeline, features, signals and insights."""

    customer_id: str
    as_of: datetime
    timeline: tuple[TimelineEvent, ...] = ()
    features: JourneyFeatures = JourneyFeatures()
    signals: dict[str, str] = {}
    """Active signal name -> the evidence in words (``network_issue`` -> "7 dropped calls ...")."""
    insights: tuple[str, ...] = ()
    conversations: tuple[Transcript, ...] = ()
    """The most recent conversations (untrusted text; quoted data for any model)."""
    offer_history: tuple[PastOffer, ...] = ()
    """Offers made before and what the customer did with them (the acceptance prior of the rules selector)."""
    permissions: Permissions | None = None
    data_quality: tuple[DataQualityIssue, ...] = ()
    digest: str = ""
    """SHA-256 of the customer's normalised data: the cache and audit key."""

    def cache_key(self) -> str:
        """The digest, or for a journey built by hand (no digest) a hash of its whole content."""
        return self.digest or hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class Candidate(_Model):
    """One treatment the selector ranked, with its expected value and why."""

    treatment_id: str
    display_name: str
    channel: str
    purpose: str
    expected_value: float
    p_accept: float
    value_at_stake: float
    cost: float
    relevance: float
    reasons: tuple[str, ...] = ()
