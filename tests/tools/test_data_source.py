"""Reading the data folder (every format) and normalising messy rows into typed records."""

from __future__ import annotations

import csv
import json
from datetime import date, time
from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvm.tools.data_source import FORMATS, FileDataSource
from cvm.tools.records import (
    DEFAULT_QUIET_HOURS,
    TABLES,
    BillingRecord,
    Charge,
    ChurnRecord,
    DataQualityIssue,
    TimeWindow,
    UsageRecord,
    normalise_customer,
    parse_permissions,
)
from cvm.utils.errors import DataError

USAGE_ROWS: list[dict[str, Any]] = [
    {"customer_id": "A1", "date": "2026-09-01", "total_data_gb": 12.5, "call_minutes": 300.0, "sms_count": 40},
    {"customer_id": "A1", "date": "2026-10-01", "total_data_gb": 14.0, "call_minutes": 310.0, "sms_count": 35},
    {"customer_id": "B2", "date": "2026-10-01", "total_data_gb": 3.25, "call_minutes": 20.0, "sms_count": 5},
]


def write_table(folder: Path, table: str, ext: str, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as ``folder/table.ext`` in that format."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table}{ext}"
    if ext == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif ext == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif ext == ".csv":
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    elif ext == ".parquet":
        columns = list(dict.fromkeys(key for row in rows for key in row))
        pq.write_table(pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]), path)
    else:  # pragma: no cover - a typo in a test
        raise AssertionError(ext)
    return path


def usage_of(source: FileDataSource, customer_id: str) -> list[dict[str, Any]]:
    data = normalise_customer(customer_id, source.rows_for(customer_id), source.table_issues())
    return [r.model_dump(exclude_defaults=True) | {"roaming_data_gb": r.roaming_data_gb} for r in data.usage]


PERMS_ALL_Y = {
    channel: {"marketing": "Y", "service_updates": "Y", "billing": "Y"}
    for channel in ("email", "sms", "call", "push_notifications")
}


class TestFormats:
    """Every supported format yields the same records."""

    @pytest.mark.parametrize("ext", [".json", ".jsonl", ".parquet"])
    def test_typed_formats_return_the_rows_exactly(self, tmp_path: Path, ext: str) -> None:
        write_table(tmp_path, "usage_data", ext, USAGE_ROWS)
        source = FileDataSource(tmp_path)
        assert source.customer_ids() == ["A1", "B2"]
        assert source.rows_for("A1")["usage_data"] == USAGE_ROWS[:2]
        assert source.rows_for("B2")["usage_data"] == USAGE_ROWS[2:]
        assert source.table_issues() == []

    @pytest.mark.parametrize("ext", FORMATS)
    def test_every_format_normalises_to_the_same_records(self, tmp_path: Path, ext: str) -> None:
        write_table(tmp_path, "usage_data", ext, USAGE_ROWS)
        source = FileDataSource(tmp_path)
        assert usage_of(source, "A1") == [
            {"customer_id": "A1", "date": date(2026, 9, 1), "data_gb": 12.5, "voice_minutes": 300.0, "sms_count": 40, "roaming_data_gb": 0.0},
            {"customer_id": "A1", "date": date(2026, 10, 1), "data_gb": 14.0, "voice_minutes": 310.0, "sms_count": 35, "roaming_data_gb": 0.0},
        ]
        assert usage_of(source, "B2") == [
            {"customer_id": "B2", "date": date(2026, 10, 1), "data_gb": 3.25, "voice_minutes": 20.0, "sms_count": 5, "roaming_data_gb": 0.0},
        ]

    def test_csv_drops_empty_cells(self, tmp_path: Path) -> None:
        (tmp_path / "web_clicks.csv").write_text(
            "customer_id,timestamp,page,duration_seconds\nU1,2026-10-01T10:00:00,/a,\n", encoding="utf-8"
        )
        assert FileDataSource(tmp_path).rows_for("U1")["web_clicks"] == [
            {"customer_id": "U1", "timestamp": "2026-10-01T10:00:00", "page": "/a"}
        ]

    def test_json_records_wrapper_is_accepted(self, tmp_path: Path) -> None:
        (tmp_path / "usage_data.json").write_text(json.dumps({"records": USAGE_ROWS}), encoding="utf-8")
        source = FileDataSource(tmp_path)
        assert source.rows_for("B2")["usage_data"] == USAGE_ROWS[2:]
        assert source.table_issues() == []

    @pytest.mark.parametrize("first,second", list(combinations(FORMATS, 2)))
    def test_table_in_two_formats_uses_the_first_of_formats(self, tmp_path: Path, first: str, second: str) -> None:
        winner = [{"customer_id": "W", "date": "2026-10-01", "total_data_gb": 1.0}]
        loser = [{"customer_id": "L", "date": "2026-10-01", "total_data_gb": 2.0}]
        write_table(tmp_path, "usage_data", first, winner)
        write_table(tmp_path, "usage_data", second, loser)
        assert FileDataSource(tmp_path).customer_ids() == ["W"]

    def test_format_order(self) -> None:
        assert FORMATS == (".parquet", ".jsonl", ".json", ".csv")


class TestBadFiles:
    """A bad file is a table-level data-quality issue and an empty table, never an exception."""

    def test_malformed_json_is_a_table_issue(self, tmp_path: Path) -> None:
        (tmp_path / "billing_data.json").write_text('[{"customer_id": "U1", "monthly_bill": ', encoding="utf-8")
        write_table(tmp_path, "usage_data", ".json", USAGE_ROWS)
        source = FileDataSource(tmp_path)

        assert source.customer_ids() == ["A1", "B2"]
        assert source.rows_for("A1")["billing_data"] == []
        issues = source.table_issues()
        assert len(issues) == 1
        assert issues[0].table == "billing_data"
        assert issues[0].message.startswith("billing_data.json could not be read (")
        assert issues[0].message.endswith("; the table is treated as empty")

    def test_json_object_that_is_not_a_list_is_a_table_issue(self, tmp_path: Path) -> None:
        (tmp_path / "churn_score.json").write_text('{"a": 1, "b": 2}', encoding="utf-8")
        issues = FileDataSource(tmp_path).table_issues()
        assert [(i.table, "expected a JSON list of records" in i.message) for i in issues] == [("churn_score", True)]

    def test_empty_json_file_is_a_table_issue(self, tmp_path: Path) -> None:
        (tmp_path / "churn_score.json").write_text("", encoding="utf-8")
        source = FileDataSource(tmp_path)
        assert [i.table for i in source.table_issues()] == ["churn_score"]
        assert source.customer_ids() == []

    def test_jsonl_bad_line_is_named(self, tmp_path: Path) -> None:
        (tmp_path / "network_data.jsonl").write_text(
            '{"customer_id": "U1", "date": "2026-10-01"}\n\n{"customer_id": "U2", "date": \n{"customer_id": "U3"}\n',
            encoding="utf-8",
        )
        source = FileDataSource(tmp_path)
        issues = source.table_issues()
        assert len(issues) == 1
        assert issues[0].table == "network_data"
        assert "(line 3: " in issues[0].message
        assert source.customer_ids() == []

    def test_corrupt_parquet_is_a_table_issue(self, tmp_path: Path) -> None:
        (tmp_path / "usage_data.parquet").write_bytes(b"PAR1 this is not parquet at all")
        source = FileDataSource(tmp_path)
        issues = source.table_issues()
        assert [i.table for i in issues] == ["usage_data"]
        assert "usage_data.parquet could not be read" in issues[0].message
        assert source.rows_for("U1")["usage_data"] == []

    def test_rows_without_customer_id_are_counted(self, tmp_path: Path) -> None:
        rows = [
            {"customer_id": "U1", "churn_score": 0.4},
            {"churn_score": 0.1},
            {"customer_id": "", "churn_score": 0.2},
            {"customer_id": "   ", "churn_score": 0.3},
            {"customer_id": None, "churn_score": 0.5},
            "not a record",
        ]
        (tmp_path / "churn_score.json").write_text(json.dumps(rows), encoding="utf-8")
        source = FileDataSource(tmp_path)
        assert source.customer_ids() == ["U1"]
        assert source.table_issues() == [
            DataQualityIssue(
                table="churn_score", field="customer_id", message="5 row(s) without a customer_id skipped in churn_score.json"
            )
        ]

    def test_customer_id_is_stripped(self, tmp_path: Path) -> None:
        (tmp_path / "churn_score.json").write_text(json.dumps([{"customer_id": " U9 ", "churn_score": 0.4}]), encoding="utf-8")
        source = FileDataSource(tmp_path)
        assert source.customer_ids() == ["U9"]
        assert len(source.rows_for("U9")["churn_score"]) == 1

    def test_missing_tables_mean_no_rows(self, tmp_path: Path) -> None:
        source = FileDataSource(tmp_path)
        assert source.customer_ids() == []
        assert source.rows_for("U1") == {table: [] for table in TABLES}
        assert source.table_issues() == []

    def test_missing_data_dir_is_data_error(self, tmp_path: Path) -> None:
        with pytest.raises(DataError, match="does not exist; pass --data-dir DIR or set CVM_DATA_DIR"):
            FileDataSource(tmp_path / "nowhere")

    def test_data_dir_that_is_a_file_is_data_error(self, tmp_path: Path) -> None:
        file = tmp_path / "data.json"
        file.write_text("[]", encoding="utf-8")
        with pytest.raises(DataError):
            FileDataSource(file)


class TestMessyFeeds:
    """Realistic feed quirks: nulls in unused Parquet columns, numeric ids, padded ids."""

    def test_parquet_with_mixed_usage_shapes_keeps_every_row(self, tmp_path: Path) -> None:
        # A parquet file written from rows of both shapes has a null in the column a row did not use.
        rows = [
            {"customer_id": "U1", "date": "2026-10-01", "total_data_gb": 10.0},
            {"customer_id": "U1", "month": "2026-11", "data_usage_gb": 12.0},
        ]
        write_table(tmp_path, "usage_data", ".parquet", rows)
        source = FileDataSource(tmp_path)
        data = normalise_customer("U1", source.rows_for("U1"), source.table_issues())
        assert [(u.date, u.data_gb) for u in data.usage] == [(date(2026, 10, 1), 10.0), (date(2026, 11, 1), 12.0)]
        assert data.data_quality == []

    def test_numeric_customer_ids_are_normalised(self, tmp_path: Path) -> None:
        (tmp_path / "churn_score.json").write_text(json.dumps([{"customer_id": 1001, "churn_score": 0.4}]), encoding="utf-8")
        source = FileDataSource(tmp_path)
        assert source.customer_ids() == ["1001"]
        data = normalise_customer("1001", source.rows_for("1001"), source.table_issues())
        assert data.churn is not None
        assert data.churn.probability == 0.4


class TestBillingAndUsage:
    """Both billing shapes and both usage shapes give the same typed fields."""

    def test_billing_shapes_agree(self) -> None:
        flat = BillingRecord.model_validate(
            {"customer_id": "X", "billing_date": "2026-10-01", "monthly_bill": 42.0, "additional_charges": 7.5, "plan": "Unlimited 5G"}
        )
        listed = BillingRecord.model_validate(
            {
                "customer_id": "X",
                "date": "2026-10-01",
                "monthly_charge": 42,
                "additional_charges": [{"description": "Additional charges", "amount": 7.5}],
                "plan_name": "Unlimited 5G",
            }
        )
        assert flat == listed
        assert flat.date == date(2026, 10, 1)
        assert flat.monthly_charge == 42.0
        assert flat.additional_charges == [Charge(description="Additional charges", amount=7.5)]
        assert flat.plan == "Unlimited 5G"
        assert flat.total == 49.5

    @pytest.mark.parametrize("empty", [0, 0.0, "", None])
    def test_empty_additional_charges(self, empty: Any) -> None:
        record = BillingRecord.model_validate({"customer_id": "X", "date": "2026-10-01", "monthly_bill": 10, "additional_charges": empty})
        assert record.additional_charges == []
        assert record.total == 10.0

    def test_roaming_totals(self) -> None:
        record = BillingRecord.model_validate(
            {
                "customer_id": "X",
                "month": "2026-11",
                "monthly_charge": 30,
                "roaming_charges": 4,
                "additional_charges": [{"description": "Roaming - Spain", "amount": 6}, {"description": "0870 calls", "amount": 1}],
            }
        )
        assert record.date == date(2026, 11, 1)
        assert record.extra_total == 7.0
        assert record.roaming_total == 10.0
        assert record.total == 41.0

    def test_usage_shapes_agree(self) -> None:
        a = UsageRecord.model_validate({"customer_id": "X", "date": "2026-11-01", "total_data_gb": 10, "call_minutes": 5})
        b = UsageRecord.model_validate({"customer_id": "X", "month": "2026-11", "data_usage_gb": 10.0, "voice_minutes": 5})
        assert a == b
        assert (a.date, a.data_gb, a.voice_minutes) == (date(2026, 11, 1), 10.0, 5.0)

    def test_churn_spellings_agree(self) -> None:
        a = ChurnRecord.model_validate({"customer_id": "X", "churn_score": 0.7, "score_date": "2026-11-20"})
        b = ChurnRecord.model_validate({"customer_id": "X", "churn_probability": 0.7, "date": "2026-11-20"})
        assert a == b
        assert a.probability == 0.7

    def test_unknown_fields_are_kept(self) -> None:
        record = BillingRecord.model_validate(
            {"customer_id": "X", "billing_date": "2026-10-01", "monthly_bill": 1, "promo_code": "XMAS", "region": {"code": "WAL"}}
        )
        assert record.model_extra == {"promo_code": "XMAS", "region": {"code": "WAL"}}

    def test_bad_rows_become_issues_and_good_rows_stay(self) -> None:
        rows = {
            "billing_data": [
                {"customer_id": "X", "billing_date": "2026-09-01", "monthly_bill": "forty-five"},
                {"customer_id": "X", "billing_date": "2026-10-01", "monthly_bill": -5},
                {"customer_id": "X", "billing_date": "2026-11-01", "monthly_bill": 45},
                {"customer_id": "X", "billing_date": "2026-08-01", "monthly_bill": 44},
            ],
            "usage_data": [
                {"customer_id": "X", "date": "2026-10-01", "total_data_gb": -3},
                {"customer_id": "X", "date": "2026-11-01", "total_data_gb": 3},
            ],
            "churn_score": [{"customer_id": "X", "churn_score": 1.5}],
        }
        data = normalise_customer("X", rows)
        assert [(b.date, b.monthly_charge) for b in data.billing] == [(date(2026, 8, 1), 44.0), (date(2026, 11, 1), 45.0)]
        assert [u.data_gb for u in data.usage] == [3.0]
        assert data.churn is None
        assert [(i.table, i.field) for i in data.data_quality] == [
            ("billing_data", "monthly_bill"),
            ("billing_data", "monthly_bill"),
            ("usage_data", "total_data_gb"),
            ("churn_score", "churn_score"),
        ]
        assert "(got 'forty-five')" in data.data_quality[0].message
        assert "(got -5)" in data.data_quality[1].message
        assert data.tables_with_rows == ["billing_data", "churn_score", "usage_data"]

    def test_table_issues_are_carried_into_customer_data(self) -> None:
        issue = DataQualityIssue(table="network_data", message="network_data.jsonl could not be read")
        assert normalise_customer("X", {}, [issue]).data_quality == [issue]

    def test_latest_churn_score_wins(self) -> None:
        rows = {
            "churn_score": [
                {"customer_id": "X", "churn_score": 0.9, "score_date": "2026-11-20"},
                {"customer_id": "X", "churn_score": 0.2, "score_date": "2026-10-20"},
            ]
        }
        assert normalise_customer("X", rows).churn.probability == 0.9


class TestPermissions:
    """Only an explicit Y is consent; an unreadable record means no consent at all."""

    def test_nested_and_flat_are_the_same(self) -> None:
        nested, issues_a = parse_permissions({"customer_id": "X", "permissions": PERMS_ALL_Y, "do_not_disturb": "23:00-07:00"})
        flat, issues_b = parse_permissions({"customer_id": "X", **PERMS_ALL_Y, "do_not_disturb": "23:00-07:00"})
        assert nested == flat
        assert issues_a == issues_b == []
        assert nested.allows("sms", "service_updates") is True
        assert nested.do_not_disturb == TimeWindow(start=time(23, 0), end=time(7, 0))

    @pytest.mark.parametrize("value", ["Y", "y", " Y ", "\ty\n"])
    def test_y_is_consent(self, value: str) -> None:
        perms, _ = parse_permissions({"email": {"marketing": value}})
        assert perms.allows("email", "marketing") is True

    @pytest.mark.parametrize("value", ["yes", "YES", "N", "n", "", "true", True, 1, None, "Y Y", "✓"])
    def test_anything_else_is_not_consent(self, value: Any) -> None:
        perms, _ = parse_permissions({"email": {"marketing": value}, "sms": {"marketing": "Y"}})
        assert perms.allows("email", "marketing") is False
        assert perms.allows("sms", "marketing") is True

    def test_missing_channel_or_purpose_is_not_consent(self) -> None:
        perms, _ = parse_permissions({"email": {"marketing": "Y"}})
        assert perms.allows("email", "billing") is False
        assert perms.allows("call", "marketing") is False
        assert perms.allows("fax", "marketing") is False

    def test_singular_service_update_key_is_read(self) -> None:
        perms, _ = parse_permissions({"sms": {"service_update": "Y"}})
        assert perms.allows("sms", "service_updates") is True

    def test_string_permissions_is_unreadable(self) -> None:
        rows = {"permissions": [{"customer_id": "X", "permissions": "yes to everything", "do_not_disturb": "22:00-08:00"}]}
        data = normalise_customer("X", rows)
        assert data.permissions is None
        assert data.data_quality == [
            DataQualityIssue(
                table="permissions",
                message="unreadable record ('permissions' must be an object of channels, got str); treated as no consent",
            )
        ]

    def test_record_without_any_channel_is_unreadable(self) -> None:
        data = normalise_customer("X", {"permissions": [{"customer_id": "X", "do_not_disturb": "22:00-08:00"}]})
        assert data.permissions is None
        assert [i.table for i in data.data_quality] == ["permissions"]

    def test_channel_that_is_not_a_mapping_is_an_issue(self) -> None:
        perms, issues = parse_permissions({"email": "Y", "sms": {"marketing": "Y"}})
        assert perms.allows("email", "marketing") is False
        assert perms.allows("sms", "marketing") is True
        assert [(i.table, i.field) for i in issues] == [("permissions", "email")]

    @pytest.mark.parametrize("bad", ["late evening", "25:00-07:00", "22:00", "22:00-07:61"])
    def test_malformed_do_not_disturb_uses_default_quiet_hours(self, bad: str) -> None:
        perms, issues = parse_permissions({"customer_id": "X", "permissions": PERMS_ALL_Y, "do_not_disturb": bad})
        assert perms.do_not_disturb == DEFAULT_QUIET_HOURS
        assert str(perms.do_not_disturb) == "21:00-09:00"
        assert [(i.table, i.field) for i in issues] == [("permissions", "do_not_disturb")]
        assert issues[0].message.endswith("; using the default quiet hours")

    def test_malformed_preferred_time_is_dropped_with_an_issue(self) -> None:
        perms, issues = parse_permissions({"permissions": PERMS_ALL_Y, "preferred_contact_time": "evenings"})
        assert perms.preferred_contact_time is None
        assert perms.do_not_disturb is None
        assert [i.field for i in issues] == ["preferred_contact_time"]

    def test_several_rows_use_the_most_restrictive_answer(self) -> None:
        rows = {
            "permissions": [
                {"customer_id": "X", "email": {"marketing": "N", "billing": "Y"}},
                {"customer_id": "X", "email": {"marketing": "Y", "billing": "Y"}, "sms": {"marketing": "Y"}},
            ]
        }
        data = normalise_customer("X", rows)
        assert data.permissions.allows("email", "marketing") is False  # the opt-out is not undone by a later Y
        assert data.permissions.allows("email", "billing") is True  # every row says Y
        assert data.permissions.allows("sms", "marketing") is False  # one row has no sms at all
        assert [i.message for i in data.data_quality] == [
            "2 rows for one customer; they disagree on email.marketing, sms.marketing, "
            "so the most restrictive answer (no consent) is used"
        ]

    def test_identical_rows_are_noted_without_a_conflict(self) -> None:
        row = {"customer_id": "X", "email": {"marketing": "Y"}}
        data = normalise_customer("X", {"permissions": [row, row]})
        assert data.permissions.allows("email", "marketing") is True
        assert [i.message for i in data.data_quality] == ["2 rows for one customer"]


def brute_force_contains(start_min: int, end_min: int, moment_s: int) -> bool:
    """Is the second of day inside [start, end) on a 24-hour circle? start == end is empty."""
    day = 24 * 3600
    return (moment_s - start_min * 60) % day < (end_min * 60 - start_min * 60) % day


def as_time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


class TestTimeWindow:
    """TimeWindow.contains, also across midnight, agrees with a brute-force check."""

    def test_across_midnight(self) -> None:
        window = TimeWindow.parse("23:00-07:00")
        assert window.contains(time(23, 0)) is True
        assert window.contains(time(2, 30)) is True
        assert window.contains(time(6, 59, 59)) is True
        assert window.contains(time(7, 0)) is False
        assert window.contains(time(12, 0)) is False
        assert window.contains(time(22, 59)) is False

    def test_same_day(self) -> None:
        window = TimeWindow.parse(" 9:30 - 17:00 ")
        assert (window.start, window.end) == (time(9, 30), time(17, 0))
        assert [window.contains(time(h)) for h in (9, 10, 16, 17)] == [False, True, True, False]

    @given(start=st.integers(0, 1439), end=st.integers(0, 1439))
    def test_every_minute_matches_brute_force(self, start: int, end: int) -> None:
        window = TimeWindow(start=as_time(start), end=as_time(end))
        inside = [m for m in range(1440) if window.contains(as_time(m))]
        assert inside == [m for m in range(1440) if brute_force_contains(start, end, m * 60)]
        assert len(inside) == (end - start) % 1440

    @given(start=st.integers(0, 1439), end=st.integers(0, 1439), second=st.integers(0, 86399))
    def test_seconds_match_brute_force(self, start: int, end: int, second: int) -> None:
        window = TimeWindow(start=as_time(start), end=as_time(end))
        moment = time(second // 3600, second // 60 % 60, second % 60)
        assert window.contains(moment) is brute_force_contains(start, end, second)

    @given(start=st.integers(0, 1439), end=st.integers(0, 1439))
    def test_str_round_trips(self, start: int, end: int) -> None:
        window = TimeWindow(start=as_time(start), end=as_time(end))
        assert TimeWindow.parse(str(window)) == window


class TestSampleData:
    """The shipped sample data reads cleanly, with its deliberate problems where expected."""

    def test_all_twelve_customers(self, sample_dir: Path) -> None:
        source = FileDataSource(sample_dir)
        assert source.customer_ids() == [f"U{n}" for n in range(123, 135)]
        assert source.table_issues() == []

    def test_u131_has_three_issues(self, sample_dir: Path) -> None:
        source = FileDataSource(sample_dir)
        data = normalise_customer("U131", source.rows_for("U131"), source.table_issues())
        assert [(i.table, i.field) for i in data.data_quality] == [
            ("billing_data", "monthly_bill"),
            ("usage_data", "total_data_gb"),
            ("permissions", None),
        ]
        assert data.permissions is None
        assert [b.date for b in data.billing] == [date(2026, 8, 1), date(2026, 10, 1), date(2026, 11, 1)]
        assert [u.date for u in data.usage] == [date(2026, 9, 1), date(2026, 11, 1)]

    def test_u130_has_no_permissions_and_no_issue(self, sample_dir: Path) -> None:
        source = FileDataSource(sample_dir)
        data = normalise_customer("U130", source.rows_for("U130"), source.table_issues())
        assert source.rows_for("U130")["permissions"] == []
        assert data.permissions is None
        assert data.data_quality == []

    def test_both_billing_shapes_in_sample(self, sample_dir: Path) -> None:
        source = FileDataSource(sample_dir)
        u123 = normalise_customer("U123", source.rows_for("U123"))
        u124 = normalise_customer("U124", source.rows_for("U124"))
        assert [(b.date, b.monthly_charge, b.extra_total) for b in u123.billing][1] == (date(2026, 9, 1), 45.0, 2.5)
        first = u124.billing[0]
        assert (first.date, first.monthly_charge, first.plan) == (date(2026, 9, 1), 42.0, "Unlimited 5G")
        assert first.additional_charges == [Charge(description="International calls - Poland", amount=6.4, date=date(2026, 8, 16))]
        assert u124.churn.probability == 0.45
        assert u124.permissions.allows("sms", "marketing") is False
        assert u124.permissions.allows("email", "marketing") is True

    def test_rows_for_covers_every_table(self, sample_dir: Path) -> None:
        assert set(FileDataSource(sample_dir).rows_for("U123")) == set(TABLES)
