"""Rendering: amounts in the report are never ``£inf`` or ``£nan``."""

from __future__ import annotations

import pytest

from cvm.reporting.markdown import money


class TestMoney:
    """Amounts in the report: never ``£inf`` or ``£nan``."""

    @pytest.mark.parametrize("amount", [float("inf"), float("-inf"), float("nan"), None])
    def test_unknown_or_non_finite_is_a_dash(self, amount: float | None) -> None:
        assert money(amount, "GBP") == "-"

    def test_finite_amounts(self) -> None:
        assert (money(1234.5, "GBP"), money(-3, "GBP"), money(2, "CHF")) == ("£1,234.50", "-£3.00", "2.00 CHF")
