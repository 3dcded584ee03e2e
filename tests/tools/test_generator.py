"""The data generator: reproducible files, every table in every format, readable by CVM, plausible, streamed."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from string import Formatter
from typing import Any

import numpy as np
import pytest

from cvm.agents.journey import INTEREST_PATTERNS, JourneyBuilder, interest_match, sentiment
from cvm.tools import generator
from cvm.tools.data_source import FileDataSource
from cvm.tools.generator import (
    CALL_OPENERS,
    CHAT_OPENERS,
    CLOSERS,
    CONVERSATIONS,
    EXTENSIONS,
    MANIFEST,
    SLOTS,
    TOPICS,
    arrow_table,
    category,
    generate,
    id_width,
    integer,
    json_rows,
    listof,
    number,
    struct,
    text,
)
from cvm.tools.records import TABLES, normalise_customer
from cvm.utils.config import load_config
from cvm.utils.errors import UsageError
from tests.conftest import CONFIG

FORMATS = tuple(EXTENSIONS)
SMALL = 400
SMALL_CHUNK = 150
"""Three chunks, the last one partial."""
AS_OF = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def read_rows(folder: Path, table: str) -> list[dict[str, Any]]:
    """A table's rows as CVM reads them (Parquet nulls dropped)."""
    for fmt, ext in EXTENSIONS.items():
        path = folder / f"{table}{ext}"
        if not path.is_file():
            continue
        if fmt == "jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        if fmt == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        import pyarrow.parquet as pq

        return [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(path).to_pylist()]
    raise AssertionError(f"no {table} table in {folder}")


def by_customer(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["customer_id"]].append(row)
    return grouped


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def normalised(folder: Path) -> dict[str, dict[str, Any]]:
    source = FileDataSource(folder)
    return {cid: normalise_customer(cid, source.rows_for(cid), source.table_issues()).model_dump() for cid in source.customer_ids()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SMALL customers with seed 7 in every format, written in chunks of SMALL_CHUNK."""
    root = tmp_path_factory.mktemp("small")
    return {fmt: generate(root / fmt, SMALL, fmt=fmt, seed=7, chunk_size=SMALL_CHUNK).out_dir for fmt in FORMATS}


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """20,000 customers (default seed), every table's rows."""
    folder = generate(tmp_path_factory.mktemp("population") / "data", 20_000, fmt="jsonl").out_dir
    return {table: read_rows(folder, table) for table in TABLES}


class TestReproducible:
    """The seed decides the data: same seed, same bytes; another seed, other data; the format changes nothing."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_same_seed_gives_byte_identical_files(self, small: dict[str, Path], tmp_path: Path, fmt: str) -> None:
        again = generate(tmp_path / "again", SMALL, fmt=fmt, seed=7, chunk_size=SMALL_CHUNK).out_dir
        assert files(again) == files(small[fmt])

    @pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
    def test_another_seed_gives_other_data(self, small: dict[str, Path], tmp_path: Path, fmt: str) -> None:
        other = files(generate(tmp_path / "other", SMALL, fmt=fmt, seed=8, chunk_size=SMALL_CHUNK).out_dir)
        mine = files(small[fmt])
        assert other.keys() == mine.keys()
        assert all(other[name] != mine[name] for name in other)

    def test_every_format_holds_the_same_customers(self, small: dict[str, Path]) -> None:
        jsonl = normalised(small["jsonl"])
        assert len(jsonl) == SMALL
        assert normalised(small["json"]) == jsonl
        assert normalised(small["parquet"]) == jsonl

    def test_ids_count_up_from_one(self, small: dict[str, Path]) -> None:
        ids = [row["customer_id"] for row in read_rows(small["jsonl"], "customers")]
        assert ids == [f"C{n:07d}" for n in range(1, SMALL + 1)]
        assert (id_width(9_999_999), id_width(10_000_000), id_width(50_000_000)) == (7, 8, 8)

    def test_ids_pass_the_configured_id_pattern(self, small: dict[str, Path]) -> None:
        import re

        pattern = re.compile(load_config(CONFIG).validation.customer_id_pattern)
        assert all(pattern.fullmatch(row["customer_id"]) for row in read_rows(small["jsonl"], "customers"))


class TestEveryTableInEveryFormat:
    """Each table is a file CVM reads without a single data-quality issue, in both field shapes."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_every_table_and_the_manifest_are_written(self, small: dict[str, Path], fmt: str) -> None:
        expected = {f"{table}{EXTENSIONS[fmt]}" for table in TABLES} | {MANIFEST}
        assert {p.name for p in small[fmt].iterdir()} == expected

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_cvm_reads_every_customer_without_issues(self, small: dict[str, Path], fmt: str) -> None:
        source = FileDataSource(small[fmt])
        assert source.table_issues() == []
        ids = source.customer_ids()
        assert ids == [f"C{n:07d}" for n in range(1, SMALL + 1)]
        with_rows: Counter[str] = Counter()
        for cid in ids:
            data = normalise_customer(cid, source.rows_for(cid), source.table_issues())
            assert data.data_quality == [], (cid, data.data_quality)
            assert data.profile is not None and data.churn is not None
            assert len(data.billing) == 3 and len(data.usage) == 3
            assert 1 <= len(data.network) <= 3 and 2 <= len(data.offers) <= 4
            with_rows.update(data.tables_with_rows)
        assert set(with_rows) == set(TABLES)

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_both_field_shapes_are_present(self, small: dict[str, Path], fmt: str) -> None:
        billing = read_rows(small[fmt], "billing_data")
        usage = read_rows(small[fmt], "usage_data")
        churn = read_rows(small[fmt], "churn_score")
        assert {"billing_date", "monthly_bill", "plan"} <= set().union(*(r.keys() for r in billing if "monthly_bill" in r))
        assert {"date", "monthly_charge", "plan_name"} <= set().union(*(r.keys() for r in billing if "monthly_charge" in r))
        assert any("monthly_bill" in r for r in billing) and any("monthly_charge" in r for r in billing)
        charges = [r["additional_charges"] for r in billing]
        assert any(isinstance(c, list) and c for c in charges)
        if fmt != "parquet":  # one type per Parquet column: there shape A's number is a one-item list
            assert any(isinstance(c, float) for c in charges)
        assert any("total_data_gb" in r and "date" in r for r in usage)
        assert any("data_usage_gb" in r and "month" in r and len(r["month"]) == 7 for r in usage)
        assert any("churn_score" in r for r in churn) and any("churn_probability" in r for r in churn)
        for table in ("call_transcripts", "web_transcripts"):
            rows = read_rows(small[fmt], table)
            assert any("transcript" in r for r in rows) and any("messages" in r for r in rows), table
        calls = read_rows(small[fmt], "call_transcripts")
        assert any("date" in r for r in calls) and any("timestamp" in r for r in calls)

    def test_json_format_is_one_list_per_file(self, small: dict[str, Path]) -> None:
        for table in TABLES:
            text_ = (small["json"] / f"{table}.json").read_text(encoding="utf-8")
            assert text_.startswith("[\n") and text_.endswith("\n]\n")
            assert isinstance(json.loads(text_), list)

    def test_parquet_has_a_row_group_per_chunk(self, small: dict[str, Path]) -> None:
        import pyarrow.parquet as pq

        chunks = -(-SMALL // SMALL_CHUNK)
        for table in TABLES:
            assert pq.ParquetFile(small["parquet"] / f"{table}.parquet").metadata.num_row_groups == chunks

    def test_manifest_tells_how_the_data_was_made(self, small: dict[str, Path]) -> None:
        manifest = json.loads((small["jsonl"] / MANIFEST).read_text(encoding="utf-8"))
        assert {k: manifest[k] for k in ("seed", "customers", "format", "as_of", "chunk_size", "generator_version")} == {
            "seed": 7, "customers": SMALL, "format": "jsonl", "as_of": "2026-11-23", "chunk_size": SMALL_CHUNK,
            "generator_version": generator.GENERATOR_VERSION,
        }
        for table in TABLES:
            entry = manifest["tables"][table]
            assert entry["file"] == f"{table}.jsonl"
            assert entry["rows"] == len(read_rows(small["jsonl"], table))

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_a_single_customer_and_empty_tables_are_fine(self, tmp_path: Path, fmt: str) -> None:
        folder = generate(tmp_path / "one", 1, fmt=fmt, seed=8).out_dir  # seed 8: no calls, chats, clicks or permissions
        source = FileDataSource(folder)
        assert source.table_issues() == []
        assert source.customer_ids() == ["C0000001"]
        data = normalise_customer("C0000001", source.rows_for("C0000001"))
        assert data.data_quality == [] and data.permissions is None and data.transcripts == [] and data.clicks == []
        rows = {t: entry["rows"] for t, entry in json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["tables"].items()}
        assert [t for t, n in rows.items() if n == 0] == ["call_transcripts", "web_transcripts", "web_clicks", "permissions"]

    def test_as_of_moves_every_date(self, tmp_path: Path) -> None:
        folder = generate(tmp_path / "later", 50, fmt="jsonl", as_of=date(2027, 3, 10)).out_dir
        source = FileDataSource(folder)
        for cid in source.customer_ids():
            data = normalise_customer(cid, source.rows_for(cid))
            assert [b.date.isoformat() for b in data.billing] == ["2027-01-01", "2027-02-01", "2027-03-01"]
            assert all(n.date <= date(2027, 3, 10) for n in data.network)
            assert data.profile.join_date < date(2027, 3, 10)
            assert all(t.at.date() < date(2027, 3, 10) for t in data.transcripts)


class TestJsonEncoding:
    """The numpy JSON writer agrees with json.loads and with the Parquet columns, absent fields included."""

    def chunk(self) -> list[tuple[str, Any]]:
        present = np.array([True, False, True])
        item = struct([("name", category(np.array([0, 1, 0, 1]), ('say "hi"', "tab\there"))), ("n", integer(np.array([1, -2, 3, 4])))])
        return [
            ("id", category(np.array([2, 0, 1]), ("a", "b", "c"))),
            ("words", text(np.array(['quote " and \\ back', "line\nbreak", "£ and ü"]))),
            ("maybe", number(np.array([1.25, 0.0, -3.5]), 2, present=present)),
            ("big", number(np.array([1e-7, 123456789.125, 0.1 + 0.2]))),
            ("items", listof(np.array([0, 2, 2, 4]), item, present=np.array([True, True, False]))),
            ("inner", struct([("x", integer(np.array([1, 2, 3]), present=~present)), ("y", text(["p", "q", "r"]))])),
        ]

    def test_rows_round_trip_through_json(self) -> None:
        rows = [json.loads(row) for row in json_rows(self.chunk())]
        assert rows == [
            {"id": "c", "words": 'quote " and \\ back', "maybe": 1.25, "big": 1e-7,
             "items": [{"name": 'say "hi"', "n": 1}, {"name": "tab\there", "n": -2}], "inner": {"y": "p"}},
            {"id": "a", "words": "line\nbreak", "big": 123456789.125, "items": [], "inner": {"x": 2, "y": "q"}},
            {"id": "b", "words": "£ and ü", "maybe": -3.5, "big": 0.1 + 0.2, "inner": {"y": "r"}},
        ]

    def test_parquet_columns_hold_the_same_rows(self) -> None:
        arrow_rows = arrow_table(self.chunk()).to_pylist()

        def drop_nulls(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: drop_nulls(v) for k, v in value.items() if v is not None}
            if isinstance(value, list):
                return [drop_nulls(v) for v in value]
            return value

        assert [drop_nulls(row) for row in arrow_rows] == [json.loads(row) for row in json_rows(self.chunk())]


class TestConversations:
    """Templates carry the words the Journey agent listens for, and only their own topic's words."""

    SAMPLE = dict(
        first="Sam", agent="Priya", place="Leeds", price="£30", bill="£80", extra="£50", roaming="£40", country="Spain",
        competitor="giffgaff", offer="£20", phone="Pixel 10", ref="NW-123456", weeks="two weeks", days="a week",
        family="my son", gb="20GB", day_part="evening",
    )
    EXPECTED = {
        "network": {"coverage"}, "bill": {"billing"}, "roaming": {"roaming"}, "cancel": {"cancellation", "competitor"},
        "data": {"data"}, "family": {"family_plan"}, "upgrade": {"upgrade"}, "cheaper": {"cheaper_plan"},
        "happy": set(), "general": set(),
    }

    def test_every_slot_is_known(self) -> None:
        lines = [words for turns in CONVERSATIONS.values() for variant in turns for _, words in variant]
        used = {name for line in [*lines, *CALL_OPENERS, *CHAT_OPENERS, *CLOSERS] for _, name, _, _ in Formatter().parse(line) if name}
        assert used <= SLOTS
        assert set(CONVERSATIONS) == set(TOPICS)

    @pytest.mark.parametrize("topic", TOPICS)
    def test_customer_words_show_the_topic_and_no_other_worry(self, topic: str) -> None:
        worries = {"coverage", "billing", "cancellation", "competitor", "cheaper_plan", "data"} - self.EXPECTED[topic]
        for variant in CONVERSATIONS[topic]:
            said = " ".join(words.format(**self.SAMPLE) for speaker, words in variant if speaker == "customer")
            found = {interest for interest in INTEREST_PATTERNS if interest_match(said, interest)}
            assert self.EXPECTED[topic] <= found, (topic, said)
            assert not (found & worries) - ({"billing"} if topic == "roaming" else set()), (topic, found)

    def test_complaints_sound_negative_and_thanks_positive(self) -> None:
        def mood(topic: str) -> list[float]:
            return [sentiment(" ".join(w.format(**self.SAMPLE) for s, w in v if s == "customer")) for v in CONVERSATIONS[topic]]

        assert statistics.mean(mood("network") + mood("bill") + mood("cancel")) < -0.3
        assert min(mood("happy")) > 0.3


class TestDistributions:
    """On 20,000 customers the shares match the design (wide enough bands for any seed)."""

    def test_churn_is_beta_shaped(self, population: dict[str, list[dict[str, Any]]]) -> None:
        churn = [r.get("churn_score", r.get("churn_probability")) for r in population["churn_score"]]
        assert len(churn) == 20_000 and all(0 < c < 1 for c in churn)
        assert 0.24 <= statistics.mean(churn) <= 0.36
        assert statistics.median(churn) < statistics.mean(churn)  # right-skewed
        assert 0.05 <= sum(c >= 0.6 for c in churn) / len(churn) <= 0.15

    def test_revenue_is_lognormal_by_segment(self, population: dict[str, list[dict[str, Any]]]) -> None:
        segment = {r["customer_id"]: r["segment"] for r in population["customers"]}
        charges: dict[str, list[float]] = defaultdict(list)
        for row in population["billing_data"]:
            if row.get("billing_date", row.get("date")) == "2026-09-01":
                charges[segment[row["customer_id"]]].append(row.get("monthly_bill", row.get("monthly_charge")))
        consumer, business = charges["consumer"], charges["small_business"]
        assert 0.10 <= len(business) / 20_000 <= 0.20
        assert 22 <= statistics.median(consumer) <= 38 and statistics.median(business) > statistics.median(consumer)
        assert statistics.mean(consumer) > statistics.median(consumer)

    def test_tenure_spans_new_and_long_standing_customers(self, population: dict[str, list[dict[str, Any]]]) -> None:
        months = [(date(2026, 11, 23) - date.fromisoformat(r["join_date"])).days / 30.4 for r in population["customers"]]
        assert 0.15 <= sum(m < 12 for m in months) / len(months) <= 0.25
        assert 0.20 <= sum(m >= 60 for m in months) / len(months) <= 0.45
        assert max(months) <= 181

    def test_network_bill_roaming_and_usage_shares(self, population: dict[str, list[dict[str, Any]]]) -> None:
        scoring = load_config(CONFIG).scoring
        poor = 0
        for rows in by_customer(population["network_data"]).values():
            latency = statistics.mean(r["avg_latency_ms"] for r in rows)
            dropped = sum(r["dropped_calls"] for r in rows)
            weakest = min(r["signal_strength_dbm"] for r in rows)
            poor += latency >= scoring.poor_latency_ms or dropped >= scoring.dropped_calls_threshold or weakest <= -105
        assert 0.12 <= poor / 20_000 <= 0.18
        def total(bill: dict[str, Any]) -> float:
            extra = bill["additional_charges"]
            extra = extra if isinstance(extra, float) else sum(c["amount"] for c in extra)
            return bill.get("monthly_bill", bill.get("monthly_charge")) + extra + bill.get("roaming_charges", 0.0)

        def roamed(bill: dict[str, Any]) -> bool:
            listed = bill["additional_charges"] if isinstance(bill["additional_charges"], list) else []
            return bill.get("roaming_charges", 0.0) > 0 or any("roaming" in c["description"].lower() for c in listed)

        shock = roaming = 0
        for rows in by_customer(population["billing_data"]).values():
            totals = [total(r) for r in rows]
            shock += totals[-1] >= scoring.bill_shock_ratio * statistics.mean(totals[:-1])
            roaming += any(roamed(r) for r in rows[-2:])
        assert 0.07 <= shock / 20_000 <= 0.15
        assert 0.06 <= roaming / 20_000 <= 0.10
        change = []
        for rows in by_customer(population["usage_data"]).values():
            gb = [r.get("total_data_gb", r.get("data_usage_gb")) for r in rows]
            change.append(gb[-1] / gb[0] - 1)
        assert 0.15 <= sum(c > 0.15 for c in change) / len(change) <= 0.25
        assert 0.10 <= sum(c < -0.15 for c in change) / len(change) <= 0.20

    def test_consent_differs_by_channel_and_purpose(self, population: dict[str, list[dict[str, Any]]]) -> None:
        records = population["permissions"]
        assert 0.02 <= 1 - len(records) / 20_000 <= 0.04
        rate = {
            (channel, purpose): sum(r["permissions"][channel][purpose] == "Y" for r in records) / len(records)
            for channel in ("email", "sms", "call", "push_notifications") for purpose in ("marketing", "service_updates", "billing")
        }
        marketing = [rate[c, "marketing"] for c in ("email", "sms", "push_notifications", "call")]
        assert marketing == sorted(marketing, reverse=True) and marketing[0] - marketing[-1] > 0.25
        assert 0.45 <= rate["email", "marketing"] <= 0.70 and 0.10 <= rate["call", "marketing"] <= 0.30
        for channel in ("email", "sms", "call"):
            assert rate[channel, "service_updates"] >= 0.75 and rate[channel, "billing"] >= 0.75
            assert rate[channel, "marketing"] < rate[channel, "service_updates"]
        assert len(Counter(r["do_not_disturb"] for r in records)) >= 4
        assert 0.6 <= sum("preferred_contact_time" in r for r in records) / len(records) <= 0.9

    def test_contacts_clicks_and_offers(self, population: dict[str, list[dict[str, Any]]]) -> None:
        assert 0.30 <= len(by_customer(population["call_transcripts"])) / 20_000 <= 0.42
        assert 0.15 <= len(by_customer(population["web_transcripts"])) / 20_000 <= 0.25
        assert 0.55 <= len(by_customer(population["web_clicks"])) / 20_000 <= 0.90
        offers = by_customer(population["offer_recommendations"])
        assert len(offers) == 20_000 and {len(rows) for rows in offers.values()} == {2, 3, 4}
        assert {r["offer_id"] for r in population["offer_recommendations"]} == set(generator.TREATMENT_IDS)
        assert set(generator.TREATMENT_IDS) <= set(load_config(CONFIG).treatments)
        for rows in offers.values():
            scores = [r["acceptance_probability"] for r in rows]
            assert scores == sorted(scores, reverse=True) and len({r["offer_id"] for r in rows}) == len(rows)

    def test_journeys_show_every_interest_and_signal(self, population: dict[str, list[dict[str, Any]]]) -> None:
        """The Journey agent on 1,500 of them finds every interest and the main signals."""
        wanted = {f"C{n:07d}" for n in range(1, 1501)}
        tables = {t: by_customer([r for r in rows if r["customer_id"] in wanted]) for t, rows in population.items()}
        builder = JourneyBuilder(load_config(CONFIG).scoring)
        interests: Counter[str] = Counter()
        signals: Counter[str] = Counter()
        for cid in sorted(wanted):
            data = normalise_customer(cid, {t: rows.get(cid, []) for t, rows in tables.items()})
            features = builder.features(data, AS_OF)
            interests.update(features.interests)
            signals.update(builder.signals(features).keys())
        assert set(interests) == set(INTEREST_PATTERNS)
        for name in ("network_issue", "bill_shock", "roaming_charges", "high_churn_risk", "cancellation_intent", "negative_sentiment",
                     "high_value", "loyal", "family_interest", "upgrade_interest", "data_growth", "cheaper_plan_interest", "overdue_payment"):
            assert signals[name] >= 10, (name, signals)


class TestStreaming:
    """Memory stays flat: ten times the customers needs hardly more memory."""

    # Peak RSS of the child alone: Linux's VmHWM starts afresh at exec, whereas ru_maxrss keeps
    # the peak of the (large) pytest process the child was forked from.
    SCRIPT = (
        "import re, resource, sys\n"
        "from pathlib import Path\n"
        "from cvm.tools.generator import generate\n"
        "generate(sys.argv[1], int(sys.argv[2]), fmt=sys.argv[3], chunk_size=20000)\n"
        "status = Path('/proc/self/status')\n"
        "hwm = re.search(r'VmHWM:\\s*(\\d+) kB', status.read_text()) if status.exists() else None\n"
        "print(hwm.group(1) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    def peak_kb(self, folder: Path, customers: int, fmt: str) -> int:
        done = subprocess.run([sys.executable, "-c", self.SCRIPT, str(folder), str(customers), fmt],
                              capture_output=True, text=True, check=True, timeout=300)
        return int(done.stdout.split()[-1])

    @pytest.mark.slow
    def test_peak_memory_does_not_grow_with_customers(self, tmp_path: Path) -> None:
        small = self.peak_kb(tmp_path / "small", 40_000, "parquet")
        large = self.peak_kb(tmp_path / "large", 200_000, "parquet")
        print(f"peak RSS: 40,000 customers {small / 1024:.0f} MB, 200,000 customers {large / 1024:.0f} MB")
        assert large - small < 40 * 1024, (small, large)


class TestPipeline:
    """Generated customers go through the real decision pipeline."""

    def test_fifty_customers_are_decided_without_errors(self, small: dict[str, Path], make_runtime: Callable[..., Any]) -> None:
        runtime = make_runtime(data_dir=small["parquet"])
        results = runtime.orchestrator.decide_many([f"C{n:07d}" for n in range(1, 51)])
        assert [r.status for r in results if r.status == "error"] == []
        assert len({r.selected_treatment for r in results}) >= 3
        assert any(r.status == "success" for r in results)


class TestFolderAndArguments:
    """A non-empty folder is refused unless --force; bad arguments are usage errors; a failure leaves nothing behind."""

    def test_non_empty_folder_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "notes.txt").write_text("keep me")
        with pytest.raises(UsageError, match="not empty.*--force"):
            generate(tmp_path / "out", 10, fmt="jsonl")
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]

    def test_force_replaces_tables_in_any_format_and_keeps_other_files(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        generate(out, 10, fmt="parquet")
        (out / "notes.txt").write_text("keep me")
        (out / "web_clicks.csv").write_text("customer_id,timestamp,page\nX,2026-01-01,/\n")
        generate(out, 10, fmt="jsonl", force=True)
        assert {p.suffix for p in out.iterdir()} == {".jsonl", ".json", ".txt"}
        assert (out / "notes.txt").read_text() == "keep me"
        assert FileDataSource(out).customer_ids() == [f"C{n:07d}" for n in range(1, 11)]

    def test_a_file_is_not_a_folder(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        with pytest.raises(UsageError, match="is a file"):
            generate(tmp_path / "file", 10, fmt="jsonl")

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (dict(customers=0), "--customers"), (dict(customers=50_000_001), "--customers"), (dict(chunk_size=0), "--chunk-size"),
            (dict(seed=-1), "--seed"), (dict(fmt="csv"), "--format"),
        ],
    )
    def test_bad_arguments_are_usage_errors(self, tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
        values = dict(customers=10, fmt="jsonl") | arguments
        with pytest.raises(UsageError, match=message):
            generate(tmp_path / "out", values.pop("customers"), **values)
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_a_failure_removes_the_partial_files(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
        original = generator._World.table
        calls = {"n": 0}

        def failing(self: Any, name: str, parquet: bool = False) -> Any:
            calls["n"] += 1
            if calls["n"] > len(TABLES) + 3:  # in the second chunk, after the first was written
                raise RuntimeError("boom")
            return original(self, name, parquet)

        monkeypatch.setattr(generator._World, "table", failing)
        with pytest.raises(RuntimeError, match="boom"):
            generate(tmp_path / "out", 30, fmt=fmt, chunk_size=10)
        assert list((tmp_path / "out").iterdir()) == []

    def test_progress_reports_customers_done(self, tmp_path: Path) -> None:
        seen: list[int] = []
        generate(tmp_path / "out", 25, fmt="jsonl", chunk_size=10, progress=seen.append)
        assert seen == [10, 20, 25]
