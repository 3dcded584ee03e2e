"""Reading a run back: an unknown run, a customer the run did not decide and a bad customer id are refused."""

from __future__ import annotations

import pytest

from cvm.agents.messages import ErrorResponse, GenerateReport
from tests.reporting.conftest import RUN


@pytest.mark.usefixtures("no_charts")
class TestRefusals:
    def test_unknown_run(self, processed):
        answer = processed.report.process(GenerateReport(run_id="no-such-run"))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "usage_error"
        assert "unknown run id 'no-such-run'" in answer.message

    def test_unknown_customer_in_the_run(self, processed):
        answer = processed.report.process(GenerateReport(run_id=RUN, customer_id="U999"))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "usage_error"
        assert "U999 has no decision in run" in answer.message

    def test_bad_customer_id(self, processed):
        answer = processed.report.process(GenerateReport(run_id=RUN, customer_id="../U128"))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "invalid_customer_id"
