"""The array rules: one customer (N = 1, or plain floats) gets what the same customer gets among many."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cvm.decision import vector
from cvm.decision.journey import INTEREST_PATTERNS
from cvm.decision.models import JourneyFeatures
from cvm.utils.config import ScoringSettings, Treatment

maybe = st.none() | st.floats(min_value=-200, max_value=400, allow_nan=False)
features = st.builds(
    JourneyFeatures,
    churn_probability=st.none() | st.floats(0, 1), monthly_revenue=maybe, tenure_months=maybe, sentiment_score=st.none() | st.floats(-1, 1),
    satisfaction_score=st.none() | st.floats(0, 10), usage_change_pct=maybe, latest_data_gb=maybe,
    overage_charges=st.floats(0, 50), roaming_charges=st.floats(0, 50), bill_shock=st.booleans(), roaming=st.booleans(),
    overdue_payment=st.booleans(), usage_trend=st.sampled_from(list(vector.USAGE_TREND_CODES)),
    network_quality=st.sampled_from(list(vector.NETWORK_QUALITY_CODES)),
    interests=st.lists(st.sampled_from(sorted(INTEREST_PATTERNS)), unique=True).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(features, min_size=1, max_size=6))
def test_signal_flags_of_one_are_its_row_among_many(rows: list[JourneyFeatures]) -> None:
    scoring = ScoringSettings()
    singles = [vector.one_row(f) for f in rows]
    columns = {k: np.concatenate([c[k] for c, _ in singles]) for k in singles[0][0]}
    interests = {k: np.concatenate([i[k] for _, i in singles]) for k in singles[0][1]}
    many = vector.signal_flags(columns, interests, scoring)
    for k, (c, i) in enumerate(singles):
        one = vector.signal_flags(c, i, scoring)
        assert {name: bool(flags[0]) for name, flags in one.items()} == {name: bool(flags[k]) for name, flags in many.items()}


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1), st.floats(0, 5000), st.floats(0, 1), st.floats(0, 100), st.floats(0, 100))
def test_expected_value_of_floats_is_the_array_one(p: float, risk: float, fit: float, upsell: float, cost: float) -> None:
    treatment = Treatment(id="t", display_name="T", channel="email", purpose="marketing", cost_per_contact=cost, value_per_accept=upsell)
    one = vector.expected_value(p, risk, fit, treatment)
    many = vector.expected_value(np.array([p, 0.5]), np.array([risk, 1.0]), np.array([fit, 0.0]), treatment)
    assert isinstance(one, float)
    assert one == many[0] == round(p * (risk * fit + upsell) - cost, 2)


def test_rounding_matches_python_at_the_half() -> None:
    values = np.array([0.125, 0.375, 2.675, -0.125, 1.005, 10.0049999])
    assert vector.round_half_even(values, 2).tolist() == [round(v, 2) for v in values.tolist()]
    assert vector.round_half_even(2.675, 2) == round(2.675, 2)


def test_missing_fields_reads_numbers_codes_and_parts() -> None:
    """NaN numbers, code 0 and absent parts are missing; a name CVM does not compute never is."""
    columns = {
        "churn_probability": np.array([0.4, np.nan]),
        "usage_trend": np.array([0, 2], dtype=np.int8),
        "bill_shock": np.array([False, False]),
    }
    present = {"timeline": np.array([True, False])}
    required = ["churn_probability", "usage_trend", "timeline", "bill_shock", "no_such_field"]
    missing = vector.missing_fields(columns, present, required, 2)
    assert missing.tolist() == [[False, True, False, False, False], [True, False, True, False, False]]


@settings(max_examples=60, deadline=None)
@given(features)
def test_missing_fields_of_one_row_follow_its_features(f: JourneyFeatures) -> None:
    columns, _ = vector.one_row(f)
    required = ["churn_probability", "monthly_revenue", "usage_trend", "network_quality", "sentiment_trend", "roaming_charges"]
    missing = vector.missing_fields(columns, {}, required, 1)[0]
    expected = [getattr(f, name) in (None, "unknown") for name in required]
    assert missing.tolist() == expected


def test_trend_codes_at_the_cut_offs() -> None:
    change = np.array([np.nan, 15.0, 15.1, -15.0, -15.1, 0.0])
    assert vector.trend_code(change, vector.USAGE_TREND_PCT).tolist() == [0, 2, 1, 2, 3, 2]


def test_network_quality_from_latency_drops_and_signal() -> None:
    s = ScoringSettings()
    has = np.array([False, True, True, True, True, True])
    latency = np.array([np.nan, 10.0, s.poor_latency_ms, s.poor_latency_ms * vector.FAIR_LATENCY_SHARE, 10.0, np.nan])
    dropped = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    weakest = np.array([np.nan, np.nan, np.nan, np.nan, vector.POOR_SIGNAL_DBM, np.nan])
    codes = vector.network_quality(has, latency, dropped, weakest, s).tolist()
    assert codes == [0, 1, 3, 2, 3, 2]
