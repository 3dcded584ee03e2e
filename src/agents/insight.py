"""The Insight agent: views across many customers for the daily cycle.

* ``fuse_signals``: every journey's signals counted across the base, who
  carries which, and the customers most at risk with the evidence.
* ``forecast_churn``: each customer's churn probability projected over a
  horizon. The model is deliberately simple and explained: the churn score is
  treated as a 90-day probability, its hazard is scaled by the journey's
  trends (worsening sentiment, poor network, bill shock, falling usage,
  cancellation intent raise it; improving sentiment lowers it), and compounded
  to the horizon. Every factor that moved it is named.
* ``forecast_portfolio``: the same at the size of a run (a million customers):
  every customer's churn score counted from the columnar churn feed (bands,
  histogram, segments, the most at risk), and journeys read only for the most
  at risk (their evidence) and for a fixed pseudo-random sample per segment,
  whose trajectories give each segment's forecast. The sample is named with
  its size; nothing is extrapolated beyond saying so.
"""

from __future__ import annotations

import math
from collections import Counter
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
    ForecastPortfolio,
    FuseSignals,
    GetCustomerData,
    Journey,
    JourneyResponse,
    ListCustomers,
    PortfolioChurn,
    SegmentTrajectory,
    SignalFusion,
    Trend,
)
from cvm.tools.churn_feed import ChurnSummary, PortfolioData
from cvm.utils.config import ScoringSettings
from cvm.utils.errors import CVMError, DataError, UsageError
from cvm.utils.progress import NO_PROGRESS, Progress

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

    def __init__(
        self, data: DataAgent, journey: JourneyAgent, scoring: ScoringSettings, *,
        portfolio: PortfolioData | None = None, progress: Progress = NO_PROGRESS,
    ):
        self._data = data
        self._journey = journey
        self._scoring = scoring
        self._portfolio = portfolio
        self._progress = progress

    def use_progress(self, progress: Progress) -> None:
        """Report the stages of long work here from now on (the CLI passes a terminal bar)."""
        self._progress = progress

    def _journeys(
        self, ids: Sequence[str] | None, data: DataAgent | None = None, stage: str | None = None,
    ) -> tuple[list[Journey], list[dict[str, str]]]:
        data = data or self._data
        if ids is None:
            ids = expect(data.process(ListCustomers()), CustomerListResponse).customer_ids
        journeys, errors = [], []
        with self._progress.stage(stage or "reading journeys", len(ids)) as bar:
            for cid in ids:
                try:
                    found = expect(data.process(GetCustomerData(customer_id=cid)), CustomerDataResponse).data
                    journeys.append(
                        expect(self._journey.process(BuildJourney(customer_id=cid, customer_data=found)), JourneyResponse).journey
                    )
                except CVMError as exc:
                    errors.append({"customer_id": cid, "error": str(exc), "error_type": exc.code})
                bar.advance()
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

    @handles(ForecastPortfolio)
    def _forecast_portfolio(self, message: ForecastPortfolio) -> PortfolioChurn:
        if self._portfolio is None:
            raise UsageError("this Insight agent has no portfolio reader (the runtime gives it one)")
        threshold = self._scoring.high_churn_threshold
        try:
            with self._portfolio.run_churn(message.run_id, progress=self._progress) as feed:
                summary = feed.summary(threshold, message.bands, message.top)
                sample = feed.sample(message.sample_per_segment)
        except DataError as exc:  # no data folder or an unreadable churn feed: every risk unknown, said once
            count, first = 0, list[str]()
            for chunk in self._portfolio.runs.customer_id_chunks(message.run_id):
                count, first = count + len(chunk), sorted([*first, *chunk])[: max(message.top, 10)]
            summary = ChurnSummary(count, 0, 0, [0] * len(message.bands), [(0, 0)] * 10, [], first, [])
            return _portfolio_churn(message, threshold, summary, {}, [], ({"error": str(exc), "error_type": exc.code},))
        top_ids = [cid for cid, _ in summary.most_at_risk]
        wanted = list(dict.fromkeys([*top_ids, *(cid for ids in sample.values() for cid in ids)]))
        reader = DataAgent(self._portfolio.subset(wanted), self._portfolio.customer_id_pattern)
        journeys, errors = self._journeys(wanted, reader, stage="reading journeys (most at risk and a sample per segment)")
        by_id = {j.customer_id: j for j in journeys}
        top = [
            AtRiskCustomer(
                customer_id=cid, churn_probability=p,
                signals=tuple(by_id[cid].signals) if cid in by_id else (),
                reasons=tuple(by_id[cid].signals.values()) if cid in by_id else (),
            )
            for cid, p in summary.most_at_risk
        ]
        trajectories = {
            segment: [churn_trajectory(by_id[cid], message.horizon_days) for cid in ids if cid in by_id]
            for segment, ids in sample.items()
        }
        return _portfolio_churn(message, threshold, summary, trajectories, top, tuple(errors))


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def _portfolio_churn(
    message: ForecastPortfolio, threshold: float, summary: ChurnSummary, trajectories: dict[str, list[ChurnTrajectory]],
    top: Sequence[AtRiskCustomer], errors: tuple[dict[str, str], ...],
) -> PortfolioChurn:
    """The response: the feed's counts, each segment with its sample's forecast."""
    segments = []
    for segment, customers, scored, mean, at_risk in summary.segments:
        sample = trajectories.get(segment, [])
        drivers = Counter(d for t in sample for d in t.drivers if d != "no trend moves it")
        segments.append(SegmentTrajectory(
            segment=segment, customers=customers, scored=scored, churn_now_mean=None if mean is None else round(mean, 4),
            at_risk=at_risk, sampled=len(sample), sample_churn_now_mean=_mean([t.churn_now for t in sample]),
            sample_churn_at_horizon_mean=_mean([t.churn_at_horizon for t in sample]),
            rising=sum(1 for t in sample if t.trend == "rising"), drivers=dict(drivers.most_common()),
        ))
    return PortfolioChurn(
        horizon_days=message.horizon_days, threshold=threshold, customers=summary.customers, scored=summary.scored,
        at_risk=summary.at_risk, bands=tuple(summary.bands), histogram=tuple(summary.histogram), most_at_risk=tuple(top),
        unknown_ids=tuple(summary.unknown), segments=tuple(segments), sample_per_segment=message.sample_per_segment,
        errors=errors,
    )
