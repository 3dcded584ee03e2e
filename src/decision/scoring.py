"""The embedded ``rules`` selector: expected value per treatment, with a reason per factor.

    expected value = P(accept) x value at stake - cost per contact

* P(accept) is the offer model's acceptance probability for this treatment,
  or ``scoring.default_acceptance`` when the model did not score it, updated
  by the customer's own offer history: each past accept or decline of the
  same kind of offer (discount, upgrade, data, ...) counts as one observation
  against ``scoring.offer_history_weight`` observations of the prior (a beta
  update), so a customer who declined two discounts is less likely to take a third;
* value at stake = revenue at risk (churn probability x monthly revenue x
  horizon) x fit + the treatment's ``value_per_accept`` (upsell revenue);
* fit (0-1) is how well the treatment answers what is going on: the words of
  its description against the vocabulary of each active journey signal, and of
  the churn risk itself. Custom treatments are scored the same way, and a
  treatment that answers nothing saves nothing, so it only pays if it sells.

Pure logic: no I/O, deterministic, the same inputs give the same ranking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cvm.decision import vector
from cvm.decision.models import Candidate, Journey
from cvm.tools.records import PastOffer
from cvm.utils.config import IGNORE, ScoringSettings, Treatment

# Words a treatment's description uses when it addresses a signal.
SIGNAL_VOCABULARY: dict[str, frozenset[str]] = {
    "network_issue": frozenset({"network", "signal", "coverage", "engineer", "fix", "outage", "repair", "mast", "booster"}),
    "bill_shock": frozenset({"bill", "billing", "credit", "refund", "charges", "breakdown", "explain", "explaining"}),
    "roaming_charges": frozenset({"roaming", "travel", "abroad", "bundle", "international", "passport"}),
    "high_churn_risk": frozenset({"retention", "retain", "risk", "leaving", "stay", "discount", "loyalty", "contract", "specialist"}),
    "cancellation_intent": frozenset({"retention", "retain", "leaving", "stay", "discount", "price", "specialist", "contract"}),
    "negative_sentiment": frozenset({"apology", "apologise", "care", "specialist", "fix", "credit", "personal"}),
    "high_value": frozenset({"reward", "rewards", "loyalty", "points", "vip", "premium", "gift", "thank", "exclusive"}),
    "loyal": frozenset({"reward", "rewards", "loyalty", "points", "thank", "long-standing", "gift", "bonus"}),
    "family_interest": frozenset({"family", "lines", "children", "kids", "partner", "partners", "household"}),
    "upgrade_interest": frozenset({"upgrade", "handset", "phone", "device", "new"}),
    "data_growth": frozenset({"data", "allowance", "boost", "add-on", "gb", "bigger"}),
    "cheaper_plan_interest": frozenset({"cheaper", "tailored", "price", "discount", "plan", "saving"}),
    "overdue_payment": frozenset({"bill", "billing", "payment", "credit"}),
}

# The churn risk itself is always a driver, as strong as the churn probability.
CHURN_DRIVER = "churn_risk"
SIGNAL_VOCABULARY[CHURN_DRIVER] = SIGNAL_VOCABULARY["high_churn_risk"]

_WORDS = re.compile(r"[a-z][a-z'-]*")


@dataclass(frozen=True)
class Ranking:
    """A ranked candidate list (``ignore`` included) and how sure the ranking is."""

    candidates: tuple[Candidate, ...]
    confidence: float

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


# How strongly an active signal calls for action (the churn signals use the churn probability itself).
SIGNAL_STRENGTH: dict[str, float] = {
    "network_issue": 1.0, "bill_shock": 1.0, "roaming_charges": 0.8, "cancellation_intent": 0.9,
    "family_interest": 0.9, "upgrade_interest": 0.8, "data_growth": 0.8, "negative_sentiment": 0.6,
    "high_value": 0.6, "loyal": 0.7, "cheaper_plan_interest": 0.6, "overdue_payment": 0.3,
}
CHURN_SIGNALS = ("high_churn_risk", CHURN_DRIVER)
DEFAULT_STRENGTH = 0.5


def signal_strengths(journey: Journey) -> dict[str, float]:
    """How strongly each of the journey's drivers calls for action: ``vector.signal_strengths`` on this one customer."""
    churn = journey.features.churn_probability
    active = {name: np.array([name in journey.signals]) for name in (*SIGNAL_STRENGTH, *CHURN_SIGNALS, *journey.signals)}
    strengths = vector.signal_strengths(active, np.array([np.nan if churn is None else churn]))
    return {name: float(column[0]) for name, column in strengths.items()}


def description_words(treatment: Treatment) -> frozenset[str]:
    return frozenset(_WORDS.findall(f"{treatment.display_name} {treatment.description}".lower()))


def description_match(words: frozenset[str], signal: str) -> float:
    """How much of a signal's vocabulary a description uses: two words or more is a full match."""
    return min(1.0, len(words & SIGNAL_VOCABULARY.get(signal, frozenset())) / 2)


def _drivers(journey: Journey) -> dict[str, str]:
    """The journey's signals plus the churn risk, each with its evidence in words."""
    drivers = dict(journey.signals)
    if journey.features.churn_probability is not None:
        drivers.setdefault(CHURN_DRIVER, f"churn probability {journey.features.churn_probability:.2f}")
    return drivers


def fit(treatment: Treatment, journey: Journey, strengths: Mapping[str, float] | None = None) -> tuple[float, str | None, str | None]:
    """How well the treatment answers the journey (0-1), the driver that fits best, and its evidence.

    ``vector.relevance``'s rule (the best strength x description match) over this customer's drivers, in the order
    they are worded, so the driver named is the first that scores best; ``strengths`` from ``signal_strengths``.
    """
    words = description_words(treatment)
    drivers = _drivers(journey)
    strengths = strengths if strengths is not None else signal_strengths(journey)
    best, best_signal = 0.0, None
    for signal in drivers:
        score = strengths[signal] * description_match(words, signal)
        if score > best:
            best, best_signal = score, signal
    return best, best_signal, drivers.get(best_signal) if best_signal else None


def _money(amount: float) -> str:
    return f"£{amount:,.2f}"


# Kinds of offer, by the words that name them: a treatment and a past offer of a shared kind are "the same kind of offer".
OFFER_KINDS: dict[str, frozenset[str]] = {
    "discount": frozenset({"discount", "discounted", "retention", "price", "cheaper", "saving", "savings", "personalized", "personalised"}),
    "upgrade": frozenset({"upgrade", "handset", "phone", "device", "early"}),
    "data": frozenset({"data", "gb", "boost", "allowance", "add-on", "addon", "unlimited"}),
    "loyalty": frozenset({"loyalty", "points", "reward", "rewards", "vip", "app"}),
    "family": frozenset({"family", "lines", "line", "household", "kids"}),
    "roaming": frozenset({"roaming", "travel", "international", "abroad"}),
    "service": frozenset({"service", "engineer", "technical", "support", "call-back", "callback", "repair"}),
}
_KIND_WORDS = re.compile(r"[a-z][a-z-]*")


@lru_cache(maxsize=4096)
def offer_kinds(text: str) -> frozenset[str]:
    """The kinds of offer a treatment or past offer names (``retention_email`` -> discount).

    Cached: every treatment is compared with every past offer of every customer, and offer texts repeat.
    """
    words = set(_KIND_WORDS.findall(text.lower().replace("_", " ")))
    return frozenset(kind for kind, vocabulary in OFFER_KINDS.items() if words & vocabulary)


def treatment_kinds(treatment: Treatment) -> frozenset[str]:
    """The kinds of offer a treatment is, from its id and name (also used by the batch path)."""
    return offer_kinds(f"{treatment.id} {treatment.display_name}")


def similar_past_offers(treatment: Treatment, history: Sequence[PastOffer]) -> list[PastOffer]:
    """Decided past offers of the same kind as this treatment (pending ones say nothing yet)."""
    kinds = treatment_kinds(treatment)
    if not kinds:
        return []
    return [o for o in history if o.status != "pending" and kinds & offer_kinds(o.words())]


def history_adjusted(prior: float, similar: Sequence[PastOffer], weight: float) -> float:
    """A beta update of the prior P(accept) (worth ``weight`` observations) with the customer's own accepts and declines."""
    accepted = sum(o.status == "accepted" for o in similar)
    return (prior * weight + accepted) / (weight + len(similar))


def _history_reason(prior: float, adjusted: float, similar: Sequence[PastOffer]) -> str:
    accepted = sum(o.status == "accepted" for o in similar)
    declined = len(similar) - accepted
    shown = "; ".join(
        f"{o.label} {o.status}" + (f" {o.decided_on or o.offered_on}" if (o.decided_on or o.offered_on) else "") for o in similar[-3:]
    )
    return (f"offer history: {accepted} accepted and {declined} declined similar offer(s) ({shown}), "
            f"so acceptance moves from {prior:.0%} to {adjusted:.0%}")


@dataclass(frozen=True)
class Exposure:
    """What the customer stands to lose and why, the same for every treatment: churn, monthly revenue, revenue at risk
    and the strength of each driver."""

    churn: float
    revenue: float
    at_risk: float
    strengths: dict[str, float]
    """How strongly each driver of the journey calls for action (``signal_strengths``), for every treatment's fit."""

    @classmethod
    def of(cls, journey: Journey, scoring: ScoringSettings) -> Exposure:
        f = journey.features
        churn = f.churn_probability if f.churn_probability is not None else scoring.default_churn_probability
        revenue = f.monthly_revenue or 0.0
        return cls(churn, revenue, float(vector.at_risk(np.array([churn]), np.array([revenue]), scoring)[0]), signal_strengths(journey))


def score(treatment: Treatment, journey: Journey, scoring: ScoringSettings, exposure: Exposure | None = None) -> Candidate:
    """One treatment's expected value for this journey, with a reason per factor (``rank`` passes the exposure it
    computed once for every treatment)."""
    f = journey.features
    exposure = exposure or Exposure.of(journey, scoring)
    churn, revenue, at_risk = exposure.churn, exposure.revenue, exposure.at_risk
    relevance, signal, evidence = fit(treatment, journey, exposure.strengths)
    offer_p = f.offer_scores.get(treatment.id)
    prior = offer_p if offer_p is not None else scoring.default_acceptance
    similar = similar_past_offers(treatment, journey.offer_history) if scoring.offer_history_weight > 0 else []
    p_accept = history_adjusted(prior, similar, scoring.offer_history_weight) if similar else prior
    # The batch path's formulas (cvm.decision.vector), here on one customer's floats.
    value = vector.value_at_stake(at_risk, relevance, treatment.value_per_accept)
    ev = vector.expected_value(p_accept, at_risk, relevance, treatment)
    churn_words = "churn probability" if f.churn_probability is not None else "no churn score, assumed churn probability"
    reasons = [
        f"{churn_words} {churn:.2f} on {_money(revenue)}/month puts {_money(at_risk)} at risk over {scoring.horizon_months} months",
        f"offer model gives {offer_p:.0%} acceptance" if offer_p is not None
        else f"no offer-model score; default acceptance {prior:.0%}",
        *([_history_reason(prior, p_accept, similar)] if similar else []),
        f"fits the journey ({signal.replace('_', ' ')}: {evidence}), so it can save {relevance:.0%} of the revenue at risk"
        if signal else "addresses no journey signal, so it saves none of the revenue at risk",
        f"costs {_money(treatment.cost_per_contact)} per contact",
    ]
    if treatment.value_per_accept:
        reasons.append(f"adds {_money(treatment.value_per_accept)} revenue if accepted")
    reasons.append(f"expected value {p_accept:.0%} x {_money(value)} - {_money(treatment.cost_per_contact)} = {_money(ev)}")
    return Candidate(
        treatment_id=treatment.id, display_name=treatment.display_name, channel=treatment.channel,
        purpose=treatment.purpose, expected_value=ev, p_accept=round(p_accept, 4), value_at_stake=round(value, 2),
        cost=treatment.cost_per_contact, relevance=relevance, reasons=tuple(reasons),
    )


NO_ACTION = Candidate(
    treatment_id=IGNORE.id, display_name=IGNORE.display_name, channel="none", purpose="none",
    expected_value=0.0, p_accept=0.0, value_at_stake=0.0, cost=0.0, relevance=0.0,
    reasons=("no contact: no treatment is worth more than doing nothing",),
)


def rank(treatments: Iterable[Treatment], journey: Journey, scoring: ScoringSettings) -> Ranking:
    """Every treatment scored and sorted, best first, with ``ignore`` at value 0."""
    by_id = {t.id: t for t in treatments}
    exposure = Exposure.of(journey, scoring)
    scored = [score(t, journey, scoring, exposure) for t in by_id.values()] + [NO_ACTION]
    # On equal value no action wins: a treatment must be worth more than doing nothing.
    ordered = tuple(sorted(scored, key=lambda c: (
        -c.expected_value, c.treatment_id != NO_ACTION.treatment_id,
        by_id[c.treatment_id].priority if c.treatment_id in by_id else 0, c.treatment_id,
    )))
    return Ranking(candidates=ordered, confidence=confidence(ordered, journey))


def confidence(ordered: Sequence[Candidate], journey: Journey) -> float:
    """Half data coverage, half how clearly the winner beats the runner-up; data problems lower it.

    ``vector.confidence`` (the batch path's rule) on this one customer: its ranked treatments, all allowed.
    """
    f = journey.features
    known = [np.array([v is not None]) for v in (f.churn_probability, f.monthly_revenue, f.tenure_months, f.offer_scores or None,
                                                 journey.permissions)]
    values = np.array([[c.expected_value for c in ordered if c.treatment_id != NO_ACTION.treatment_id]], dtype=float)
    issues = np.array([len(journey.data_quality)])
    return float(vector.confidence(known, values, np.ones(values.shape, dtype=bool), issues)[0])
