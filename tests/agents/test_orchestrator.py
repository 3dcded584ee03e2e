"""The Orchestrator end to end on a real ledger with a fixed clock: fallback, caps, messages, invariants."""

from __future__ import annotations

import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvm.agents.allocation import AllocationAgent
from cvm.agents.base import handles
from cvm.agents.messages import (
    AvailabilityResponse,
    BatchResult,
    CheckAvailability,
    DecisionResult,
    ErrorResponse,
    Journey,
    Recommendation,
    RecommendTreatment,
)
from cvm.agents.treatment import TreatmentAgent
from cvm.decision.scoring import NO_ACTION, score
from cvm.runtime import RunOptions, build_runtime
from cvm.tools.ledger import WITHDRAWN_BY
from cvm.tools.records import TimeWindow
from cvm.utils.config import CHANNELS, IGNORE_ID, PURPOSES, CVMConfig
from cvm.utils.errors import ApprovalError
from cvm.utils.settings import RuntimeSettings
from tests.conftest import AS_OF, CONFIG, SAMPLE, withdraw_email_marketing

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))
TODAY = datetime.fromisoformat(AS_OF).date().isoformat()


def ledger_url(folder: Path, name: str) -> str:
    return f"sqlite:///{folder / f'{name}.sqlite3'}"


def write_config(folder: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the shipped config with ``edit`` applied to its YAML document."""
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    edit(doc)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def set_capacity(treatment_id: str, max_per_day: int) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["constraints"][treatment_id]["max_per_day"] = max_per_day
        doc["constraints"][treatment_id]["remaining_availability"] = max_per_day

    return edit


def alternatives(result: DecisionResult) -> dict[str, str]:
    return {a.treatment_id: a.reason for a in result.alternatives}


class ScriptedSelector(TreatmentAgent):
    """A test-only selector: it ranks *every* configured treatment (allowed or not) in an order it is given."""

    def __init__(self, config: CVMConfig, order: Callable[[Journey, list[str]], Sequence[str]]):
        super().__init__(config)
        self.cfg = config
        self.order = order

    @handles(RecommendTreatment)
    def _scripted(self, message: RecommendTreatment) -> Recommendation:
        journey = message.journey
        pool = {t.id: score(t, journey, self.cfg.scoring) for t in self.cfg.treatments.values()}
        pool[IGNORE_ID] = NO_ACTION
        ids = list(self.order(journey, list(pool)))
        return Recommendation(
            customer_id=journey.customer_id, candidates=tuple(pool[i] for i in ids), selector="rules",
            explanation="scripted order", confidence=0.5,
        )


class StaleAvailability(AllocationAgent):
    """An allocation agent whose advisory availability check always says yes (as if read before a rival took it)."""

    def _check_availability(self, message: CheckAvailability) -> AvailabilityResponse:
        treatment = self._config.treatment(message.treatment_key)
        return AvailabilityResponse(
            treatment_key=treatment.id, available=True, max_per_day=treatment.max_per_day, used_today=0,
            remaining=treatment.max_per_day,
        )


def contested_treatment(make_runtime, tmp_path: Path) -> tuple[str, str, str]:
    """A treatment that at least two sample customers get first, and two such customers (found by a dry run)."""
    scout = make_runtime(db_url=ledger_url(tmp_path, "scout"), dry_run=True)
    winners: dict[str, list[str]] = defaultdict(list)
    for result in scout.orchestrator.decide_many(list(SAMPLE_IDS)):
        if result.status == "success":
            winners[result.selected_treatment].append(result.customer_id)
    treatment, customers = next((t, c) for t, c in sorted(winners.items()) if len(c) >= 2)
    return treatment, customers[0], customers[1]


class TestCapacityFallback:
    """When a treatment's daily capacity is gone, the next customer falls back to its next candidate."""

    def test_second_customer_falls_back(self, make_runtime, tmp_path):
        treatment, first, second = contested_treatment(make_runtime, tmp_path)
        one_slot = write_config(tmp_path, "one.yaml", set_capacity(treatment, 1))
        no_slot = write_config(tmp_path, "zero.yaml", set_capacity(treatment, 0))
        runtime = make_runtime(config_path=one_slot)
        a = runtime.orchestrator.decide(first)
        b = runtime.orchestrator.decide(second)
        assert a.status == "success" and a.selected_treatment == treatment
        assert b.selected_treatment != treatment
        assert alternatives(b)[treatment] == "capacity_exhausted"
        without = make_runtime(config_path=no_slot, db_url=ledger_url(tmp_path, "zero")).orchestrator.decide(second)
        assert b.selected_treatment == without.selected_treatment
        assert runtime.ledger.used(treatment, TODAY) == 1
        assert [r["customer_id"] for r in runtime.ledger.allocations() if r["treatment_id"] == treatment] == [first]

    def test_allocation_refusal_walks_the_ranked_list(self, make_runtime, tmp_path):
        """Even when the advisory check is stale, the atomic allocation refuses and the walk moves on."""
        treatment, first, second = contested_treatment(make_runtime, tmp_path)
        one_slot = write_config(tmp_path, "one.yaml", set_capacity(treatment, 1))
        no_slot = write_config(tmp_path, "zero.yaml", set_capacity(treatment, 0))
        runtime = make_runtime(config_path=one_slot)
        orch = runtime.orchestrator
        orch.allocation = StaleAvailability(runtime.config, runtime.ledger, runtime.clock)
        assert orch.decide(first).selected_treatment == treatment
        b = orch.decide(second)
        assert b.selected_treatment != treatment
        assert alternatives(b)[treatment] == "capacity_exhausted"
        without = make_runtime(config_path=no_slot, db_url=ledger_url(tmp_path, "zero")).orchestrator.decide(second)
        assert b.selected_treatment == without.selected_treatment
        assert runtime.ledger.used(treatment, TODAY) == 1

    def test_zero_capacity_is_never_given(self, make_runtime, tmp_path):
        treatment, first, _ = contested_treatment(make_runtime, tmp_path)
        runtime = make_runtime(config_path=write_config(tmp_path, "zero.yaml", set_capacity(treatment, 0)))
        result = runtime.orchestrator.decide(first)
        assert result.selected_treatment != treatment
        assert alternatives(result)[treatment] == "capacity_exhausted"
        assert runtime.ledger.used(treatment, TODAY) == 0


def no_daily_cap(doc: dict[str, Any]) -> None:
    """Switch the per-customer daily cap off, to test the per-purpose cap on its own."""
    doc["policies"]["contact"]["max_contacts_per_day"] = None


class TestContactCap:
    """A customer gets at most one marketing contact in seven days; service contacts are not capped by purpose.

    These tests switch the daily cap off (it would refuse any second contact on the day); TestDailyCap covers it.
    """

    def test_second_run_cannot_market_again(self, make_runtime, tmp_path):
        config = write_config(tmp_path, "no-daily-cap.yaml", no_daily_cap)
        first = make_runtime(run_id="run-a", config_path=config).orchestrator.decide("U124")
        assert first.status == "success" and first.purpose == "marketing"
        runtime = make_runtime(run_id="run-b", config_path=config)
        second = runtime.orchestrator.decide("U124")
        reasons = alternatives(second)
        # The treatment already given may be refused by the repeat window first; either way it is not given again.
        assert reasons[first.selected_treatment] in ("contact_limit", "repeat_limit")
        assert second.purpose != "marketing"
        capped = [tid for tid, reason in reasons.items() if reason == "contact_limit"]
        assert capped, "no marketing treatment was refused for the contact cap"
        for tid, reason in reasons.items():
            purpose = runtime.config.treatment(tid).purpose
            if purpose == "marketing" and tid != first.selected_treatment and reason not in ("no_consent", "not_eligible", "disabled"):
                assert reason == "contact_limit", f"{tid}: {reason}"
            if purpose != "marketing":
                assert reason not in ("contact_limit", "repeat_limit"), f"{tid} is {purpose} yet hit a contact limit"
        assert [r["purpose"] for r in runtime.ledger.allocations(customer_id="U124")].count("marketing") == 1

    def test_service_treatment_still_given_after_marketing(self, make_runtime, tmp_path):
        config = write_config(tmp_path, "no-daily-cap.yaml", no_daily_cap)
        first = make_runtime(run_id="run-a", config_path=config).orchestrator.decide("U124")
        assert first.purpose == "marketing"
        runtime = make_runtime(run_id="run-b", config_path=config)
        marketing = [t.id for t in runtime.config.treatments.values() if t.purpose == "marketing"]
        runtime.orchestrator.treatment = ScriptedSelector(
            runtime.config,
            lambda _j, ids: marketing + ["service_sms"] + [i for i in ids if i not in marketing and i != "service_sms"],
        )
        second = runtime.orchestrator.decide("U124")
        assert second.status == "success" and second.selected_treatment == "service_sms"
        assert second.purpose == "service_updates"
        assert sorted(r["purpose"] for r in runtime.ledger.allocations(customer_id="U124")) == ["marketing", "service_updates"]

    def test_cap_expires_after_the_window(self, make_runtime):
        first = make_runtime(run_id="run-a").orchestrator.decide("U124")
        assert first.purpose == "marketing"
        later = (datetime.fromisoformat(AS_OF) + timedelta(days=8)).isoformat()
        again = make_runtime(run_id="run-later", as_of=later).orchestrator.decide("U124")
        assert again.purpose == "marketing"
        assert "contact_limit" not in alternatives(again).values()

    def test_same_run_replays_without_new_allocation(self, make_runtime):
        runtime = make_runtime(run_id="run-same")
        first = runtime.orchestrator.decide("U124")
        again = make_runtime(run_id="run-same").orchestrator.decide("U124")
        assert again.replayed is True
        assert again.selected_treatment == first.selected_treatment
        assert len(runtime.ledger.allocations(customer_id="U124")) == 1

    def test_a_replay_never_asks_the_ledger_to_allocate(self, make_runtime, mocker):
        make_runtime(run_id="run-spy").orchestrator.decide("U124")
        replaying = make_runtime(run_id="run-spy")
        allocate = mocker.spy(replaying.ledger, "allocate")
        again = replaying.orchestrator.decide("U124")
        assert again.replayed is True and again.status == "success"
        assert allocate.call_count == 0


class TestMessages:
    """The orchestrator takes plain dict messages and answers unknown ones with an ErrorResponse."""

    def test_process_customer(self, make_runtime):
        orch = make_runtime(run_id="run-msg").orchestrator
        result = orch.process({"type": "process_customer", "customer_id": "U124"})
        assert isinstance(result, DecisionResult)
        assert result.customer_id == "U124" and result.status == "success"
        assert result.selector == "rules" and result.error is None
        assert orch.ledger.decision("run-msg", "U124").result["selected_treatment"] == result.selected_treatment

    def test_process_customer_with_its_own_run_id(self, make_runtime):
        orch = make_runtime(run_id="run-default").orchestrator
        result = orch.process({"type": "process_customer", "customer_id": "U125", "run_id": "run-explicit"})
        assert result.status == "success"
        assert [r["run_id"] for r in orch.ledger.allocations(customer_id="U125")] == ["run-explicit"]

    def test_process_batch(self, make_runtime):
        orch = make_runtime().orchestrator
        batch = orch.process({"type": "process_batch", "customer_ids": ["U125", "U999", "U133"], "run_id": "batch-1"})
        assert isinstance(batch, BatchResult) and batch.run_id == "batch-1"
        assert [r.customer_id for r in batch.results] == ["U125", "U999", "U133"]
        statuses = [r.status for r in batch.results]
        assert statuses[0] == "success" and statuses[1] == "error" and statuses[2] == "no_action"
        assert "U999" in batch.results[1].error
        assert batch.results[2].selected_treatment == IGNORE_ID

    @pytest.mark.parametrize("auto_threshold", [100_000, 3], ids=["per-customer", "batch"])
    def test_process_batch_decides_a_repeated_id_once(self, make_runtime, tmp_path, auto_threshold):
        """On either path (the batch path crashed on a repeated id)."""
        data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        data.setdefault("batch", {})["auto_threshold"] = auto_threshold
        (tmp_path / "threshold.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        orch = make_runtime(config_path=tmp_path / "threshold.yaml").orchestrator
        batch = orch.process({"type": "process_batch", "customer_ids": ["U125", "U133", "U124", "U125"], "run_id": "b"})
        assert isinstance(batch, BatchResult), batch
        assert sorted(r.customer_id for r in batch.results) == ["U124", "U125", "U133"]

    def test_invalid_customer_id_is_an_error_record(self, make_runtime):
        result = make_runtime().orchestrator.process({"type": "process_customer", "customer_id": "bad id!"})
        assert isinstance(result, DecisionResult) and result.status == "error"
        assert result.selected_treatment is None and "bad id!" in result.error

    def test_unknown_type(self, make_runtime):
        response = make_runtime().orchestrator.process({"type": "teleport_customer", "customer_id": "U123"})
        assert isinstance(response, ErrorResponse) and response.error_type == "unknown_message_type"
        assert "process_customer" in response.message

    def test_other_agents_message_is_unknown_here(self, make_runtime):
        response = make_runtime().orchestrator.process({"type": "get_customer_data", "customer_id": "U123"})
        assert isinstance(response, ErrorResponse) and response.error_type == "unknown_message_type"

    def test_invalid_batch_message(self, make_runtime):
        response = make_runtime().orchestrator.process({"type": "process_batch"})
        assert isinstance(response, ErrorResponse) and response.error_type == "invalid_message"


class TestPolicyEnforcement:
    """Whatever the selector says, consent and eligibility are enforced in code."""

    def test_selector_proposals_without_consent_are_refused(self, make_runtime):
        runtime = make_runtime()
        wish = ["retention_sms", "data_boost", "marketing_call_back", "service_sms", IGNORE_ID]
        runtime.orchestrator.treatment = ScriptedSelector(
            runtime.config, lambda _j, ids: wish + [i for i in ids if i not in wish]
        )
        result = runtime.orchestrator.decide("U124")
        reasons = alternatives(result)
        assert reasons["retention_sms"] == "no_consent" and reasons["data_boost"] == "no_consent"
        assert reasons["marketing_call_back"] in ("no_consent", "not_eligible")
        assert result.selected_treatment == "service_sms"
        assert [r["treatment_id"] for r in runtime.ledger.allocations()] == ["service_sms"]

    def test_refused_proposal_keeps_its_real_reason(self, make_runtime, tmp_path):
        """A proposal already screened out for capacity is reported as capacity_exhausted, not as a bad selector pick."""
        treatment, first, second = contested_treatment(make_runtime, tmp_path)
        runtime = make_runtime(config_path=write_config(tmp_path, "one.yaml", set_capacity(treatment, 1)))
        orch = runtime.orchestrator
        assert orch.decide(first).selected_treatment == treatment
        orch.treatment = ScriptedSelector(runtime.config, lambda _j, ids: [treatment] + [i for i in ids if i != treatment])
        result = orch.decide(second)
        assert result.selected_treatment != treatment
        assert alternatives(result)[treatment] == "capacity_exhausted"

    def test_opted_out_customer_gets_no_action(self, make_runtime):
        runtime = make_runtime()
        runtime.orchestrator.treatment = ScriptedSelector(
            runtime.config, lambda _j, ids: [i for i in ids if i != IGNORE_ID] + [IGNORE_ID]
        )
        result = runtime.orchestrator.decide("U133")
        assert result.status == "no_action" and result.selected_treatment == IGNORE_ID
        assert set(alternatives(result).values()) <= {"no_consent", "not_eligible"}
        assert runtime.ledger.allocations() == []

    def test_requires_approval_from_config(self, make_runtime, tmp_path):
        plain = make_runtime(db_url=ledger_url(tmp_path, "plain")).orchestrator.decide("U124")
        assert plain.status == "success" and plain.requires_approval is False

        def approval(doc: dict[str, Any]) -> None:
            doc["treatments"][plain.selected_treatment]["requires_approval"] = True

        gated = make_runtime(config_path=write_config(tmp_path, "approval.yaml", approval)).orchestrator.decide("U124")
        assert gated.selected_treatment == plain.selected_treatment
        assert gated.requires_approval is True
        assert gated.status in ("success", "pending_approval")


class TestParallelism:
    """Deciding with four workers gives the same decisions as one worker."""

    def test_same_decisions(self, make_runtime, tmp_path):
        def decisions(workers: int) -> list[tuple]:
            orch = make_runtime(db_url=ledger_url(tmp_path, f"w{workers}"), max_workers=workers).orchestrator
            return [
                (r.customer_id, r.status, r.selected_treatment, r.channel, r.expected_value, r.scheduled_for)
                for r in orch.decide_many(list(SAMPLE_IDS))
            ]

        serial, parallel = decisions(1), decisions(4)
        assert [d[0] for d in parallel] == list(SAMPLE_IDS)
        assert parallel == serial
        assert sum(1 for d in serial if d[1] == "success") >= 5


class TestClockZone:
    """An --as-of instant given with an offset is read in the configured zone (Europe/London)."""

    def test_dnd_uses_local_time(self, make_runtime):
        # 21:30 UTC on 1 July is 22:30 in London, inside U123's do-not-disturb 22:00-08:00.
        result = make_runtime(as_of="2026-07-01T21:30:00+00:00").orchestrator.decide("U123")
        assert result.channel == "call"
        assert result.scheduled_for is not None, "a call at 22:30 London time was not moved out of do-not-disturb"
        local = datetime.fromisoformat(result.scheduled_for)
        assert not TimeWindow.parse("22:00-08:00").contains(local.time())

    def test_day_key_uses_local_date(self, make_runtime):
        # 23:30 UTC on 1 July is 00:30 on 2 July in London.
        runtime = make_runtime(as_of="2026-07-01T23:30:00+00:00")
        result = runtime.orchestrator.decide("U124")
        assert result.status == "success"
        assert [r["day"] for r in runtime.ledger.allocations()] == ["2026-07-02"]


# --- the property test -------------------------------------------------------

PROPERTY_CUSTOMERS = ("U123", "U124", "U125", "U127", "U128", "U132")
TREATMENT_IDS = tuple(yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["treatments"])

answer = st.sampled_from(["Y", "N", None])  # None: the purpose is missing from the record
channel_block = st.one_of(st.none(), st.fixed_dictionaries({p: answer for p in PURPOSES}))
permission_record = st.one_of(
    st.none(),  # no record at all
    st.tuples(
        st.fixed_dictionaries({c: channel_block for c in CHANNELS}),
        st.sampled_from([None, "22:00-08:00", "09:00-17:00"]),
    ),
)


def _permissions_rows(records: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for cid, record in records.items():
        if record is None:
            continue
        blocks, dnd = record
        block = {
            channel: {p: v for p, v in purposes.items() if v is not None}
            for channel, purposes in blocks.items()
            if purposes is not None
        }
        row: dict[str, Any] = {"customer_id": cid, "permissions": block}
        if dnd:
            row["do_not_disturb"] = dnd
        rows.append(row)
    return rows


def _has_y(record: Any, channel: str, purpose: str) -> bool:
    if record is None:
        return False
    block = record[0].get(channel)
    return block is not None and block.get(purpose) == "Y"


class TestInvariants:
    """Over random consents, capacities and selector answers, consent, capacity and the contact cap always hold."""

    @pytest.mark.slow
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        records=st.fixed_dictionaries({cid: permission_record for cid in PROPERTY_CUSTOMERS}),
        capacities=st.fixed_dictionaries({tid: st.integers(0, 3) for tid in TREATMENT_IDS}),
        disabled=st.sets(st.sampled_from(TREATMENT_IDS), max_size=3),
        visits=st.lists(
            st.tuples(st.sampled_from(PROPERTY_CUSTOMERS), st.sampled_from(["run-a", "run-b"])), min_size=1, max_size=10
        ),
        rnd=st.randoms(use_true_random=False),
        ignore_last=st.booleans(),
    )
    def test_never_breaks_consent_capacity_or_contact_cap(self, records, capacities, disabled, visits, rnd, ignore_last):
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            data = root / "data"
            data.mkdir()
            for table in SAMPLE.iterdir():
                if table.stem != "permissions":
                    (data / table.name).symlink_to(table)
            (data / "permissions.json").write_text(json.dumps(_permissions_rows(records)), encoding="utf-8")

            def edit(doc: dict[str, Any]) -> None:
                for tid, n in capacities.items():
                    doc["constraints"][tid]["max_per_day"] = n
                    doc["constraints"][tid]["remaining_availability"] = n
                for tid in disabled:
                    doc["treatments"][tid]["enabled"] = False

            config_path = write_config(root, "cvm.yaml", edit)
            runtime = build_runtime(
                RunOptions(
                    data_dir=data, config_path=config_path, custom_treatments_path=root / "custom.json",
                    db_url=ledger_url(root, "ledger"), selector="rules", as_of=AS_OF,
                ),
                RuntimeSettings(_env_file=None),
            )

            def shuffled(_journey: Journey, ids: list[str]) -> list[str]:
                order = list(ids)
                rnd.shuffle(order)
                if ignore_last:
                    order.remove(IGNORE_ID)
                    order.append(IGNORE_ID)
                return order

            runtime.orchestrator.treatment = ScriptedSelector(runtime.config, shuffled)
            try:
                results = [runtime.orchestrator.decide(cid, run) for cid, run in visits]
                rows = runtime.ledger.allocations(limit=100_000)
            finally:
                runtime.ledger.close()

        for (cid, _run), result in zip(visits, results):
            assert result.status != "error", result.error
            if result.status in ("success", "pending_approval"):
                t = runtime.config.treatment(result.selected_treatment)
                assert _has_y(records[cid], t.channel, t.purpose), f"{cid} got {t.id} without a Y for {t.channel}/{t.purpose}"
                assert t.id not in disabled
        per_day = Counter((r["treatment_id"], r["day"]) for r in rows)
        for (tid, _day), n in per_day.items():
            assert n <= capacities[tid], f"{tid}: {n} allocations with max_per_day {capacities[tid]}"
        marketing = Counter(r["customer_id"] for r in rows if r["purpose"] == "marketing")
        assert all(n <= 1 for n in marketing.values()), marketing
        for r in rows:
            assert _has_y(records[r["customer_id"]], r["channel"], r["purpose"])
        # The ledger and the results agree: one allocation per (run, customer) that got a treatment.
        # A customer already waiting for approval from an earlier run takes nothing new in this one.
        took = [res.status == "success" or (res.status == "pending_approval" and not res.explanation.startswith("Waiting"))
                for res in results]
        given_out = {(run, res.customer_id): res.selected_treatment for ((_, run), res, t) in zip(visits, results, took) if t}
        assert {(r["run_id"], r["customer_id"]): r["treatment_id"] for r in rows} == given_out


class TestReplayRecheck:
    """A replay re-checks today's consent and contact policy; what is no longer allowed is withdrawn and released."""

    def test_pending_decision_withdrawn_closes_its_request(self, make_runtime, data_copy: Path):
        first = make_runtime(run_id="r", data_dir=data_copy).orchestrator.decide("U128")
        assert first.status == "pending_approval" and first.channel == "email"
        withdraw_email_marketing(data_copy, "U128")
        runtime = make_runtime(run_id="r", data_dir=data_copy)
        replay = runtime.orchestrator.decide("U128")
        assert (replay.replayed, replay.status, replay.selected_treatment) == (True, "no_action", IGNORE_ID)
        assert (replay.alternatives[0].treatment_id, replay.alternatives[0].reason) == (first.selected_treatment, "consent_withdrawn")
        request = runtime.ledger.approval(first.approval_request_id)
        assert (request["status"], request["decided_by"]) == ("rejected", "system (consent or contact re-check)")
        assert runtime.ledger.used(first.selected_treatment, TODAY) == 0
        assert [a["state"] for a in runtime.ledger.allocations(customer_id="U128")] == ["released"]

    def test_contacts_beyond_a_newly_set_daily_cap_are_withdrawn_on_replay(self, make_runtime, tmp_path):
        uncapped = write_config(tmp_path, "no-daily-cap.yaml", no_daily_cap)
        runtime = make_runtime(run_id="run-a", config_path=uncapped)
        marketing = runtime.orchestrator.decide("U124")
        service = make_runtime(run_id="run-b", config_path=uncapped).orchestrator.decide("U124", proposed="service_sms")
        assert (marketing.status, service.status) == ("success", "success")
        # The operator turns the default daily cap (1) on: the later contact of the day must not happen.
        withdrawn = make_runtime(run_id="run-b").orchestrator.decide("U124")
        assert (withdrawn.status, withdrawn.alternatives[0].reason) == ("no_action", "contact_limit")
        assert "daily cap" in withdrawn.alternatives[0].detail
        kept = make_runtime(run_id="run-a").orchestrator.decide("U124")
        assert (kept.replayed, kept.status, kept.selected_treatment) == (True, "success", marketing.selected_treatment)
        assert sorted((a["run_id"], a["state"]) for a in runtime.ledger.allocations(customer_id="U124")) == [
            ("run-a", "allocated"), ("run-b", "released"),
        ]


class TestWaitingRequestConsent:
    """A request still waiting from an earlier run is re-checked against today's consent by every later run."""

    def test_a_later_run_withdraws_it_and_decides_afresh(self, make_runtime, data_copy: Path):
        first = make_runtime(run_id="first", data_dir=data_copy).orchestrator.decide("U128")
        assert (first.status, first.channel, first.purpose) == ("pending_approval", "email", "marketing")
        withdraw_email_marketing(data_copy, "U128")
        runtime = make_runtime(run_id="second", data_dir=data_copy)
        later = runtime.orchestrator.decide("U128")
        assert later.approval_request_id != first.approval_request_id
        assert later.channel != "email" or later.purpose != "marketing"
        refused = {a.treatment_id: a.reason for a in later.alternatives}
        assert refused[first.selected_treatment] == "no_consent"
        request = runtime.ledger.approval(first.approval_request_id)
        assert (request.status, request.decided_by) == ("rejected", WITHDRAWN_BY)
        assert request.reason is not None and request.reason.startswith("consent_withdrawn: ")
        # The earlier run's hold is released and its stored decision withdrawn, as its own replay would have done.
        held = [a for a in runtime.ledger.allocations(customer_id="U128") if a["run_id"] == "first"]
        assert [a["state"] for a in held] == ["released"]
        replay = make_runtime(run_id="first", data_dir=data_copy).orchestrator.decide("U128")
        assert (replay.status, replay.alternatives[0].reason) == ("no_action", "consent_withdrawn")

    def test_an_approver_can_no_longer_approve_it(self, make_runtime, data_copy: Path):
        first = make_runtime(run_id="first", data_dir=data_copy).orchestrator.decide("U128")
        withdraw_email_marketing(data_copy, "U128")
        runtime = make_runtime(run_id="second", data_dir=data_copy)
        runtime.orchestrator.decide("U128")
        with pytest.raises(ApprovalError, match="already rejected"):
            runtime.ledger.decide_approval(first.approval_request_id, "approved", "ana", None, runtime.clock.now())

    def test_a_dry_run_leaves_it_open(self, make_runtime, data_copy: Path):
        first = make_runtime(run_id="first", data_dir=data_copy).orchestrator.decide("U128")
        withdraw_email_marketing(data_copy, "U128")
        runtime = make_runtime(run_id="second", data_dir=data_copy, dry_run=True)
        later = runtime.orchestrator.decide("U128")
        assert not later.explanation.startswith("Waiting")
        assert runtime.ledger.approval(first.approval_request_id).status == "pending"

    def test_with_consent_unchanged_it_still_waits(self, make_runtime, data_copy: Path):
        first = make_runtime(run_id="first", data_dir=data_copy).orchestrator.decide("U128")
        later = make_runtime(run_id="second", data_dir=data_copy).orchestrator.decide("U128")
        assert (later.status, later.approval_request_id) == ("pending_approval", first.approval_request_id)
        assert later.explanation.startswith("Waiting")
