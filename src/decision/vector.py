"""The decision rules on arrays: one customer or a million, the same functions.

The batch path (``cvm.engine.batch``) calls these over columns of N customers;
the per-customer path calls the ones it shares with N = 1 (``expected_value``
with plain floats, ``signal_flags`` with one-row columns) so a rule lives in one
place. Inputs are numpy arrays (NaN where a value is unknown) keyed by the
feature names of ``cvm.decision.models.JourneyFeatures``; codes: ``usage_trend``
and ``network_quality`` are 0 unknown, 1 rising / good, 2 stable / fair, 3
falling / poor. Pure numpy: no I/O, no agents, no tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

import numpy as np

# Modules, not names: journey and scoring call back into this module for one customer (a cycle Python allows
# for modules, whose names are looked up when a function runs).
from cvm.decision import journey, scoring
from cvm.decision.models import JourneyFeatures, NetworkQuality, SentimentTrend, Trend
from cvm.utils.config import Eligibility, ScoringSettings, Treatment

TIE_STEP = 1e-6
"""Ties on expected value (rounded to the penny) go to the better priority, then the id, as in the ranking."""

USAGE_TREND_CODES: dict[Trend, int] = {"unknown": 0, "rising": 1, "stable": 2, "falling": 3}
NETWORK_QUALITY_CODES: dict[NetworkQuality, int] = {"unknown": 0, "good": 1, "fair": 2, "poor": 3}
SENTIMENT_TREND_CODES: dict[SentimentTrend, int] = {"unknown": 0, "improving": 1, "stable": 2, "worsening": 3}
CODES: dict[str, Mapping[Any, int]] = {"usage_trend": USAGE_TREND_CODES, "network_quality": NETWORK_QUALITY_CODES, "sentiment_trend": SENTIMENT_TREND_CODES}
"""The features held as small integer codes; 0 is always "unknown"."""

USAGE_TREND_PCT = 15.0
"""A change in data use of more than this many percent either way is a trend (rising, falling)."""
SENTIMENT_TREND_STEP = 0.2
"""A move of the mean conversation sentiment by more than this either way is a trend (improving, worsening)."""
POOR_SIGNAL_DBM = -105.0
FAIR_SIGNAL_DBM = -95.0
FAIR_LATENCY_SHARE = 0.75
"""Latency from this share of ``scoring.poor_latency_ms`` up makes the network fair, not good."""


@overload
def round_half_even(values: float, digits: int) -> float: ...
@overload
def round_half_even(values: np.ndarray, digits: int) -> np.ndarray: ...
def round_half_even(values: float | np.ndarray, digits: int) -> float | np.ndarray:
    """Python's ``round`` for one value or an array: numpy's is faster but can differ right at a half; those few are redone."""
    if not isinstance(values, np.ndarray):
        return round(values, digits)
    rounded = np.round(values, digits)
    scaled = np.abs(values) * 10**digits
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    if near_half.any():
        rounded[near_half] = [round(x, digits) for x in values[near_half].tolist()]
    return rounded


@overload
def value_at_stake(at_risk: float, relevance: float, value_per_accept: float) -> float: ...
@overload
def value_at_stake(at_risk: np.ndarray, relevance: np.ndarray, value_per_accept: float) -> np.ndarray: ...
def value_at_stake(at_risk: float | np.ndarray, relevance: float | np.ndarray, value_per_accept: float) -> float | np.ndarray:
    """What an accepted treatment is worth: the share of the revenue at risk it saves, plus what it sells."""
    return at_risk * relevance + value_per_accept


@overload
def expected_value(p_accept: float, at_risk: float, relevance: float, treatment: Treatment) -> float: ...
@overload
def expected_value(p_accept: np.ndarray, at_risk: np.ndarray, relevance: np.ndarray, treatment: Treatment) -> np.ndarray: ...
def expected_value(
    p_accept: float | np.ndarray, at_risk: float | np.ndarray, relevance: float | np.ndarray, treatment: Treatment,
) -> float | np.ndarray:
    """P(accept) x value at stake - cost per contact, rounded to the penny (floats in, float out; arrays in, array out).

    The same arithmetic as ``value_at_stake`` in the same order, so one customer and a million round alike.
    """
    raw = p_accept * (at_risk * relevance + treatment.value_per_accept) - treatment.cost_per_contact
    return round_half_even(raw, 2) if isinstance(raw, np.ndarray) else round_half_even(float(raw), 2)


def trend_code(change: np.ndarray, step: float) -> np.ndarray:
    """0 unknown (NaN), 1 up (more than ``step``), 3 down (less than ``-step``), 2 stable: ``usage_trend`` and
    ``sentiment_trend`` as ``CODES`` holds them."""
    return np.select([np.isnan(change), change > step, change < -step], [0, 1, 3], 2).astype(np.int8)


def network_quality(
    has_network: np.ndarray, avg_latency: np.ndarray, dropped: np.ndarray, weakest: np.ndarray, settings: ScoringSettings,
) -> np.ndarray:
    """0 unknown (no network rows), 1 good, 2 fair, 3 poor: from the mean latency, the dropped calls and the weakest
    signal (NaN where unknown: no latency counts as 0 ms, no signal reading as fine)."""
    latency = np.nan_to_num(avg_latency, nan=0.0)
    drops = np.nan_to_num(dropped, nan=0.0)
    poor = has_network & ((latency >= settings.poor_latency_ms) | (drops >= settings.dropped_calls_threshold)
                          | (weakest <= POOR_SIGNAL_DBM))
    fair = has_network & ~poor & ((latency >= settings.poor_latency_ms * FAIR_LATENCY_SHARE) | (drops >= 1)
                                  | (weakest <= FAIR_SIGNAL_DBM))
    return np.select([poor, fair, has_network], [3, 2, 1], 0).astype(np.int8)


def at_risk(churn: np.ndarray, revenue: np.ndarray, settings: ScoringSettings) -> np.ndarray:
    """Revenue at risk over the horizon: churn probability (the default when unknown) x monthly revenue (0 when unknown)."""
    return np.where(np.isnan(churn), settings.default_churn_probability, churn) * np.nan_to_num(revenue) * settings.horizon_months


def signal_flags(columns: Mapping[str, np.ndarray], interests: Mapping[str, np.ndarray], settings: ScoringSettings) -> dict[str, np.ndarray]:
    """The journey signals as boolean columns (``JourneyBuilder.signals`` words them for one customer)."""
    c, i, s = columns, interests, settings
    churn = c["churn_probability"]
    quality = c["network_quality"]
    usage_change = np.nan_to_num(c["usage_change_pct"], nan=0.0)
    latest_gb = np.nan_to_num(c["latest_data_gb"], nan=0.0)
    return {
        "network_issue": (quality == 3) | ((quality == 2) & i["coverage"]),
        "bill_shock": c["bill_shock"],
        "roaming_charges": c["roaming"],
        "high_churn_risk": ~np.isnan(churn) & (np.nan_to_num(churn) >= s.high_churn_threshold),
        "cancellation_intent": i["cancellation"] | i["competitor"],
        "negative_sentiment": ~np.isnan(c["sentiment_score"]) & (np.nan_to_num(c["sentiment_score"]) <= journey.NEGATIVE_SENTIMENT_AT),
        "high_value": ~np.isnan(c["monthly_revenue"]) & (np.nan_to_num(c["monthly_revenue"]) >= s.high_value_monthly_revenue),
        "loyal": (np.nan_to_num(c["tenure_months"], nan=-1) >= journey.LOYAL_TENURE_MONTHS) & (np.nan_to_num(churn) < journey.LOYAL_MAX_CHURN),
        "family_interest": i["family_plan"],
        "upgrade_interest": i["upgrade"],
        "low_satisfaction": ~np.isnan(c["satisfaction_score"]) & (np.nan_to_num(c["satisfaction_score"], nan=np.inf) < journey.LOW_SATISFACTION_BELOW),
        "data_growth": ((c["usage_trend"] == 1) & ((latest_gb >= journey.DATA_GROWTH_GB) | (usage_change >= journey.DATA_GROWTH_PCT)))
        | (np.nan_to_num(c["overage_charges"]) > 0) | i["data"],
        "cheaper_plan_interest": i["cheaper_plan"],
        "overdue_payment": c["overdue_payment"],
    }


def signal_strengths(active: Mapping[str, np.ndarray], churn: np.ndarray) -> dict[str, np.ndarray]:
    """How strongly each active signal calls for action, per customer (0 where inactive); the churn ones are its probability."""
    known_churn = ~np.isnan(churn)
    strength = {name: np.where(flags, scoring.SIGNAL_STRENGTH.get(name, scoring.DEFAULT_STRENGTH), 0.0) for name, flags in active.items()}
    for name in scoring.CHURN_SIGNALS:
        flags = active.get(name, known_churn) if name != scoring.CHURN_DRIVER else known_churn
        strength[name] = np.where(flags, np.nan_to_num(churn), 0.0)
    return strength


def relevance(strength: Mapping[str, np.ndarray], words: frozenset[str], count: int) -> np.ndarray:
    """``scoring.fit`` for every customer: the best strength x description match over the signals."""
    best = np.zeros(count)
    for name, column in strength.items():
        match = scoring.description_match(words, name)
        if match:
            best = np.maximum(best, column * match)
    return best


ELIGIBILITY_COLUMNS = ("tenure_months", "churn_probability", "monthly_revenue")
"""The feature columns ``not_eligible`` reads."""


def not_eligible(columns: Mapping[str, np.ndarray], rules: Eligibility, active: Mapping[str, np.ndarray], count: int) -> np.ndarray:
    """``policy.eligibility_problem`` is not None, per customer: a bound missed (or its value unknown), a signal absent."""
    bad = np.zeros(count, dtype=bool)
    for column, low, high in (
        ("tenure_months", rules.min_tenure_months, rules.max_tenure_months),
        ("churn_probability", rules.min_churn_probability, rules.max_churn_probability),
        ("monthly_revenue", rules.min_monthly_revenue, None),
    ):
        if low is None and high is None:
            continue
        values = columns[column]
        bad |= np.isnan(values)
        if low is not None:
            bad |= np.nan_to_num(values, nan=np.inf) < low
        if high is not None:
            bad |= np.nan_to_num(values, nan=-np.inf) > high
    for signal in rules.required_signals:
        bad |= ~active.get(signal, np.zeros(count, dtype=bool))
    return bad


def missing_fields(
    columns: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], required: Sequence[str], count: int,
) -> np.ndarray:
    """(N, R): which of ``validation.required_journey_fields`` each customer lacks.

    A feature column is missing where it is NaN (a number) or 0 (a code); a part of the
    journey (``timeline``, ``signals``, ``permissions``, ``interests``...) where ``present``
    says so. A name neither knows is not computed by CVM, so it is never missing.
    """
    missing = np.zeros((count, len(required)), dtype=bool)
    for r, name in enumerate(required):
        if name in present:
            missing[:, r] = ~present[name]
        elif name in CODES and name in columns:
            missing[:, r] = columns[name] == 0
        elif name in columns and columns[name].dtype.kind == "f":
            missing[:, r] = np.isnan(columns[name])
    return missing


def tie_broken(value: np.ndarray, treatments: Sequence[Treatment]) -> np.ndarray:
    """Values nudged by less than a penny so that equal values rank by priority, then id."""
    order = sorted(range(len(treatments)), key=lambda j: (treatments[j].priority, treatments[j].id))
    rank = np.empty(len(treatments))
    rank[order] = np.arange(len(treatments))
    return value - TIE_STEP * (1 + rank) / (len(treatments) + 1)


def confidence(known: Sequence[np.ndarray], value: np.ndarray, allowed: np.ndarray, quality_issues: np.ndarray) -> np.ndarray:
    """``scoring.confidence`` for every customer: coverage of ``known`` (booleans), margin of the winner, data problems."""
    coverage = np.mean(known, axis=0)
    # The ranking holds the allowed treatments and no action (value 0).
    ranked = np.where(allowed & ~np.isnan(value), value, -np.inf)
    ranked = np.concatenate([ranked, np.zeros((len(value), 1 if value.shape[1] else 2))], axis=1)  # no treatment: runner-up 0
    top2 = -np.sort(-ranked, axis=1)[:, :2]
    top, second = top2[:, 0], top2[:, 1]
    margin = np.where((top <= 0) & (second <= 0), 1.0, np.minimum(1.0, (top - second) / np.maximum(np.abs(top), 1.0) * 2))
    penalty = np.minimum(0.3, 0.05 * quality_issues)
    return round_half_even(np.maximum(0.05, 0.5 * coverage + 0.5 * margin - penalty), 2)


def quiet_hours_shift(quiet: tuple[int, int], preferred: tuple[int, int], now: datetime) -> datetime | None:
    """When an interrupting contact may happen, if the quiet window (minutes of day, start -1 for none) forbids ``now``.

    None means now is fine; else the end of the quiet window, or the first preferred moment after it that is not quiet
    (``policy.next_contact_time`` on one customer's permissions).
    """
    minute = now.hour * 60 + now.minute
    start, end = quiet
    if start < 0 or not inside(minute, start, end):
        return None
    quiet_end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=end)
    if quiet_end <= now:
        quiet_end += timedelta(days=1)
    p_start, p_end = preferred
    if p_start < 0:
        return quiet_end
    end_minute = quiet_end.hour * 60 + quiet_end.minute
    if inside(end_minute, p_start, p_end):
        candidate = quiet_end
    else:
        candidate = quiet_end.replace(hour=p_start // 60, minute=p_start % 60)
        if candidate <= quiet_end:
            candidate += timedelta(days=1)
    c_minute = candidate.hour * 60 + candidate.minute
    if not inside(c_minute, start, end) and candidate - quiet_end < timedelta(days=1):
        return candidate
    return quiet_end


def inside(minute: int, start: int, end: int) -> bool:
    """Whether a minute of the day falls in a window (an overnight window wraps past midnight)."""
    return start <= minute < end if start <= end else (minute >= start or minute < end)


def one_row(f: JourneyFeatures) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One customer's features as the columns and interests these functions take (N = 1; None becomes NaN).

    Every scalar feature becomes a column (numbers as floats, flags as booleans, codes as ``CODES``),
    as ``cvm.tools.columnar`` lays them out for N customers; collections (interests, offer scores) are not columns.
    """
    columns: dict[str, np.ndarray] = {}
    for name, value in f:
        if name in CODES:
            columns[name] = np.array([CODES[name][value]], dtype=np.int8)
        elif isinstance(value, bool):
            columns[name] = np.array([value], dtype=bool)
        elif value is None or isinstance(value, int | float):
            columns[name] = np.array([np.nan if value is None else value], dtype=float)
    interests = {topic: np.array([topic in f.interests]) for topic in journey.INTEREST_PATTERNS}
    return columns, interests
