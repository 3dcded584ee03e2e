"""The batch optimiser: one treatment per customer, under capacities and a budget, with a proven bound.

``assign(value, eligible, capacity, cost=None, budget=None)`` solves

    maximise    sum value[c, t] * x[c, t]
    subject to  sum_t x[c, t] <= 1                  one treatment per customer (or none)
                sum_c x[c, t] <= capacity[t]        per treatment; ``np.inf`` = unlimited
                sum cost[t] * x[c, t] <= budget     optional
                x[c, t] = 0 unless eligible[c, t] and value[c, t] > 0

and returns an :class:`Assignment` with the choice per customer, its value, a
proven upper bound on the best possible value and the relative gap between them.

Which method runs when (the ``method`` field says which one did):

``empty``
    No eligible pair has a positive value.
``unconstrained``
    Every customer's best option already fits every capacity and the budget:
    exactly optimal, the bound is the value itself.
``lp``
    The whole problem has at most ``SolverLimits.exact_lp_max_pairs`` eligible
    positive pairs and no binding budget: one HiGHS LP. Without a budget the LP
    is a transportation problem (totally unimodular), so its vertex optimum is
    integral and exactly optimal.
``milp``
    A binding budget and at most ``SolverLimits.milp_max_pairs`` pairs: the HiGHS
    MILP, exact up to a relative gap of 1e-9; the bound is the MILP's dual bound.
``lp_rounded``
    A binding budget and at most ``exact_lp_max_pairs`` pairs: the LP relaxation,
    its fractional customers (at most a handful: one budget row adds at most a
    couple of fractional basic variables) dropped, then a greedy fill.
``dual_prices``
    Larger problems. A Lagrangian dual over one price per capacitated treatment
    (and one on cost for the budget): prices are started from the exact LP of a
    random sample of customers (capacities and budget scaled down), refined by
    exact coordinate steps on the whole base (each treatment's price is set to
    the order statistic that fills its capacity given the other prices; the cost
    price by bisection), then every customer whose best option wins by a clear
    margin is fixed and the rest (a working set of ~``working_set_customers``)
    is solved exactly by one HiGHS LP over the capacity and budget left. The LP's
    duals are checked against every customer; any whose fixed choice they
    contradict joins the working set and the LP is solved again. When no customer
    contradicts the duals, the result is the exact LP optimum of the whole
    problem: integral, hence exactly optimal, without a budget; with one, the few
    fractional customers are dropped and a greedy fill spends what is left.

Upper bounds are always the Lagrangian dual value computed by this module over
every customer, ``sum_c max(0, max_t value - price_t - mu * cost_t) + sum_t
price_t * capacity_t + mu * budget``, at the best prices tried (valid for any
non-negative prices), or the HiGHS MILP dual bound on small budget problems.
OR-Tools' min-cost flow is not used: the working-set LPs are small enough that
HiGHS solves them in well under a second, and scipy is already a dependency.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from cvm.utils.errors import DataError, OptimizerError, UsageError

UNLIMITED = math.inf
"""The capacity that means "no limit" (``np.inf``)."""


@dataclass(frozen=True)
class SolverLimits:
    """Sizes that decide which method runs; the defaults suit a 2-core machine and 1M x 12."""

    exact_lp_max_pairs: int = 200_000
    """Up to this many eligible positive pairs, one LP over the whole problem."""
    milp_max_pairs: int = 5_000
    """Up to this many pairs with a binding budget, the exact HiGHS MILP."""
    milp_time_limit_s: float = 20.0
    """Wall-clock limit for the MILP; on timeout its best solution and dual bound are used."""
    sample_customers: int = 20_000
    """Customers in the sample LP that starts the dual prices."""
    coordinate_sweeps: int = 2
    """Exact coordinate steps over every price, on the whole base, after the sample LP."""
    working_set_customers: int = 30_000
    """Customers left free (not fixed) in the first working-set LP."""
    max_working_set_customers: int = 600_000
    """Stop growing the working set past this; the result then carries its measured gap."""
    max_rounds: int = 12
    """Working-set LP rounds at most."""


DEFAULT_LIMITS = SolverLimits()


@dataclass(frozen=True, eq=False)
class Assignment:
    """The optimiser's answer (also the baselines' in ``bench/baselines.py``)."""

    choice: np.ndarray
    """Treatment index (column of ``value``) per customer, ``-1`` for none; read-only int64."""
    total_value: float
    """Sum of ``value[c, choice[c]]`` over assigned customers."""
    upper_bound: float
    """A proven upper bound on the best value any feasible assignment can reach."""
    gap: float
    """``(upper_bound - total_value) / upper_bound`` (0 when the bound is 0)."""
    method: str
    """Which method produced it: empty, unconstrained, lp, milp, lp_rounded, dual_prices (or a baseline's name)."""
    total_cost: float = 0.0
    """Sum of ``cost[choice[c]]`` over assigned customers."""
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Customers assigned per treatment."""
    seconds: float = 0.0
    """Wall time of the call."""
    rounds: int = 0
    """Working-set LP rounds (dual_prices only)."""
    working_set: int = 0
    """Customers in the last working-set LP (dual_prices only)."""


@dataclass
class _Problem:
    """Validated inputs restricted to the customers with at least one eligible positive pair."""

    n: int
    k: int
    vt: np.ndarray  # (k, m) float64: value where eligible and > 0, else -inf; rows are treatments
    active: np.ndarray  # (m,) original customer index of each column of vt
    cost: np.ndarray  # (k,) float64 >= 0
    cap: np.ndarray  # (k,) float64, inf for unlimited (or never binding)
    budget: float  # inf when absent (or never binding)
    value: np.ndarray  # the caller's value array (for the final sums)


@dataclass
class _LPResult:
    x: np.ndarray
    lam: np.ndarray
    mu: float
    u: np.ndarray
    objective: float


def assign(value: Any, eligible: Any, capacity: Any, cost: Any = None, budget: Any = None) -> Assignment:
    """Assign at most one treatment per customer to maximise total value under capacities and a budget.

    Args:
        value: ``(customers, treatments)`` real array, the value of giving each treatment to each
            customer. Must be finite (no NaN or inf). Pairs with value <= 0 are never assigned.
        eligible: ``(customers, treatments)`` bool (or 0/1) array; only eligible pairs are assigned.
        capacity: ``(treatments,)`` non-negative whole numbers, ``np.inf`` (``UNLIMITED``) for no limit.
        cost: ``(treatments,)`` non-negative finite cost of one assignment of each treatment;
            ``None`` means free. Only used against ``budget``.
        budget: non-negative total cost allowed; ``None`` or ``np.inf`` for no budget.

    Returns:
        An :class:`Assignment`; ``choice[c]`` is a column of ``value`` or -1. The module docstring
        says which method runs when.

    Raises:
        UsageError: a shape, dtype or sign is wrong (the message names the argument).
        DataError: ``value`` or ``cost`` holds NaN or an infinity.
        OptimizerError: the solver failed; this is a bug or a numerical breakdown, not bad input.
    """
    return _assign(value, eligible, capacity, cost, budget, DEFAULT_LIMITS)


def _assign(value: Any, eligible: Any, capacity: Any, cost: Any, budget: Any, limits: SolverLimits) -> Assignment:
    start = time.perf_counter()
    prob = prepare(value, eligible, capacity, cost, budget)
    choice_local, method, ub, rounds, wset = _solve(prob, limits)
    return finish(prob, choice_local, method=method, upper_bound=ub, start=start, rounds=rounds, working_set=wset)


# --------------------------------------------------------------------------- inputs


def _as_array(name: str, obj: Any) -> np.ndarray:
    try:
        arr = np.asarray(obj)
    except Exception as exc:  # ragged lists and the like
        raise UsageError(f"{name} must be a numpy array (or array-like): {exc}") from exc
    return arr


def _real(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UsageError(f"{name} must hold real numbers (int or float), got dtype {arr.dtype}")
    return arr


def prepare(value: Any, eligible: Any, capacity: Any, cost: Any = None, budget: Any = None) -> _Problem:
    """Validate ``assign``'s arguments and build the masked problem (shared with the bench baselines)."""
    value = _real("value", _as_array("value", value))
    if value.ndim != 2:
        raise UsageError(f"value must be 2-D (customers x treatments), got shape {value.shape}")
    n, k = value.shape
    eligible = _as_array("eligible", eligible)
    if eligible.shape != (n, k):
        raise UsageError(f"eligible must have the shape of value {value.shape}, got {eligible.shape}")
    if eligible.dtype != np.bool_:
        if not np.issubdtype(eligible.dtype, np.integer) or (eligible.size and not np.isin(eligible, (0, 1)).all()):
            raise UsageError(f"eligible must be bool (or 0/1 integers), got dtype {eligible.dtype}")
        eligible = eligible.astype(bool)
    capacity = _real("capacity", _as_array("capacity", capacity)).astype(np.float64)
    if capacity.shape != (k,):
        raise UsageError(f"capacity must have one entry per treatment, shape ({k},), got {capacity.shape}")
    if np.isnan(capacity).any():
        raise UsageError("capacity holds NaN; use np.inf for an unlimited treatment")
    if (capacity < 0).any():
        raise UsageError(f"capacity must be >= 0 (np.inf for unlimited); treatment {int(np.argmax(capacity < 0))} has {capacity.min()}")
    finite = np.isfinite(capacity)
    if (capacity[finite] != np.floor(capacity[finite])).any():
        raise UsageError("capacity must hold whole numbers (or np.inf for unlimited)")
    if cost is None:
        cost_arr = np.zeros(k)
    else:
        cost_arr = _real("cost", _as_array("cost", cost)).astype(np.float64)
        if cost_arr.shape != (k,):
            raise UsageError(f"cost must have one entry per treatment, shape ({k},), got {cost_arr.shape}")
        if not np.isfinite(cost_arr).all():
            raise DataError(f"cost holds NaN or inf at treatment {int(np.argmax(~np.isfinite(cost_arr)))}; every cost must be finite")
        if (cost_arr < 0).any():
            raise UsageError(f"cost must be >= 0; treatment {int(np.argmax(cost_arr < 0))} costs {cost_arr.min()}")
    if budget is None:
        budget_f = math.inf
    else:
        try:
            budget_f = float(budget)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"budget must be a number or None, got {budget!r}") from exc
        if math.isnan(budget_f) or budget_f < 0:
            raise UsageError(f"budget must be >= 0 (None or np.inf for no budget), got {budget!r}")
    if value.size and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
        bad = np.argwhere(~np.isfinite(value))[0]
        raise DataError(
            f"value holds NaN or inf (first at customer row {int(bad[0])}, treatment column {int(bad[1])}); "
            "fill missing scores before optimising (use eligible=False for pairs that must not be assigned)"
        )

    vt = np.where((eligible & (value > 0)).T, value.T.astype(np.float64, copy=False), -np.inf)
    has_option = (vt > -np.inf).any(axis=0) if k else np.zeros(n, dtype=bool)
    active = np.flatnonzero(has_option)
    if active.size < n:
        vt = np.ascontiguousarray(vt[:, active])
    else:
        vt = np.ascontiguousarray(vt)
    # A capacity no column can reach, or a budget nobody can spend, never binds: drop it.
    pairs_per_t = (vt > -np.inf).sum(axis=1) if k else np.zeros(0)
    cap = np.where(capacity >= pairs_per_t, math.inf, capacity)
    if math.isfinite(budget_f) and k and active.size:
        max_spend = float(np.where(vt > -np.inf, cost_arr[:, None], 0.0).max(axis=0).sum())
        if max_spend <= budget_f:
            budget_f = math.inf
    return _Problem(n=n, k=k, vt=vt, active=active, cost=cost_arr, cap=cap, budget=budget_f, value=value)


def finish(
    prob: _Problem, choice_local: np.ndarray, *, method: str, upper_bound: float, start: float,
    rounds: int = 0, working_set: int = 0,
) -> Assignment:
    """Check feasibility, map back to the caller's rows and build the :class:`Assignment`."""
    choice = np.full(prob.n, -1, dtype=np.int64)
    choice[prob.active] = choice_local
    rows = np.flatnonzero(choice >= 0)
    cols = choice[rows]
    chosen_values = prob.value[rows, cols].astype(np.float64)
    if (chosen_values <= 0).any() or (prob.vt[cols, np.searchsorted(prob.active, rows)] == -np.inf).any():
        raise OptimizerError("internal error: an ineligible or non-positive pair was assigned")
    counts = np.bincount(cols, minlength=prob.k).astype(np.int64)
    if (counts > prob.cap).any():
        raise OptimizerError(f"internal error: capacity exceeded for treatment {int(np.argmax(counts > prob.cap))}")
    total_cost = math.fsum(prob.cost[cols])
    if total_cost > prob.budget:
        raise OptimizerError(f"internal error: budget exceeded ({total_cost} > {prob.budget})")
    total_value = math.fsum(chosen_values)
    ub = max(float(upper_bound), total_value)
    gap = (ub - total_value) / ub if ub > 0 else 0.0
    choice.setflags(write=False)
    counts.setflags(write=False)
    return Assignment(
        choice=choice, total_value=total_value, upper_bound=ub, gap=gap, method=method, total_cost=total_cost,
        counts=counts, seconds=time.perf_counter() - start, rounds=rounds, working_set=working_set,
    )


# --------------------------------------------------------------------------- dispatch


def _solve(prob: _Problem, limits: SolverLimits) -> tuple[np.ndarray, str, float, int, int]:
    k, m = prob.vt.shape
    if m == 0:
        return np.zeros(0, dtype=np.int64), "empty", 0.0, 0, 0
    zero = np.zeros(k)
    best, arg = _best(prob.vt, zero)
    counts = np.bincount(arg[arg >= 0], minlength=k)
    spend = math.fsum(prob.cost[arg[arg >= 0]])
    if (counts <= prob.cap).all() and spend <= prob.budget:
        return arg, "unconstrained", math.fsum(best), 0, 0
    has_budget = math.isfinite(prob.budget)
    pairs = int((prob.vt > -np.inf).sum())
    if has_budget and pairs <= limits.milp_max_pairs:
        return _solve_milp(prob, limits)
    if pairs <= limits.exact_lp_max_pairs:
        choice, ub = _solve_whole_lp(prob)
        return choice, ("lp_rounded" if has_budget else "lp"), ub, 1, m
    return _dual_prices(prob, limits)


# --------------------------------------------------------------------------- vectorised primitives


def _best(vt: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best reduced value ``max(0, max_t vt[t] - price[t])`` per customer and its treatment (-1 for none)."""
    k, m = vt.shape
    best = np.zeros(m)
    arg = np.full(m, -1, dtype=np.int64)
    row = np.empty(m)
    for t in range(k):
        np.subtract(vt[t], price[t], out=row)
        better = row > best
        best[better] = row[better]
        arg[better] = t
    return best, arg


def _best_two(vt: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best and second-best reduced value per customer ("none" counts as an option worth 0), best's treatment."""
    k, m = vt.shape
    best = np.zeros(m)
    second = np.full(m, -np.inf)
    arg = np.full(m, -1, dtype=np.int64)
    row = np.empty(m)
    low = np.empty(m)
    for t in range(k):
        np.subtract(vt[t], price[t], out=row)
        np.minimum(best, row, out=low)
        np.maximum(second, low, out=second)
        better = row > best
        best[better] = row[better]
        arg[better] = t
    return best, second, arg


def _prices(lam: np.ndarray, mu: float, cost: np.ndarray) -> np.ndarray:
    return lam + mu * cost


def _dual_bound(prob: _Problem, lam: np.ndarray, mu: float) -> float:
    """The Lagrangian dual value at (lam, mu): an upper bound on every feasible assignment's value."""
    best, _ = _best(prob.vt, _prices(lam, mu, prob.cost))
    capped = np.isfinite(prob.cap)
    bound = math.fsum(best) + float(lam[capped] @ prob.cap[capped])
    if math.isfinite(prob.budget):
        bound += mu * prob.budget
    return bound


def _price_for(prob: _Problem, lam: np.ndarray, mu: float, t: int) -> float:
    """Exact coordinate step: the price of treatment ``t`` that fills its capacity given the other prices."""
    k, m = prob.vt.shape
    price = _prices(lam, mu, prob.cost)
    other = np.zeros(m)
    row = np.empty(m)
    for s in range(k):
        if s != t:
            np.subtract(prob.vt[s], price[s], out=row)
            np.maximum(other, row, out=other)
    advantage = prob.vt[t] - mu * prob.cost[t] - other
    positive = advantage[advantage > 0]
    cap = int(prob.cap[t])
    if positive.size <= cap:
        return 0.0
    # Any price between the (cap+1)-th and the cap-th largest advantage fills exactly ``cap``; take the middle.
    part = np.partition(positive, positive.size - cap - 1)
    above = part[positive.size - cap:].min() if cap > 0 else part.max()
    below = part[positive.size - cap - 1]
    return float((above + below) / 2) if cap > 0 else float(above)


def _spend(prob: _Problem, lam: np.ndarray, mu: float) -> float:
    _, arg = _best(prob.vt, _prices(lam, mu, prob.cost))
    return float(prob.cost[arg[arg >= 0]].sum())


def _cost_price_for(prob: _Problem, lam: np.ndarray, mu0: float, iterations: int = 22) -> float:
    """Coordinate step on the budget price: the smallest mu (to bisection precision) whose choices fit the budget."""
    if _spend(prob, lam, 0.0) <= prob.budget:
        return 0.0
    positive_cost = prob.cost[prob.cost > 0]
    top = float(prob.vt[prob.vt > -np.inf].max()) if positive_cost.size else 0.0
    ceiling = top / float(positive_cost.min()) * (1 + 1e-9) if positive_cost.size else 0.0
    lo, hi = 0.0, ceiling
    if mu0 > 0:
        # Bracket around the previous value first: much cheaper than bisecting from zero.
        cand_hi = min(mu0 * 1.5, ceiling)
        if _spend(prob, lam, cand_hi) <= prob.budget:
            hi = cand_hi
            cand_lo = mu0 / 1.5
            if _spend(prob, lam, cand_lo) > prob.budget:
                lo = cand_lo
        else:
            lo = cand_hi
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if _spend(prob, lam, mid) <= prob.budget:
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- LPs


def _lp(
    vals: np.ndarray, cust: np.ndarray, treat: np.ndarray, n_cust: int, cap: np.ndarray, budget: float, cost: np.ndarray,
    *, integral: bool = False, time_limit: float | None = None,
) -> _LPResult | tuple[np.ndarray, float]:
    """One HiGHS LP (or MILP) over the given pairs; caps are per treatment (inf = no row), budget inf = no row."""
    k = cap.size
    capped = np.flatnonzero(np.isfinite(cap))
    cap_row = np.full(k, -1, dtype=np.int64)
    cap_row[capped] = n_cust + np.arange(capped.size)
    npairs = vals.size
    cols = np.arange(npairs)
    rows = [cust]
    colidx = [cols]
    data = [np.ones(npairs)]
    in_cap = cap_row[treat] >= 0
    rows.append(cap_row[treat[in_cap]])
    colidx.append(cols[in_cap])
    data.append(np.ones(int(in_cap.sum())))
    n_rows = n_cust + capped.size
    rhs = [np.ones(n_cust), cap[capped]]
    if math.isfinite(budget):
        pc = cost[treat]
        paid = pc > 0
        rows.append(np.full(int(paid.sum()), n_rows))
        colidx.append(cols[paid])
        data.append(pc[paid])
        rhs.append(np.array([max(budget, 0.0)]))
        n_rows += 1
    a = sparse.csr_array(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(colidx))), shape=(n_rows, npairs)
    )
    b = np.concatenate(rhs)
    if integral:
        res = milp(
            -vals, constraints=LinearConstraint(a, -np.inf, b), integrality=np.ones(npairs), bounds=Bounds(0, 1),
            options={"time_limit": time_limit, "mip_rel_gap": 1e-9},
        )
        if res.x is None:
            raise OptimizerError(f"HiGHS MILP found no solution: {res.message}")
        bound = -float(res.mip_dual_bound) if res.mip_dual_bound is not None and np.isfinite(res.mip_dual_bound) else math.inf
        return res.x, bound
    res = linprog(-vals, A_ub=a, b_ub=b, bounds=(0, None), method="highs")
    if res.status != 0:
        raise OptimizerError(f"HiGHS LP failed (status {res.status}): {res.message}")
    marg = -np.asarray(res.ineqlin.marginals)
    lam = np.zeros(k)
    lam[capped] = np.maximum(marg[n_cust:n_cust + capped.size], 0.0)
    mu = float(max(marg[-1], 0.0)) if math.isfinite(budget) else 0.0
    return _LPResult(x=res.x, lam=lam, mu=mu, u=np.maximum(marg[:n_cust], 0.0), objective=-float(res.fun))


def _pairs(vt: np.ndarray, customers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eligible positive pairs (value, local customer index, treatment) of the given customers (all if None)."""
    sub = vt if customers is None else vt[:, customers]
    treat, cust = np.nonzero(sub > -np.inf)
    return sub[treat, cust], cust, treat


def _round(x: np.ndarray, cust: np.ndarray, treat: np.ndarray, n_cust: int) -> np.ndarray:
    """Integral part of an LP solution: a customer gets a treatment only when x is (numerically) 1."""
    choice = np.full(n_cust, -1, dtype=np.int64)
    whole = x > 1 - 1e-6
    choice[cust[whole]] = treat[whole]
    return choice


def _solve_whole_lp(prob: _Problem) -> tuple[np.ndarray, float]:
    k, m = prob.vt.shape
    vals, cust, treat = _pairs(prob.vt)
    res = _lp(vals, cust, treat, m, prob.cap, prob.budget, prob.cost)
    assert isinstance(res, _LPResult)
    choice = _round(res.x, cust, treat, m)
    _repair_and_fill(prob, choice)
    return choice, min(_dual_bound(prob, res.lam, res.mu), _trivial_bound(prob))


def _solve_milp(prob: _Problem, limits: SolverLimits) -> tuple[np.ndarray, str, float, int, int]:
    k, m = prob.vt.shape
    vals, cust, treat = _pairs(prob.vt)
    x, bound = _lp(vals, cust, treat, m, prob.cap, prob.budget, prob.cost, integral=True, time_limit=limits.milp_time_limit_s)
    choice = _round(x, cust, treat, m)
    _repair_and_fill(prob, choice)
    return choice, "milp", min(bound, _trivial_bound(prob)), 1, m


def _trivial_bound(prob: _Problem) -> float:
    """Everyone gets their best option, ignoring capacities and budget."""
    return math.fsum(np.maximum(prob.vt.max(axis=0), 0.0)) if prob.vt.size else 0.0


# --------------------------------------------------------------------------- repair and greedy


def _repair_and_fill(prob: _Problem, choice: np.ndarray) -> None:
    """Make ``choice`` feasible (drop the lowest values over a capacity or the budget), then fill greedily."""
    for t in np.flatnonzero(np.isfinite(prob.cap)):
        mine = np.flatnonzero(choice == t)
        excess = mine.size - int(prob.cap[t])
        if excess > 0:
            order = np.argsort(prob.vt[t, mine], kind="stable")
            choice[mine[order[:excess]]] = -1
    enforce_budget(prob.vt, prob.cost, prob.budget, choice)
    greedy(prob.vt, prob.cost, prob.cap, prob.budget, choice, by="value")


def enforce_budget(vt: np.ndarray, cost: np.ndarray, budget: float, choice: np.ndarray) -> None:
    """Drop the assignments with the least value per unit of cost until the exact total cost fits the budget."""
    if not math.isfinite(budget):
        return
    while True:
        chosen = np.flatnonzero(choice >= 0)
        c = cost[choice[chosen]]
        spend = math.fsum(c)
        if spend <= budget:
            return
        paid = np.flatnonzero(c > 0)
        ratio = vt[choice[chosen[paid]], chosen[paid]] / c[paid]
        order = paid[np.argsort(ratio, kind="stable")]
        # Drop just enough (by a running sum) and check again with the exact sum.
        drop = int(np.searchsorted(np.cumsum(c[order]), spend - budget, side="left")) + 1
        choice[chosen[order[:drop]]] = -1


def greedy(vt: np.ndarray, cost: np.ndarray, cap: np.ndarray, budget: float, choice: np.ndarray, *, by: str) -> None:
    """Greedy in place over the customers whose ``choice`` is -1, keeping those already assigned.

    ``by="value"``: pairs in descending value, each taken when its customer is free, its treatment has
    room and its cost fits what is left. ``by="arrival"``: customers in index order, each taking its best
    option that still has room and fits (first come, first served). Both run in at most
    ``treatments + 1`` vectorised passes: a pass stops only where a treatment runs out or stops fitting
    the budget, and that treatment is then gone for good.
    """
    k, m = vt.shape
    taken_so_far = choice[choice >= 0]
    cap_left = np.asarray(cap, dtype=np.float64) - np.bincount(taken_so_far, minlength=k)
    budget_left = budget - math.fsum(cost[taken_so_far]) if math.isfinite(budget) else math.inf
    available = (cap_left > 0) & (cost <= max(budget_left, 0.0))
    position = 0
    while True:
        if by == "arrival":
            free = position + np.flatnonzero(choice[position:] == -1)
        else:
            free = np.flatnonzero(choice == -1)
        if free.size == 0 or not available.any():
            break
        sub = vt[:, free]
        best = np.full(free.size, -np.inf)
        arg = np.full(free.size, -1, dtype=np.int64)
        for t in np.flatnonzero(available):
            better = sub[t] > best
            best = np.where(better, sub[t], best)
            arg = np.where(better, t, arg)
        order = np.flatnonzero(best > -np.inf)
        if by == "value":
            order = order[np.argsort(-best[order], kind="stable")]
        seq = arg[order]
        stop = seq.size
        for t in np.flatnonzero(available & np.isfinite(cap_left)):
            where = np.flatnonzero(seq == t)
            if where.size > cap_left[t]:
                stop = min(stop, int(where[int(cap_left[t])]))
        if math.isfinite(budget_left):
            spent = np.cumsum(cost[seq])
            stop = min(stop, int(np.searchsorted(spent, budget_left, side="right")))
        taken = seq[:stop]
        choice[free[order[:stop]]] = taken
        cap_left -= np.bincount(taken, minlength=k)
        if math.isfinite(budget_left) and stop:
            budget_left -= math.fsum(cost[taken])
        if stop == seq.size:
            break
        available &= (cap_left > 0) & (cost <= max(budget_left, 0.0))
        if by == "arrival":
            position = int(free[order[stop]])
    enforce_budget(vt, cost, budget, choice)


# --------------------------------------------------------------------------- dual prices + working-set LP


def _dual_prices(prob: _Problem, limits: SolverLimits) -> tuple[np.ndarray, str, float, int, int]:
    k, m = prob.vt.shape
    cost = prob.cost
    capped = np.flatnonzero(np.isfinite(prob.cap))
    has_budget = math.isfinite(prob.budget)
    lam = np.zeros(k)
    mu = 0.0
    rng = np.random.default_rng(20260601)
    if m > limits.sample_customers:
        sample = np.sort(rng.choice(m, size=limits.sample_customers, replace=False))
        share = limits.sample_customers / m
        vals, cust, treat = _pairs(prob.vt, sample)
        res = _lp(vals, cust, treat, sample.size, prob.cap * share, prob.budget * share, cost)
        assert isinstance(res, _LPResult)
        lam, mu = res.lam.copy(), res.mu
    for _ in range(limits.coordinate_sweeps):
        for t in capped:
            lam[t] = _price_for(prob, lam, mu, int(t))
        if has_budget:
            mu = _cost_price_for(prob, lam, mu)
    upper = _dual_bound(prob, lam, mu)
    scale = max(1.0, float(prob.vt[prob.vt > -np.inf].max()))
    tol = 1e-7 * scale

    # Fix every customer whose best option wins clearly; the rest form the working set.
    best, second, arg = _best_two(prob.vt, _prices(lam, mu, cost))
    margin = best - second
    size = min(m, limits.working_set_customers)
    in_ws = np.zeros(m, dtype=bool)
    if size >= m:
        in_ws[:] = True
        eps = np.inf
    else:
        eps = float(np.partition(margin, size - 1)[size - 1])
        in_ws |= margin <= eps
    fixed = np.where(in_ws, -1, arg)
    # Fixed customers must fit the capacities and the budget on their own: free the closest calls first.
    for t in capped:
        mine = np.flatnonzero(fixed == t)
        excess = mine.size - int(prob.cap[t])
        if excess > 0:
            release = mine[np.argpartition(margin[mine], excess - 1)[:excess]]
            in_ws[release] = True
            fixed[release] = -1
    if has_budget:
        paid = np.flatnonzero(fixed >= 0)
        paid = paid[cost[fixed[paid]] > 0]
        spend = math.fsum(cost[fixed[paid]])
        if spend > prob.budget:
            order = paid[np.argsort(-margin[paid], kind="stable")]
            keep = np.cumsum(cost[fixed[order]]) <= prob.budget * (1 - 1e-12)
            release = order[~keep]
            in_ws[release] = True
            fixed[release] = -1
    # Columns of the working set: options near each customer's best (more join when the duals ask).
    price = _prices(lam, mu, cost)
    col_eps = 2 * eps if math.isfinite(eps) else np.inf
    columns = np.zeros((k, m), dtype=bool)
    ws = np.flatnonzero(in_ws)
    red = prob.vt[:, ws] - price[:, None]
    columns[:, ws] = (red > -np.inf) & (red >= best[ws] - col_eps - tol)

    rounds = 0
    choice = fixed.copy()
    while True:
        rounds += 1
        ws = np.flatnonzero(in_ws)
        treat, local = np.nonzero(columns[:, ws])
        cust_global = ws[local]
        vals = prob.vt[treat, cust_global]
        counts = np.bincount(fixed[fixed >= 0], minlength=k)
        cap_res = np.where(np.isfinite(prob.cap), prob.cap - counts, np.inf)
        budget_res = prob.budget - math.fsum(cost[fixed[fixed >= 0]]) if has_budget else math.inf
        res = _lp(vals, local, treat, ws.size, cap_res, budget_res, cost)
        assert isinstance(res, _LPResult)
        lam, mu = res.lam, res.mu
        price = _prices(lam, mu, cost)
        upper = min(upper, _dual_bound(prob, lam, mu))
        choice = fixed.copy()
        choice[ws] = _round(res.x, local, treat, ws.size)
        # Do these duals and the fixed choices satisfy complementary slackness for every customer?
        best_new, arg_new = _best(prob.vt, price)
        fixed_idx = np.flatnonzero(~in_ws)
        f = fixed[fixed_idx]
        own = np.where(f >= 0, prob.vt[np.maximum(f, 0), fixed_idx] - price[np.maximum(f, 0)], 0.0)
        bad_fixed = fixed_idx[best_new[fixed_idx] > own + tol]
        u = np.zeros(m)
        u[ws] = res.u
        red_ws = prob.vt[:, ws] - price[:, None]
        missing = (red_ws > u[ws] + tol) & ~columns[:, ws]
        if bad_fixed.size == 0 and not missing.any():
            break
        if rounds >= limits.max_rounds or in_ws.sum() + bad_fixed.size > limits.max_working_set_customers:
            break
        columns[:, ws] |= missing
        in_ws[bad_fixed] = True
        fixed[bad_fixed] = -1
        red_bad = prob.vt[:, bad_fixed] - price[:, None]
        columns[:, bad_fixed] = (red_bad > -np.inf) & (red_bad >= best_new[bad_fixed] - (col_eps if math.isfinite(col_eps) else np.inf) - tol)
        columns[arg_new[bad_fixed][arg_new[bad_fixed] >= 0], bad_fixed[arg_new[bad_fixed] >= 0]] = True
    _repair_and_fill(prob, choice)
    return choice, "dual_prices", upper, rounds, int(in_ws.sum())
