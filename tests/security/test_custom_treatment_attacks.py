"""Hostile custom treatments, added through ``dynamic_treatment_cli`` as a user (or a script) would.

* Consent downgrade: a sales pitch worded as a service or bill message must still need
  marketing consent, whether the rules or the LLM read it, so a customer who said no to
  marketing calls is never called to be sold something.
* Terminal injection: escape codes, line breaks and bells in names, ids and descriptions
  never reach the treatments file, stdout or stderr.
* Absurd money: Infinity, NaN and overflowing numbers are refused, the file untouched.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import isolated_cli_env, run_console_script
from tests.stub_openai import Answer, StubOpenAI

CLI = "dynamic_treatment_cli"
Run = Callable[..., subprocess.CompletedProcess[str]]
CONTROL_CHARACTERS = ("\x1b", "\x07", "\r", "\x00", "\x9b", "\u202e")


@pytest.fixture
def cli(run_cli: Run) -> Run:
    return lambda *args, **kw: run_cli(CLI, *args, **kw)


@pytest.fixture
def custom_file(cli_env: dict[str, str]) -> Path:
    return Path(cli_env["CVM_CUSTOM_TREATMENTS"])


@pytest.fixture(scope="module")
def outage_added(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The store after one real ``add "Send outage notice by sms"`` (run once per module)."""
    folder = tmp_path_factory.mktemp("outage_added")
    env = isolated_cli_env(folder, f"sqlite:///{folder / 'cvm.sqlite3'}")
    ok(run_console_script(CLI, "add", "Send outage notice by sms", env=env, cwd=folder))
    return Path(env["CVM_CUSTOM_TREATMENTS"]).read_bytes()


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    return proc


def refused(proc: subprocess.CompletedProcess[str], *mentions: str) -> str:
    """Exit 2 and exactly one line on stderr, with no control character and no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    lines = proc.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in proc.stderr, lines
    assert not any(c in proc.stderr + proc.stdout for c in CONTROL_CHARACTERS), repr(proc.stderr)
    for mention in mentions:
        assert mention in lines[0], f"{mention!r} not in {lines[0]!r}"
    return lines[0]


def stored(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# Sales pitches a marketer (or someone gaming consent) might word as service or bill messages.
SALES_PITCHES = [
    "Call customers to sell them the premium network plan",
    "Call customers to sell them the premium network plan for service updates",
    "Text customers promoting our partner's streaming service",
    "Email customers to bill them for the new TV package",
    "Send service update: upgrade to fibre today",
    "Notify customers of network maintenance and our cheaper tariffs",
    "Send bill reminder with a cross-sell of home broadband",
    "Send outage apology with a voucher for the sports add-on",
]


class TestConsentDowngrade:
    @pytest.mark.parametrize("text", SALES_PITCHES)
    def test_a_sales_pitch_is_stored_as_marketing(self, cli: Run, custom_file: Path, text: str) -> None:
        ok(cli("add", text, "--parser", "rules"))
        assert [entry["purpose"] for entry in stored(custom_file).values()] == ["marketing"]

    @pytest.mark.slow
    def test_a_customer_without_marketing_consent_is_not_called_to_be_sold(self, cli: Run, tmp_path: Path) -> None:
        # U123 said Y to service calls and N to marketing calls, and has a network problem.
        ok(cli("add", "Call customers to sell them the premium network plan, priority 1"))
        ok(cli("add", "Call customers about planned network maintenance tonight, priority 1"))
        ok(cli("batch", "U123", "--dry-run", "--output-file", "dry.json"))
        decision = json.loads((tmp_path / "output" / "dry.json").read_text(encoding="utf-8"))["results"][0]
        reasons = {a["treatment_id"]: a["reason"] for a in decision["alternatives"]}
        assert decision["selected_treatment"] != "custom_sell_them_the_premium_network_plan"
        assert reasons["custom_sell_them_the_premium_network_plan"] == "no_consent"
        maintenance = "custom_planned_network_maintenance_tonight"
        assert decision["selected_treatment"] == maintenance or reasons[maintenance] != "no_consent"

    @pytest.mark.parametrize("proposed", ["service_updates", "billing"])
    def test_the_llm_cannot_downgrade_the_purpose(
        self, cli: Run, custom_file: Path, llm_stub: StubOpenAI, proposed: str
    ) -> None:
        fields = ("display_name", "channel", "purpose", "max_per_day", "priority", "cost_per_contact_pounds", "requires_approval")
        llm_stub.push(Answer({name: (proposed if name == "purpose" else None) for name in fields}))
        env = {"OPENAI_BASE_URL": llm_stub.base_url, "OPENAI_API_KEY": "test-key"}
        report = json.loads(ok(cli("add", SALES_PITCHES[0], "--parser", "llm", "--output", "json", env=env)).stdout)
        assert llm_stub.request_count == 1
        assert report["treatment"]["purpose"] == "marketing"
        assert any("rejected by the validator: purpose" in note for note in report["notes"])
        assert [entry["purpose"] for entry in stored(custom_file).values()] == ["marketing"]

    def test_a_stated_service_purpose_on_a_sales_pitch_is_kept_only_with_a_warning(self, cli: Run, custom_file: Path) -> None:
        body = {"display_name": "Premium Network Plan", "channel": "call", "purpose": "service_updates",
                "description": "Call customers to sell them the premium network plan"}
        proc = ok(cli("add", json.dumps(body)))
        assert "warning: purpose service_updates was kept as stated" in proc.stderr
        assert stored(custom_file)["custom_premium_network_plan"]["purpose"] == "service_updates"


class TestTerminalInjection:
    @pytest.mark.parametrize(
        ("args", "mention"),
        [
            (("add", json.dumps({"display_name": "Video\x1b[2J\x1b[H", "channel": "sms"})), "display_name: 'Video\\x1b[2J"),
            (("add", json.dumps({"display_name": "Video\r\nadded custom_admin", "channel": "sms"})), "display_name: 'Video\\r\\nadded"),
            (("add", json.dumps({"display_name": "Video\x07\x07", "channel": "sms"})), "U+0007"),
            (("add", json.dumps({"display_name": "Video\u202eexe.txt", "channel": "sms"})), "U+202E"),
            (("add", json.dumps({"display_name": "Video", "channel": "sms\x1b[31m"})), "channel: 'sms\\x1b[31m'"),
            (("add", json.dumps({"display_name": "Video", "channel": "sms", "\x1b]0;pwned\x07": 1})), "a key: '\\x1b]0;pwned"),
            (("add", json.dumps({"id": "custom_x\x1b[31m", "display_name": "Video", "channel": "sms"})), "id: 'custom_x\\x1b[31m' is not a valid id"),
            (("add", 'Send "Video\x1b[31m" by sms'), "the treatment text: "),
            (("add", "Send video\x9b2J by sms"), "U+009B"),
            (("get", "custom_\x1b[2Jx"), "ID: 'custom_\\x1b[2Jx'"),
            (("update", "custom_x\r\nremoved everything", "limit 3"), "ID: 'custom_x\\r\\nremoved everything'"),
            (("remove", "custom_\x07x"), "ID: 'custom_\\x07x'"),
        ],
    )
    def test_refused_in_one_clean_line_and_nothing_written(
        self, cli: Run, custom_file: Path, outage_added: bytes, args: tuple[str, ...], mention: str
    ) -> None:
        custom_file.write_bytes(outage_added)
        before = custom_file.read_bytes()
        refused(cli(*args), mention)
        assert custom_file.read_bytes() == before

    @pytest.mark.slow
    def test_a_description_is_stored_and_shown_without_control_characters(self, cli: Run, custom_file: Path) -> None:
        body = {"display_name": "Outage Notice", "channel": "sms",
                "description": "Outage\x1b[2J\x1b[H fixed\r\nFAKE: all customers approved\x07 \x1b]0;title\x07\u202eok"}
        outputs = [ok(cli("add", json.dumps(body))).stdout, ok(cli("get", "custom_outage_notice")).stdout,
                   ok(cli("list", "--custom-only")).stdout, ok(cli("list", "--output", "json")).stdout]
        description = stored(custom_file)["custom_outage_notice"]["description"]
        assert description == "Outage fixed FAKE: all customers approved ok"
        for text in [*outputs, custom_file.read_text(encoding="utf-8")]:
            assert not any(c in text for c in CONTROL_CHARACTERS), repr(text)


class TestAbsurdMoney:
    @pytest.mark.parametrize(
        ("value", "mention"),
        [("Infinity", "Infinity is not a finite number"), ("-Infinity", "-Infinity is not a finite number"),
         ("NaN", "NaN is not a finite number"), ("1e400", "1e400 is not a finite number"),
         ("-5", "-5 is outside 0 to 10,000"), ("1e308", "1e+308 is outside 0 to 10,000"), ("10001", "10001 is outside 0 to 10,000")],
    )
    def test_a_json_cost_is_finite_and_bounded(self, cli: Run, custom_file: Path, value: str, mention: str) -> None:
        ok(cli("add", "Send outage notice by sms"))
        before = custom_file.read_bytes()
        body = '{"display_name": "Gift", "channel": "email", "constraints": {"cost_per_contact_pounds": %s}}' % value
        refused(cli("add", body), f"constraints.cost_per_contact_pounds: {mention}", "cost of one contact in pounds")
        assert custom_file.read_bytes() == before

    @pytest.mark.parametrize(
        ("text", "mention"),
        [("Send gift voucher costing £1e308", "constraints.cost_per_contact_pounds: 1e+308 is outside 0 to 10,000"),
         ("Send gift voucher, cost inf", "constraints.cost_per_contact_pounds: 'inf' is not a finite number"),
         ("Send gift voucher, costing nan", "constraints.cost_per_contact_pounds: 'nan' is not a finite number"),
         ("Send gift voucher, limit 1e308", "constraints.max_per_day: a 309-digit number is outside 0 to 10,000,000"),
         ("Send gift voucher, limit infinity per day", "constraints.max_per_day: 'infinity' is not a finite number")],
    )
    def test_a_text_cost_or_limit_is_finite_and_bounded(self, cli: Run, custom_file: Path, text: str, mention: str) -> None:
        refused(cli("add", text), mention)
        assert not custom_file.exists()
