"""The result file: atomic JSON writes and the run summary."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cvm.agents.messages import Alternative, DecisionResult
from cvm.tools.results import non_regular_kind, summarize, write_json_atomic, write_result_file


class Unprintable:
    """An object json can only serialise through ``str()``, which fails."""

    def __str__(self) -> str:
        raise RuntimeError("cannot render this object")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class TestWriteJsonAtomic:
    """write_json_atomic writes whole files or nothing, and never leaves temp files."""

    def test_writes_and_leaves_no_temp_file(self, tmp_path: Path) -> None:
        target = tmp_path / "out" / "deep" / "results.json"
        write_json_atomic(target, {"b": [1, 2], "a": "é"})
        assert json.loads(target.read_text(encoding="utf-8")) == {"b": [1, 2], "a": "é"}
        assert target.read_text(encoding="utf-8").endswith("}\n")
        assert "é" in target.read_text(encoding="utf-8")  # ensure_ascii=False
        assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]

    def test_non_json_values_use_str(self, tmp_path: Path) -> None:
        target = tmp_path / "r.json"
        write_json_atomic(target, {"at": datetime(2026, 11, 23, 10, tzinfo=timezone.utc), "path": Path("a/b")})
        assert json.loads(target.read_text(encoding="utf-8")) == {"at": "2026-11-23 10:00:00+00:00", "path": "a/b"}

    def test_replaces_the_old_file(self, tmp_path: Path) -> None:
        target = tmp_path / "r.json"
        write_json_atomic(target, {"version": 1})
        inode_before = target.stat().st_ino
        write_json_atomic(target, {"version": 2})
        assert json.loads(target.read_text(encoding="utf-8")) == {"version": 2}
        assert target.stat().st_ino != inode_before  # a new file was renamed over, not rewritten in place
        assert leftovers(tmp_path) == []

    def test_failure_during_dump_keeps_the_old_file(self, tmp_path: Path) -> None:
        target = tmp_path / "r.json"
        write_json_atomic(target, {"version": 1})
        before = target.read_bytes()
        # The big list is streamed to the temp file before the failing object is reached.
        with pytest.raises(RuntimeError, match="cannot render this object"):
            write_json_atomic(target, {"rows": list(range(50_000)), "bad": Unprintable()})
        assert target.read_bytes() == before
        assert leftovers(tmp_path) == []
        assert [p.name for p in tmp_path.iterdir()] == ["r.json"]

    def test_failure_without_old_file_creates_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimeError):
            write_json_atomic(tmp_path / "new.json", [Unprintable()])
        assert list(tmp_path.iterdir()) == []

    def test_file_mode_follows_umask(self, tmp_path: Path) -> None:
        # A result file is read by other people and tools; it should get the usual umask mode (0644
        # under umask 022), like a file written with open(), not mkstemp's private 0600.
        old_umask = os.umask(0o022)
        try:
            target = tmp_path / "r.json"
            write_json_atomic(target, [])
        finally:
            os.umask(old_umask)
        assert target.read_text(encoding="utf-8") == "[]\n"
        assert stat.S_IMODE(target.stat().st_mode) == 0o644


def result(customer_id: str, status: str, treatment: str | None = None, **extra: object) -> DecisionResult:
    return DecisionResult(customer_id=customer_id, status=status, selected_treatment=treatment, **extra)


CAPACITY_ALT = Alternative(treatment_id="marketing_call_back", reason="capacity_exhausted", detail="2 of 2 used today")
CONSENT_ALT = Alternative(treatment_id="retention_sms", reason="no_consent", detail="sms marketing is N")


@pytest.fixture
def results() -> list[DecisionResult]:
    return [
        result("U1", "success", "retention_email", expected_value=10.0, alternatives=(CAPACITY_ALT,),
               selector="rules", selector_fallback="llm timed out", data_quality=("billing row skipped",),
               scheduled_for="2026-11-24T09:00:00+00:00"),
        result("U2", "success", "retention_email", expected_value=5.5, alternatives=(CONSENT_ALT,)),
        result("U3", "pending_approval", "early_upgrade", expected_value=20.123),
        result("U4", "no_action", "ignore", expected_value=3.0, alternatives=(CAPACITY_ALT,)),
        result("U5", "error", None, error="unknown customer", replayed=True),
        result("U6", "success", "data_boost", expected_value=None),
    ]


class TestSummarize:
    """summarize counts statuses, treatments, value and fallbacks the way a CRM lead reads them."""

    def test_counts(self, results: list[DecisionResult]) -> None:
        assert summarize(results, selector="rules", dry_run=False, currency="GBP") == {
            "total_customers": 6,
            "by_status": {"error": 1, "no_action": 1, "pending_approval": 1, "success": 3},
            "by_treatment": {"data_boost": 1, "early_upgrade": 1, "retention_email": 2},
            "expected_value_total": 35.62,
            "currency": "GBP",
            "selector": "rules",
            "llm_fallbacks": 1,
            "capacity_fallbacks": 1,
            "customers_with_data_quality_issues": 1,
            "scheduled_for_later": 1,
            "replayed": 1,
            "approvals_pending": 1,
            "auto_approved": 0,
            "auto_approve": "off",
            "dry_run": False,
        }

    def test_auto_approve_is_said_in_words(self, results: list[DecisionResult]) -> None:
        auto = [*results, result("U7", "success", "early_upgrade", approved_by="auto-approve (testing)")]
        summary = summarize(auto, selector="rules", dry_run=False, currency="GBP", auto_approve=True)
        assert summary["auto_approved"] == 1
        assert summary["auto_approve"].startswith("ON (testing)")

    def test_empty(self) -> None:
        summary = summarize([], selector="llm", dry_run=True, currency="EUR")
        assert summary["total_customers"] == 0
        assert summary["by_status"] == {}
        assert summary["by_treatment"] == {}
        assert summary["expected_value_total"] == 0
        assert (summary["selector"], summary["dry_run"], summary["currency"]) == ("llm", True, "EUR")

    def test_key_order_is_sorted(self, results: list[DecisionResult]) -> None:
        summary = summarize(list(reversed(results)), selector="rules", dry_run=False, currency="GBP")
        assert list(summary["by_status"]) == ["error", "no_action", "pending_approval", "success"]
        assert list(summary["by_treatment"]) == ["data_boost", "early_upgrade", "retention_email"]


class TestWriteResultFile:
    """The result file has run_id, generated_at, summary and results without the message tag."""

    def test_document_shape(self, tmp_path: Path, results: list[DecisionResult]) -> None:
        target = tmp_path / "output" / "cvm_results.json"
        summary = summarize(results, selector="rules", dry_run=False, currency="GBP")
        write_result_file(
            target, run_id="run-42", generated_at=datetime(2026, 11, 23, 10, tzinfo=timezone.utc),
            summary=summary, results=results,
        )
        doc = json.loads(target.read_text(encoding="utf-8"))
        assert list(doc) == ["run_id", "generated_at", "summary", "results"]
        assert doc["run_id"] == "run-42"
        assert doc["generated_at"] == "2026-11-23T10:00:00+00:00"
        assert doc["summary"] == summary
        assert [r["customer_id"] for r in doc["results"]] == ["U1", "U2", "U3", "U4", "U5", "U6"]
        assert all("type" not in r for r in doc["results"])
        assert doc["results"][0]["alternatives"] == [
            {"treatment_id": "marketing_call_back", "reason": "capacity_exhausted", "detail": "2 of 2 used today", "expected_value": None}
        ]
        assert doc["results"][4]["error"] == "unknown customer"


NON_FINITE = (float("nan"), float("inf"), float("-inf"))


class TestNonFiniteNumbers:
    """No result file ever holds a NaN or Infinity token: non-finite numbers are written as null."""

    def test_result_file_has_null_for_every_non_finite_value(self, tmp_path: Path) -> None:
        odd = [
            result("U1", "success", "retention_email", expected_value=float("inf"), confidence=float("nan"),
                   alternatives=(Alternative(treatment_id="data_boost", reason="lower_ranked", detail="x", expected_value=float("-inf")),)),
            result("U2", "success", "retention_email", expected_value=4.5, confidence=0.7),
        ]
        target = tmp_path / "r.json"
        summary = summarize(odd, selector="rules", dry_run=False, currency="GBP")
        write_result_file(target, run_id="r", generated_at=datetime(2026, 11, 23, tzinfo=timezone.utc), summary=summary, results=odd)
        text = target.read_text(encoding="utf-8")
        for token in ("NaN", "Infinity"):
            assert token not in text
        first = json.loads(text)["results"][0]
        assert (first["expected_value"], first["confidence"], first["alternatives"][0]["expected_value"]) == (None, None, None)

    def test_summary_total_counts_the_finite_values_only(self) -> None:
        odd = [result(f"U{n}", "success", "retention_email", expected_value=v) for n, v in enumerate((*NON_FINITE, 2.25))]
        assert summarize(odd, selector="rules", dry_run=False, currency="GBP")["expected_value_total"] == 2.25

    @pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
    def test_nested_non_finite_values_become_null(self, tmp_path: Path, bad: float) -> None:
        target = tmp_path / "r.json"
        write_json_atomic(target, {"a": bad, "b": [1.5, bad, {"c": (bad, "x")}], "d": 0})
        assert json.loads(target.read_text(encoding="utf-8")) == {"a": None, "b": [1.5, None, {"c": [None, "x"]}], "d": 0}


class TestNotARegularFile:
    """The atomic rename would replace a device, FIFO or socket with a regular file; it is refused instead."""

    def test_kinds(self, tmp_path: Path) -> None:
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        plain = tmp_path / "plain.json"
        plain.write_text("{}", encoding="utf-8")
        assert non_regular_kind(fifo) == "a FIFO"
        assert non_regular_kind(Path("/dev/null")) == "a character device"
        assert non_regular_kind(tmp_path) == "a folder"
        assert non_regular_kind(plain) is None
        assert non_regular_kind(tmp_path / "missing.json") is None
        assert non_regular_kind(plain / "below_a_file.json") is None

    def test_write_refuses_a_fifo_and_leaves_it(self, tmp_path: Path) -> None:
        fifo = tmp_path / "out.json"
        os.mkfifo(fifo)
        with pytest.raises(FileExistsError, match="it exists and is a FIFO, not a regular file"):
            write_json_atomic(fifo, {"a": 1})
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        assert leftovers(tmp_path) == []


class TestResultFileStreamed:
    """The result file is written one result at a time: the bytes of the whole document, without holding it."""

    def _write(self, path: Path, results: list[DecisionResult]) -> None:
        summary = summarize(results, selector="rules", dry_run=False, currency="GBP")
        write_result_file(path, run_id="r", generated_at=datetime(2026, 11, 23, tzinfo=timezone.utc), summary=summary, results=results)

    @pytest.mark.parametrize("count", [0, 1, 7])
    def test_same_bytes_as_the_whole_document(self, tmp_path: Path, count: int) -> None:
        odd = [result(f"U{n}", "success", "retention_email", expected_value=float("nan") if n == 2 else n + 0.5, confidence=0.7,
                      alternatives=(Alternative(treatment_id="data_boost", reason="lower_ranked", detail="é\nx", expected_value=1.0),))
               for n in range(count)]
        self._write(tmp_path / "streamed.json", odd)
        summary = summarize(odd, selector="rules", dry_run=False, currency="GBP")
        write_json_atomic(tmp_path / "whole.json", {"run_id": "r", "generated_at": "2026-11-23T00:00:00+00:00", "summary": summary,
                                                    "results": [r.model_dump(mode="json", exclude={"type"}) for r in odd]})
        assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()

    def test_memory_does_not_grow_with_the_results(self, tmp_path: Path) -> None:
        import tracemalloc

        many = [result(f"U{n}", "success", "retention_email", expected_value=1.0, reasons=("fits the journey " * 20,) * 5)
                for n in range(3_000)]
        tracemalloc.start()
        try:
            self._write(tmp_path / "r.json", many)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (tmp_path / "r.json").stat().st_size > 5_000_000
        assert peak < 1_000_000  # a few results' worth, not the 5 MB document (and its dicts) at once
