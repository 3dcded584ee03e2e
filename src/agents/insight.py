"""The Insight agent: views across many customers for the daily cycle.

* ``fuse_signals``: every journey's signals counted across the base, who
  carries which, and the customers most at risk with the evidence.
* ``forecast_churn``: each customer's churn probability projected over a
  horizon. The model is deliberately simple and explained: the churn score is
  treated as a 90-day probability, its hazard is scaled by the journey's
  trends (worsening sentiment, poor network, bill shock, falling usage,
  cancellation intent raise it; improving sentiment lowers it), and compounded
  to the horizon. Every factor that moved it is named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cvm.agents.base import BaseAgent, expect, handles
from cvm.agents.data import DataAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.messages import (
    AtRiskCustomer,
    BuildJourney,
    ChurnForecast,
    ChurnTrajectory,
    CustomerDataResponse,
    CustomerListResponse,
    ForecastChurn,
    FuseSignals,
    GetCustomerData,
    Journey,
    JourneyResponse,
    ListCustomers,
    SignalFusion,
    Trend,
)
from cvm.utils.config import ScoringSettings
from cvm.utils.errors import CVMError

# Journey trend -> multiplier on the churn hazard, with the words that explain it.
HAZARD_FACTORS: dict[str, tuple[float, str]] = {
    "worsening_sentiment": (1.25, "sentiment is worsening"),
    "improving_sentiment": (0.85, "sentiment is improving"),
    "network_issue": (1.2, "network quality is poor"),
    "bill_shock": (1.2, "the latest bill jumped"),
    "falling_usage": (1.15, "usage is falling"),
    "cancellation_intent": (1.3, "looked at cancelling or mentioned a competitor"),
}
SCORE_WINDOW_DAYS = 90


def churn_trajectory(journey: Journey, horizon_days: int) -> ChurnTrajectory:
    """Project one journey's churn probability to ``horizon_days``."""
    p0 = journey.features.churn_probability
    if p0 is None:
        return ChurnTrajectory(customer_id=journey.customer_id, churn_now=None, churn_at_horizon=None, trend="unknown",
                               drivers=("no churn score",))
    active = set(journey.signals)
    if journey.features.sentiment_trend == "worsening":
        active.add("worsening_sentiment")
    if journey.features.sentiment_trend == "improving":
        active.add("improving_sentiment")
    if journey.features.usage_trend == "falling":
        active.add("falling_usage")
    factor, drivers = 1.0, []
    for name, (multiplier, words) in HAZARD_FACTORS.items():
        if name in active:
            factor *= multiplier
            drivers.append(words)
    hazard = -math.log(max(1e-9, 1 - min(p0, 0.999))) / SCORE_WINDOW_DAYS * factor
    p_h = round(1 - math.exp(-hazard * horizon_days), 3)
    p_window = 1 - math.exp(-hazard * SCORE_WINDOW_DAYS)
    trend: Trend = "rising" if p_window > p0 + 0.01 else ("falling" if p_window < p0 - 0.01 else "stable")
    return ChurnTrajectory(
        customer_id=journey.customer_id, churn_now=p0, churn_at_horizon=p_h, trend=trend,
        drivers=tuple(drivers) or ("no trend moves it",),
    )


class InsightAgent(BaseAgent):
    """Reads journeys through the Data and Journey agents; pure arithmetic on top."""

    name = "InsightAgent"

    def __init__(self, data: DataAgent, journey: JourneyAgent, scoring: ScoringSettings):
        self._data = data
        self._journey = journey
        self._scoring = scoring

    def _journeys(self, ids: Sequence[str] | None) -> tuple[list[Journey], list[dict[str, str]]]:
        if ids is None:
            ids = expect(self._data.process(ListCustomers()), CustomerListResponse).customer_ids
        journeys, errors = [], []
        for cid in ids:
            try:
                data = expect(self._data.process(GetCustomerData(customer_id=cid)), CustomerDataResponse).data
                journeys.append(expect(self._journey.process(BuildJourney(customer_id=cid, customer_data=data)), JourneyResponse).journey)
            except CVMError as exc:
                errors.append({"customer_id": cid, "error": str(exc), "error_type": exc.code})
        return journeys, errors

    @handles(FuseSignals)
    def _fuse(self, message: FuseSignals) -> SignalFusion:
        journeys, errors = self._journeys(message.customer_ids)
        by_signal: dict[str, list[str]] = {}
        for j in journeys:
            for signal in j.signals:
                by_signal.setdefault(signal, []).append(j.customer_id)
        threshold = self._scoring.high_churn_threshold
        at_risk = sorted(
            (j for j in journeys if (j.features.churn_probability or 0) >= threshold),
            key=lambda j: (-(j.features.churn_probability or 0), j.customer_id),
        )
        return SignalFusion(
            customers=len(journeys), customer_ids=tuple(j.customer_id for j in journeys),
            signal_counts={s: len(ids) for s, ids in sorted(by_signal.items())},
            customers_by_signal={s: tuple(ids) for s, ids in sorted(by_signal.items())},
            at_risk=tuple(
                AtRiskCustomer(customer_id=j.customer_id, churn_probability=j.features.churn_probability,
                               signals=tuple(j.signals), reasons=tuple(j.signals.values()))
                for j in at_risk
            ),
            errors=tuple(errors),
        )

    @handles(ForecastChurn)
    def _forecast(self, message: ForecastChurn) -> ChurnForecast:
        journeys, errors = self._journeys(message.customer_ids)
        trajectories = [churn_trajectory(j, message.horizon_days) for j in journeys]
        rising = sorted(
            (t for t in trajectories if t.trend == "rising"),
            key=lambda t: -((t.churn_at_horizon or 0) - (t.churn_now or 0)),
        )
        return ChurnForecast(
            horizon_days=message.horizon_days, customers=tuple(trajectories),
            rising=tuple(t.customer_id for t in rising), errors=tuple(errors),
        )
