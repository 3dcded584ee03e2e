"""The Insight agent: signals fused across the base, churn projected over a horizon."""

from __future__ import annotations

import math

import pytest

from cvm.agents.insight import HAZARD_FACTORS, SCORE_WINDOW_DAYS, churn_trajectory
from cvm.agents.messages import ChurnForecast, ErrorResponse, Journey, JourneyFeatures, SignalFusion


@pytest.fixture
def insight(make_runtime):
    return make_runtime().insight


def journey(churn: float | None, signals: dict[str, str] | None = None, sentiment: str = "unknown") -> Journey:
    return Journey(
        customer_id="C1", as_of="2026-11-23T10:00:00+00:00",
        features=JourneyFeatures(churn_probability=churn, sentiment_trend=sentiment), signals=signals or {},
    )


class TestFuseSignals:
    """Every customer's signals are counted and the most at risk listed with their evidence."""

    def test_sample_counts_match_each_journey(self, insight, make_runtime) -> None:
        fused = insight.process({"type": "fuse_signals"})
        assert isinstance(fused, SignalFusion)
        assert fused.customers == 12
        assert fused.customer_ids == tuple(f"U{n}" for n in range(123, 135))
        assert fused.signal_counts["network_issue"] == 2
        assert fused.customers_by_signal["network_issue"] == ("U123", "U130")
        assert sum(fused.signal_counts.values()) == sum(len(ids) for ids in fused.customers_by_signal.values())

    def test_at_risk_are_above_threshold_most_at_risk_first(self, insight) -> None:
        fused = insight.process({"type": "fuse_signals"})
        assert [c.customer_id for c in fused.at_risk] == ["U127", "U133", "U125"]
        assert [c.churn_probability for c in fused.at_risk] == [0.88, 0.78, 0.62]
        assert all(c.reasons and len(c.reasons) == len(c.signals) for c in fused.at_risk)

    def test_unknown_customer_is_an_error_entry_not_a_failure(self, insight) -> None:
        fused = insight.process({"type": "fuse_signals", "customer_ids": ["U123", "U999"]})
        assert fused.customers == 1
        assert [e["customer_id"] for e in fused.errors] == ["U999"]
        assert fused.errors[0]["error_type"] == "unknown_customer"

    def test_bad_message_is_a_typed_error(self, insight) -> None:
        answer = insight.process({"type": "forecast_churn", "horizon_days": 0})
        assert isinstance(answer, ErrorResponse)
        assert answer.error_type == "invalid_message"


class TestChurnTrajectory:
    """The projection compounds a hazard scaled by the journey's trends, and names each factor."""

    def test_no_trend_at_the_score_window_returns_the_score(self) -> None:
        trajectory = churn_trajectory(journey(0.4), SCORE_WINDOW_DAYS)
        assert trajectory.churn_at_horizon == pytest.approx(0.4, abs=1e-3)
        assert trajectory.trend == "stable"
        assert trajectory.drivers == ("no trend moves it",)

    def test_factors_multiply_the_hazard(self) -> None:
        signals = {"network_issue": "poor", "bill_shock": "jumped"}
        trajectory = churn_trajectory(journey(0.3, signals), 180)
        factor = HAZARD_FACTORS["network_issue"][0] * HAZARD_FACTORS["bill_shock"][0]
        expected = 1 - math.exp(math.log(0.7) / SCORE_WINDOW_DAYS * factor * 180)
        assert trajectory.churn_at_horizon == pytest.approx(expected, abs=1e-3)
        assert trajectory.trend == "rising"
        assert set(trajectory.drivers) == {"network quality is poor", "the latest bill jumped"}

    def test_improving_sentiment_lowers_the_projection(self) -> None:
        assert churn_trajectory(journey(0.5, sentiment="improving"), 90).trend == "falling"

    def test_no_score_is_unknown(self) -> None:
        trajectory = churn_trajectory(journey(None), 90)
        assert (trajectory.churn_now, trajectory.churn_at_horizon, trajectory.trend) == (None, None, "unknown")

    def test_forecast_lists_rising_customers_steepest_first(self, insight) -> None:
        forecast = insight.process({"type": "forecast_churn", "horizon_days": 90})
        assert isinstance(forecast, ChurnForecast)
        assert len(forecast.customers) == 12
        by_id = {t.customer_id: t for t in forecast.customers}
        rises = [by_id[c].churn_at_horizon - by_id[c].churn_now for c in forecast.rising]
        assert rises == sorted(rises, reverse=True)
        assert all(by_id[c].trend == "rising" for c in forecast.rising)
        assert "U123" in forecast.rising  # poor network and worsening sentiment
