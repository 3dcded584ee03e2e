"""What every notification channel shares: safe templates, header and address checks, attachments, shown URLs, retries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cvm.tools.notify import (
    MAX_BODY_CHARS,
    RetryPolicy,
    check_address,
    check_recipient_label,
    check_subject,
    customer_of,
    is_customer_reference,
    load_attachments,
    render_template,
    shown_url,
    split_list,
)
from cvm.utils.errors import UsageError


class TestTemplates:
    """``${path}`` reads the context through mappings and lists, and nothing else is ever evaluated."""

    CONTEXT = {"run": {"id": "run-1", "failed": ["a", "b"]}, "total": 12, "ok": False, "missing": None}

    def test_paths_through_mappings_and_lists(self):
        text = render_template("Run ${run.id}: ${total} customers, first failed ${run.failed.1}", self.CONTEXT)
        assert text == "Run run-1: 12 customers, first failed b"

    def test_non_text_values_as_json(self):
        assert render_template("${run} ${ok} ${missing}", self.CONTEXT) == '{"failed": ["a", "b"], "id": "run-1"} false null'

    def test_escaped_placeholder_and_bare_dollars_stay_text(self):
        assert render_template("$${run.id} costs $5 and {0} {total}", self.CONTEXT) == "${run.id} costs $5 and {0} {total}"

    def test_a_value_holding_a_placeholder_is_not_expanded_again(self):
        assert render_template("${a}", {"a": "${b}", "b": "secret"}) == "${b}"

    def test_missing_name_says_what_the_context_has(self):
        with pytest.raises(UsageError, match=r"subject: \$\{run.name\} is not in the context; run has: failed, id"):
            render_template("${run.name}", self.CONTEXT, what="subject")

    def test_no_attribute_access(self):
        with pytest.raises(UsageError, match="is not in the context"):
            render_template("${run.__class__.__init__}", self.CONTEXT)
        with pytest.raises(UsageError, match="is not in the context"):
            render_template("${__class__}", self.CONTEXT)
        with pytest.raises(UsageError, match="is not a placeholder"):
            render_template("${run.id()}", self.CONTEXT)
        with pytest.raises(UsageError, match="is not a placeholder"):
            render_template("${total + 1}", self.CONTEXT)

    def test_filled_text_is_capped(self):
        with pytest.raises(UsageError, match="the limit is"):
            render_template("${x}${x}", {"x": "y" * (MAX_BODY_CHARS // 2 + 1)})

    def test_a_template_repeating_a_large_value_stops_at_the_cap_not_after_filling_it(self):
        class Counting(dict):
            reads = 0

            def __getitem__(self, key):
                Counting.reads += 1
                return super().__getitem__(key)

        with pytest.raises(UsageError, match="the limit is"):
            render_template("${x}" * 20_000, Counting(x="y" * (MAX_BODY_CHARS // 2 + 1)))
        assert Counting.reads == 2  # not 20,000 copies of 100,000 characters (2 GB) built before the check
        with pytest.raises(UsageError, match="the limit is"):
            render_template("y" * (MAX_BODY_CHARS + 1), {})


class TestChecks:
    """Line breaks in headers are refused; addresses are bare name@domain; customers are recognised."""

    @pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nthere", "a\u2028b", "nul\x00"])
    def test_header_injection_refused(self, subject):
        with pytest.raises(UsageError, match="header injection is refused"):
            check_subject(subject)

    def test_blank_and_long_subjects(self):
        with pytest.raises(UsageError, match="empty"):
            check_subject("   ")
        with pytest.raises(UsageError, match="the limit is 500"):
            check_subject("x" * 501)

    @pytest.mark.parametrize("address", ["ops@example.com", "first.last+cvm@mail.example.co.uk", " ops@example.com "])
    def test_good_addresses(self, address):
        assert check_address(address) == address.strip()

    @pytest.mark.parametrize("address", ["ops", "Ops <ops@example.com>", "a@b@c", "ops@-bad.com", "ops@example.com,x@y.z", ""])
    def test_bad_addresses(self, address):
        with pytest.raises(UsageError, match="is not an e-mail address"):
            check_address(address)

    def test_address_with_line_break(self):
        with pytest.raises(UsageError, match="header injection"):
            check_address("ops@example.com\r\nBcc: x@y.z")

    def test_recipient_labels(self):
        assert check_recipient_label(" ops team ") == "ops team"
        with pytest.raises(UsageError, match="1 to 254"):
            check_recipient_label(" ")

    def test_customer_references(self):
        assert is_customer_reference("customer.U124") and is_customer_reference("Customer:U124")
        assert customer_of("customer.U124") == "U124"
        assert not is_customer_reference("customers@example.com")

    def test_split_list(self):
        assert split_list(" a@x.y , ,b@x.y") == ("a@x.y", "b@x.y") and split_list(None) == ()


class TestShownURL:
    """Errors and the audit name a URL without what may be secret in it."""

    def test_user_password_query_and_fragment_dropped(self):
        slack = "https://user:pw@hooks.example.com:8443/services/T000/B000/s3cretpath?token=s3cret#x"
        shown = shown_url(slack)
        assert shown.startswith("https://hooks.example.com:8443/…") and "s3cret" not in shown and "pw" not in shown
        assert shown_url("http://[::1]:8080/hook?k=v").startswith("http://[::1]:8080/…")
        assert shown_url("http://[::1]:8080/hook") != shown_url("http://[::1]:8080/other")  # two hooks of one host told apart
        assert shown_url("https://hooks.example.com/") == "https://hooks.example.com"
        assert shown_url("http://host:99999999/x") == "<unparsable URL>"


class TestAttachments:
    """Only files under the output folder can be attached."""

    def test_file_under_the_output_folder(self, tmp_path: Path):
        out = tmp_path / "output"
        (out / "calendar").mkdir(parents=True)
        (out / "calendar" / "e.ics").write_bytes(b"BEGIN:VCALENDAR\r\n")
        (attachment,) = load_attachments([str(out / "calendar" / "e.ics")], out)
        assert (attachment.filename, attachment.content_type, attachment.data) == ("e.ics", "text/calendar", b"BEGIN:VCALENDAR\r\n")

    def test_a_huge_file_is_refused_before_it_is_read(self, tmp_path: Path):
        out = tmp_path / "output"
        out.mkdir()
        with open(out / "results.parquet", "wb") as handle:
            handle.truncate(8 * 1024**3)  # 8 GB, sparse: reading it would take 8 GB of memory
        with pytest.raises(UsageError, match="attachments are over 10 MB together"):
            load_attachments([str(out / "results.parquet")], out)

    def test_outside_refused(self, tmp_path: Path):
        out = tmp_path / "output"
        out.mkdir()
        (tmp_path / ".env").write_text("CVM_SMTP_PASSWORD=x")
        for path in (str(tmp_path / ".env"), str(out / ".." / ".env"), "/etc/passwd"):
            with pytest.raises(UsageError, match="is outside the output folder"):
                load_attachments([path], out)

    def test_symlink_out_refused(self, tmp_path: Path):
        out = tmp_path / "output"
        out.mkdir()
        (tmp_path / "secret.txt").write_text("x")
        os.symlink(tmp_path / "secret.txt", out / "link.txt")
        with pytest.raises(UsageError, match="is outside the output folder"):
            load_attachments([str(out / "link.txt")], out)

    def test_missing_file(self, tmp_path: Path):
        with pytest.raises(UsageError, match="does not exist"):
            load_attachments([str(tmp_path / "nothing.ics")], tmp_path)


class TestRetryPolicy:
    def test_bounded_backoff(self):
        policy = RetryPolicy(retries=4, backoff_seconds=1, factor=3, max_delay_seconds=5)
        assert policy.attempts == 5 and [policy.delay(n) for n in range(1, 5)] == [1, 3, 5, 5]
