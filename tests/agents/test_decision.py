"""The decision agent (the flows document's ``decision_agent``): renewal risk and renewal offers on the sample data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cvm.agents.messages import ErrorResponse, RenewalRecommendations, RenewalRiskAssessment


def test_assess_renewal_risk(make_runtime: Callable[..., Any]) -> None:
    agent = make_runtime().agents()["decision"]
    near = agent.process({"type": "assess_renewal_risk", "customer_id": "U126"})
    assert isinstance(near, RenewalRiskAssessment)
    assert (near.renewal_date, near.days_to_renewal, near.renewal_date_source) == ("2026-11-27", 4, "join_date + 24-month term")
    assert "renews in 4 day(s), within 30" in near.reasons
    far = agent.process({"type": "assess_renewal_risk", "customer_id": "U126", "window_days": 3})
    assert "renews in 4 day(s), within 3" not in far.reasons and far.risk_score < near.risk_score
    at_risk = agent.process({"type": "assess_renewal_risk", "customer_id": "U125"})
    assert at_risk.risk_level == "high" and at_risk.churn_probability == 0.62
    assert any(r.startswith("bill_shock: ") for r in at_risk.reasons)


def test_generate_renewal_recommendations(make_runtime: Callable[..., Any]) -> None:
    agent = make_runtime().agents()["decision"]
    answer = agent.process({"type": "generate_renewal_recommendations", "customer_id": "U125", "risk_level": "high"})
    assert isinstance(answer, RenewalRecommendations)
    values = [c.expected_value for c in answer.recommendations]
    assert 1 <= len(values) <= 3 and values == sorted(values, reverse=True) and min(values) > 0
    assert "ignore" not in [c.treatment_id for c in answer.recommendations]
    assert answer.explanation.startswith(f"high renewal risk; best renewal offer: {answer.recommendations[0].display_name}")
    one = agent.process({"type": "generate_renewal_recommendations", "customer_id": "U125", "max_recommendations": 1})
    assert len(one.recommendations) == 1 and one.risk_level is None


def test_unknown_customers_and_bad_messages_are_errors(make_runtime: Callable[..., Any]) -> None:
    agent = make_runtime().agents()["decision"]
    unknown = agent.process({"type": "assess_renewal_risk", "customer_id": "U999"})
    assert isinstance(unknown, ErrorResponse) and unknown.error_type == "unknown_customer"
    bad = agent.process({"type": "assess_renewal_risk", "customer_id": "U123", "window_days": 0})
    assert isinstance(bad, ErrorResponse) and bad.error_type == "invalid_message"
