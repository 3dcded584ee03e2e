"""Parity is a property: on any small synthetic world the batch path decides as the per-customer path.

Hypothesis draws a world from the project's own generator (``cvm.synth.generate``: seed,
customer count, file format) and a config (capacities, approval policy, contact caps, required journey
fields, the time of day and the zone), and both paths decide it as dry runs with the same clock and config:

- where capacity cannot bind (every ``max_per_day`` at least the customer count), every
  field of every ``DecisionResult`` is the same on both paths, except the run-specific ids;
- where it can, both respect every constraint (capacity per treatment, eligibility,
  consent, the contact caps) and the batch optimiser is worth at least first come, first served.

Some examples start from a ledger where an earlier (real, per-customer) run of the same day
already contacted part of the customers, so the contact caps and repeat window have
something to refuse.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from tempfile import mkdtemp

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvm.agents.allocation import daily_cap_problem
from cvm.agents.base import expect
from cvm.agents.messages import (
    BuildJourney,
    CheckContactPolicy,
    ContactPolicyResponse,
    CustomerDataResponse,
    GetCustomerData,
    JourneyResponse,
)
from cvm.decision import policy
from cvm.synth import generate
from cvm.tools.results import DecisionResult
from tests.conftest import CONFIG
from tests.engine.test_batch import batch_runner, per_customer

RUN_SPECIFIC = {"approval_request_id"}
"""Fields that name this run's own objects: compared for presence only."""
AS_OF_TIMES = ("2026-11-23T10:00:00+00:00", "2026-11-23T22:30:00+00:00", "2026-11-23T07:15:00+00:00")


def policies() -> st.SearchStrategy[dict]:
    """``governance.approval_policy`` variations: none, the shipped one, and each rule alone or together."""
    return st.fixed_dictionaries({
        "cost_per_contact_at_least": st.sampled_from([None, 5.0, 50.0]),
        "customer_value_at_least": st.sampled_from([None, 40.0, 80.0]),
        "confidence_below": st.sampled_from([None, 0.3, 0.6, 0.9]),
        "treatments": st.sampled_from([[], ["retention_email"], ["loyalty_app", "data_boost"]]),
    })


worlds = st.fixed_dictionaries({
    "seed": st.integers(min_value=0, max_value=2**32 - 1),
    "customers": st.integers(min_value=5, max_value=40),
    "fmt": st.sampled_from(["jsonl", "json", "parquet"]),
    "capacity": st.sampled_from([None, 100_000, 100_000, 1, 2, 3]),
    "approval_policy": policies(),
    "auto_approve": st.booleans(),
    "marketing_cap": st.sampled_from([1, 2]),
    "max_contacts_per_day": st.sampled_from([None, 1, 2]),
    "repeat_window_days": st.sampled_from([0, 30]),
    "as_of": st.sampled_from(AS_OF_TIMES),
    "timezone": st.sampled_from(["Europe/London", "Asia/Tokyo", "America/New_York", "Australia/Sydney"]),
    "earlier_run": st.sampled_from([0, 0, 0.5, 1.0]),
    "required_fields": st.sampled_from([
        [], ["customer_id", "timeline", "churn_probability"],
        ["interests", "offer_history", "offer_scores", "permissions", "signals", "conversations", "sentiment_trend",
         "network_quality", "satisfaction_score", "tenure_months", "roaming_charges", "risk_factors", "not_a_feature"],
    ]),
})


def write_config(folder: Path, world: dict) -> Path:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    if world["capacity"] is not None:
        for constraint in data["constraints"].values():
            constraint["max_per_day"] = constraint["remaining_availability"] = world["capacity"]
    data["governance"]["approval_policy"].update(world["approval_policy"])
    contact = data["policies"]["contact"]
    contact["max_contacts"] = {"marketing": world["marketing_cap"]}
    contact["max_contacts_per_day"] = world["max_contacts_per_day"]
    contact["repeat_window_days"] = world["repeat_window_days"]
    data.setdefault("validation", {})["required_journey_fields"] = world["required_fields"]
    data["settings"]["timezone"] = world["timezone"]  # days, do-not-disturb and the daily cap in the customers' zone
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def copy_ledger(source: str, target: str) -> None:
    with sqlite3.connect(source.removeprefix("sqlite:///")) as a, sqlite3.connect(target.removeprefix("sqlite:///")) as b:
        a.backup(b)


def decide_both(make_runtime, world: dict) -> tuple[dict[str, DecisionResult], dict[str, DecisionResult], object, dict[str, float]]:
    """Generate the world, optionally contact part of it in an earlier run, then dry-run both paths.

    Also returns the batch path's own confidence column (what a large run stores, without worded records).
    """
    folder = Path(mkdtemp(prefix="parity-", dir=Path.cwd()))
    data = folder / "data"
    generate(data, world["customers"], fmt=world["fmt"], seed=world["seed"])
    config = write_config(folder, world)
    urls = (f"sqlite:///{folder / 'a.sqlite3'}", f"sqlite:///{folder / 'b.sqlite3'}")
    options = dict(config_path=config, data_dir=data, as_of=world["as_of"], auto_approve=world["auto_approve"])
    if world["earlier_run"]:
        earlier = make_runtime(db_url=urls[0], run_id="earlier", **options)
        ids = sorted(per_customer_ids(earlier))
        earlier.orchestrator.decide_many(ids[: max(1, int(len(ids) * world["earlier_run"]))])
        copy_ledger(urls[0], urls[1])
    one_rt = make_runtime(db_url=urls[0], run_id="r", dry_run=True, **options)
    one = per_customer(one_rt)
    runtime = make_runtime(db_url=urls[1], run_id="r", dry_run=True, **options)
    runner = batch_runner(runtime, data, dry_run=True, auto_approve=world["auto_approve"])
    outcome = runner.run()
    batch = {r.customer_id: r for r in outcome.records or []}
    return one, batch, one_rt, dict(zip(outcome.customer_ids, outcome.confidence.tolist(), strict=True))


def per_customer_ids(runtime) -> list[str]:
    from cvm.agents.messages import CustomerListResponse, ListCustomers

    return list(expect(runtime.orchestrator.data.process(ListCustomers()), CustomerListResponse).customer_ids)


def comparable(result: DecisionResult) -> dict:
    """Every field, with the run-specific ids reduced to whether they are there."""
    fields = result.model_dump(mode="json")
    for name in RUN_SPECIFIC:
        fields[name] = fields[name] is not None
    return fields


def capacity_cannot_bind(world: dict) -> bool:
    return world["capacity"] is not None and world["capacity"] >= world["customers"]


def given_value(results) -> float:
    return sum(r.expected_value or 0.0 for r in results if r.status in ("success", "pending_approval"))


def new_contacts(results: dict[str, DecisionResult]) -> dict[str, DecisionResult]:
    """This run's own contacts: a dry run opens no request, so a request id means a customer still waiting on an earlier one."""
    return {cid: r for cid, r in results.items() if r.status in ("success", "pending_approval") and r.approval_request_id is None}


def assert_constraints_hold(results: dict[str, DecisionResult], runtime) -> None:
    """Capacity per treatment (with what earlier runs used), and every new contact allowed (enabled, eligible, consented,
    within the caps)."""
    config, o, now = runtime.config, runtime.orchestrator, runtime.clock.now()
    day = runtime.clock.now().date().isoformat()
    taken = Counter(r.selected_treatment for r in new_contacts(results).values())
    for tid, count in taken.items():
        limit = config.treatment(tid).max_per_day
        assert limit is None or runtime.ledger.used(tid, day) + count <= limit, (tid, count, limit)
    for cid, r in new_contacts(results).items():
        treatment = config.treatment(r.selected_treatment or "")
        data = expect(o.data.process(GetCustomerData(customer_id=cid)), CustomerDataResponse).data
        journey = expect(o.journey.process(BuildJourney(customer_id=cid, customer_data=data)), JourneyResponse).journey
        assert treatment.enabled, (cid, treatment.id)
        assert policy.eligibility_problem(treatment.eligibility, journey) is None, (cid, treatment.id)
        assert policy.consent_problem(treatment, journey.permissions) is None, (cid, treatment.id)
        # The contact rules through the ledger's own per-customer queries, not the masks both paths share.
        check = expect(o.allocation.process(CheckContactPolicy(customer_id=cid, purpose=treatment.purpose,
                                                                treatment_key=treatment.id)), ContactPolicyResponse)
        assert check.allowed, (cid, treatment.id)
        moment = policy.next_contact_time(treatment.channel, now, journey.permissions) or now
        assert daily_cap_problem(runtime.ledger, config.policies.contact, treatment, cid, moment) is None, (cid, treatment.id)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(world=worlds)
def test_both_paths_agree(make_runtime, world: dict) -> None:
    one, batch, runtime, confidence = decide_both(make_runtime, world)
    assert batch.keys() == one.keys()
    if capacity_cannot_bind(world):
        for cid, expected in one.items():
            assert comparable(batch[cid]) == comparable(expected), cid
            if expected.approval_request_id is None:  # a customer still waiting shows its request's confidence
                assert confidence[cid] == expected.confidence, (cid, "the batch path's confidence column")
    else:
        assert_constraints_hold(one, runtime)
        assert_constraints_hold(batch, runtime)
        assert given_value(batch.values()) >= given_value(one.values()) - 1e-6
