"""Customer flows: the run's customer (``${customer.*}``) and the trigger filter that selects customers.

A customer flow runs once per customer. Its customer is read through the data
agent (``data.get_customer_data``, which the flows document calls
``data_agent.retrieve_customer_data``) and flattened into ``CUSTOMER_FIELDS``
plus whatever extra columns the customer's row carries (``email``,
``account_manager``...). ``customer.renewal_date`` is the row's renewal or
contract-end date, else the next anniversary of ``join_date`` at the contract
term (``cvm.decision.renewal``). ``customer.id`` is the customer id.

The filter's conditions (``customer.renewal_date <= now() + interval '30 days'``)
are read with ``cvm.utils.conditions`` (time allowed) at the run's clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cvm.decision.renewal import DEFAULT_TERM_MONTHS, renewal_date
from cvm.utils.conditions import Condition, Outcome

CUSTOMER_FIELDS = (
    "id", "customer_id", "name", "segment", "plan", "join_date", "tenure_months", "renewal_date", "renewal_date_source",
    "days_to_renewal", "churn_probability", "monthly_charge",
)
"""What ``${customer.NAME}`` and a filter can read, besides the extra columns of the customer's row."""


def customer_condition(text: str) -> Condition:
    """One filter condition, parsed with time allowed (``ConditionError`` says what is wrong and where)."""
    return Condition(text, allow_time=True)


def customer_namespace(answer: Any, customer_id: str, now: datetime, term_months: int = DEFAULT_TERM_MONTHS) -> dict[str, Any]:
    """The run's customer from the data agent's answer (a ``CustomerDataResponse`` as JSON, or a flat mapping a test scripted)."""
    answer = answer if isinstance(answer, Mapping) else {}
    data = answer.get("data") if isinstance(answer.get("data"), Mapping) else None
    if data is not None and "customer_id" in data:
        flat = _flatten(data)
    else:
        flat = {k: v for k, v in answer.items() if k != "type"}
    flat.setdefault("customer_id", customer_id)
    flat.setdefault("id", flat["customer_id"])
    today = now.date()
    renews, source = renewal_date(flat, today, term_months)
    if renews is not None:
        flat["renewal_date"] = renews.isoformat()
        flat.setdefault("renewal_date_source", source)
        flat["days_to_renewal"] = (renews - today).days
    return flat


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """``CustomerData`` (profile, churn, billing...) -> one flat mapping of the fields a flow reads."""
    profile: Mapping[str, Any] = data["profile"] if isinstance(data.get("profile"), Mapping) else {}
    churn: Mapping[str, Any] = data["churn"] if isinstance(data.get("churn"), Mapping) else {}
    billing = [b for b in data.get("billing") or () if isinstance(b, Mapping)]
    flat: dict[str, Any] = {k: v for k, v in profile.items() if v is not None}
    flat["customer_id"] = data["customer_id"]
    if churn.get("probability") is not None:
        flat["churn_probability"] = churn["probability"]
    if churn.get("lifetime_months") is not None:
        flat["tenure_months"] = churn["lifetime_months"]
    if billing:
        latest = max(billing, key=lambda b: str(b.get("date") or ""))
        flat["monthly_charge"] = latest.get("monthly_charge")
    return flat


def matches(conditions: Iterable[Condition], customer: Mapping[str, Any], now: datetime) -> Outcome:
    """Whether the customer meets every condition (and why), at ``now``."""
    because: list[str] = []
    fields: list[str] = []
    for condition in conditions:
        outcome = condition.evaluate({"customer": customer}, now=now)
        if not outcome.matched:
            return Outcome(False, ())
        because += outcome.because
        fields += outcome.fields
    return Outcome(True, tuple(because), tuple(dict.fromkeys(fields)))
