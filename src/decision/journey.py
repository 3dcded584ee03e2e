"""A customer's journey from their normalised data: a dated timeline, computed
features, named signals with their evidence, and insights in plain words.

Pure logic, shared by the per-customer path (the Journey agent) and the batch
path (which reuses its thresholds, interest patterns and signal rules).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from statistics import mean
from typing import TypeVar

import numpy as np

from cvm.decision import vector
from cvm.decision.models import Journey, JourneyFeatures, NetworkQuality, SentimentTrend, TimelineEvent, Trend
from cvm.tools.records import CustomerData, DataQualityIssue, Transcript, instant_key
from cvm.utils.config import ScoringSettings

POSITIVE_WORDS = frozenset({
    "thanks", "thank", "great", "happy", "brilliant", "love", "excellent", "perfect", "helpful",
    "pleased", "sorted", "appreciate", "fantastic", "lovely", "good", "cheers", "recommend",
})
NEGATIVE_WORDS = frozenset({
    "angry", "unacceptable", "ridiculous", "terrible", "awful", "frustrated", "frustrating", "disappointed",
    "cancel", "leave", "leaving", "worst", "complaint", "complain", "useless", "rubbish", "shocked",
    "outrageous", "dropped", "drops", "overcharged", "furious", "fed", "joke", "appalling", "switch",
    "disgusting", "annoyed", "problem", "problems", "again", "never", "poor", "wrong",
})

# Signal thresholds beyond the configurable ones (shared with the batch path).
NEGATIVE_SENTIMENT_AT = -0.3
LOW_SATISFACTION_BELOW = 5.0
"""Recent satisfaction (0-10) under this is a signal."""
# A feed's own sentiment label, on the lexicon's -1..1 scale: a labelled conversation is scored by its label.
LABEL_SENTIMENT: dict[str, float] = {"positive": 0.6, "neutral": 0.0, "negative": -0.6}
LOYAL_TENURE_MONTHS = 36
LOYAL_MAX_CHURN = 0.3
DATA_GROWTH_GB = 20
DATA_GROWTH_PCT = 30

# Topic -> words or page fragments that show interest in it (clicks and the customer's own words).
INTEREST_PATTERNS: dict[str, tuple[str, ...]] = {
    "family_plan": ("family", "add-line", "add a line", "extra line", "kids", "children", "my son", "my daughter"),
    "upgrade": ("upgrade", "new phone", "handset", "/phones", "iphone", "galaxy", "pixel"),
    "roaming": ("roaming", "abroad", "holiday", "spain", "france", "travel"),
    "cancellation": ("/account/cancel", "cancel", "leave", "leaving", "pac code", "/pac-code", "switch to", "switching"),
    "competitor": ("vodafone", "ee", "o2", "three mobile", "giffgaff", "sky mobile", "tesco mobile"),
    "billing": ("bill", "billing", "overcharged", "charged", "explain-my-bill", "premium-rate", "refund", "dispute", "disputes", "disputed", "disputing"),
    "coverage": ("signal", "coverage", "dropped", "drop out", "no service", "coverage-checker", "network-status", "mast"),
    "data": ("run out of data", "running out", "ran out", "data allowance", "data-add-ons", "more data", "add-on"),
    "rewards": ("/rewards", "reward", "points", "loyalty"),
    "cheaper_plan": ("cheaper", "sim-only", "lower price", "too expensive", "/plans/compare", "reduce my bill"),
}


def interest_pattern(phrases: Sequence[str]) -> str:
    """One regular expression for a topic (also valid RE2, so the batch path runs the same one in DuckDB)."""
    return "|".join(re.escape(p) if p.startswith("/") else r"\b" + re.escape(p) + r"\b" for p in phrases)


def _compile(phrases: Sequence[str]) -> re.Pattern[str]:
    return re.compile(interest_pattern(phrases), re.IGNORECASE)


_INTEREST_RES = {topic: _compile(words) for topic, words in INTEREST_PATTERNS.items()}
_WORD = re.compile(r"[a-z']+")


def sentiment(text: str) -> float:
    """Lexicon sentiment from -1 (negative) to 1 (positive); 0 when no cue word appears."""
    words = _WORD.findall(text.lower())
    pos = sum(w in POSITIVE_WORDS for w in words)
    neg = sum(w in NEGATIVE_WORDS for w in words)
    return 0.0 if pos + neg == 0 else round((pos - neg) / (pos + neg), 3)


def conversation_sentiment(t: Transcript) -> float:
    """The feed's sentiment label when it gives one, else the lexicon score of the customer's words."""
    if t.sentiment_label is not None:
        return LABEL_SENTIMENT[t.sentiment_label]
    return sentiment(t.customer_text)


def conversation_texts(t: Transcript) -> tuple[str, ...]:
    """What a conversation says about the customer's interests: their words and the feed's contact type."""
    return (t.customer_text, t.topic.replace("_", " ")) if t.topic else (t.customer_text,)


def _months_between(start: date, end: datetime) -> float:
    days = (end.date() - (start.date() if isinstance(start, datetime) else start)).days
    return round(days / 30.4375, 1)


def _at(day: date) -> datetime:
    return day if isinstance(day, datetime) else datetime.combine(day, time(0, 0))


def _money(amount: float) -> str:
    return f"£{amount:,.2f}"


def interest_sources(data: CustomerData, topic: str) -> list[tuple[str, datetime, str]]:
    """Where the customer showed interest in ``topic``: (table, when, the page or their words)."""
    pattern = _INTEREST_RES.get(topic)
    if pattern is None:
        return []
    found = [("web_clicks", c.at, page) for c in data.clicks for page in c.pages if pattern.search(page)]
    found += [(t.source, t.at, text) for t in data.transcripts for text in conversation_texts(t) if pattern.search(text)]
    return found


def interest_match(text: str, topic: str) -> re.Match[str] | None:
    pattern = _INTEREST_RES.get(topic)
    return pattern.search(text) if pattern else None


Word = TypeVar("Word", bound=str)


def _word(codes: Mapping[Word, int], code: np.ndarray) -> Word:
    """The word a one-customer code column stands for (``vector.CODES``)."""
    return next(word for word, value in codes.items() if value == int(code[0]))


class JourneyBuilder:
    """Computes a ``Journey`` from ``CustomerData``; the thresholds come from ``scoring``."""

    def __init__(self, scoring: ScoringSettings, required_fields: Sequence[str] = ()):
        self.scoring = scoring
        self.required_fields = tuple(required_fields)

    def build(self, data: CustomerData, as_of: datetime) -> Journey:
        features = self.features(data, as_of)
        signals = self.signals(features)
        timeline = tuple(self.timeline(data))
        issues = list(data.data_quality) + [
            DataQualityIssue(table="journey", field=name, message=f"required journey field {name} is unknown")
            for name in self._missing_required(data, features, timeline, signals)
        ]
        return Journey(
            customer_id=data.customer_id,
            as_of=as_of,
            timeline=timeline,
            features=features,
            signals=signals,
            insights=tuple(self.insights(features, signals, issues)),
            conversations=tuple(data.transcripts[-5:]),
            offer_history=tuple(data.offer_history),
            permissions=data.permissions,
            data_quality=tuple(issues),
            digest=hashlib.sha256((data.model_dump_json() + as_of.date().isoformat()).encode()).hexdigest(),
        )

    def _missing_required(
        self, data: CustomerData, features: JourneyFeatures, timeline: Sequence[TimelineEvent], signals: Mapping[str, str]
    ) -> list[str]:
        """``validation.required_journey_fields`` that came out empty: ``vector.missing_fields`` on this one customer.

        A name is a feature (``churn_probability``) or a part of the journey
        (``timeline``, ``signals``, ``permissions``, ``conversations``,
        ``offer_history``); names CVM does not compute are accepted and not checked.
        """
        if not self.required_fields:  # the common case: nothing to lay out for every customer
            return []
        columns, _ = vector.one_row(features)
        parts = {
            "interests": features.interests, "offer_scores": features.offer_scores, "risk_factors": features.risk_factors,
            "timeline": timeline, "signals": signals, "permissions": data.permissions is not None,
            "conversations": data.transcripts, "offer_history": data.offer_history,
        }
        present = {name: np.array([bool(part)]) for name, part in parts.items()}
        missing = vector.missing_fields(columns, present, self.required_fields, 1)[0]
        return [name for name, gone in zip(self.required_fields, missing, strict=True) if gone]

    # -- features ---------------------------------------------------------

    def features(self, data: CustomerData, as_of: datetime) -> JourneyFeatures:
        bills = data.billing
        latest_bill = bills[-1] if bills else None
        earlier = [b.total for b in bills[:-1]]
        bill_change = None
        if latest_bill and earlier and mean(earlier) > 0:
            bill_change = round((latest_bill.total / mean(earlier) - 1) * 100, 1)
        usage = data.usage
        usage_change = None
        if len(usage) >= 2 and usage[0].data_gb > 0:
            usage_change = round((usage[-1].data_gb / usage[0].data_gb - 1) * 100, 1)
        latencies = [n.latency_ms for n in data.network if n.latency_ms is not None]
        drops = [n.dropped_calls for n in data.network if n.dropped_calls is not None]
        sentiments = [conversation_sentiment(t) for t in data.transcripts]
        roaming_charges = round(sum(b.roaming_total for b in bills[-2:]), 2)
        roaming_data = sum(u.roaming_data_gb for u in usage[-2:])
        churn = data.churn
        return JourneyFeatures(
            churn_probability=churn.probability if churn else None,
            monthly_revenue=round(latest_bill.total, 2) if latest_bill else None,
            tenure_months=self._tenure_months(data, as_of),
            sentiment_score=sentiments[-1] if sentiments else None,
            sentiment_trend=self._sentiment_trend(sentiments),
            network_quality=self._network_quality(latencies, drops, data),
            avg_latency_ms=round(mean(latencies), 1) if latencies else None,
            dropped_calls=sum(drops) if drops else None,
            bill_shock=bill_change is not None and bill_change >= (self.scoring.bill_shock_ratio - 1) * 100,
            bill_change_pct=bill_change,
            roaming=roaming_charges > 0 or roaming_data > 0,
            roaming_charges=roaming_charges,
            usage_trend=self._usage_trend(usage_change),
            usage_change_pct=usage_change,
            latest_data_gb=usage[-1].data_gb if usage else None,
            overdue_payment=bool(latest_bill and latest_bill.has_payment_issues),
            interests=self._interests(data),
            offer_scores={o.offer_id: o.acceptance_probability for o in data.offers},
            satisfaction_score=churn.satisfaction_score if churn else None,
            risk_factors=tuple(churn.risk_factors) if churn else (),
            overage_charges=round(sum(b.overage_total for b in bills[-2:]), 2),
        )

    @staticmethod
    def _tenure_months(data: CustomerData, as_of: datetime) -> float | None:
        """From the join date; else the churn feed's lifetime in months; else since the first bill."""
        if data.profile and data.profile.join_date:
            return _months_between(data.profile.join_date, as_of)
        if data.churn and data.churn.lifetime_months is not None:
            return data.churn.lifetime_months
        return _months_between(data.billing[0].date, as_of) if data.billing else None

    @staticmethod
    def _sentiment_trend(values: Sequence[float]) -> SentimentTrend:
        """Later conversations against earlier ones (``vector.trend_code`` on the change in mean sentiment)."""
        if len(values) < 2:
            return "unknown"
        half = len(values) // 2
        delta = mean(values[half:]) - mean(values[:half])
        return _word(vector.SENTIMENT_TREND_CODES, vector.trend_code(np.array([delta]), vector.SENTIMENT_TREND_STEP))

    @staticmethod
    def _usage_trend(change_pct: float | None) -> Trend:
        change = np.array([np.nan if change_pct is None else change_pct])
        return _word(vector.USAGE_TREND_CODES, vector.trend_code(change, vector.USAGE_TREND_PCT))

    def _network_quality(self, latencies: list[float], drops: list[int], data: CustomerData) -> NetworkQuality:
        """``vector.network_quality`` on this one customer's network rows."""
        signals = [n.signal_strength_dbm for n in data.network if n.signal_strength_dbm is not None]
        code = vector.network_quality(
            np.array([bool(latencies or drops)]), np.array([mean(latencies) if latencies else np.nan]),
            np.array([float(sum(drops))]), np.array([min(signals) if signals else np.nan]), self.scoring,
        )
        return _word(vector.NETWORK_QUALITY_CODES, code)

    @staticmethod
    def _interests(data: CustomerData) -> tuple[str, ...]:
        texts = [page for c in data.clicks for page in c.pages] + [text for t in data.transcripts for text in conversation_texts(t)]
        return tuple(topic for topic, pattern in _INTEREST_RES.items() if any(pattern.search(text) for text in texts))

    # -- signals ----------------------------------------------------------

    def signals(self, f: JourneyFeatures) -> dict[str, str]:
        """Active signals, each with the evidence that fired it.

        Which signals are active is ``vector.signal_flags`` on this one customer (the batch path's rule,
        N = 1); here they are only worded, in this order.
        """
        s = self.scoring
        on = {name for name, flag in vector.signal_flags(*vector.one_row(f), s).items() if flag[0]}
        found: dict[str, str] = {}
        if "network_issue" in on:
            found["network_issue"] = (
                f"network quality poor: average latency {f.avg_latency_ms or 0:.0f} ms, {f.dropped_calls or 0} dropped calls"
                if f.network_quality == "poor" else "network quality fair and the customer raised coverage or signal"
            )
        if "bill_shock" in on:
            found["bill_shock"] = f"latest bill {_money(f.monthly_revenue or 0)} is {f.bill_change_pct:.0f}% above the earlier average"
        if "roaming_charges" in on:
            found["roaming_charges"] = (
                f"{_money(f.roaming_charges)} of roaming charges on recent bills" if f.roaming_charges > 0
                else "roaming data used abroad recently"
            )
        if "high_churn_risk" in on:
            found["high_churn_risk"] = f"churn probability {f.churn_probability:.2f} is at or above {s.high_churn_threshold:.2f}"
        if "cancellation_intent" in on:
            found["cancellation_intent"] = "looked at cancelling or mentioned a competitor"
        if "negative_sentiment" in on:
            found["negative_sentiment"] = f"latest conversation sentiment {f.sentiment_score:+.2f}"
        if "low_satisfaction" in on:
            found["low_satisfaction"] = f"recent satisfaction score {f.satisfaction_score:g} out of 10"
        if "high_value" in on:
            found["high_value"] = f"pays {_money(f.monthly_revenue or 0)} a month"
        if "loyal" in on:
            found["loyal"] = f"customer for {(f.tenure_months or 0) / 12:.1f} years with low churn risk"
        if "family_interest" in on:
            found["family_interest"] = "looked at or asked about family plans and extra lines"
        if "upgrade_interest" in on:
            found["upgrade_interest"] = "looked at or asked about a new phone or upgrade"
        if "data_growth" in on:
            found["data_growth"] = self._data_growth_evidence(f)
        if "cheaper_plan_interest" in on:
            found["cheaper_plan_interest"] = "looked for a cheaper plan"
        if "overdue_payment" in on:
            found["overdue_payment"] = "the latest bill is overdue"
        return found

    @staticmethod
    def _data_growth_evidence(f: JourneyFeatures) -> str:
        """Which of data growth's three reasons to name: rising use, overage charges, or asking about data."""
        if f.usage_trend == "rising" and ((f.latest_data_gb or 0) >= DATA_GROWTH_GB or (f.usage_change_pct or 0) >= DATA_GROWTH_PCT):
            return f"data use up {f.usage_change_pct or 0:.0f}% to {f.latest_data_gb or 0:.1f} GB"
        if f.overage_charges > 0:
            return f"{_money(f.overage_charges)} of data overage charges on recent bills"
        return "asked about running out of data"

    # -- timeline and words ------------------------------------------------

    @staticmethod
    def timeline(data: CustomerData) -> list[TimelineEvent]:
        events = [
            TimelineEvent(
                at=_at(b.date), source="billing_data", kind="bill",
                summary=f"bill {_money(b.total)} ({_money(b.monthly_charge)} plan + {_money(b.extra_total + b.roaming_charges)} extra)",
            )
            for b in data.billing
        ]
        events += [
            TimelineEvent(at=_at(u.date), source="usage_data", kind="usage", summary=f"used {u.data_gb:.1f} GB of data")
            for u in data.usage
        ]
        events += [
            TimelineEvent(
                at=_at(n.date), source="network_data", kind="network",
                summary=f"latency {n.latency_ms if n.latency_ms is not None else '?'} ms, "
                f"{n.dropped_calls if n.dropped_calls is not None else '?'} dropped calls"
                + (f" at {n.location}" if n.location else ""),
            )
            for n in data.network
        ]
        if data.churn and data.churn.date:
            events.append(
                TimelineEvent(at=_at(data.churn.date), source="churn_score", kind="churn_score",
                              summary=f"churn score {data.churn.probability:.2f}")
            )
        events += [_conversation_event(t) for t in data.transcripts]
        events += [
            TimelineEvent(at=c.at, source="web_clicks", kind="click", summary=f"visited {' > '.join(c.pages)}") for c in data.clicks
        ]
        events += [
            TimelineEvent(at=_at(o.offered_on), source="offer_recommendations", kind="offer", summary=f"offered {o.label}: {o.status}")
            for o in data.offer_history if o.offered_on is not None
        ]
        return sorted(events, key=lambda e: instant_key(e.at))

    @staticmethod
    def insights(f: JourneyFeatures, signals: Mapping[str, str], issues: Sequence[DataQualityIssue]) -> list[str]:
        lines = []
        if f.churn_probability is not None:
            level = "high" if "high_churn_risk" in signals else ("moderate" if f.churn_probability >= 0.35 else "low")
            lines.append(f"Churn risk is {level} ({f.churn_probability:.2f}).")
        if f.monthly_revenue is not None:
            tenure = f" over {f.tenure_months / 12:.1f} years" if f.tenure_months is not None else ""
            lines.append(f"Pays {_money(f.monthly_revenue)} a month{tenure}.")
        if f.risk_factors:
            lines.append(f"Churn model risk factors: {', '.join(r.replace('_', ' ') for r in f.risk_factors)}.")
        lines += [f"{name.replace('_', ' ').capitalize()}: {evidence}." for name, evidence in signals.items()]
        if f.sentiment_trend in ("improving", "worsening"):
            lines.append(f"Sentiment is {f.sentiment_trend} across recent conversations.")
        if issues:
            tables = sorted({i.table for i in issues})
            lines.append(f"{len(issues)} data-quality issue(s) in {', '.join(tables)}; decisions use what could be read.")
        return lines


def _conversation_event(t: Transcript) -> TimelineEvent:
    kind = "call" if t.source == "call_transcripts" else "chat"
    score = conversation_sentiment(t)
    mood = t.sentiment_label or ("negative" if score <= -0.3 else ("positive" if score >= 0.3 else "neutral"))
    topics = [topic for topic, pattern in _INTEREST_RES.items() if any(pattern.search(x) for x in conversation_texts(t))]
    about = f", about {', '.join(topics)}" if topics else ""
    contact = f" ({t.topic.replace('_', ' ')})" if t.topic else ""
    return TimelineEvent(at=t.at, source=t.source, kind=kind, summary=f"{kind}{contact} with {mood} sentiment{about}")
