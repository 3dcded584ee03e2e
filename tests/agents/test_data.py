"""The Data agent: customer data through messages, id checks, errors as responses, the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cvm.agents.data import DataAgent
from cvm.agents.messages import Ack, CustomerDataResponse, CustomerListResponse, ErrorResponse, GetCustomerData
from cvm.tools.data_source import FileDataSource
from cvm.tools.records import DataQualityIssue
from cvm.utils.errors import InvalidCustomerIdError

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))


class CountingSource:
    """A FileDataSource that counts how often the agent asks it for a customer's rows."""

    def __init__(self, folder: Path):
        self.inner = FileDataSource(folder)
        self.calls: list[str] = []

    def customer_ids(self) -> list[str]:
        return self.inner.customer_ids()

    def rows_for(self, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        self.calls.append(customer_id)
        return self.inner.rows_for(customer_id)

    def table_issues(self) -> list[DataQualityIssue]:
        return self.inner.table_issues()


@pytest.fixture
def source(sample_dir: Path) -> CountingSource:
    return CountingSource(sample_dir)


@pytest.fixture
def agent(source: CountingSource) -> DataAgent:
    return DataAgent(source)


class TestGetCustomerData:
    """get_customer_data returns the normalised data of a known customer."""

    def test_known_customer_typed_message(self, agent):
        response = agent.process(GetCustomerData(customer_id="U124"))
        assert isinstance(response, CustomerDataResponse)
        data = response.data
        assert data.customer_id == "U124"
        assert data.billing and data.usage and data.churn is not None
        assert data.permissions is not None
        assert data.permissions.allows("email", "marketing") and not data.permissions.allows("sms", "marketing")

    def test_known_customer_plain_dict(self, agent):
        response = agent.process({"type": "get_customer_data", "customer_id": "U126"})
        assert isinstance(response, CustomerDataResponse) and response.data.customer_id == "U126"

    def test_field_name_variants_are_normalised(self, agent):
        # U131 bills use monthly_bill, U133 bills use monthly_charge with a list of charges.
        u131 = agent.process(GetCustomerData(customer_id="U131")).data
        u133 = agent.process(GetCustomerData(customer_id="U133")).data
        assert all(b.monthly_charge > 0 for b in u131.billing + u133.billing)
        assert any(b.extra_total > 0 for b in u133.billing)

    def test_customer_without_permissions_record(self, agent):
        data = agent.process(GetCustomerData(customer_id="U130")).data
        assert data.permissions is None
        assert data.billing

    def test_malformed_records_become_data_quality_issues(self, agent):
        data = agent.process(GetCustomerData(customer_id="U131")).data
        tables = {issue.table for issue in data.data_quality}
        assert {"billing_data", "usage_data", "permissions"} <= tables
        assert data.permissions is None
        assert len(data.billing) == 3

    def test_unknown_customer_is_an_error_response(self, agent):
        response = agent.process(GetCustomerData(customer_id="U999"))
        assert isinstance(response, ErrorResponse)
        assert response.error_type == "unknown_customer"
        assert response.customer_id == "U999"
        assert "U999" in response.message

    @pytest.mark.parametrize("bad", ["bad id!", "", "U1;DROP TABLE", "x" * 65, "U12 3"])
    def test_invalid_id_is_an_error_response(self, agent, source, bad):
        response = agent.process({"type": "get_customer_data", "customer_id": bad})
        assert isinstance(response, ErrorResponse)
        assert response.error_type == "invalid_customer_id"
        assert source.calls == []

    def test_missing_id_is_an_invalid_message(self, agent):
        response = agent.process({"type": "get_customer_data"})
        assert isinstance(response, ErrorResponse) and response.error_type == "invalid_message"
        assert "customer_id" in response.message

    def test_unknown_message_type(self, agent):
        response = agent.process({"type": "build_journey", "customer_id": "U123"})
        assert isinstance(response, ErrorResponse) and response.error_type == "unknown_message_type"

    def test_custom_id_pattern(self, source):
        strict = DataAgent(source, r"^U\d{3}$")
        assert isinstance(strict.process(GetCustomerData(customer_id="U123")), CustomerDataResponse)
        refused = strict.process(GetCustomerData(customer_id="CUST_1"))
        assert isinstance(refused, ErrorResponse) and refused.error_type == "invalid_customer_id"
        with pytest.raises(InvalidCustomerIdError):
            strict.check_customer_id("U1234")

    def test_unreadable_table_is_reported_for_every_customer(self, data_copy):
        (data_copy / "billing_data.json").write_text("[{broken", encoding="utf-8")
        agent = DataAgent(FileDataSource(data_copy))
        for cid in ("U123", "U128"):
            data = agent.process(GetCustomerData(customer_id=cid)).data
            assert data.billing == []
            assert any(i.table == "billing_data" and "billing_data.json" in i.message for i in data.data_quality)
            assert data.usage

    def test_wrong_types_reject_only_that_row(self, data_copy):
        rows = json.loads((data_copy / "churn_score.json").read_text(encoding="utf-8"))
        for row in rows:
            if row["customer_id"] == "U128":
                key = next(k for k in ("churn_probability", "churn_score", "score") if k in row)
                row[key] = "very low"
        (data_copy / "churn_score.json").write_text(json.dumps(rows), encoding="utf-8")
        agent = DataAgent(FileDataSource(data_copy))
        bad = agent.process(GetCustomerData(customer_id="U128")).data
        assert bad.churn is None
        assert any(i.table == "churn_score" for i in bad.data_quality)
        fine = agent.process(GetCustomerData(customer_id="U127")).data
        assert fine.churn is not None and not fine.data_quality


class TestCache:
    """The agent reads a customer once and serves repeats from its cache until cleared."""

    def test_repeat_reads_use_the_cache(self, agent, source):
        first = agent.process(GetCustomerData(customer_id="U125")).data
        second = agent.process(GetCustomerData(customer_id="U125")).data
        assert source.calls == ["U125"]
        assert second == first

    def test_unknown_customers_are_not_cached(self, agent, source):
        agent.process(GetCustomerData(customer_id="U999"))
        agent.process(GetCustomerData(customer_id="U999"))
        assert source.calls == ["U999", "U999"]

    def test_clear_cache(self, agent, source):
        agent.process(GetCustomerData(customer_id="U125"))
        agent.process(GetCustomerData(customer_id="U126"))
        response = agent.process({"type": "clear_cache"})
        assert isinstance(response, Ack) and "2" in response.detail
        agent.process(GetCustomerData(customer_id="U125"))
        assert source.calls == ["U125", "U126", "U125"]
        empty = agent.process({"type": "clear_cache"})
        assert isinstance(empty, Ack) and "1" in empty.detail


class TestListCustomers:
    """list_customers returns every customer id any table mentions, sorted."""

    def test_sample_customers(self, agent):
        response = agent.process({"type": "list_customers"})
        assert isinstance(response, CustomerListResponse)
        assert response.customer_ids == SAMPLE_IDS

    def test_empty_folder(self, tmp_path):
        folder = tmp_path / "empty"
        folder.mkdir()
        response = DataAgent(FileDataSource(folder)).process({"type": "list_customers"})
        assert isinstance(response, CustomerListResponse) and response.customer_ids == ()

    def test_missing_table_is_no_data(self, data_copy):
        (data_copy / "web_clicks.csv").unlink()
        agent = DataAgent(FileDataSource(data_copy))
        assert agent.process({"type": "list_customers"}).customer_ids == SAMPLE_IDS
        data = agent.process(GetCustomerData(customer_id="U123")).data
        assert data.clicks == [] and not any(i.table == "web_clicks" for i in data.data_quality)


class TestCheckCustomerIds:
    """check_customer_ids checks ids against the pattern without reading any data (what the CLIs send)."""

    def test_well_formed_ids_come_back_unchanged(self, agent, source):
        response = agent.process({"type": "check_customer_ids", "customer_ids": ["U124", "U999"]})
        assert response == CustomerListResponse(customer_ids=("U124", "U999"))
        assert source.calls == []

    def test_a_bad_id_is_a_typed_error(self, agent):
        response = agent.process({"type": "check_customer_ids", "customer_ids": ["U124", "../etc"]})
        assert isinstance(response, ErrorResponse)
        assert (response.error_type, response.customer_id) == ("invalid_customer_id", "../etc")
