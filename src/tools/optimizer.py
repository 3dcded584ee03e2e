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
``lp`` / ``lp_rounded``
    At most ``SolverLimits.exact_lp_max_pairs`` (5,000) eligible positive pairs:
    one HiGHS LP (scipy ``linprog``, interior point with crossover, so a vertex)
    over the whole problem. Without a budget the LP is a transportation problem
    (totally unimodular): its vertex optimum is integral, so ``lp`` is exactly
    optimal. With a budget (``lp_rounded``) the few fractional customers of the
    vertex (one budget row adds at most a couple) are dropped and a greedy fill
    spends what is left; the LP value is the bound.
``dual_prices``
    Everything larger: HiGHS on the whole LP takes seconds at 30k customers x 12
    (7 s on the bench instance) and minutes at 200k, so one price per capacitated treatment (and one on cost for
    the budget) does the global work and HiGHS only settles the close calls.

    1. Prices. On a random sample of ``warm_start_customers`` (capacities and
       budget scaled down): two exact coordinate sweeps, then projected Newton
       (Levenberg-Marquardt damped) on the entropy-smoothed dual at falling
       temperatures, which handles treatments that compete for the same
       customers. Then exact Gauss-Seidel sweeps on every customer: each
       treatment's price set to the order statistic that fills its capacity
       given the others, the cost price by bisection (spend is monotone in it),
       until a sweep gains < 1e-8 of the bound (at most ``max_sweeps``). These
       steps use values nudged by up to 1e-9 of the largest, so exact ties
       (whole-number scores) break one way; everything after uses true values.
    2. Working set. Every customer whose best option at these prices beats the
       next by a clear margin is fixed to it, except the ``working_set_customers``
       closest calls; around each binding price the fixed customers leave
       ``witnesses`` places free and the customers next in line for it join the
       working set. One HiGHS LP over the capacity and budget the fixed customers
       leave gives the working set's assignment; a second one with every
       capacity half a unit short gives prices pinned by real customers (the
       whole-capacity LP is degenerate and its prices can be anywhere in a wide
       interval).
    3. Check. Those prices are checked against every customer (complementary
       slackness). Customers whose fixed choice they contradict join the working
       set (the worst first, up to ``max_working_set_customers``) and the LPs run
       again (``rounds``, at most ``max_rounds``). When nobody contradicts them,
       the assignment is an optimum of the whole LP: integral, hence exactly
       optimal, without a budget; with one, the LP's few fractional customers are
       dropped and a greedy fill spends what is left. If the rounds or the
       working set run out first, the last feasible assignment is returned with
       its measured gap (this happens on heavily tied data with a binding budget,
       e.g. whole-number values and costs: ~1% gap at 200k customers).

The upper bound is a Lagrangian dual value computed here over every customer,
``sum_c max(0, max_t value[c,t] - price_t - mu * cost_t) + sum_t price_t *
capacity_t + mu * budget``, at the best prices tried: it holds for any
non-negative prices, so it is a proof, not an estimate (the small-problem path
also takes the LP optimum itself). Without a budget, once the check passes the
assignment is exactly optimal and the reported gap is 0 or ~1e-10 (the LP
solver's tolerance in the prices). OR-Tools' min-cost flow is not used: the working-set LPs are small
(HiGHS solves them in ~0.1 s) and scipy is already a dependency.

Unlimited capacity is ``np.inf`` (``UNLIMITED``). A capacity at least as large as
the number of customers eligible for it, or a budget nobody can exhaust, is
treated as unlimited.

Size: one algorithm (an exact LP when small, dual prices with a working set at scale, a Lagrangian
budget) and its certificate; the pieces only make sense together.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from cvm.utils.errors import DataError, OptimizerError, UsageError

UNLIMITED = math.inf
"""The capacity that means "no limit" (``np.inf``)."""


@dataclass(frozen=True)
class SolverLimits:
    """Sizes that decide which method runs; the defaults suit a 2-core machine and 1M x 12."""

    exact_lp_max_pairs: int = 5_000
    """Up to this many eligible positive pairs, one LP over the whole problem."""
    warm_start_customers: int = 50_000
    """Customers in the random sample whose smoothed-dual prices start the exact sweeps."""
    max_sweeps: int = 12
    """Exact Gauss-Seidel sweeps over the prices at most (they stop once a sweep gains < 1e-8 of the bound)."""
    working_set_customers: int = 3_000
    """Customers with the closest calls left free (not fixed) in the first working-set LP."""
    witnesses: int = 20
    """Per binding capacity, places the fixed customers leave free and extra customers in line for them."""
    max_working_set_customers: int = 60_000
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
    """Which method produced it: empty, unconstrained, lp, lp_rounded, dual_prices (or a baseline's name)."""
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
    capacity = _as_array("capacity", capacity)
    if capacity.dtype == object:
        raise UsageError("capacity must hold numbers; use np.inf (not None) for an unlimited treatment")
    capacity = _real("capacity", capacity).astype(np.float64)
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

    # Rows are treatments: every pass below reads one contiguous row per treatment.
    vt = np.array(value.T, dtype=np.float64, order="C")
    usable = eligible.T & (vt > 0)
    np.copyto(vt, -np.inf, where=~usable)
    active = np.flatnonzero(usable.any(axis=0)) if k else np.zeros(0, dtype=np.int64)
    del usable
    if active.size < n:
        vt = np.ascontiguousarray(vt[:, active])
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
    better = np.empty(m, dtype=bool)
    for t in range(k):
        np.subtract(vt[t], price[t], out=row)
        np.greater(row, best, out=better)
        np.maximum(best, row, out=best)
        np.copyto(arg, t, where=better)
    return best, arg


def _best_two(vt: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best and second-best reduced value per customer ("none" counts as an option worth 0), best's treatment."""
    k, m = vt.shape
    best = np.zeros(m)
    second = np.full(m, -np.inf)
    arg = np.full(m, -1, dtype=np.int64)
    row = np.empty(m)
    low = np.empty(m)
    better = np.empty(m, dtype=bool)
    for t in range(k):
        np.subtract(vt[t], price[t], out=row)
        np.minimum(best, row, out=low)
        np.maximum(second, low, out=second)
        np.greater(row, best, out=better)
        np.maximum(best, row, out=best)
        np.copyto(arg, t, where=better)
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


def _advantage(prob: _Problem, lam: np.ndarray, mu: float, t: int) -> np.ndarray:
    """How much each customer gains from treatment ``t`` (before its price) over its best other option."""
    k, m = prob.vt.shape
    price = _prices(lam, mu, prob.cost)
    other = np.zeros(m)
    row = np.empty(m)
    for s in range(k):
        if s != t:
            np.subtract(prob.vt[s], price[s], out=row)
            np.maximum(other, row, out=other)
    return prob.vt[t] - mu * prob.cost[t] - other


def _price_for(prob: _Problem, lam: np.ndarray, mu: float, t: int) -> float:
    """Exact coordinate step: the price of treatment ``t`` that fills its capacity given the other prices."""
    advantage = _advantage(prob, lam, mu, t)
    positive = advantage[advantage > 0]
    cap = int(prob.cap[t])
    if positive.size <= cap:
        return 0.0
    # Any price between the (cap+1)-th and the cap-th largest advantage fills exactly ``cap``; take the middle.
    part = np.partition(positive, positive.size - cap - 1)
    below = part[positive.size - cap - 1]
    if cap == 0:
        return float(part.max())
    above = part[positive.size - cap:].min()
    return float((above + below) / 2)


def _spend_of(cost: np.ndarray, arg: np.ndarray) -> float:
    return float(np.where(arg >= 0, cost[arg], 0.0).sum())


def _cost_price_for(prob: _Problem, lam: np.ndarray, mu0: float) -> float:
    """Exact coordinate step on the budget price: the smallest mu whose best choices fit the budget.

    Each customer's chosen cost only falls as mu rises, so total spend is monotone in mu: bisect.
    Customers that choose the same at both ends of the bracket cannot change inside it, so the
    bisection runs on the others only.
    """
    cost, budget = prob.cost, prob.budget
    _, arg0 = _best(prob.vt, lam)
    if _spend_of(cost, arg0) <= budget:
        return 0.0
    positive_cost = cost[cost > 0]
    top = float(prob.vt[prob.vt > -np.inf].max())
    ceiling = top / float(positive_cost.min()) * (1 + 1e-9) + 1e-12

    lo, hi = 0.0, ceiling
    if mu0 > 0:
        # Bracket around the previous value first: the bisection then starts on few customers.
        step = 1.02
        while mu0 * step < ceiling and _spend_of(cost, _best(prob.vt, _prices(lam, mu0 * step, cost))[1]) > budget:
            lo, step = mu0 * step, step * step
        hi = min(mu0 * step, ceiling)
        if lo == 0.0:
            step = 1.02
            while _spend_of(cost, _best(prob.vt, _prices(lam, mu0 / step, cost))[1]) <= budget:
                hi, step = mu0 / step, step * step
                if hi < 1e-12:
                    return hi
            lo = mu0 / step
    sub = prob.vt
    arg_lo = _best(sub, _prices(lam, lo, cost))[1]
    arg_hi = _best(sub, _prices(lam, hi, cost))[1]
    settled = 0.0
    for _ in range(80):
        moving = arg_lo != arg_hi
        if not moving.all():
            # Customers choosing the same at both ends cannot change inside the bracket: set them aside.
            settled += _spend_of(cost, arg_hi[~moving])
            sub, arg_lo, arg_hi = sub[:, moving], arg_lo[moving], arg_hi[moving]
        if sub.shape[1] == 0 or hi - lo <= 1e-13 * hi:
            break
        mid = (lo + hi) / 2
        arg_mid = _best(sub, _prices(lam, mid, cost))[1]
        if settled + _spend_of(cost, arg_mid) <= budget:
            hi, arg_hi = mid, arg_mid
        else:
            lo, arg_lo = mid, arg_mid
    return hi


# --------------------------------------------------------------------------- LPs


def _lp(
    vals: np.ndarray, cust: np.ndarray, treat: np.ndarray, n_cust: int, cap: np.ndarray, budget: float, cost: np.ndarray,
) -> _LPResult:
    """One HiGHS LP over the given pairs; caps are per treatment (inf = no row), budget inf = no row."""
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
    # Interior point with crossover: a vertex (integral without a budget), and much faster than dual
    # simplex on these assignment LPs (13x on a 3,000-customer working set).
    res = linprog(-vals, A_ub=a, b_ub=b, bounds=(0, None), method="highs-ipm")
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
    choice = _round(res.x, cust, treat, m)
    _repair_and_fill(prob, choice)
    # The LP optimum bounds every integral assignment; its duals give a bound computed here as well.
    return choice, min(res.objective * (1 + 1e-12), _dual_bound(prob, res.lam, res.mu), _trivial_bound(prob))


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
        better = np.empty(free.size, dtype=bool)
        for t in np.flatnonzero(available):
            np.greater(sub[t], best, out=better)
            np.maximum(best, sub[t], out=best)
            np.copyto(arg, t, where=better)
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


def _smoothed(vt: np.ndarray, price: np.ndarray, tau: float, chunk: int = 65_536) -> tuple[float, np.ndarray, np.ndarray]:
    """Entropy-smoothed dual terms ``sum_c tau * log(1 + sum_t exp((vt - price) / tau))`` (the max for tau -> 0).

    Returns the sum, the expected count per treatment (softmax probabilities summed) and
    ``diag(counts) - sum_c p_c p_c^T``, the curvature in the prices, times ``tau``.
    """
    k, m = vt.shape
    total = 0.0
    counts = np.zeros(k)
    curvature = np.zeros((k, k))
    for start in range(0, m, chunk):
        r = vt[:, start:start + chunk] - price[:, None]
        top = np.maximum(r.max(axis=0), 0.0)
        r -= top
        r /= tau
        e = np.exp(r, out=r)
        z = e.sum(axis=0)
        z += np.exp(-top / tau)
        total += float((top + tau * np.log(z)).sum())
        e /= z
        counts += e.sum(axis=1)
        curvature -= e @ e.T
    curvature += np.diag(counts)
    return total, counts, curvature


def _newton_prices(
    prob: _Problem, lam: np.ndarray, mu: float, typical: float, taus: list[float], max_iter: int = 25
) -> tuple[np.ndarray, float]:
    """Prices minimising the entropy-smoothed dual, by projected Newton, for each temperature in turn.

    No step moves a price by more than ``typical`` (a typical value) at once.

    Smoothing spreads each customer over its near-ties, so the dual is smooth and Newton's step uses the
    coupling between treatments that compete for the same customers (where exact coordinate steps crawl).
    """
    k, m = prob.vt.shape
    capped = np.flatnonzero(np.isfinite(prob.cap))
    has_budget = math.isfinite(prob.budget)
    nv = capped.size + int(has_budget)
    a = np.zeros((k, nv))  # prices = a @ y, y = (capacity prices, cost price)
    a[capped, np.arange(capped.size)] = 1.0
    b = np.zeros(nv)
    b[:capped.size] = prob.cap[capped]
    if has_budget:
        a[:, -1] = prob.cost
        b[-1] = prob.budget
    y = np.append(lam[capped], [mu] if has_budget else [])
    for tau in taus:
        total, counts, curv = _smoothed(prob.vt, a @ y, tau)
        f = total + b @ y
        damping = 1e-9
        for _ in range(max_iter):
            g = b - a.T @ counts
            free = ~((y <= 0) & (g > 0))
            if np.abs(g[free]).max(initial=0.0) <= 1e-3:
                break
            h = (a.T @ curv @ a)[np.ix_(free, free)] / tau
            scale_h = max(float(np.trace(h)) / h.shape[0], float(np.abs(g[free]).max()) / typical)
            # Levenberg-Marquardt: a treatment whose price sits where no customer is close has almost no
            # curvature, and a bare Newton step would fling its price far; damping shortens such steps.
            for _try in range(12):
                step = np.zeros(nv)
                try:
                    step[free] = -np.linalg.solve(h + damping * scale_h * np.eye(h.shape[0]), g[free])
                except np.linalg.LinAlgError:
                    step[:] = np.nan
                if not np.isfinite(step).all():
                    damping *= 10
                    continue
                longest = float(np.abs(step).max())
                if longest > typical:
                    step *= typical / longest
                y_new = np.maximum(y + step, 0.0)
                total_n, counts_n, curv_n = _smoothed(prob.vt, a @ y_new, tau)
                f_new = total_n + b @ y_new
                if f_new <= f + 1e-4 * float(g @ (y_new - y)):
                    damping = max(damping / 10, 1e-9)
                    break
                damping *= 10
            else:
                break
            y, f, counts, curv = y_new, f_new, counts_n, curv_n
    lam = np.zeros(k)
    lam[capped] = y[:capped.size]
    return lam, float(y[-1]) if has_budget else 0.0


def _sweeps(prob: _Problem, lam: np.ndarray, mu: float, max_sweeps: int) -> tuple[np.ndarray, float, float]:
    """Gauss-Seidel on the dual: each price in turn set exactly given the others, until the bound stalls."""
    lam = lam.copy()
    capped = np.flatnonzero(np.isfinite(prob.cap))
    upper = math.inf
    for _ in range(max_sweeps):
        for t in capped:
            lam[t] = _price_for(prob, lam, mu, int(t))
        if math.isfinite(prob.budget):
            mu = _cost_price_for(prob, lam, mu)
        bound = _dual_bound(prob, lam, mu)
        improved = upper - bound
        upper = min(upper, bound)
        if improved <= 1e-8 * abs(bound):
            break
    return lam, mu, upper


def _dual_prices(prob: _Problem, limits: SolverLimits) -> tuple[np.ndarray, str, float, int, int]:
    k, m = prob.vt.shape
    cost = prob.cost
    capped = np.flatnonzero(np.isfinite(prob.cap))
    has_budget = math.isfinite(prob.budget)
    rng = np.random.default_rng(20260601)
    scale = max(1.0, float(prob.vt[prob.vt > -np.inf].max()))
    tol = 1e-7 * scale
    # Prices and the choice of whom to fix use values nudged by up to 1e-9 of the largest: ties (whole-number
    # scores, equal offers) then break one way, so prices converge and margins sort the close calls. The
    # LPs, the checks and the bound use the true values.
    nudged = prob.vt.copy()
    for t in range(k):
        nudged[t] += 1e-9 * scale * rng.random(m)
    near = dataclasses.replace(prob, vt=nudged)
    # Start from the smoothed dual's prices on a random sample (capacities and budget scaled down).
    size = min(m, limits.warm_start_customers)
    sample = np.sort(rng.choice(m, size=size, replace=False)) if size < m else np.arange(m)
    share = size / m
    small = dataclasses.replace(
        near, n=size, vt=np.ascontiguousarray(nudged[:, sample]) if size < m else nudged, active=sample,
        cap=prob.cap * share, budget=prob.budget * share,
    )
    typical = float(np.median(small.vt.max(axis=0)))
    # Two exact sweeps put the prices on the right scale; Newton then settles how treatments share customers.
    rounded = dataclasses.replace(small, cap=np.where(np.isfinite(small.cap), np.round(small.cap), np.inf))
    lam, mu, _ = _sweeps(rounded, np.zeros(k), 0.0, 2)
    lam, mu = _newton_prices(small, lam, mu, typical, [typical * 10.0**-e for e in range(2, 5)])
    lam, mu, _ = _sweeps(near, lam, mu, limits.max_sweeps)
    upper = _dual_bound(prob, lam, mu)

    # Fix every customer whose best option wins clearly; the rest form the working set.
    best, second, arg = _best_two(nudged, _prices(lam, mu, cost))
    margin = best - second
    size = min(m, limits.working_set_customers)
    in_ws = np.zeros(m, dtype=bool)
    pins: list[tuple[int, np.ndarray]] = []
    if size >= m:
        in_ws[:] = True
        eps = np.inf
    else:
        closest = np.argpartition(margin, size - 1)[:size]
        in_ws[closest] = True
        eps = float(margin[closest].max())
    fixed = np.where(in_ws, -1, arg)
    # Around each binding price: the fixed customers leave ``room`` places free (the closest calls on t
    # leave first), and the customers next in line for t join the working set, enough to fill the free
    # places and ``room`` more. The LP then decides the boundary with the customers that really pin the
    # price (with whole-number scores thousands may tie exactly at it).
    room = limits.witnesses
    for t in capped.tolist():  # plain ints, as t is elsewhere in this function
        binding = lam[t] > 0 and size < m
        mine = np.flatnonzero(fixed == t)
        excess = mine.size - max(int(prob.cap[t]) - (room if binding else 0), 0)
        if not binding:
            if excess > 0:
                release = mine[np.argpartition(margin[mine], excess - 1)[:excess]]
                in_ws[release] = True
                fixed[release] = -1
            continue
        distance = _advantage(near, lam, mu, int(t)) - lam[t]
        if excess > 0:
            release = mine[np.argpartition(distance[mine], excess - 1)[:excess]]
            in_ws[release] = True
            fixed[release] = -1
        want = int(prob.cap[t]) - int((fixed == t).sum()) + room
        line = np.flatnonzero((fixed != t) & np.isfinite(distance))
        if line.size > want:
            line = line[np.argpartition(-distance[line], want - 1)[:want]]
        in_ws[line] = True
        fixed[line] = -1
        pins.append((int(t), line))
    del nudged, near, small
    if has_budget:
        allowed = max(prob.budget - (room * float(cost.max()) if mu > 0 else 0.0), 0.0)
        paid = np.flatnonzero(fixed >= 0)
        paid = paid[cost[fixed[paid]] > 0]
        if math.fsum(cost[fixed[paid]]) > allowed:
            order = paid[np.argsort(-margin[paid], kind="stable")]
            keep = np.cumsum(cost[fixed[order]]) <= allowed * (1 - 1e-12)
            release = order[~keep]
            in_ws[release] = True
            fixed[release] = -1
    # Columns of the working set: options near each customer's best (more join when the duals ask).
    price = _prices(lam, mu, cost)
    col_eps = 2 * eps + tol
    columns = np.zeros((k, m), dtype=bool)
    ws = np.flatnonzero(in_ws)
    red = prob.vt[:, ws] - price[:, None]
    columns[:, ws] = (red > -np.inf) & (red >= best[ws] - col_eps)
    for t, line in pins:
        columns[t, line] = True

    rounds = 0
    while True:
        rounds += 1
        ws = np.flatnonzero(in_ws)
        treat, local = np.nonzero(columns[:, ws])
        vals = prob.vt[treat, ws[local]]
        counts = np.bincount(fixed[fixed >= 0], minlength=k)
        cap_res = np.where(np.isfinite(prob.cap), prob.cap - counts, np.inf)
        budget_res = prob.budget - math.fsum(cost[fixed[fixed >= 0]]) if has_budget else math.inf
        # Prices from the LP with every capacity half a unit short: its boundary customer sits half in, so
        # each binding price is pinned by a real customer (with whole capacities the LP is degenerate and
        # HiGHS may return any price in an interval far wider than the whole problem allows).
        res = _lp(vals, local, treat, ws.size, np.where(cap_res >= 1, cap_res - 0.5, cap_res), budget_res, cost)
        price = _prices(res.lam, res.mu, cost)
        upper = min(upper, _dual_bound(prob, res.lam, res.mu))
        whole = _lp(vals, local, treat, ws.size, cap_res, budget_res, cost)
        choice = fixed.copy()
        choice[ws] = _round(whole.x, local, treat, ws.size)
        # Do these duals and the fixed choices satisfy complementary slackness for every customer?
        best_new, _ = _best(prob.vt, price)
        fixed_idx = np.flatnonzero(~in_ws)
        f = fixed[fixed_idx]
        own = np.where(f >= 0, prob.vt[np.maximum(f, 0), fixed_idx] - price[np.maximum(f, 0)], 0.0)
        regret = best_new[fixed_idx] - own
        bad_fixed = fixed_idx[regret > tol]
        red_ws = prob.vt[:, ws] - price[:, None]
        missing = (red_ws > res.u + tol) & ~columns[:, ws]
        if bad_fixed.size == 0 and not missing.any():
            break
        room_left = limits.max_working_set_customers - ws.size
        if rounds >= limits.max_rounds or room_left <= 0:
            break
        if bad_fixed.size > room_left:
            # Too many to take at once: the most contradicted first; the next round's prices judge the rest.
            worst = np.argpartition(-regret[regret > tol], room_left - 1)[:room_left]
            bad_fixed = bad_fixed[worst]
        columns[:, ws] |= missing
        in_ws[bad_fixed] = True
        fixed[bad_fixed] = -1
        red_bad = prob.vt[:, bad_fixed] - price[:, None]
        columns[:, bad_fixed] = (red_bad > -np.inf) & (red_bad >= best_new[bad_fixed] - col_eps)
    _repair_and_fill(prob, choice)
    return choice, "dual_prices", upper, rounds, int(in_ws.sum())
