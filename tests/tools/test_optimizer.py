"""The batch optimiser: exact against scipy's LP/MILP, constraints on random instances, degenerate input."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_array

from cvm.tools.optimizer import UNLIMITED, Assignment, SolverLimits, _assign, assign, greedy, prepare
from cvm.utils.errors import CVMError, DataError, UsageError

REPO = Path(__file__).resolve().parents[2]

# Forces the dual-price path (sample warm start, working set, witnesses, rounds) on small instances.
DUAL = SolverLimits(exact_lp_max_pairs=0, working_set_customers=15, warm_start_customers=40, witnesses=3)
LIMITS = {"default": SolverLimits(), "dual": DUAL}


def reference(value, eligible, capacity, cost=None, budget=None, *, integral: bool) -> float:
    """The optimum by scipy alone, built independently of the module: HiGHS LP, or MILP when ``integral``."""
    n, k = value.shape
    rows, cols = np.nonzero(eligible & (value > 0))
    npairs = rows.size
    if npairs == 0:
        return 0.0
    r, c, d, rhs = [rows], [np.arange(npairs)], [np.ones(npairs)], list(np.ones(n))
    for t in range(k):
        if math.isfinite(capacity[t]):
            sel = np.flatnonzero(cols == t)
            r.append(np.full(sel.size, len(rhs)))
            c.append(sel)
            d.append(np.ones(sel.size))
            rhs.append(capacity[t])
    if budget is not None:
        r.append(np.full(npairs, len(rhs)))
        c.append(np.arange(npairs))
        d.append(np.asarray(cost)[cols])
        rhs.append(budget)
    a = csr_array((np.concatenate(d), (np.concatenate(r), np.concatenate(c))), shape=(len(rhs), npairs))
    if integral:
        res = milp(-value[rows, cols], constraints=LinearConstraint(a, -np.inf, np.array(rhs)),
                   integrality=np.ones(npairs), bounds=Bounds(0, 1), options={"mip_rel_gap": 1e-9})
    else:
        res = linprog(-value[rows, cols], A_ub=a, b_ub=np.array(rhs), bounds=(0, 1), method="highs")
    assert res.status == 0, res.message
    return -float(res.fun)


def random_instance(rng: np.random.Generator, n: int, k: int, *, integers: bool = False):
    """Correlated values (some customers worth more everywhere), masks, mixed capacities, costs."""
    if integers:
        value = rng.integers(-3, 6, size=(n, k)).astype(float)
    else:
        value = (rng.lognormal(1.0, 0.6, size=(n, 1)) * rng.normal(1.0, 0.8, size=(n, k))).round(3)
    eligible = rng.random((n, k)) < 0.7
    capacity = rng.integers(0, max(2, n // 3), size=k).astype(float)
    capacity[rng.random(k) < 0.25] = UNLIMITED
    cost = rng.uniform(0.0, 3.0, size=k).round(2)
    return value, eligible, capacity, cost


def check_feasible(a: Assignment, value, eligible, capacity, cost=None, budget=None) -> None:
    """Every promise of ``assign``: one treatment, eligible, positive value, capacities, budget, sums."""
    n, k = value.shape
    assert a.choice.shape == (n,)
    assert a.choice.dtype == np.int64
    assert ((a.choice >= -1) & (a.choice < k)).all()
    rows = np.flatnonzero(a.choice >= 0)
    cols = a.choice[rows]
    assert eligible[rows, cols].all()
    assert (value[rows, cols] > 0).all()
    counts = np.bincount(cols, minlength=k)
    assert (counts <= capacity).all()
    assert (a.counts == counts).all()
    spend = math.fsum(np.asarray(cost, dtype=float)[cols]) if cost is not None else 0.0
    if budget is not None:
        assert spend <= budget
    assert a.total_value == pytest.approx(math.fsum(value[rows, cols].astype(float)), rel=1e-12, abs=1e-9)
    assert a.upper_bound >= a.total_value
    assert 0.0 <= a.gap <= 1.0
    if a.upper_bound > 0:
        assert a.gap == pytest.approx((a.upper_bound - a.total_value) / a.upper_bound, abs=1e-12)


def tol(x: float) -> float:
    return 1e-6 * max(1.0, abs(x))


class TestAgainstExactLP:
    """Without a budget the result is the LP optimum (integral: a transportation problem); with one, within the gap."""

    @pytest.mark.parametrize("limits", ["default", "dual"])
    @pytest.mark.parametrize("seed", range(12))
    def test_no_budget_is_optimal(self, seed: int, limits: str) -> None:
        rng = np.random.default_rng(seed)
        value, eligible, capacity, cost = random_instance(rng, int(rng.integers(1, 400)), int(rng.integers(1, 7)))
        a = _assign(value, eligible, capacity, cost, None, LIMITS[limits])
        best = reference(value, eligible, capacity, integral=False)
        check_feasible(a, value, eligible, capacity)
        assert a.total_value == pytest.approx(best, abs=tol(best))
        assert a.upper_bound >= best - tol(best)
        assert a.gap <= 1e-8  # the bound carries the LP solver's tolerance; the value is exact

    @pytest.mark.parametrize("limits", ["default", "dual"])
    @pytest.mark.parametrize("seed", range(12))
    def test_budget_within_the_stated_gap(self, seed: int, limits: str) -> None:
        rng = np.random.default_rng(100 + seed)
        value, eligible, capacity, cost = random_instance(rng, int(rng.integers(5, 60)), int(rng.integers(1, 5)))
        budget = float(rng.uniform(0.1, 0.6) * cost.mean() * value.shape[0])
        a = _assign(value, eligible, capacity, cost, budget, LIMITS[limits])
        best = reference(value, eligible, capacity, cost, budget, integral=True)
        check_feasible(a, value, eligible, capacity, cost, budget)
        assert a.total_value <= best + tol(best)
        assert a.upper_bound >= best - tol(best)
        assert best - a.total_value <= a.gap * a.upper_bound + tol(best)

    @pytest.mark.parametrize("seed", range(4))
    def test_integer_values_with_many_ties_on_the_dual_path(self, seed: int) -> None:
        rng = np.random.default_rng(200 + seed)
        value, eligible, capacity, cost = random_instance(rng, 2000, 5, integers=True)
        a = _assign(value, eligible, capacity, cost, None, DUAL)
        best = reference(value, eligible, capacity, integral=False)
        check_feasible(a, value, eligible, capacity)
        assert a.method == "dual_prices"
        assert a.total_value == pytest.approx(best, abs=tol(best))

    def test_default_limits_use_dual_prices_beyond_the_lp_threshold(self) -> None:
        rng = np.random.default_rng(7)
        value, eligible, capacity, cost = random_instance(rng, 6000, 8)
        capacity[np.isfinite(capacity)] = rng.integers(20, 400, size=int(np.isfinite(capacity).sum()))
        a = assign(value, eligible, capacity, cost)
        assert a.method == "dual_prices"
        best = reference(value, eligible, capacity, integral=False)
        check_feasible(a, value, eligible, capacity)
        assert a.total_value == pytest.approx(best, abs=tol(best))

        budget = 0.5 * a.total_cost
        b = assign(value, eligible, capacity, cost, budget)
        relaxation = reference(value, eligible, capacity, cost, budget, integral=False)
        check_feasible(b, value, eligible, capacity, cost, budget)
        assert b.method == "dual_prices"
        assert b.upper_bound >= relaxation - tol(relaxation)
        assert b.total_value >= 0.995 * relaxation
        assert b.gap <= 0.005

    def test_small_problems_use_one_lp(self) -> None:
        value = np.array([[5.0, 3.0], [4.0, 1.0], [6.0, 2.0]])
        a = assign(value, np.ones_like(value, dtype=bool), np.array([1, UNLIMITED]))
        assert a.method == "lp"
        assert a.choice.tolist() == [1, 1, 0]  # the 6 takes the one slot; the others fall back
        assert a.total_value == 10.0
        assert a.gap == 0.0


finite_values = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def instances(draw, max_customers: int = 30, max_treatments: int = 5):
    n = draw(st.integers(0, max_customers))
    k = draw(st.integers(0, max_treatments))
    value = np.array(draw(st.lists(finite_values, min_size=n * k, max_size=n * k)), dtype=float).reshape(n, k)
    eligible = np.array(draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k)), dtype=bool).reshape(n, k)
    capacity = np.array(
        draw(st.lists(st.one_of(st.integers(0, 6), st.just(UNLIMITED)), min_size=k, max_size=k)), dtype=float
    )
    cost = np.array(draw(st.lists(st.floats(0, 5, allow_nan=False, width=32), min_size=k, max_size=k)), dtype=float)
    budget = draw(st.one_of(st.none(), st.floats(0, 40, allow_nan=False, width=32)))
    return value, eligible, capacity, cost, budget


def brute_force(value, eligible, capacity, cost, budget) -> float:
    """Every assignment of a tiny instance."""
    n, k = value.shape
    best = 0.0
    for combo in itertools.product(range(-1, k), repeat=n):
        choice = np.array(combo, dtype=int)
        rows = np.flatnonzero(choice >= 0)
        cols = choice[rows]
        if not (eligible[rows, cols].all() and (value[rows, cols] > 0).all()):
            continue
        if (np.bincount(cols, minlength=k) > capacity).any():
            continue
        if budget is not None and math.fsum(cost[cols]) > budget:
            continue
        best = max(best, math.fsum(value[rows, cols]))
    return best


class TestConstraints:
    """On any instance: one treatment per customer, eligible, positive, within capacities and budget."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(instances(), st.sampled_from(["default", "dual"]))
    def test_every_constraint_holds(self, instance, limits: str) -> None:
        value, eligible, capacity, cost, budget = instance
        a = _assign(value, eligible, capacity, cost, budget, LIMITS[limits])
        check_feasible(a, value, eligible, capacity, cost, budget)

    @settings(max_examples=80, deadline=None)
    @given(instances(max_customers=5, max_treatments=3), st.sampled_from(["default", "dual"]))
    def test_bound_holds_and_no_budget_is_optimal(self, instance, limits: str) -> None:
        value, eligible, capacity, cost, budget = instance
        a = _assign(value, eligible, capacity, cost, budget, LIMITS[limits])
        best = brute_force(value, eligible, capacity, cost, budget)
        assert a.total_value <= best + tol(best)
        assert a.upper_bound >= best - tol(best)
        if budget is None:
            assert a.total_value == pytest.approx(best, abs=tol(best))

    @settings(max_examples=100, deadline=None)
    @given(instances(max_customers=40, max_treatments=4), st.sampled_from(["arrival", "value"]))
    def test_vectorised_greedy_matches_the_obvious_loop(self, instance, by: str) -> None:
        value, eligible, capacity, cost, budget = instance
        prob = prepare(value, eligible, capacity, cost, budget)
        choice = np.full(prob.vt.shape[1], -1, dtype=np.int64)
        greedy(prob.vt, prob.cost, prob.cap, prob.budget, choice, by=by)
        full = np.full(value.shape[0], -1)
        full[prob.active] = choice
        assert full.tolist() == naive_greedy(value, eligible, capacity, cost, budget, by).tolist()


def naive_greedy(value, eligible, capacity, cost, budget, by: str) -> np.ndarray:
    """The baselines written as the plain loops they describe."""
    n, k = value.shape
    left = capacity.astype(float).copy()
    money = math.inf if budget is None else float(budget)
    choice = np.full(n, -1)
    pairs = [(value[c, t], c, t) for c in range(n) for t in range(k) if eligible[c, t] and value[c, t] > 0]
    if by == "value":
        order = sorted(pairs, key=lambda p: -p[0])
    else:
        order = sorted(pairs, key=lambda p: (p[1], -p[0]))
    for _, c, t in order:
        if choice[c] == -1 and left[t] > 0 and cost[t] <= money:
            choice[c] = t
            left[t] -= 1
            money -= cost[t]
    return choice


class TestDegenerateInputs:
    """Empty and pathological inputs give an empty assignment; bad ones a clear error naming the argument."""

    def test_no_customers(self) -> None:
        a = assign(np.zeros((0, 3)), np.zeros((0, 3), dtype=bool), np.array([1.0, 2.0, UNLIMITED]))
        assert a.choice.shape == (0,)
        assert (a.total_value, a.upper_bound, a.gap, a.method) == (0.0, 0.0, 0.0, "empty")

    def test_no_treatments(self) -> None:
        a = assign(np.zeros((4, 0)), np.zeros((4, 0), dtype=bool), np.zeros(0))
        assert a.choice.tolist() == [-1, -1, -1, -1]
        assert a.total_value == 0.0

    def test_no_eligible_pairs(self) -> None:
        value = np.full((5, 2), 10.0)
        a = assign(value, np.zeros((5, 2), dtype=bool), np.array([UNLIMITED, UNLIMITED]))
        assert a.choice.tolist() == [-1] * 5
        assert a.method == "empty"

    def test_zero_capacity_everywhere(self) -> None:
        value = np.arange(1.0, 13.0).reshape(6, 2)
        a = assign(value, np.ones((6, 2), dtype=bool), np.array([0, 0]))
        assert a.choice.tolist() == [-1] * 6
        assert a.total_value == 0.0

    def test_zero_capacity_leaves_the_unlimited_option(self) -> None:
        value = np.array([[9.0, 1.0], [8.0, 2.0]])
        a = assign(value, np.ones((2, 2), dtype=bool), np.array([0, UNLIMITED]))
        assert a.choice.tolist() == [1, 1]
        assert a.total_value == 3.0

    def test_all_values_negative_or_zero(self) -> None:
        value = -np.abs(np.random.default_rng(0).normal(size=(50, 4)))
        value[0, 0] = 0.0
        a = assign(value, np.ones((50, 4), dtype=bool), np.full(4, UNLIMITED))
        assert (a.choice == -1).all()
        assert a.total_value == 0.0 and a.upper_bound == 0.0 and a.gap == 0.0

    def test_zero_budget_keeps_only_free_treatments(self) -> None:
        value = np.array([[5.0, 1.0], [4.0, 2.0]])
        a = assign(value, np.ones((2, 2), dtype=bool), np.full(2, UNLIMITED), np.array([1.0, 0.0]), 0.0)
        assert a.choice.tolist() == [1, 1]
        assert a.total_cost == 0.0

    def test_unlimited_capacity_gives_everyone_their_best(self) -> None:
        value = np.array([[1.0, 3.0], [2.0, -1.0], [0.5, 0.25]])
        a = assign(value, np.ones((3, 2), dtype=bool), np.array([np.inf, np.inf]))
        assert a.method == "unconstrained"
        assert a.choice.tolist() == [1, 0, 0]

    def test_integer_and_float32_inputs(self) -> None:
        value = np.array([[3, 1], [2, 5]], dtype=np.int32)
        a = assign(value, np.array([[1, 1], [1, 0]], dtype=np.int8), np.array([1, 1]))
        assert a.choice.tolist() == [0, -1] or a.choice.tolist() == [1, 0]
        assert a.total_value == 3.0
        b = assign(value.astype(np.float32), np.ones((2, 2), dtype=bool), np.array([1, 1]))
        assert b.total_value == 8.0

    def test_result_is_read_only(self) -> None:
        a = assign(np.ones((2, 1)), np.ones((2, 1), dtype=bool), np.array([1]))
        with pytest.raises(ValueError):
            a.choice[0] = 0

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_value_is_rejected(self, bad: float) -> None:
        value = np.ones((3, 2))
        value[2, 1] = bad
        with pytest.raises(DataError, match=r"value holds NaN or inf .*customer row 2, treatment column 1"):
            assign(value, np.ones((3, 2), dtype=bool), np.array([1, 1]))

    def test_nan_in_an_ineligible_pair_is_still_rejected(self) -> None:
        value = np.array([[1.0, np.nan]])
        with pytest.raises(DataError, match="value holds NaN"):
            assign(value, np.array([[True, False]]), np.array([1, 1]))

    def test_nan_cost_is_rejected(self) -> None:
        with pytest.raises(DataError, match="cost holds NaN or inf at treatment 1"):
            assign(np.ones((2, 2)), np.ones((2, 2), dtype=bool), np.array([1, 1]), np.array([1.0, np.nan]), 5.0)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"value": np.ones(3)}, "value must be 2-D"),
            ({"value": np.array([["a", "b"]])}, "value must hold real numbers"),
            ({"value": np.ones((2, 2), dtype=bool)}, "value must hold real numbers"),
            ({"eligible": np.ones((2, 3), dtype=bool)}, "eligible must have the shape of value"),
            ({"eligible": np.full((2, 2), 0.5)}, "eligible must be bool"),
            ({"eligible": np.full((2, 2), 2)}, "eligible must be bool"),
            ({"capacity": np.ones(3)}, r"capacity must have one entry per treatment, shape \(2,\)"),
            ({"capacity": np.array([1.0, -1.0])}, "capacity must be >= 0"),
            ({"capacity": np.array([1.5, 1.0])}, "capacity must hold whole numbers"),
            ({"capacity": np.array([np.nan, 1.0])}, "capacity holds NaN"),
            ({"capacity": [5, None]}, r"use np.inf \(not None\)"),
            ({"cost": np.ones(3)}, "cost must have one entry per treatment"),
            ({"cost": np.array([1.0, -2.0])}, "cost must be >= 0"),
            ({"budget": -1.0}, "budget must be >= 0"),
            ({"budget": float("nan")}, "budget must be >= 0"),
            ({"budget": "lots"}, "budget must be a number"),
        ],
    )
    def test_bad_arguments_name_themselves(self, kwargs: dict, message: str) -> None:
        args = {"value": np.ones((2, 2)), "eligible": np.ones((2, 2), dtype=bool), "capacity": np.ones(2),
                "cost": None, "budget": None}
        args.update(kwargs)
        with pytest.raises(UsageError, match=message) as err:
            assign(**args)
        assert isinstance(err.value, CVMError)


class TestBaselines:
    """bench/baselines.py: same signature and result type, feasible, never better than the optimiser."""

    def test_baselines_are_feasible_and_bounded_by_the_optimiser(self) -> None:
        spec = importlib.util.spec_from_file_location("baselines", REPO / "bench" / "baselines.py")
        assert spec is not None and spec.loader is not None
        baselines = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baselines)
        rng = np.random.default_rng(3)
        value, eligible, capacity, cost = random_instance(rng, 3000, 6)
        budget = 0.3 * float(cost.sum()) * 300
        opt = assign(value, eligible, capacity, cost, budget)
        for fn, name in ((baselines.fcfs_greedy, "fcfs_greedy"), (baselines.value_greedy, "value_greedy")):
            base = fn(value, eligible, capacity, cost, budget)
            check_feasible(base, value, eligible, capacity, cost, budget)
            assert base.method == name
            assert base.total_value <= opt.upper_bound
            assert base.total_value <= opt.total_value * (1 + 1e-9) + opt.gap * opt.upper_bound

    def test_fcfs_serves_customers_in_arrival_order(self) -> None:
        spec = importlib.util.spec_from_file_location("baselines", REPO / "bench" / "baselines.py")
        assert spec is not None and spec.loader is not None
        baselines = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(baselines)
        value = np.array([[1.0, 0.5], [9.0, 0.2], [8.0, 7.0]])
        eligible = np.ones((3, 2), dtype=bool)
        capacity = np.array([1, UNLIMITED])
        assert baselines.fcfs_greedy(value, eligible, capacity).choice.tolist() == [0, 1, 1]
        assert baselines.value_greedy(value, eligible, capacity).choice.tolist() == [1, 0, 1]
        assert assign(value, eligible, capacity).choice.tolist() == [1, 0, 1]
