"""The decision agent: the flows document's ``decision_agent`` actions for contract renewals.

``assess_renewal_risk``: how much the customer's renewal is at risk (churn
probability, nearness of the renewal date, the journey's risk signals; the
rules are ``cvm.decision.renewal``). ``generate_renewal_recommendations``: the
treatments worth offering at renewal, ranked by the treatment agent's selector
(eligibility, consent purpose and expected value as for any decision), keeping
only those with a positive expected value. Neither allocates capacity or
contacts anyone: deciding and contacting stay with the orchestrator and the
execution agent.
"""

from __future__ import annotations

from cvm.agents.base import BaseAgent, handles
from cvm.agents.data import DataAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.messages import (
    AssessRenewalRisk,
    BuildJourney,
    GenerateRenewalRecommendations,
    GetCustomerData,
    RecommendTreatment,
    RenewalRecommendations,
    RenewalRiskAssessment,
)
from cvm.agents.treatment import TreatmentAgent
from cvm.decision.models import Journey
from cvm.decision.renewal import DEFAULT_TERM_MONTHS, renewal_date, renewal_risk
from cvm.tools.clock import Clock
from cvm.tools.records import CustomerData


class DecisionAgent(BaseAgent):
    """Renewal risk and renewal offers for one customer, from its data, journey and the treatment ranking."""

    name = "DecisionAgent"

    def __init__(self, data: DataAgent, journey: JourneyAgent, treatment: TreatmentAgent, clock: Clock,
                 term_months: int = DEFAULT_TERM_MONTHS):
        self._data = data
        self._journey = journey
        self._treatment = treatment
        self._clock = clock
        self._term_months = term_months

    def _customer(self, customer_id: str) -> tuple[CustomerData, Journey]:
        data = self._data.ask(GetCustomerData(customer_id=customer_id)).data
        return data, self._journey.ask(BuildJourney(customer_id=customer_id, customer_data=data)).journey

    @handles(AssessRenewalRisk)
    def _assess(self, message: AssessRenewalRisk) -> RenewalRiskAssessment:
        data, journey = self._customer(message.customer_id)
        today = self._clock.now().date()
        row = data.profile.model_dump() | (data.profile.model_extra or {}) if data.profile is not None else {}
        renews, source = renewal_date(row, today, self._term_months)
        days = (renews - today).days if renews is not None else None
        churn = journey.features.churn_probability
        risk = renewal_risk(churn, days, journey.signals, message.window_days)
        return RenewalRiskAssessment(
            customer_id=message.customer_id, risk_level=risk.level, risk_score=risk.score, churn_probability=churn,
            renewal_date=renews.isoformat() if renews else None, renewal_date_source=source, days_to_renewal=days,
            reasons=risk.reasons,
        )

    @handles(GenerateRenewalRecommendations)
    def _recommend(self, message: GenerateRenewalRecommendations) -> RenewalRecommendations:
        _, journey = self._customer(message.customer_id)
        ranking = self._treatment.ask(RecommendTreatment(journey=journey))
        offers = tuple(c for c in ranking.candidates if c.treatment_id != "ignore" and c.expected_value > 0)[: message.max_recommendations]
        risk = f"{message.risk_level} renewal risk; " if message.risk_level else ""
        if offers:
            explanation = f"{risk}best renewal offer: {offers[0].display_name} (expected value {offers[0].expected_value:.2f})"
        else:
            explanation = f"{risk}no treatment has a positive expected value for this customer"
        return RenewalRecommendations(
            customer_id=message.customer_id, risk_level=message.risk_level, recommendations=offers, explanation=explanation,
        )
