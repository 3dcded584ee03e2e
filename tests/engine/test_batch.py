"""The batch path: same decisions as the per-customer path when capacity does not bind, and a sound ledger."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from cvm.agents.base import expect
from cvm.agents.messages import CustomerListResponse, DecisionResult, ListCustomers
from cvm.decision.vector import round_half_even
from cvm.engine.batch import BatchRunner
from cvm.tools.columnar import ColumnarData
from cvm.tools.ledger import WITHDRAWN_BY
from tests.conftest import CONFIG, SAMPLE, RecordingProgress, withdraw_email_marketing


def config_with(tmp_path: Path, name: str, capacity: int | None = None, **sections: object) -> Path:
    """The shipped config with every capacity set to ``capacity`` (None keeps them) and sections replaced."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    if capacity is not None:
        for constraint in data["constraints"].values():
            constraint["max_per_day"] = capacity
    data.update(sections)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def batch_runner(runtime, data_dir: Path = SAMPLE, **kwargs) -> BatchRunner:
    return BatchRunner(
        config=runtime.config, data=ColumnarData(data_dir), ledger=runtime.ledger, clock=runtime.clock,
        zone=runtime.zone, run_id=runtime.run_id, **kwargs,
    )


def per_customer(runtime) -> dict:
    ids = expect(runtime.orchestrator.data.process(ListCustomers()), CustomerListResponse).customer_ids
    return {r.customer_id: r for r in runtime.orchestrator.decide_many(list(ids))}


def ledger_rows(db_url: str, query: str) -> list[tuple]:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        return conn.execute(query).fetchall()


class TestSameChoicesAsPerCustomer:
    """With capacity that does not bind, the batch optimiser makes exactly the per-customer decisions."""

    @pytest.mark.parametrize("as_of", ["2026-11-23T10:00:00+00:00", "2026-11-23T22:30:00+00:00"])
    def test_sample(self, make_runtime, tmp_path: Path, as_of: str) -> None:
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        one = per_customer(make_runtime(config_path=config, as_of=as_of, db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", run_id="r"))
        runtime = make_runtime(config_path=config, as_of=as_of, db_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", run_id="r")
        batch = {r.customer_id: r for r in batch_runner(runtime).run().records}
        assert batch.keys() == one.keys()
        for cid, expected in one.items():
            got = batch[cid]
            assert (got.status, got.selected_treatment, got.channel) == (expected.status, expected.selected_treatment, expected.channel), cid
            assert got.expected_value == pytest.approx(expected.expected_value), cid
            assert got.confidence == expected.confidence, cid
            assert got.scheduled_for == expected.scheduled_for, cid
            assert got.approval_rule == expected.approval_rule, cid
        assert any(r.scheduled_for for r in batch.values()) == (as_of.endswith("22:30:00+00:00"))

    def test_same_capacity_used(self, make_runtime, tmp_path: Path) -> None:
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}")
        per_customer(make_runtime(config_path=config, db_url=urls[0], run_id="r"))
        batch_runner(make_runtime(config_path=config, db_url=urls[1], run_id="r")).run()
        query = "SELECT treatment_id, used FROM capacity_usage ORDER BY 1"
        assert ledger_rows(urls[0], query) == ledger_rows(urls[1], query)
        states = "SELECT customer_id, treatment_id, state FROM allocations ORDER BY 1"
        assert ledger_rows(urls[0], states) == ledger_rows(urls[1], states)


class TestCapacityBinds:
    """When slots are scarce the optimiser never over-spends and is worth at least first-come-first-served."""

    def test_never_over_capacity_and_worth_at_least_fcfs(self, make_runtime, tmp_path: Path) -> None:
        config = config_with(tmp_path, "tight.yaml", capacity=1)
        fcfs = per_customer(make_runtime(config_path=config, db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", run_id="r"))
        url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
        outcome = batch_runner(make_runtime(config_path=config, db_url=url, run_id="r")).run()
        assert all(used <= 1 for _, used in ledger_rows(url, "SELECT treatment_id, used FROM capacity_usage"))
        given = {r.selected_treatment for r in outcome.records if r.status in ("success", "pending_approval")}
        per_treatment = ledger_rows(url, "SELECT treatment_id, COUNT(*) FROM allocations GROUP BY 1")
        assert all(n == 1 for _, n in per_treatment) and {t for t, _ in per_treatment} == given
        value = lambda results: sum(r.expected_value or 0 for r in results if r.status in ("success", "pending_approval"))  # noqa: E731
        assert value(outcome.records) >= value(fcfs.values()) - 1e-6
        assert outcome.optimiser["total_value"] <= outcome.optimiser["upper_bound"] + 1e-6
        refused = [r for r in outcome.records if any(a.reason == "capacity_exhausted" for a in r.alternatives)]
        assert refused, "with one slot per treatment someone must have lost a slot to a better use"


class TestLedger:
    """One transaction per run: capacity, allocations, holds, requests, decisions and an audit entry agree."""

    def test_rows_agree(self, make_runtime, db_url: str) -> None:
        outcome = batch_runner(make_runtime(run_id="batch-1")).run()
        pending = [r for r in outcome.records if r.status == "pending_approval"]
        assert {r.customer_id for r in pending} == {"U128", "U134"}
        used = dict(ledger_rows(db_url, "SELECT treatment_id, used FROM capacity_usage"))
        counted = dict(ledger_rows(db_url, "SELECT treatment_id, COUNT(*) FROM allocations GROUP BY 1"))
        assert used == counted
        held = ledger_rows(db_url, "SELECT customer_id FROM allocations WHERE state = 'held' ORDER BY 1")
        requests = ledger_rows(db_url, "SELECT customer_id, status, request_id FROM approval_requests ORDER BY 1")
        assert [c for (c,) in held] == [c for c, _, _ in requests] == ["U128", "U134"]
        assert {rid for _, _, rid in requests} == {r.approval_request_id for r in pending}
        decisions = ledger_rows(db_url, "SELECT customer_id, status, input_digest FROM decisions WHERE run_id = 'batch-1'")
        assert len(decisions) == 12 and all(re.fullmatch(r"[0-9a-f]{16}", d) for _, _, d in decisions)
        audit = ledger_rows(db_url, "SELECT payload_json FROM audit_log WHERE event = 'batch_committed'")
        assert len(audit) == 1 and json.loads(audit[0][0])["allocations"] == sum(counted.values())

    def test_rerun_same_run_id_takes_nothing_new(self, make_runtime, db_url: str) -> None:
        first = batch_runner(make_runtime(run_id="same")).run()
        before = ledger_rows(db_url, "SELECT treatment_id, used FROM capacity_usage ORDER BY 1")
        again = batch_runner(make_runtime(run_id="same")).run()
        assert ledger_rows(db_url, "SELECT treatment_id, used FROM capacity_usage ORDER BY 1") == before
        assert {r.customer_id: r.selected_treatment for r in again.records} == {r.customer_id: r.selected_treatment for r in first.records}
        assert all(r.replayed for r in again.records)

    def test_rerun_of_some_customers_returns_only_them(self, make_runtime, db_url: str) -> None:
        """A re-run naming two customers returned every customer the run had decided (and re-checked them all)."""
        first = {r.customer_id: r for r in batch_runner(make_runtime(run_id="same")).run().records}
        again = batch_runner(make_runtime(run_id="same")).run(["U128", "U124"]).records
        assert [r.customer_id for r in again] == ["U128", "U124"]
        assert all(r.replayed and r.selected_treatment == first[r.customer_id].selected_treatment for r in again)
        per_customer_path = make_runtime(run_id="same").orchestrator.decide_many(["U128", "U124"])
        assert [r.customer_id for r in per_customer_path] == ["U128", "U124"]

    def test_dry_run_writes_nothing(self, make_runtime, db_url: str) -> None:
        outcome = batch_runner(make_runtime(run_id="dry"), dry_run=True).run()
        assert any(r.status == "success" for r in outcome.records)
        assert ledger_rows(db_url, "SELECT COUNT(*) FROM allocations") == [(0,)]
        assert ledger_rows(db_url, "SELECT COUNT(*) FROM decisions") == [(0,)]

    def test_contacts_from_earlier_runs_count(self, make_runtime, db_url: str) -> None:
        earlier = per_customer(make_runtime(run_id="morning"))
        marketing = {cid for cid, r in earlier.items() if r.purpose == "marketing" and r.status == "success"}
        later = {r.customer_id: r for r in batch_runner(make_runtime(run_id="evening")).run().records}
        for cid in marketing:
            assert later[cid].purpose != "marketing", cid
            assert any(a.reason == "contact_limit" for a in later[cid].alternatives), cid

    def test_waiting_customers_get_no_second_request(self, make_runtime, db_url: str) -> None:
        batch_runner(make_runtime(run_id="one")).run()
        again = {r.customer_id: r for r in batch_runner(make_runtime(run_id="two")).run().records}
        assert again["U128"].status == "pending_approval"
        assert ledger_rows(db_url, "SELECT COUNT(*) FROM approval_requests") == [(2,)]

    def test_unknown_ids_are_error_records(self, make_runtime) -> None:
        outcome = batch_runner(make_runtime(run_id="ids")).run(["U124", "U999"])
        by_id = {r.customer_id: r for r in outcome.records}
        assert by_id["U124"].status in ("success", "no_action")
        assert by_id["U999"].status == "error" and "unknown customer" in by_id["U999"].error


class TestRounding:
    """The batch path rounds like Python's round, so pennies and confidences match the per-customer path."""

    def test_matches_python_round_near_halves(self) -> None:
        values = np.array([0.125, 0.135, 2.675, 1.005, -0.125, 45.865, 0.3065 * 100, 12.344999999])
        assert round_half_even(values, 2).tolist() == [round(v, 2) for v in values.tolist()]


class TestDailyCapParity:
    """After a first run contacted customers, a second run decides alike on both paths under the daily cap."""

    @pytest.mark.parametrize("as_of", ["2026-11-23T10:00:00+00:00", "2026-11-23T22:30:00+00:00"])
    def test_second_run_of_the_day(self, make_runtime, tmp_path: Path, as_of: str) -> None:
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}")
        for url in urls:
            per_customer(make_runtime(config_path=config, as_of=as_of, db_url=url, run_id="first"))
        one = per_customer(make_runtime(config_path=config, as_of=as_of, db_url=urls[0], run_id="second"))
        runtime = make_runtime(config_path=config, as_of=as_of, db_url=urls[1], run_id="second")
        batch = {r.customer_id: r for r in batch_runner(runtime).run().records}
        assert {cid: (r.status, r.selected_treatment) for cid, r in batch.items()} == {
            cid: (r.status, r.selected_treatment) for cid, r in one.items()
        }
        capped = {cid for cid, r in batch.items() if any("daily cap" in a.detail for a in r.alternatives)}
        assert capped, "the daily cap refused nothing in the second run"
        query = "SELECT customer_id, COUNT(*) FROM allocations WHERE state != 'released' GROUP BY 1 ORDER BY 1"
        assert ledger_rows(urls[0], query) == ledger_rows(urls[1], query)
        # At 22:30 an SMS is moved to tomorrow morning, so an email tonight is a contact on another day.
        assert all(count == 1 for _, count in ledger_rows(urls[1], query)) == (as_of.endswith("10:00:00+00:00"))


PROTOTYPE = Path(__file__).resolve().parents[1] / "fixtures" / "prototype"
COMPARED = ("status", "selected_treatment", "expected_value", "confidence", "reasons", "alternatives", "data_quality", "scheduled_for")


def both_paths(make_runtime, tmp_path: Path, data_dir: Path, config: Path) -> tuple[dict, dict]:
    """Dry runs of both paths on one data folder (capacity cannot bind): per-customer and batch results by customer."""
    options = dict(config_path=config, data_dir=data_dir, dry_run=True)
    one = per_customer(make_runtime(db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", run_id="r", **options))
    runtime = make_runtime(db_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", run_id="r", **options)
    batch = {r.customer_id: r for r in batch_runner(runtime, data_dir, dry_run=True).run().records}
    return one, batch


def assert_same(one: dict, batch: dict) -> None:
    """Every field of every record alike (``COMPARED`` first, for a readable failure); request ids by presence."""
    assert batch.keys() == one.keys()
    for cid, expected in one.items():
        got = batch[cid]
        for name in COMPARED:
            assert getattr(got, name) == getattr(expected, name), (cid, name)
        assert same_fields(got) == same_fields(expected), cid


def same_fields(result) -> dict:
    fields = result.model_dump(mode="json")
    fields["approval_request_id"] = fields["approval_request_id"] is not None
    return fields


def non_finite_copy(tmp_path: Path) -> Path:
    """The prototype's data with Infinity, NaN and -1e9 in every kind of money field of the bills."""
    data = tmp_path / "data"
    data.mkdir()
    for table in (PROTOTYPE / "data").iterdir():
        (data / table.name).write_bytes(table.read_bytes())
    bills = json.loads((data / "billing_data.json").read_text(encoding="utf-8"))
    bills[0]["monthly_bill"] = float("inf")  # the bill is skipped
    bills[1]["roaming_charges"] = float("nan")  # an optional amount: dropped with a note
    bills[3]["additional_charges"] = [{"type": "roaming", "amount": float("nan")}, {"type": "roaming", "amount": 5.0}]
    bills[4]["additional_charges"] = -1e9
    bills[6]["roaming_charges"] = -1e9
    bills[7]["discounts"] = [{"amount": float("-inf")}]
    bills[8]["monthly_charge"] = float("nan")
    (data / "billing_data.json").write_text(json.dumps(bills), encoding="utf-8")  # Infinity and NaN as JSON literals
    return data


class TestPrototypeShapes:
    """The reference prototype's data shapes give the same decisions, worded the same, on both paths."""

    def test_every_customer_identical(self, make_runtime, tmp_path: Path) -> None:
        one, batch = both_paths(make_runtime, tmp_path, PROTOTYPE / "data", PROTOTYPE / "cvm_config.yaml")
        assert_same(one, batch)
        # The shapes the batch path once missed: tenure from customer_lifetime_months (P104 is loyal) ...
        assert batch["P104"].selected_treatment == "loyalty_app"
        assert any("customer for 3.3 years" in r for r in batch["P104"].reasons)
        # ... and the customer's own offer history (P105 declined two discounts; P106 took a data add-on).
        assert any(r.startswith("offer history: 1 accepted and 0 declined") for r in batch["P106"].reasons)
        assert any(r.startswith("offer history: 0 accepted and 2 declined") for r in batch["P105"].reasons)

    def test_sample_identical_in_dry_runs(self, make_runtime, tmp_path: Path) -> None:
        one, batch = both_paths(make_runtime, tmp_path, SAMPLE, config_with(tmp_path, "big.yaml", capacity=100_000))
        assert_same(one, batch)

    def test_features_of_prototype_shapes(self, make_runtime) -> None:
        """Each shape read into the columns as the per-customer journey reads it."""
        from datetime import date

        config = make_runtime(config_path=PROTOTYPE / "cvm_config.yaml", data_dir=PROTOTYPE / "data").config
        features = ColumnarData(PROTOTYPE / "data").features(date(2026, 11, 23), config.scoring, list(config.treatments))
        at = {cid: k for k, cid in enumerate(features.customer_ids)}
        c = features.columns
        assert c["tenure_months"][at["P104"]] == 40  # customer_lifetime_months, no join date
        assert c["satisfaction_score"][at["P101"]] == 3.5
        assert c["sentiment_score"][at["P105"]] == 0.6  # the feed's "positive" label, not the lexicon
        assert c["roaming_charges"][at["P102"]] == 42.5  # a typed charge of type roaming
        assert c["overage_charges"][at["P103"]] == 18.0  # a typed data_overage charge
        assert c["overdue_payment"][at["P103"]]  # payment_issues: a non-empty list
        assert c["roaming"][at["P102"]]
        assert features.interests["data"][at["P106"]]  # /plans/data-add-ons
        assert features.interests["coverage"][at["P101"]]  # the summary: the customer's words
        assert (features.preferred[at["P101"]] == (17 * 60, 21 * 60)).all()  # "evening"
        assert (features.preferred[at["P104"]] == -1).all()  # "any": no preferred window
        assert sorted(features.history.past) == [at["P105"], at["P106"]]


class TestMoneyThatIsNoAmount:
    """Infinity, NaN and negative money in bills never stops a batch, and is read as on the per-customer path."""

    def test_same_as_per_customer_with_notes(self, make_runtime, tmp_path: Path) -> None:
        data = non_finite_copy(tmp_path)
        one, batch = both_paths(make_runtime, tmp_path, data, PROTOTYPE / "cvm_config.yaml")
        assert_same(one, batch)
        notes = {cid: r.data_quality for cid, r in batch.items()}
        assert all(notes.values()), notes
        assert any("roaming_charges is not a finite amount" in n for n in notes["P101"])
        assert any("row skipped: monthly_charge" in n for n in notes["P106"])
        for r in batch.values():
            values = [r.expected_value, r.confidence, *(a.expected_value for a in r.alternatives)]
            assert all(v is None or np.isfinite(v) for v in values), r.customer_id


class TestPermissionRows:
    """Several permission rows for one customer: the most restrictive answer, as ``records.merge_permissions``."""

    def test_duplicate_rows_and_word_times(self, make_runtime, tmp_path: Path) -> None:
        data = tmp_path / "data"
        data.mkdir()
        for table in (PROTOTYPE / "data").iterdir():
            (data / table.name).write_bytes(table.read_bytes())
        rows = json.loads((data / "permissions.json").read_text(encoding="utf-8"))
        later = json.loads(json.dumps(rows[3]))  # P104 again: says N to push marketing, a bad quiet window, a word time
        later["permissions"]["push_notifications"]["marketing"] = "N"
        later["do_not_disturb"] = "late"
        later["preferred_contact_time"] = "Business hours"
        again = json.loads(json.dumps(rows[4]))  # P105 again with an all-Y row: the earlier N (call marketing) stays
        again["permissions"]["call"]["marketing"] = "Y"
        (data / "permissions.json").write_text(json.dumps([*rows, later, again]), encoding="utf-8")
        one, batch = both_paths(make_runtime, tmp_path, data, PROTOTYPE / "cvm_config.yaml")
        assert_same(one, batch)
        assert batch["P104"].selected_treatment != "loyalty_app"
        assert any("most restrictive" in n for n in batch["P104"].data_quality)

    def test_click_paths_and_required_fields(self, make_runtime, tmp_path: Path) -> None:
        """Pages on a click path (a list or text) show interests; a customer lacking a required field gets its note."""
        data = tmp_path / "data"
        data.mkdir()
        for table in (PROTOTYPE / "data").iterdir():
            (data / table.name).write_bytes(table.read_bytes())
        clicks = json.loads((data / "web_clicks.json").read_text(encoding="utf-8"))
        clicks.append({"customer_id": "P104", "timestamp": "2026-10-28T09:00:00", "page": "/home", "click_path": ["/home", "/plans/compare"]})
        clicks.append({"customer_id": "P107", "timestamp": "2026-10-28T09:00:00", "page": "/home", "click_path": "home > family > add-line"})
        (data / "web_clicks.json").write_text(json.dumps(clicks), encoding="utf-8")
        one, batch = both_paths(make_runtime, tmp_path, data, PROTOTYPE / "cvm_config.yaml")
        assert_same(one, batch)
        assert any("required journey field churn_probability" in n for n in batch["P107"].data_quality)
        from datetime import date

        config = make_runtime(config_path=PROTOTYPE / "cvm_config.yaml", data_dir=data).config
        features = ColumnarData(data).features(date(2026, 11, 23), config.scoring, list(config.treatments))
        at = {cid: k for k, cid in enumerate(features.customer_ids)}
        assert features.interests["cheaper_plan"][at["P104"]] and features.interests["family_plan"][at["P107"]]


class TestDriftsFoundByTheProperty:
    """Minimal examples of differences ``test_parity_property`` found between the paths, now fixed."""

    def test_risk_factors_as_a_required_field(self, make_runtime, tmp_path: Path) -> None:
        """The batch path never counted missing risk factors, so its own confidence (what large runs store) differed."""
        from cvm.synth import generate

        data = tmp_path / "world"
        generate(data, 40, fmt="parquet", seed=0)
        base = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        config = config_with(tmp_path, "risk.yaml", capacity=100_000,
                             validation={**base.get("validation", {}), "required_journey_fields": ["risk_factors"]})
        options = dict(config_path=config, data_dir=data, dry_run=True)
        one = per_customer(make_runtime(db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", run_id="r", **options))
        runtime = make_runtime(db_url=f"sqlite:///{tmp_path / 'b.sqlite3'}", run_id="r", **options)
        outcome = batch_runner(runtime, data, dry_run=True).run(records_max=0)  # columns only, as a large run
        assert sum("risk_factors" in str(r.data_quality) for r in one.values()) == 16
        assert dict(zip(outcome.customer_ids, outcome.confidence.tolist(), strict=True)) == {c: r.confidence for c, r in one.items()}

    def test_records_beyond_json_results_max_keep_the_contact_rules_words(self, make_runtime, tmp_path: Path) -> None:
        """A flow's batch (records up to max_customers_per_batch) above json_results_max got the generic wording."""
        config = config_with(tmp_path, "small.yaml", capacity=100_000, batch={"json_results_max": 2})
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}")
        per_customer(make_runtime(config_path=config, db_url=urls[0], run_id="first"))  # contacts that fill the caps
        with sqlite3.connect(urls[0].removeprefix("sqlite:///")) as a, sqlite3.connect(urls[1].removeprefix("sqlite:///")) as b:
            a.backup(b)
        one = per_customer(make_runtime(config_path=config, db_url=urls[0], run_id="second", dry_run=True))
        runtime = make_runtime(config_path=config, db_url=urls[1], run_id="second", dry_run=True)
        batch = {r.customer_id: r for r in batch_runner(runtime, dry_run=True).run(records_max=100).records}
        refused = [(cid, a.reason, a.detail) for cid, r in one.items() for a in r.alternatives if a.reason == "contact_limit"]
        assert refused, "the first run's contacts refuse something"
        assert [(cid, a.reason, a.detail) for cid, r in batch.items() for a in r.alternatives if a.reason == "contact_limit"] == refused

    def test_empty_json_table(self, make_runtime, tmp_path: Path) -> None:
        """An empty table written as a JSON array (``[]``) has no customer_id column: the batch path failed in DuckDB."""
        from cvm.synth import generate

        data = tmp_path / "world"
        generate(data, 5, fmt="json", seed=0)
        assert json.loads((data / "web_transcripts.json").read_text(encoding="utf-8")) == []
        one, batch = both_paths(make_runtime, tmp_path, data, config_with(tmp_path, "big.yaml", capacity=100_000))
        assert_same(one, batch)

    def test_worded_alike_and_no_request_in_a_dry_run(self, make_runtime, tmp_path: Path) -> None:
        """Explanations and insights were the batch optimiser's own words, and a dry run named approval requests it never opened."""
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        one, batch = both_paths(make_runtime, tmp_path, SAMPLE, config)
        assert batch["U128"].status == "pending_approval" and batch["U128"].approval_request_id is None
        for cid, expected in one.items():
            assert (batch[cid].explanation, batch[cid].insights) == (expected.explanation, expected.insights), cid

    def test_waiting_customer_alike(self, make_runtime, tmp_path: Path) -> None:
        """A customer whose earlier request still waits: the batch record listed every treatment and rescored confidence."""
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}")
        per_customer(make_runtime(config_path=config, db_url=urls[0], run_id="first"))
        with sqlite3.connect(urls[0].removeprefix("sqlite:///")) as a, sqlite3.connect(urls[1].removeprefix("sqlite:///")) as b:
            a.backup(b)  # the same earlier requests (and ids) in both ledgers
        one = per_customer(make_runtime(config_path=config, db_url=urls[0], run_id="second", dry_run=True))
        runtime = make_runtime(config_path=config, db_url=urls[1], run_id="second", dry_run=True)
        batch = {r.customer_id: r for r in batch_runner(runtime, dry_run=True).run().records}
        assert one["U128"].status == "pending_approval" and one["U128"].alternatives == ()
        assert same_fields(batch["U128"]) == same_fields(one["U128"])


class TestStoredDecisions:
    """The ledger's stored decision has the per-customer shape on the batch path, small run or large."""

    def test_same_stored_decision_as_per_customer(self, make_runtime, tmp_path: Path) -> None:
        """Every path stores what validates back into the same record (defaults left out; large runs keep no wording)."""
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}", f"sqlite:///{tmp_path / 'c.sqlite3'}")
        per_customer(make_runtime(config_path=config, db_url=urls[0], run_id="r"))
        batch_runner(make_runtime(config_path=config, db_url=urls[1], run_id="r")).run()
        batch_runner(make_runtime(config_path=config, db_url=urls[2], run_id="r")).run(records_max=0)  # large-run template
        query = "SELECT customer_id, result_json FROM decisions ORDER BY 1"
        one, small, large = (
            {c: DecisionResult.model_validate(json.loads(j)) for c, j in ledger_rows(url, query)} for url in urls
        )
        assert one.keys() == small.keys() == large.keys()
        for cid, stored in one.items():
            rid = stored.approval_request_id is not None
            assert small[cid].model_copy(update={"approval_request_id": rid}) == stored.model_copy(update={"approval_request_id": rid}), cid
            for name in ("status", "selected_treatment", "display_name", "channel", "purpose", "expected_value", "confidence",
                         "scheduled_for", "approval_rule", "approved_by", "requires_approval", "type", "dry_run"):
                assert getattr(large[cid], name) == getattr(stored, name), (cid, name)

    def test_defaults_are_left_out_of_the_stored_row(self, make_runtime, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'd.sqlite3'}"
        batch_runner(make_runtime(db_url=url, run_id="r")).run(records_max=0)
        query = "SELECT customer_id, result_json FROM decisions WHERE status = 'no_action'"
        rows = [json.loads(j) for _, j in ledger_rows(url, query)]
        assert rows and all("alternatives" not in r and "error" not in r and r["status"] == "no_action" for r in rows)

class TestProgress:
    """A batch run reports its stages in order, each advanced to its total, so a million customers are not silent."""

    def test_large_run_stages(self, make_runtime) -> None:
        progress = RecordingProgress()
        runtime = make_runtime(run_id="r")
        data = ColumnarData(SAMPLE, progress=progress)
        BatchRunner(config=runtime.config, data=data, ledger=runtime.ledger, clock=runtime.clock, zone=runtime.zone,
                    run_id=runtime.run_id, progress=progress).run(records_max=0)
        customers = len(data.customer_ids())
        assert [s[0] for s in progress.stages] == ["loading tables", "features", "scoring", "optimising", "committing"]
        assert all(done == total for _, total, done in progress.stages), progress.stages
        assert progress.stages[-1][1] == customers

    def test_small_run_words_each_record(self, make_runtime) -> None:
        progress = RecordingProgress()
        outcome = batch_runner(make_runtime(run_id="r"), dry_run=True, progress=progress).run()
        assert [s[0] for s in progress.stages] == ["features", "scoring", "optimising", "wording records"]
        assert progress.stages[-1][1:] == [len(outcome.customer_ids)] * 2

    def test_decider_passes_it_on(self, make_runtime) -> None:
        progress = RecordingProgress()
        runtime = make_runtime(run_id="r")
        decided = runtime.orchestrator.decider(notify=lambda _: None, progress=progress).decide(None, batch=True)
        assert decided.path == "batch"
        assert [s[0] for s in progress.stages] == ["loading tables", "features", "scoring", "optimising", "wording records", "committing"]


class TestWaitingRequestConsent:
    """A request still waiting from an earlier run, whose customer has withdrawn consent since: both paths withdraw it."""

    def test_withdrawn_and_decided_afresh_alike(self, make_runtime, tmp_path: Path, data_copy: Path) -> None:
        config = config_with(tmp_path, "big.yaml", capacity=100_000)
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}")
        first = make_runtime(config_path=config, data_dir=data_copy, db_url=urls[0], run_id="first").orchestrator.decide("U128")
        assert (first.status, first.channel, first.purpose) == ("pending_approval", "email", "marketing")
        with sqlite3.connect(urls[0].removeprefix("sqlite:///")) as a, sqlite3.connect(urls[1].removeprefix("sqlite:///")) as b:
            a.backup(b)  # the same earlier request in both ledgers
        withdraw_email_marketing(data_copy, "U128")
        one = make_runtime(config_path=config, data_dir=data_copy, db_url=urls[0], run_id="second").orchestrator.decide("U128")
        runtime = make_runtime(config_path=config, data_dir=data_copy, db_url=urls[1], run_id="second")
        batch = {r.customer_id: r for r in batch_runner(runtime, data_copy).run(["U128"]).records}["U128"]
        assert not batch.explanation.startswith("Waiting")
        assert same_fields(batch) == same_fields(one)
        request = runtime.ledger.approval(first.approval_request_id)
        assert (request.status, request.decided_by) == ("rejected", WITHDRAWN_BY)
        assert ledger_rows(urls[1], "SELECT state FROM allocations WHERE run_id = 'first'") == [("released",)]
        assert ledger_rows(urls[1], "SELECT status FROM decisions WHERE run_id = 'first'") == [("no_action",)]

    def test_a_treatment_removed_since_is_withdrawn_alike_and_the_run_goes_on(self, make_runtime, tmp_path: Path) -> None:
        """The batch path crashed on a waiting request whose treatment left the configuration (a removed custom treatment)."""
        urls = (f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}")
        first = make_runtime(db_url=urls[0], run_id="first").orchestrator.decide("U128")
        assert (first.status, first.selected_treatment) == ("pending_approval", "early_upgrade")
        with sqlite3.connect(urls[0].removeprefix("sqlite:///")) as a, sqlite3.connect(urls[1].removeprefix("sqlite:///")) as b:
            a.backup(b)
        shipped = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        del shipped["treatments"]["early_upgrade"]
        shipped["constraints"].pop("early_upgrade", None)
        config = config_with(tmp_path, "without-early-upgrade.yaml", capacity=100_000, treatments=shipped["treatments"],
                             constraints={k: {**v, "max_per_day": 100_000} for k, v in shipped["constraints"].items()})
        one = make_runtime(config_path=config, db_url=urls[0], run_id="second").orchestrator.decide("U128")
        runtime = make_runtime(config_path=config, db_url=urls[1], run_id="second")
        batch = {r.customer_id: r for r in batch_runner(runtime).run().records}
        assert same_fields(batch["U128"]) == same_fields(one) and one.status != "error"
        for url in urls:
            (row,) = ledger_rows(url, f"SELECT status, reason FROM approval_requests WHERE request_id = '{first.approval_request_id}'")
            assert row == ("rejected", "disabled: treatment early_upgrade is no longer in the configuration")

    def test_a_dry_run_leaves_it_open(self, make_runtime, tmp_path: Path, data_copy: Path) -> None:
        first = make_runtime(data_dir=data_copy, run_id="first").orchestrator.decide("U128")
        withdraw_email_marketing(data_copy, "U128")
        runtime = make_runtime(data_dir=data_copy, run_id="second", dry_run=True)
        batch = {r.customer_id: r for r in batch_runner(runtime, data_copy, dry_run=True).run(["U128"]).records}["U128"]
        assert not batch.explanation.startswith("Waiting")
        assert runtime.ledger.approval(first.approval_request_id).status == "pending"
