"""Baselines the optimiser is measured against, with ``assign``'s signature and result type.

``fcfs_greedy``: customers in arrival (row) order, each takes its best eligible
positive treatment that still has capacity and fits the budget left, falling back
to the next best when it does not: the prototype's behaviour.

``value_greedy``: every eligible positive (customer, treatment) pair in descending
value; a pair is taken when its customer is still free, its treatment has room and
its cost fits the budget left.

Their ``upper_bound`` is the trivial bound (everyone gets their best option,
ignoring capacities and the budget); compare them against the optimiser's bound.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cvm.tools.optimizer import Assignment, finish, greedy, prepare


def _run(by: str, value: Any, eligible: Any, capacity: Any, cost: Any, budget: Any) -> Assignment:
    start = time.perf_counter()
    prob = prepare(value, eligible, capacity, cost, budget)
    choice = np.full(prob.vt.shape[1], -1, dtype=np.int64)
    greedy(prob.vt, prob.cost, prob.cap, prob.budget, choice, by=by)
    bound = float(np.maximum(prob.vt.max(axis=0), 0.0).sum()) if prob.vt.size else 0.0
    return finish(prob, choice, method=f"{'fcfs' if by == 'arrival' else 'value'}_greedy", upper_bound=bound, start=start)


def fcfs_greedy(value: Any, eligible: Any, capacity: Any, cost: Any = None, budget: Any = None) -> Assignment:
    """First come, first served: each customer in row order takes its best option still available."""
    return _run("arrival", value, eligible, capacity, cost, budget)


def value_greedy(value: Any, eligible: Any, capacity: Any, cost: Any = None, budget: Any = None) -> Assignment:
    """Highest-value pairs first, each taken when the customer is free and capacity and budget allow."""
    return _run("value", value, eligible, capacity, cost, budget)
