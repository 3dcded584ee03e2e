"""The report's numbers against the ledger they are read from: every number must match the tables.

The sample's 12 customers are decided on a real SQLite ledger with a fixed run id
(rules selector, fixed clock); the report is generated through the Report agent
and its JSON and Markdown are checked against SQL run directly on the ledger file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cvm.agents.messages import DecideApproval, GenerateReport
from cvm.reporting.build import RISK_BANDS
from tests.reporting.conftest import PNG, RUN, SAMPLE_IDS, generate, sql, thresholds, write_config


@pytest.mark.usefixtures("no_charts")
class TestNumbersMatchTheLedger:
    def test_decisions_by_status_and_treatment(self, portfolio, db_url):
        artifact, doc, _ = portfolio
        by_status = dict(sql(db_url, "SELECT status, COUNT(*) FROM decisions WHERE run_id = ? GROUP BY status", RUN))
        by_treatment = dict(sql(db_url, "SELECT treatment_id, COUNT(*) FROM decisions WHERE run_id = ? GROUP BY treatment_id", RUN))
        assert sum(by_status.values()) == len(SAMPLE_IDS)
        assert doc["totals"]["by_status"] == by_status
        assert doc["totals"]["by_status_now"] == by_status  # nothing decided since
        assert artifact.by_status == by_status
        assert {row["treatment_id"]: row["decisions"] for row in doc["by_treatment"]} == by_treatment
        per_status = Counter(
            (t, s) for t, s in sql(db_url, "SELECT treatment_id, status FROM decisions WHERE run_id = ?", RUN)
        )
        for row in doc["by_treatment"]:
            for status in ("success", "pending_approval", "no_action"):
                assert row[status] == per_status[(row["treatment_id"], status)], (row, status)
        assert doc["totals"]["customers"] == doc["totals"]["decisions_recorded"] == len(SAMPLE_IDS)

    def test_channels_match_the_recorded_results(self, portfolio, db_url):
        _, doc, _ = portfolio
        results = [json.loads(r[0]) for r in sql(db_url, "SELECT result_json FROM decisions WHERE run_id = ?", RUN)]
        assert {row["channel"]: row["decisions"] for row in doc["by_channel"]} == dict(Counter(r["channel"] for r in results))

    def test_expected_value_and_cost(self, portfolio, db_url, processed):
        artifact, doc, markdown = portfolio
        results = [json.loads(r[0]) for r in sql(db_url, "SELECT result_json FROM decisions WHERE run_id = ?", RUN)]
        given = [r for r in results if r["status"] in ("success", "pending_approval")]
        treatments = processed.config.treatments
        expected_value = round(sum(r["expected_value"] for r in given), 2)
        cost = round(sum(treatments[r["selected_treatment"]].cost_per_contact for r in given), 2)
        assert doc["totals"]["given"] == len(given)
        assert doc["totals"]["expected_value_total"] == pytest.approx(expected_value, abs=0.005)
        assert doc["totals"]["contact_cost_total"] == pytest.approx(cost, abs=0.005)
        assert artifact.expected_value_total == doc["totals"]["expected_value_total"]
        per_treatment: Counter[str] = Counter()
        for r in given:
            per_treatment[r["selected_treatment"]] += r["expected_value"]
        for row in doc["by_treatment"]:
            assert row["expected_value"] == pytest.approx(per_treatment[row["treatment_id"]], abs=0.01)
        assert sum(row["contact_cost"] for row in doc["by_channel"]) == pytest.approx(cost, abs=0.01)
        assert f"£{expected_value:,.2f}" in markdown

    def test_capacity_used_against_available(self, portfolio, db_url, processed):
        _, doc, _ = portfolio
        days = {d for (d,) in sql(db_url, "SELECT DISTINCT day FROM allocations WHERE run_id = ?", RUN)}
        assert set(doc["days"]) == days and len(days) == 1
        usage = {(t, d): u for t, d, u in sql(db_url, "SELECT treatment_id, day, used FROM capacity_usage")}
        states = Counter(
            (t, d, s) for t, d, s in sql(db_url, "SELECT treatment_id, day, state FROM allocations WHERE run_id = ?", RUN)
        )
        lines = {(c["treatment_id"], c["day"]): c for c in doc["capacity"]}
        assert {t for t, _ in usage} <= {t for t, _ in lines}, "every used treatment is reported"
        enabled = {tid for tid, t in processed.config.treatments.items() if t.enabled}
        assert {t for t, _ in lines} == enabled
        for (tid, day), line in lines.items():
            max_per_day = processed.config.treatments[tid].max_per_day
            assert line["used"] == usage.get((tid, day), 0), tid
            assert line["max_per_day"] == max_per_day
            assert line["remaining"] == max_per_day - line["used"]
            assert line["used_by_run"] == states[(tid, day, "allocated")]
            assert line["held_by_run"] == states[(tid, day, "held")]

    def test_approvals_pending_for_the_run(self, portfolio, db_url):
        artifact, doc, markdown = portfolio
        pending = sql(db_url, "SELECT request_id, customer_id FROM approval_requests WHERE run_id = ? AND status = 'pending'", RUN)
        assert pending, "the sample has decisions waiting for approval"
        assert {(a["request_id"], a["customer_id"]) for a in doc["approvals_pending"]} == set(pending)
        assert doc["totals"]["pending_approvals"] == artifact.pending_approvals == len(pending)
        assert doc["approvals_decided"] == []
        for request_id, _ in pending:
            assert request_id in markdown

    def test_data_quality_from_the_decision_records(self, portfolio, db_url):
        _, doc, markdown = portfolio
        results = [json.loads(r[0]) for r in sql(db_url, "SELECT result_json FROM decisions WHERE run_id = ?", RUN)]
        expected = {r["customer_id"]: r["data_quality"] for r in results if r.get("data_quality")}  # stored without defaults
        assert expected, "U131 has malformed records"
        assert {d["customer_id"]: d["issues"] for d in doc["data_quality"]} == expected
        assert doc["totals"]["data_quality_issues"] == sum(len(v) for v in expected.values())
        assert "forty-five" in markdown

    def test_most_at_risk_customers_with_reasons(self, portfolio, db_url):
        _, doc, markdown = portfolio
        results = {r[0]: json.loads(r[1]) for r in sql(db_url, "SELECT customer_id, result_json FROM decisions WHERE run_id = ?", RUN)}
        # The decisions' own insights said who was at high risk when decided; the data has not changed since.
        high = {cid for cid, r in results.items() if any(i.startswith("Churn risk is high") for i in r.get("insights", ()))}
        assert [a["customer_id"] for a in doc["at_risk"]] == ["U127", "U133", "U125"]
        assert set(a["customer_id"] for a in doc["at_risk"]) == high
        churn = [a["churn_probability"] for a in doc["at_risk"]]
        assert churn == sorted(churn, reverse=True) and min(churn) >= doc["high_churn_threshold"]
        for a in doc["at_risk"]:
            assert a["reasons"] and a["status"] == results[a["customer_id"]]["status"]
            assert a["treatment_id"] == results[a["customer_id"]]["selected_treatment"]
        assert "cancelling" in markdown
        assert doc["totals"]["at_risk_customers"] == 3
        bands = {b["band"]: b["customers"] for b in doc["risk_distribution"]}
        assert sum(bands.values()) == len(SAMPLE_IDS) and bands["unknown"] == 0
        assert len(bands) == len(RISK_BANDS) + 1

    def test_default_executive_triggers(self, portfolio):
        artifact, doc, markdown = portfolio
        fired = {t["name"]: t for t in doc["executive_triggers"]}
        assert fired["at_risk_customers"]["fired"] and fired["at_risk_customers"]["value"] == 3
        assert fired["pending_approvals"]["fired"] and fired["pending_approvals"]["value"] == 2
        assert not fired["capacity_rejections"]["fired"] and fired["capacity_rejections"]["value"] == 0
        assert not fired["open_errors"]["fired"] and fired["open_errors"]["value"] == 0
        assert artifact.executive_triggers_fired == ("at_risk_customers", "pending_approvals")
        top = markdown.split("## Goal and plan")[0]
        assert "**FIRED** At-risk customers: 3" in top and "**FIRED** Pending approvals: 2" in top


@pytest.mark.usefixtures("no_charts")
class TestTriggers:
    def test_fire_at_threshold_and_not_above(self, make_runtime, tmp_path, db_url):
        # One service SMS a day: the second bill-shock customer is refused it for capacity; U999 does not exist.
        def tight(doc: dict[str, Any]) -> None:
            doc["constraints"]["service_sms"]["max_per_day"] = 1

        config = write_config(tmp_path, "tight.yaml", tight)
        runtime = make_runtime(run_id=RUN, config_path=config)
        runtime.orchestrator.decide_many([*SAMPLE_IDS, "U999"])
        results = [json.loads(r[0]) for r in sql(db_url, "SELECT result_json FROM decisions WHERE run_id = ?", RUN)]
        rejections = sum(1 for r in results if any(a["reason"] == "capacity_exhausted" for a in r["alternatives"]))
        pending = sql(db_url, "SELECT COUNT(*) FROM approval_requests WHERE run_id = ? AND status = 'pending'", RUN)[0][0]
        assert rejections >= 1 and pending >= 1

        artifact, doc, markdown = generate(runtime)
        values = {t["name"]: t["value"] for t in doc["executive_triggers"]}
        assert values == {"at_risk_customers": 3, "pending_approvals": pending, "capacity_rejections": rejections, "open_errors": 1}
        assert set(artifact.executive_triggers_fired) == set(values)
        assert doc["totals"]["by_status"]["error"] == 1
        assert [e["customer_id"] for e in doc["errors"]] == ["U999"] and "unknown customer U999" in markdown
        assert doc["totals"]["customers"] == len(SAMPLE_IDS) + 1

        at_values = write_config(tmp_path, "at.yaml", lambda d: (tight(d), thresholds(**{f"{k}_at_least": v for k, v in values.items()})(d)))
        raised = write_config(tmp_path, "raised.yaml", lambda d: (tight(d), thresholds(**{f"{k}_at_least": v + 1 for k, v in values.items()})(d)))
        off = write_config(tmp_path, "off.yaml", lambda d: (tight(d), thresholds(**{f"{k}_at_least": None for k in values})(d)))
        fired_at = make_runtime(run_id=RUN, config_path=at_values).report.process(GenerateReport(run_id=RUN))
        assert set(fired_at.executive_triggers_fired) == set(values)
        _, doc, markdown = generate(make_runtime(run_id=RUN, config_path=raised))
        assert not any(t["fired"] for t in doc["executive_triggers"])
        assert "No executive trigger fired." in markdown and "**FIRED**" not in markdown
        assert {t["name"]: t["threshold"] for t in doc["executive_triggers"]} == {k: v + 1 for k, v in values.items()}
        artifact, doc, _ = generate(make_runtime(run_id=RUN, config_path=off))
        assert artifact.executive_triggers_fired == () and all(t["threshold"] is None for t in doc["executive_triggers"])


class TestCustomerView:
    def test_pending_approval_customer(self, processed, db_url, tmp_path):
        artifact, doc, markdown = generate(processed, customer_id="U128")
        folder = (tmp_path / "output" / "reports" / RUN).resolve()
        assert Path(artifact.markdown_path).resolve() == folder / "customer-U128.md"
        assert Path(artifact.json_path).resolve() == folder / "customer-U128.json"
        [(request_id, rule)] = sql(
            db_url, "SELECT request_id, rule FROM approval_requests WHERE run_id = ? AND customer_id = 'U128'", RUN
        )
        stored = json.loads(sql(db_url, "SELECT result_json FROM decisions WHERE run_id = ? AND customer_id = 'U128'", RUN)[0][0])
        assert doc["view"] == "customer" and doc["customer_id"] == "U128"
        assert doc["customer"]["decision"]["status"] == "pending_approval"
        assert doc["customer"]["decision"]["approval_request_id"] == request_id
        assert [a["request_id"] for a in doc["approvals_pending"]] == [request_id]
        assert doc["totals"]["by_status"] == {"pending_approval": 1}
        assert doc["totals"]["expected_value_total"] == stored["expected_value"]
        assert artifact.executive_triggers_fired == ("pending_approvals",)
        assert "## Customer U128" in markdown and request_id in markdown and rule in markdown
        for reason in stored["reasons"]:
            assert reason in markdown
        assert "approval_requested" in markdown  # the audit trail
        assert [Path(c).name for c in artifact.charts] == ["customer-U128-options.png"]
        assert Path(artifact.charts[0]).read_bytes()[:8] == PNG
        for section in ("## Executive triggers", "## Approvals", "## Capacity", "## Customers most at risk"):
            assert section in markdown
        assert [(c["treatment_id"], c["held_by_run"]) for c in doc["capacity"]] == [("early_upgrade", 1)]

    def test_decided_approval_shows_who_when_why(self, processed, db_url):
        [(request_id,)] = sql(db_url, "SELECT request_id FROM approval_requests WHERE run_id = ? AND customer_id = 'U134'", RUN)
        processed.orchestrator.governance.process(
            DecideApproval(request_id=request_id, decision="reject", by="Jane Doe", reason="contract too new")
        )
        _, doc, markdown = generate(processed)
        [decided] = doc["approvals_decided"]
        assert (decided["request_id"], decided["status"], decided["decided_by"], decided["reason"]) == (
            request_id, "rejected", "Jane Doe", "contract too new",
        )
        pending = sql(db_url, "SELECT COUNT(*) FROM approval_requests WHERE run_id = ? AND status = 'pending'", RUN)[0][0]
        assert doc["totals"]["pending_approvals"] == pending == 1
        recorded = dict(sql(db_url, "SELECT status, COUNT(*) FROM decisions WHERE run_id = ? GROUP BY status", RUN))
        assert doc["totals"]["by_status"] == recorded
        assert doc["totals"]["by_status_now"]["no_action"] == recorded["no_action"] + 1
        assert doc["totals"]["by_status_now"]["pending_approval"] == recorded["pending_approval"] - 1
        assert "Jane Doe" in markdown and "contract too new" in markdown

    def test_error_customer_view(self, make_runtime):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U123", "U999"])
        _, doc, markdown = generate(runtime, customer_id="U999")
        assert doc["customer"]["decision"] is None and "unknown customer U999" in doc["customer"]["error"]
        assert doc["totals"]["by_status"] == {"error": 1} and doc["totals"]["open_errors"] == 1
        assert "The decision failed" in markdown
