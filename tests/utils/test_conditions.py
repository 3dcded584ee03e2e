"""The safe condition language of declarative triggers: what it accepts, what it rejects, how it explains."""

from __future__ import annotations

import math
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvm.agents.trigger import JOURNEY_FIELDS
from cvm.utils.conditions import MAX_DEPTH, MAX_LENGTH, MAX_NODES, Condition, ConditionError, Outcome

NS = {
    "churn_probability": 0.7,
    "tenure_months": 30,
    "network": {"quality": "poor", "latency_ms": 120.0, "dropped_calls": 4},
    "billing": {"bill_shock": False, "monthly_revenue": 45.0},
    "sentiment": {"score": -0.5},
    "interests": ["coverage", "billing"],
    "segment": "consumer",
}


def holds(text: str, namespace: dict | None = None) -> bool:
    return Condition(text).evaluate(NS if namespace is None else namespace).matched


class TestBooleanLogic:
    """and, or and not combine comparisons the way Python does."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("churn_probability >= 0.6 and network.latency_ms > 70", True),
            ("churn_probability >= 0.8 and network.latency_ms > 70", False),
            ("churn_probability >= 0.8 or network.latency_ms > 70", True),
            ("churn_probability >= 0.8 or network.latency_ms > 200", False),
            ("not billing.bill_shock", True),
            ("not (churn_probability > 0.5)", False),
            ("not not billing.bill_shock", False),
            ("billing.bill_shock or (network.quality == 'poor' and 'coverage' in interests)", True),
            ("(billing.bill_shock or network.quality == 'good') and tenure_months > 12", False),
            ("churn_probability > 0.5 and tenure_months > 12 and segment == 'consumer'", True),
            ("billing.bill_shock == False", True),
            ("billing.bill_shock == false", True),
            ("network.quality != 'good'", True),
        ],
    )
    def test_truth_table(self, text: str, expected: bool) -> None:
        assert holds(text) is expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("0.5 < churn_probability < 0.8", True),
            ("0.5 < churn_probability < 0.6", False),
            ("0.8 < churn_probability < 0.9", False),
            ("1 <= tenure_months <= 30 < 31", True),
            ("1 <= tenure_months <= 29", False),
            ("network.dropped_calls == 4 == network.dropped_calls", True),
        ],
    )
    def test_chained_comparisons(self, text: str, expected: bool) -> None:
        assert holds(text) is expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("network.quality in ['poor', 'fair']", True),
            ("network.quality in ['good', 'fair']", False),
            ("network.quality not in ['good', 'fair']", True),
            ("network.quality not in ['poor']", False),
            ("'billing' in interests", True),
            ("'roaming' in interests", False),
            ("'roaming' not in interests", True),
            ("tenure_months in [12, 24, 30]", True),
            ("tenure_months in []", False),
            ("network.dropped_calls in (1, 4)", True),
        ],
    )
    def test_membership(self, text: str, expected: bool) -> None:
        assert holds(text) is expected


class TestMissingAndMismatched:
    """A missing value, None or a type mismatch makes its comparison false, never an error."""

    @pytest.mark.parametrize(
        "text",
        [
            "nothing > 1",
            "nothing == 1",
            "nothing < 1",
            "network.jitter_ms > 5",
            "network.quality.deep == 'x'",
            "'x' in nothing",
            "nothing in [1, 2]",
            "nothing not in [1, 2]",
            "nothing",
            "segment.child == 1",
        ],
    )
    def test_missing_is_false(self, text: str) -> None:
        assert holds(text) is False

    def test_none_values_are_false(self) -> None:
        ns = {"churn_probability": None, "network": {"quality": None}, "interests": None}
        assert holds("churn_probability >= 0", ns) is False
        assert holds("churn_probability < 1", ns) is False
        assert holds("network.quality == 'poor'", ns) is False
        assert holds("'coverage' in interests", ns) is False
        assert holds("churn_probability >= 0 or network.quality != 'good'", ns) is False

    @pytest.mark.parametrize(
        "text",
        [
            "segment > 5",
            "churn_probability > 'high'",
            "'x' in tenure_months",
            "tenure_months in 'abc'",
            "interests > 3",
            "network < 1",
        ],
    )
    def test_type_mismatch_is_false(self, text: str) -> None:
        assert holds(text) is False

    def test_missing_value_on_one_branch_does_not_spoil_the_other(self) -> None:
        assert holds("nothing > 1 or churn_probability > 0.5") is True
        assert holds("segment > 5 or 'coverage' in interests") is True


class TestRejected:
    """Every construct outside the whitelist is rejected when parsed, with a 1-based column."""

    @pytest.mark.parametrize(
        ("text", "column"),
        [
            ("len(interests) > 1", 1),
            ("churn_probability > 0.5 and open('x')", 29),
            ("network.quality.upper() == 'POOR'", 1),
            ("__import__('os').system('id') == 0", 1),
            ("interests[0] == 'coverage'", 1),
            ("churn_probability * 100 > 60", 1),
            ("tenure_months + 1 > 12", 1),
            ("tenure_months > 12 - 1", 17),
            ("(lambda: True)", 2),
            ("[x for x in interests] == []", 1),
            ("f'{segment}' == 'consumer'", 1),
            ("(x := 1) == 1", 2),
            ("churn_probability if True else 0", 1),
            ("{'a': 1} == churn_probability", 1),
            ("{1, 2} == churn_probability", 1),
            ("b'x' == segment", 1),
            ("segment is None", 1),
            ("'abc'.upper == segment", 1),
        ],
    )
    def test_forbidden_constructs(self, text: str, column: int) -> None:
        with pytest.raises(ConditionError) as info:
            Condition(text)
        assert info.value.column == column
        assert f"column {column}" in str(info.value)

    @pytest.mark.parametrize(
        ("text", "column"),
        [
            ("churn_probability >= 0.5 and and tenure_months > 1", 30),
            ("churn_probability => 0.5", 19),
            ("churn_probability >= 0.5 or (tenure_months > 3", 29),
        ],
    )
    def test_syntax_errors_have_a_column(self, text: str, column: int) -> None:
        with pytest.raises(ConditionError, match="syntax error") as info:
            Condition(text)
        assert info.value.column == column

    @pytest.mark.parametrize("text", ["", "   ", "\n"])
    def test_empty_condition(self, text: str) -> None:
        with pytest.raises(ConditionError, match="empty"):
            Condition(text)

    def test_condition_error_is_a_value_error(self) -> None:
        assert issubclass(ConditionError, ValueError)

    def test_never_evaluated_by_python(self, tmp_path) -> None:
        marker = tmp_path / "pwned"
        with pytest.raises(ConditionError):
            Condition(f"__import__('pathlib').Path({str(marker)!r}).touch() or True")
        assert not marker.exists()


class TestSizeBounds:
    """Hostile sizes are refused with a clear message instead of exhausting memory or the stack."""

    @pytest.mark.parametrize("count", [MAX_DEPTH + 1, 20_000])
    def test_a_long_run_of_not_is_too_deep(self, count: int) -> None:
        with pytest.raises(ConditionError, match=r"^expression too deep \(more than 40 levels of nesting\) at column 1$"):
            Condition("not " * count + "billing.bill_shock")

    def test_not_with_parentheses_between_is_too_deep(self) -> None:
        with pytest.raises(ConditionError, match="expression too deep"):
            Condition("not (" * (MAX_DEPTH + 1) + "billing.bill_shock" + ")" * (MAX_DEPTH + 1))

    def test_a_long_dotted_name_is_too_deep(self) -> None:
        with pytest.raises(ConditionError, match="expression too deep"):
            Condition("network" + ".x" * (MAX_DEPTH + 1))

    def test_parentheses_beyond_the_parser_limit_are_too_deep(self) -> None:
        with pytest.raises(ConditionError, match="expression too deep"):
            Condition("(" * 250 + "tenure_months" + ")" * 250)

    def test_too_many_parts(self) -> None:
        text = " or ".join(f"t == {n}" for n in range(MAX_NODES // 4))
        assert len(text) <= MAX_LENGTH
        with pytest.raises(ConditionError, match=f"expression too large \\(more than {MAX_NODES} parts\\)"):
            Condition(text)

    def test_too_long(self) -> None:
        text = "segment == '" + "x" * MAX_LENGTH + "'"
        with pytest.raises(ConditionError, match=f"too long \\({len(text)} characters, at most {MAX_LENGTH}\\)"):
            Condition(text)

    def test_not_inside_a_string_and_not_in_are_not_nesting(self) -> None:
        words = "'" + "not " * (MAX_DEPTH + 5) + "'"
        assert holds(f"segment != {words} and 'roaming' not in interests and not not churn_probability")

    def test_readable_nesting_is_accepted(self) -> None:
        assert holds("not (billing.bill_shock or (tenure_months < 12 and not (network.quality == 'good')))")


class TestKnownFields:
    """With known_fields, a field that does not exist is rejected with its column; literals are not fields."""

    def test_unknown_field_rejected(self) -> None:
        with pytest.raises(ConditionError, match="unknown field 'churn_probabilty'") as info:
            Condition("churn_probability >= 0.5 and churn_probabilty > 0.1", JOURNEY_FIELDS)
        assert info.value.column == 30

    def test_unknown_nested_field_rejected(self) -> None:
        with pytest.raises(ConditionError, match="network.jitter"):
            Condition("network.jitter > 5", JOURNEY_FIELDS)

    def test_known_fields_and_literals_accepted(self) -> None:
        c = Condition("network.quality == 'poor' and billing.bill_shock == true or sentiment.score == None", JOURNEY_FIELDS)
        assert c.fields == {"network.quality", "billing.bill_shock", "sentiment.score"}

    def test_without_known_fields_anything_dotted_is_accepted(self) -> None:
        assert Condition("made.up.field > 1").fields == {"made.up.field"}


class TestOutcome:
    """Outcome.because and Outcome.fields name the comparisons and fields that made the condition hold."""

    def test_only_the_branch_that_held_is_explained(self) -> None:
        outcome = Condition("churn_probability >= 0.9 or network.latency_ms > 70").evaluate(NS)
        assert outcome.matched
        assert outcome.fields == ("network.latency_ms",)
        assert outcome.because == ("network.latency_ms 120 > 70",)

    def test_and_explains_every_part(self) -> None:
        outcome = Condition("churn_probability >= 0.6 and 'coverage' in interests").evaluate(NS)
        assert outcome.matched
        assert outcome.fields == ("churn_probability", "interests")
        assert len(outcome.because) == 2
        assert "churn_probability 0.7 >= 0.6" in outcome.because
        assert any("coverage" in b and "in" in b for b in outcome.because)

    def test_bare_name_and_not(self) -> None:
        outcome = Condition("not billing.bill_shock").evaluate(NS)
        assert outcome == Outcome(True, ("not (billing.bill_shock)",), ("billing.bill_shock",))
        outcome = Condition("network.quality").evaluate(NS)
        assert outcome.matched and outcome.because == ("network.quality is true",) and outcome.fields == ("network.quality",)

    def test_no_match_has_no_explanation(self) -> None:
        assert Condition("churn_probability > 0.9").evaluate(NS) == Outcome(False, (), ())

    def test_fields_lists_what_the_condition_reads(self) -> None:
        c = Condition("churn_probability >= 0.5 and (network.avg_latency_ms > 70 or network.dropped_calls >= 3)")
        assert c.fields == {"churn_probability", "network.avg_latency_ms", "network.dropped_calls"}


class TestNegativeNumbers:
    """A negative number is a literal, not arithmetic (sentiment scores run from -1 to 1)."""

    def test_negative_literal_threshold(self) -> None:
        # BUG (src/utils/conditions.py _check): -0.3 parses as UnaryOp(USub, 0.3), which falls into the
        # "not allowed" branch, so `sentiment.score < -0.3` raises "UnaryOp is not allowed ... at column 19".
        condition = Condition("sentiment.score < -0.3")
        assert condition.evaluate({"sentiment": {"score": -0.5}}).matched
        assert not condition.evaluate({"sentiment": {"score": 0.1}}).matched


finite = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)


class TestProperties:
    """Comparisons evaluate exactly as Python compares the same numbers."""

    @settings(max_examples=300, deadline=None)
    @given(finite, finite)
    def test_field_against_field(self, x: float, t: float) -> None:
        for symbol, fn in ((">=", operator.ge), ("<", operator.lt), ("==", operator.eq), ("!=", operator.ne)):
            assert Condition(f"x {symbol} t").evaluate({"x": x, "t": t}).matched is fn(x, t)

    @settings(max_examples=300, deadline=None)
    @given(finite, st.one_of(st.integers(min_value=0, max_value=10**12), st.floats(min_value=0, allow_nan=False, allow_infinity=False)))
    def test_field_against_literal_threshold(self, x: float, t: float) -> None:
        assert Condition(f"x >= {t!r}").evaluate({"x": x}).matched is (x >= t)

    @settings(max_examples=100, deadline=None)
    @given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
    def test_nan_and_infinity_values(self, x: float, t: float) -> None:
        assert Condition("x >= t").evaluate({"x": x, "t": t}).matched is (x >= t)
        if math.isnan(x):
            assert not Condition("x >= t").evaluate({"x": x, "t": t}).matched
