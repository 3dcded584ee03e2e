"""The Trigger agent: built-in and config conditions, keyword and semantic custom triggers, the LLM matcher
through the stub server, and the orchestrator's trigger -> decide messages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import yaml

from cvm.agents.messages import (
    BatchResult,
    DecisionResult,
    ErrorResponse,
    ListTriggers,
    TriggerAndProcessResult,
    TriggerCatalog,
    TriggerCustomers,
    TriggerResult,
)
from cvm.agents.trigger import BUILT_IN_TRIGGERS, SEMANTIC_SYSTEM_PROMPT
from cvm.utils.errors import ConfigError
from tests.conftest import CONFIG, SAMPLE, RecordingProgress
from tests.stub_openai import Raw, Status, StubOpenAI

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))
TABLES = {
    "billing_data", "usage_data", "network_data", "churn_score", "call_transcripts", "web_transcripts",
    "web_clicks", "customers", "permissions", "offer_recommendations",
}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NO_RETRY = {"x-should-retry": "false"}

SAMPLE_MATCHES = {
    "network_issues": {"U123", "U130"},
    "billing_disputes": {"U125", "U126", "U127", "U133"},
    "churn_risk": {"U123", "U125", "U127", "U133"},
    "high_value": {"U125", "U126", "U128"},
    "roaming_issues": {"U126"},
    "at_risk_with_poor_network": {"U123", "U130"},
}


# --- helpers -----------------------------------------------------------------------


def run_trigger(runtime: Any, **fields: Any) -> TriggerResult:
    response = runtime.orchestrator.process(TriggerCustomers(**fields))
    assert isinstance(response, TriggerResult), response
    return response


def ids(result: TriggerResult) -> set[str]:
    return {m.customer_id for m in result.matches}


def match_of(result: TriggerResult, customer_id: str):
    found = [m for m in result.matches if m.customer_id == customer_id]
    assert len(found) == 1, f"{customer_id} matched {len(found)} times: {result.matches}"
    return found[0]


def value_texts(match) -> list[str]:
    return [e.text for e in match.evidence if e.kind == "value"]


def write_tables(folder: Path, tables: Mapping[str, list[dict[str, Any]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        (folder / f"{table}.json").write_text(json.dumps(rows), encoding="utf-8")
    return folder


def write_config(folder: Path, edit: Callable[[dict[str, Any]], None], name: str = "cvm_config.yaml") -> Path:
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    edit(doc)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def add_triggers(**triggers: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("triggers", {}).update(triggers)

    return edit


def sample_rows(table: str) -> list[dict[str, Any]]:
    path = SAMPLE / f"{table}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return [json.loads(line) for line in (SAMPLE / f"{table}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


# --- a small hand-made data folder with both billing and usage shapes ---------------------

# Shape A: billing_date / monthly_bill / numeric additional_charges; usage date / total_data_gb.
# Shape B: date / monthly_charge / list of charges; usage month / data_usage_gb.
def _bill_a(cid: str, extras: list[float], base: float = 40.0, **more: Any) -> list[dict[str, Any]]:
    rows = [
        {"customer_id": cid, "billing_date": f"2026-{m:02d}-01", "monthly_bill": base, "additional_charges": x, "plan": "40GB 5G", "payment_status": "paid"}
        for m, x in zip((9, 10, 11), extras)
    ]
    rows[-1].update(more)
    return rows


def _bill_b(cid: str, charges: list[list[dict[str, Any]]], base: float = 30.0) -> list[dict[str, Any]]:
    return [
        {"customer_id": cid, "date": f"2026-{m:02d}-01", "monthly_charge": base, "additional_charges": c, "plan_name": "SIM Only", "payment_status": "paid"}
        for m, c in zip((9, 10, 11), charges)
    ]


def _usage_a(cid: str, gbs: list[float]) -> list[dict[str, Any]]:
    return [{"customer_id": cid, "date": f"2026-{m:02d}-01", "total_data_gb": g, "call_minutes": 100, "sms_count": 5} for m, g in zip((9, 10, 11), gbs)]


def _usage_b(cid: str, gbs: list[float]) -> list[dict[str, Any]]:
    return [{"customer_id": cid, "month": f"2026-{m:02d}", "data_usage_gb": g, "voice_minutes": 100, "roaming_data_gb": 0.0} for m, g in zip((9, 10, 11), gbs)]


def _network(cid: str, latencies: list[float], drops: list[int], signal: float) -> list[dict[str, Any]]:
    return [
        {"customer_id": cid, "date": f"2026-11-{d:02d}", "avg_latency_ms": lat, "dropped_calls": dr, "signal_strength_dbm": signal}
        for d, lat, dr in zip((5, 15), latencies, drops)
    ]


HANDMADE: dict[str, list[dict[str, Any]]] = {
    "billing_data": [
        *_bill_a("A_SHOCK", [0.0, 0.0, 35.5]),
        *_bill_b("B_SHOCK", [[], [], [{"description": "Premium-rate SMS 87070", "amount": 45.0, "date": "2026-10-09"}]]),
        *_bill_a("A_CALM", [0.0, 1.5, 0.0]),
        *_bill_b("B_CALM", [[], [{"description": "Calls to 0870 numbers", "amount": 2.0}], []]),
        *_bill_b("B_ROAM", [[], [], [{"description": "Roaming data - Italy", "amount": 6.0, "date": "2026-10-20"}]], base=25.0),
        *_bill_a("A_ROAM", [0.0, 0.0, 0.0], roaming_charges=9.5),
    ],
    "usage_data": [
        *_usage_a("A_SHOCK", [10.0, 14.0, 20.0]),
        *_usage_b("B_SHOCK", [10.0, 14.0, 20.0]),
        *_usage_a("A_CALM", [10.0, 10.0, 10.0]),
        *_usage_b("B_CALM", [10.0, 10.0, 10.0]),
    ],
    "network_data": [
        *_network("NET_POOR", [130.0, 140.0], [2, 2], -90.0),
        *_network("NET_FAIR_COV", [65.0, 62.0], [0, 0], -85.0),
        *_network("NET_FAIR", [65.0, 62.0], [0, 0], -85.0),
        *_network("NET_GOOD", [30.0, 32.0], [0, 0], -75.0),
    ],
    "churn_score": [
        {"customer_id": "CHURN_HIGH", "churn_score": 0.7, "score_date": "2026-11-20"},
        {"customer_id": "CHURN_MID_CANCEL", "churn_probability": 0.45, "score_date": "2026-11-20"},
        {"customer_id": "CHURN_MID", "churn_probability": 0.45, "score_date": "2026-11-20"},
        {"customer_id": "CHURN_LOW_CANCEL", "churn_score": 0.2, "score_date": "2026-11-20"},
    ],
    "web_clicks": [
        {"customer_id": "NET_FAIR_COV", "timestamp": "2026-11-16T20:00:00", "page": "/support/coverage-checker"},
        {"customer_id": "NET_GOOD", "timestamp": "2026-11-16T20:00:00", "page": "/support/coverage-checker"},
        {"customer_id": "CHURN_MID_CANCEL", "timestamp": "2026-11-18T20:00:00", "page": "/account/cancel"},
        {"customer_id": "CHURN_LOW_CANCEL", "timestamp": "2026-11-18T20:00:00", "page": "/account/cancel"},
    ],
    "call_transcripts": [
        {
            "customer_id": "TALK_ROAM", "date": "2026-11-10",
            "transcript": "Agent: Hello, how can I help? Customer: I'm going on holiday to Portugal next week. Will roaming cost extra? Agent: Let me check.",
        },
    ],
}

HANDMADE_MATCHES = {
    "billing_disputes": {"A_SHOCK", "B_SHOCK"},
    "roaming_issues": {"A_ROAM", "B_ROAM", "TALK_ROAM"},
    "network_issues": {"NET_POOR", "NET_FAIR_COV"},
    "churn_risk": {"CHURN_HIGH", "CHURN_MID_CANCEL"},
    "high_value": {"A_SHOCK", "B_SHOCK"},
}


@pytest.fixture
def handmade(tmp_path: Path) -> Path:
    return write_tables(tmp_path / "handmade", HANDMADE)


@pytest.fixture
def sample_runtime(make_runtime: Callable[..., Any]) -> Any:
    return make_runtime()


# --- built-in triggers on the sample --------------------------------------------------------


class TestBuiltInOnSample:
    """Each built-in (and the shipped config) trigger fires for exactly the sample customers it should."""

    @pytest.mark.parametrize("trigger", sorted(SAMPLE_MATCHES))
    def test_expected_customers_match(self, sample_runtime: Any, trigger: str) -> None:
        result = run_trigger(sample_runtime, trigger_type=trigger)
        assert ids(result) == SAMPLE_MATCHES[trigger]
        assert result.matcher == "condition"
        assert result.total_customers == len(SAMPLE_IDS)
        assert result.total_matches == len(result.matches)
        assert result.errors == ()

    @pytest.mark.parametrize("trigger", sorted(SAMPLE_MATCHES))
    def test_every_match_has_reason_and_dated_sourced_evidence(self, sample_runtime: Any, trigger: str) -> None:
        result = run_trigger(sample_runtime, trigger_type=trigger)
        assert result.matches
        for m in result.matches:
            assert m.reason.strip()
            assert m.score is None
            assert any(e.kind == "value" for e in m.evidence), m.evidence
            for e in m.evidence:
                assert e.source in TABLES, e
                assert e.date is not None and DATE.match(e.date), e
                assert e.text.strip()

    def test_reason_states_the_trigger_and_the_comparison(self, sample_runtime: Any) -> None:
        m = match_of(run_trigger(sample_runtime, trigger_type="high_value", customer_ids=("U128",)), "U128")
        assert m.reason.startswith(BUILT_IN_TRIGGERS["high_value"].description)
        assert "billing.monthly_revenue 99.99 >= 70" in m.reason

    def test_network_evidence_has_the_measured_values(self, sample_runtime: Any) -> None:
        result = run_trigger(sample_runtime, trigger_type="network_issues")
        rows = sample_rows("network_data")
        for cid in ("U123", "U130"):
            mine = [r for r in rows if r["customer_id"] == cid]
            latency = round(mean(r["avg_latency_ms"] for r in mine), 1)
            drops = sum(r["dropped_calls"] for r in mine)
            latest = max(r["date"] for r in mine)
            m = match_of(result, cid)
            values = {e.text: e for e in m.evidence if e.kind == "value"}
            assert f"network.avg_latency_ms = {latency:g}" in values, values
            assert f"network.dropped_calls = {drops}" in values, values
            assert values[f"network.avg_latency_ms = {latency:g}"].source == "network_data"
            assert values[f"network.avg_latency_ms = {latency:g}"].date == latest

    def test_network_evidence_quotes_the_customer(self, sample_runtime: Any) -> None:
        m = match_of(run_trigger(sample_runtime, trigger_type="network_issues", customer_ids=("U123",)), "U123")
        quotes = [e for e in m.evidence if e.kind == "quote"]
        assert quotes
        assert any(re.search(r"\bsignal\b|\bdropping\b", q.text, re.I) for q in quotes)
        assert {q.source for q in quotes} <= {"call_transcripts", "web_transcripts", "web_clicks"}

    def test_roaming_evidence_sums_the_roaming_charges(self, sample_runtime: Any) -> None:
        m = match_of(run_trigger(sample_runtime, trigger_type="roaming_issues", customer_ids=("U126",)), "U126")
        roaming = [
            c["amount"] for r in sample_rows("billing_data") if r["customer_id"] == "U126" and isinstance(r["additional_charges"], list)
            for c in r["additional_charges"] if "roaming" in c["description"].lower()
        ]
        assert f"billing.roaming_charges = {round(sum(roaming), 2):g}" in value_texts(m)

    def test_customers_that_should_not_match(self, sample_runtime: Any) -> None:
        never = {
            "network_issues": ("U124", "U128", "U132"),
            "billing_disputes": ("U123", "U128", "U131"),
            "churn_risk": ("U128", "U129", "U132"),
            "high_value": ("U123", "U127", "U133"),
            "roaming_issues": ("U123", "U124", "U125"),
        }
        for trigger, customers in never.items():
            assert ids(run_trigger(sample_runtime, trigger_type=trigger, customer_ids=customers)) == set(), trigger


class TestBuiltInOnHandMadeData:
    """Both billing shapes and both usage shapes fire the same triggers on hand-made data."""

    @pytest.mark.parametrize("trigger", sorted(HANDMADE_MATCHES))
    def test_expected_customers_match(self, make_runtime: Callable[..., Any], handmade: Path, trigger: str) -> None:
        result = run_trigger(make_runtime(data_dir=handmade), trigger_type=trigger)
        assert ids(result) == HANDMADE_MATCHES[trigger]
        assert result.errors == ()

    def test_bill_shock_in_both_shapes(self, make_runtime: Callable[..., Any], handmade: Path) -> None:
        result = run_trigger(make_runtime(data_dir=handmade), trigger_type="billing_disputes", customer_ids=("A_SHOCK", "B_SHOCK", "A_CALM", "B_CALM"))
        assert ids(result) == {"A_SHOCK", "B_SHOCK"}
        for cid, total, change in (("A_SHOCK", 75.5, 88.8), ("B_SHOCK", 75.0, 150.0)):
            m = match_of(result, cid)
            assert "billing.bill_shock = True" in value_texts(m)
            assert f"billing.monthly_revenue = {total:g}" in value_texts(m)
            assert f"billing.change_pct = {change:g}" in value_texts(m)
            assert all(e.source == "billing_data" and e.date == "2026-11-01" for e in m.evidence if e.kind == "value")

    def test_roaming_charge_in_both_shapes(self, make_runtime: Callable[..., Any], handmade: Path) -> None:
        result = run_trigger(make_runtime(data_dir=handmade), trigger_type="roaming_issues", customer_ids=("B_ROAM", "A_ROAM", "B_CALM", "A_CALM"))
        assert ids(result) == {"B_ROAM", "A_ROAM"}
        assert "billing.roaming_charges = 6" in value_texts(match_of(result, "B_ROAM"))
        assert "billing.roaming_charges = 9.5" in value_texts(match_of(result, "A_ROAM"))

    def test_a_non_roaming_charge_list_is_not_roaming(self, make_runtime: Callable[..., Any], handmade: Path) -> None:
        # B_SHOCK has a premium-rate charge in its list: it is bill shock, not roaming.
        assert ids(run_trigger(make_runtime(data_dir=handmade), trigger_type="roaming_issues", customer_ids=("B_SHOCK",))) == set()

    def test_fair_network_needs_a_coverage_interest(self, make_runtime: Callable[..., Any], handmade: Path) -> None:
        result = run_trigger(make_runtime(data_dir=handmade), trigger_type="network_issues", customer_ids=("NET_FAIR_COV", "NET_FAIR", "NET_GOOD"))
        assert ids(result) == {"NET_FAIR_COV"}
        m = match_of(result, "NET_FAIR_COV")
        assert "network.quality = fair" in value_texts(m)
        assert "network.avg_latency_ms = 63.5" in value_texts(m)

    def test_usage_shapes_in_a_config_trigger(self, make_runtime: Callable[..., Any], handmade: Path, tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(data_surge={
            "description": "Data use rising fast", "condition": "usage.trend == 'rising' and usage.latest_data_gb >= 15",
        }))
        result = run_trigger(make_runtime(data_dir=handmade, config_path=config), trigger_type="data_surge")
        assert ids(result) == {"A_SHOCK", "B_SHOCK"}
        for cid in ("A_SHOCK", "B_SHOCK"):
            m = match_of(result, cid)
            assert "usage.latest_data_gb = 20" in value_texts(m)
            assert "usage.change_pct = 100" in value_texts(m)
            assert all(e.source == "usage_data" and e.date == "2026-11-01" for e in m.evidence)

    def test_interest_from_words_only_is_attributed_to_the_words(self, make_runtime: Callable[..., Any], handmade: Path) -> None:
        # BUG (src/agents/trigger.py _FIELD_SOURCES / _source_date): an interest found only in a transcript is
        # reported as evidence from web_clicks with date None, although TALK_ROAM has no web_clicks at all.
        m = match_of(run_trigger(make_runtime(data_dir=handmade), trigger_type="roaming_issues", customer_ids=("TALK_ROAM",)), "TALK_ROAM")
        assert any(e.kind == "quote" and e.source == "call_transcripts" and "roaming" in e.text for e in m.evidence)
        for e in m.evidence:
            assert e.date is not None, e
            assert e.source != "web_clicks", e


# --- config triggers --------------------------------------------------------------------------


class TestConfigTriggers:
    """Triggers from the config's triggers section are validated at load and run like built-ins."""

    def test_catalog_lists_sources(self, sample_runtime: Any) -> None:
        catalog = sample_runtime.orchestrator.trigger.process(ListTriggers())
        assert isinstance(catalog, TriggerCatalog)
        by_name = {t.name: t for t in catalog.triggers}
        assert set(BUILT_IN_TRIGGERS) | {"custom", "at_risk_with_poor_network"} == set(by_name)
        assert by_name["at_risk_with_poor_network"].source == "config"
        assert all(by_name[n].source == "built-in" for n in BUILT_IN_TRIGGERS)
        assert by_name["network_issues"].condition == BUILT_IN_TRIGGERS["network_issues"].condition

    def test_config_trigger_replaces_a_built_in(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(high_value={"description": "Top spenders", "condition": "billing.monthly_revenue >= 99"}))
        runtime = make_runtime(config_path=config)
        assert ids(run_trigger(runtime, trigger_type="high_value")) == {"U128"}
        catalog = runtime.orchestrator.trigger.process(ListTriggers())
        assert [t.source for t in catalog.triggers if t.name == "high_value"] == ["config"]

    def test_syntax_error_names_trigger_and_column(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(broken={"description": "x", "condition": "churn_probability >= 0.5 and and tenure_months > 1"}))
        with pytest.raises(ConfigError, match=r"triggers\.broken\.condition.*column 30"):
            make_runtime(config_path=config)

    def test_unknown_field_names_trigger_and_field(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(typo={"description": "x", "condition": "churn_probabilty > 0.5"}))
        with pytest.raises(ConfigError, match=r"triggers\.typo\.condition.*unknown field 'churn_probabilty' at column 1"):
            make_runtime(config_path=config)

    def test_forbidden_construct_in_config(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(evil={"description": "x", "condition": "__import__('os').system('true') == 0"}))
        with pytest.raises(ConfigError, match=r"triggers\.evil\.condition.*Call is not allowed"):
            make_runtime(config_path=config)

    def test_custom_is_reserved(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(custom={"description": "x", "condition": "churn_probability > 0.5"}))
        with pytest.raises(ConfigError, match="custom"):
            make_runtime(config_path=config)

    def test_unknown_key_in_a_trigger(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, add_triggers(extra={"description": "x", "condition": "churn_probability > 0.5", "threshold": 3}))
        with pytest.raises(ConfigError, match="threshold"):
            make_runtime(config_path=config)


# --- custom triggers: keywords and the offline semantic matcher ----------------------------------


class TestCustomTriggers:
    """Custom keyword and description triggers search only the chosen tables of each customer's own words."""

    def test_keywords_in_web_clicks(self, sample_runtime: Any) -> None:
        result = run_trigger(sample_runtime, trigger_type="custom", keywords=("cancel",), data_types=("web_clicks",))
        assert result.matcher == "keyword"
        assert ids(result) == {"U125", "U127", "U133"}
        for m in result.matches:
            assert m.reason == "mentioned 'cancel'"
            assert m.evidence and all(e.source == "web_clicks" and e.kind == "quote" and DATE.match(e.date) for e in m.evidence)

    def test_keywords_respect_data_types(self, sample_runtime: Any) -> None:
        exact = run_trigger(sample_runtime, trigger_type="custom", keywords=("cancel",), keyword_match="exact", data_types=("call_transcripts",))
        assert ids(exact) == set()
        # Stemmed (the default), "cancel" also finds U133's "I cancelled Disney+" in a call.
        stemmed = run_trigger(sample_runtime, trigger_type="custom", keywords=("cancel",), data_types=("call_transcripts",))
        assert ids(stemmed) == {"U133"}
        assert any("cancelled" in e.text for e in match_of(stemmed, "U133").evidence)
        result = run_trigger(sample_runtime, trigger_type="custom", keywords=("PAC code",))
        assert ids(result) == {"U127"}
        assert all("PAC code" in e.text for e in match_of(result, "U127").evidence)

    def test_agent_words_are_not_the_customers(self, sample_runtime: Any) -> None:
        # "reduced capacity on a mast" is said by U123's agent, not by the customer.
        assert ids(run_trigger(sample_runtime, trigger_type="custom", keywords=("reduced capacity",))) == set()

    def test_description_uses_the_lexical_matcher_offline(self, sample_runtime: Any) -> None:
        result = run_trigger(sample_runtime, trigger_type="custom", description="customers with poor signal and dropped calls at home")
        assert result.matcher == "lexical-tfidf"
        assert "U123" in ids(result)
        assert not {"U124", "U126", "U129", "U134"} & ids(result)
        for m in result.matches:
            assert m.score is not None and 0.3 <= m.score <= 1
            assert m.evidence and all(e.kind == "quote" and e.source in TABLES and e.date for e in m.evidence)
            assert m.reason.startswith("mentions ")

    def test_min_score_raises_the_bar(self, sample_runtime: Any) -> None:
        loose = run_trigger(sample_runtime, trigger_type="custom", description="customers with poor signal and dropped calls at home")
        strict = run_trigger(sample_runtime, trigger_type="custom", description="customers with poor signal and dropped calls at home", min_score=0.6)
        assert ids(strict) < ids(loose)
        assert all(m.score >= 0.6 for m in strict.matches)

    @pytest.mark.parametrize(
        ("fields", "mention"),
        [
            ({"trigger_type": "nope"}, "unknown trigger type 'nope'"),
            ({"trigger_type": "custom"}, "--keywords"),
            ({"trigger_type": "custom", "keywords": ("a",), "description": "dropped calls"}, "not both"),
            ({"trigger_type": "custom", "description": "the of and"}, "content words"),
            ({"trigger_type": "custom", "keywords": ("signal",), "data_types": ("sms",)}, "unknown data type"),
        ],
    )
    def test_bad_requests_are_typed_errors(self, sample_runtime: Any, fields: dict[str, Any], mention: str) -> None:
        response = sample_runtime.orchestrator.process({"type": "trigger_customers", **fields})
        assert isinstance(response, ErrorResponse), response
        assert response.error_type == "usage_error"
        assert mention in response.message

    def test_unknown_customer_is_an_error_record_and_others_still_run(self, sample_runtime: Any) -> None:
        result = run_trigger(sample_runtime, trigger_type="churn_risk", customer_ids=("U999", "U127"))
        assert ids(result) == {"U127"}
        assert result.total_customers == 2
        assert [e["customer_id"] for e in result.errors] == ["U999"]
        assert result.errors[0]["error_type"] == "unknown_customer"

    def test_plain_dict_message(self, sample_runtime: Any) -> None:
        response = sample_runtime.orchestrator.process({"type": "trigger_customers", "trigger_type": "roaming_issues", "customer_ids": ["U126", "U128"]})
        assert isinstance(response, TriggerResult)
        assert ids(response) == {"U126"}


# --- the LLM semantic matcher through the stub -----------------------------------------------------

REAL_U125 = "That's a scam and you've just let it through"
REAL_U127 = "I want my PAC code"
INVENTED = "I will take you to court over this"
DESCRIPTION = "customers disputing charges they never agreed to"


def user_document(body: Mapping[str, Any]) -> dict[str, Any]:
    user = [m for m in body["messages"] if m["role"] == "user"]
    assert len(user) == 1
    head, _, rest = user[0]["content"].partition("\n")
    assert "untrusted" in head
    return json.loads(rest)


def per_customer(answers: Mapping[str, Any]) -> Callable[[dict[str, Any]], Any]:
    """A stub responder that answers by the customer id in the request's JSON document."""

    def respond(body: dict[str, Any]) -> Any:
        return answers[user_document(body)["customer_id"]]

    return respond


def said(matches: bool, *evidence: str, reason: str = "They dispute charges.") -> dict[str, Any]:
    return {"matches": matches, "reason": reason, "evidence": list(evidence)}


@pytest.fixture
def llm_runtime(make_runtime: Callable[..., Any], llm_stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("MODEL_ID", "stub-model")
    llm_stub.default = None
    return make_runtime(selector="llm")


class TestLLMSemanticMatcher:
    """The model decides, but only quotes that really occur in that customer's words count as evidence."""

    def test_real_quote_kept_invented_dropped(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        llm_stub.default = per_customer({"U125": said(True, REAL_U125, INVENTED)})
        result = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125",))
        assert result.matcher == "llm"
        m = match_of(result, "U125")
        assert [e.text for e in m.evidence] == [REAL_U125]
        assert m.evidence[0].source == "call_transcripts" and m.evidence[0].date == "2026-11-06"
        assert m.reason == "They dispute charges."
        assert llm_stub.request_count == 1

    def test_quote_matching_ignores_case_whitespace_and_quotes(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        llm_stub.default = per_customer({"U125": said(True, '"that\'s a SCAM and   you\'ve just\nlet it through"')})
        m = match_of(run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125",)), "U125")
        assert len(m.evidence) == 1

    @pytest.mark.parametrize(
        "answer",
        [said(True, INVENTED), said(True), said(True, "", "   "), said(True, REAL_U127), said(False, REAL_U125)],
        ids=["only-invented", "no-evidence", "blank-evidence", "another-customers-words", "matches-false"],
    )
    def test_not_a_match(self, llm_runtime: Any, llm_stub: StubOpenAI, answer: dict[str, Any]) -> None:
        llm_stub.default = per_customer({"U125": answer})
        result = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125",))
        assert result.matches == ()
        assert result.total_customers == 1
        assert result.matcher == "llm"
        assert llm_stub.request_count == 1

    def test_conversation_travels_only_in_the_json_user_document(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        llm_stub.default = per_customer({"U125": said(True, REAL_U125)})
        run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125",))
        body = llm_stub.last_request
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        system = body["messages"][0]["content"]
        assert system == SEMANTIC_SYSTEM_PROMPT
        assert "scam" not in system.lower() and "U125" not in system and DESCRIPTION not in system
        document = user_document(body)
        assert document["customer_id"] == "U125"
        assert document["description"] == DESCRIPTION
        quoted = " ".join(c["quoted_text"] for c in document["conversations"])
        assert REAL_U125 in quoted
        assert all(c["source"] in {"call_transcripts", "web_transcripts"} and DATE.match(c["date"]) for c in document["conversations"])
        assert body["response_format"]["json_schema"]["name"] == "trigger_match"
        assert body["model"] == "stub-model"

    def test_customers_without_text_are_not_asked(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        llm_stub.default = per_customer({"U125": said(True, REAL_U125)})
        # U124 has a web chat only; U126 likewise; with call transcripts only, they have nothing to send.
        result = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125", "U124", "U126"), data_types=("call_transcripts",))
        assert ids(result) == {"U125"}
        assert llm_stub.request_count == 1

    @pytest.mark.parametrize(
        "failure",
        [Status(500, NO_RETRY, "model crashed"), Raw('{"matches": true, "reason": "trunc'), Raw("Yes, they match."), {"matches": "yes", "reason": "r", "evidence": []}],
        ids=["http-500", "truncated-json", "prose", "matches-not-boolean"],
    )
    def test_failure_falls_back_to_lexical_for_that_customer(
        self, llm_runtime: Any, llm_stub: StubOpenAI, make_runtime: Callable[..., Any], failure: Any,
    ) -> None:
        description = "customers with poor signal and dropped calls at home"
        customers = ("U123", "U127")
        llm_stub.default = per_customer({"U123": failure, "U127": said(True, REAL_U127, reason="Wants to leave.")})
        result = run_trigger(llm_runtime, trigger_type="custom", description=description, customer_ids=customers)
        assert result.matcher == "llm (lexical-tfidf fallback for 1 customer(s))"
        offline = run_trigger(make_runtime(db_url=f"sqlite:///{Path.cwd() / 'offline.sqlite3'}"), trigger_type="custom", description=description, customer_ids=customers)
        assert offline.matcher == "lexical-tfidf"
        fallback = match_of(offline, "U123")
        assert match_of(result, "U123") == fallback
        assert fallback.score is not None
        assert match_of(result, "U127").reason == "Wants to leave."
        assert match_of(result, "U127").score is None

    def test_answers_are_cached(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        llm_stub.default = per_customer({"U125": said(True, REAL_U125), "U127": said(True, REAL_U127)})
        first = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125", "U127"))
        assert llm_stub.request_count == 2
        second = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125", "U127"))
        assert llm_stub.request_count == 2
        assert second.matches == first.matches
        run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION + " twice", customer_ids=("U125",))
        assert llm_stub.request_count == 3

    def test_failures_are_not_cached(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Status(500, NO_RETRY))
        llm_stub.default = per_customer({"U125": said(True, REAL_U125)})
        first = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125",))
        assert "fallback" in first.matcher
        second = run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U125",))
        assert second.matcher == "llm"
        assert [e.text for e in match_of(second, "U125").evidence] == [REAL_U125]
        assert llm_stub.request_count == 2

    def test_other_data_types_ask_again(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        # BUG (src/agents/trigger.py LLMSemanticMatcher.match): the cache key is model|description|journey digest
        # and leaves out which texts were sent, so asking about U127's web chats after its calls reuses the
        # answer given about the calls, without ever showing the model the web chats.
        llm_stub.default = per_customer({"U127": said(False)})
        run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U127",), data_types=("call_transcripts",))
        run_trigger(llm_runtime, trigger_type="custom", description=DESCRIPTION, customer_ids=("U127",), data_types=("web_transcripts",))
        sent = [[c["source"] for c in user_document(body)["conversations"]] for body in llm_stub.requests]
        assert sent == [["call_transcripts"], ["web_transcripts"]]

    def test_keyword_and_condition_triggers_never_call_the_model(self, llm_runtime: Any, llm_stub: StubOpenAI) -> None:
        run_trigger(llm_runtime, trigger_type="custom", keywords=("signal",))
        run_trigger(llm_runtime, trigger_type="network_issues")
        assert llm_stub.request_count == 0


# --- the orchestrator: trigger -> decide ---------------------------------------------------------


class TestOrchestratorMessages:
    """process_customer_with_treatment and trigger_and_process go through consent and capacity like any decision."""

    def test_with_treatment_consenting_customer(self, sample_runtime: Any) -> None:
        result = sample_runtime.orchestrator.process(
            {"type": "process_customer_with_treatment", "customer_id": "U125", "treatment_key": "retention_email"}
        )
        assert isinstance(result, DecisionResult), result
        assert (result.status, result.selected_treatment, result.channel, result.selector) == ("success", "retention_email", "email", "analyst")

    @pytest.mark.parametrize(("customer", "treatment"), [("U133", "retention_email"), ("U124", "retention_sms"), ("U133", "service_sms")])
    def test_with_treatment_never_overrides_consent(self, sample_runtime: Any, customer: str, treatment: str) -> None:
        result = sample_runtime.orchestrator.process({"type": "process_customer_with_treatment", "customer_id": customer, "treatment_key": treatment})
        assert isinstance(result, DecisionResult), result
        assert result.status == "no_action"
        assert result.selected_treatment == "ignore"
        assert [(a.treatment_id, a.reason) for a in result.alternatives] == [(treatment, "no_consent")]

    def test_with_unknown_treatment_is_an_error_response(self, sample_runtime: Any) -> None:
        response = sample_runtime.orchestrator.process({"type": "process_customer_with_treatment", "customer_id": "U125", "treatment_key": "free_iphone"})
        assert isinstance(response, ErrorResponse)
        assert "free_iphone" in response.message

    def test_trigger_and_process_with_treatment(self, sample_runtime: Any) -> None:
        response = sample_runtime.orchestrator.process(
            {"type": "trigger_and_process", "trigger": {"trigger_type": "churn_risk"}, "treatment_key": "retention_email", "run_id": "run-trig-1"}
        )
        assert isinstance(response, TriggerAndProcessResult), response
        assert ids(response.trigger) == SAMPLE_MATCHES["churn_risk"]
        assert isinstance(response.batch, BatchResult) and response.batch.run_id == "run-trig-1"
        results = {r.customer_id: r for r in response.batch.results}
        assert set(results) == SAMPLE_MATCHES["churn_risk"]
        assert results["U133"].status == "no_action" and results["U133"].selected_treatment == "ignore"
        assert ("retention_email", "no_consent") in [(a.treatment_id, a.reason) for a in results["U133"].alternatives]
        for cid in SAMPLE_MATCHES["churn_risk"] - {"U133"}:
            assert results[cid].selected_treatment == "retention_email", results[cid]
        assert {r.selected_treatment for r in response.batch.results} <= {"retention_email", "ignore"}

    def test_trigger_and_process_without_treatment_uses_the_selector(self, sample_runtime: Any) -> None:
        response = sample_runtime.orchestrator.process({"type": "trigger_and_process", "trigger": {"trigger_type": "roaming_issues"}})
        assert isinstance(response, TriggerAndProcessResult), response
        assert [r.customer_id for r in response.batch.results] == ["U126"]
        assert response.batch.results[0].selector == "rules"

    def test_trigger_and_process_respects_capacity(self, make_runtime: Callable[..., Any], tmp_path: Path) -> None:
        def one_email(doc: dict[str, Any]) -> None:
            doc["constraints"]["retention_email"]["max_per_day"] = 1

        runtime = make_runtime(config_path=write_config(tmp_path, one_email))
        response = runtime.orchestrator.process({"type": "trigger_and_process", "trigger": {"trigger_type": "churn_risk"}, "treatment_key": "retention_email"})
        assert isinstance(response, TriggerAndProcessResult), response
        given = [r.customer_id for r in response.batch.results if r.selected_treatment == "retention_email"]
        assert len(given) == 1
        for r in response.batch.results:
            if r.customer_id not in given and r.customer_id != "U133":
                assert r.status == "no_action"
                assert ("retention_email", "capacity_exhausted") in [(a.treatment_id, a.reason) for a in r.alternatives]

    def test_trigger_and_process_with_unknown_treatment(self, sample_runtime: Any) -> None:
        response = sample_runtime.orchestrator.process({"type": "trigger_and_process", "trigger": {"trigger_type": "churn_risk"}, "treatment_key": "nope"})
        assert isinstance(response, ErrorResponse)

    def test_trigger_and_process_with_bad_trigger(self, sample_runtime: Any) -> None:
        response = sample_runtime.orchestrator.process({"type": "trigger_and_process", "trigger": {"trigger_type": "nope"}})
        assert isinstance(response, ErrorResponse)
        assert "unknown trigger type" in response.message


# --- progress ---------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {"trigger_type": "network_issues"},
    {"trigger_type": "custom", "keywords": ("roaming",)},
    {"trigger_type": "custom", "description": "customers unhappy with roaming charges abroad"},
])
def test_a_trigger_reports_reading_and_matching_every_customer(tmp_path: Path, fields: dict[str, Any]) -> None:
    from cvm.runtime import RunOptions, build_runtime
    from cvm.utils.settings import RuntimeSettings

    progress = RecordingProgress()
    options = RunOptions(
        data_dir=SAMPLE, config_path=CONFIG, custom_treatments_path=tmp_path / "none.json",
        db_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}", selector="rules", as_of="2026-11-23T10:00:00+00:00",
    )
    runtime = build_runtime(options, RuntimeSettings(_env_file=None), progress=progress)
    result = run_trigger(runtime, **fields)
    assert result.total_customers == len(SAMPLE_IDS)
    assert progress.stages == [["reading customers", 12, 12], ["matching", 12, 12]]
