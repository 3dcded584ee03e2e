"""The batch optimiser against first-come-first-served and value-greedy baselines.

Generates a seeded telecom-like instance (customers x 12 treatments: call-backs with a
few hundred to a few thousand slots a day, offers with tens of thousands, an app
banner with a quarter of a million, unlimited email and SMS; consent and
eligibility masks; values net of cost, many negative), solves it without a budget
(exactness check) and with a binding budget, and prints ``name=value`` lines
measured in this run. Nothing here passes or fails.

    .venv/bin/python bench/bench_optimizer.py                      # 1M customers
    .venv/bin/python bench/bench_optimizer.py --customers 100000 --exact-lp
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from baselines import fcfs_greedy, value_greedy  # noqa: E402

from cvm.tools.optimizer import UNLIMITED, assign  # noqa: E402

# name, channel, daily capacity, cost per contact, share of the at-risk revenue saved, value per accept, base P(accept)
TREATMENTS = (
    ("marketing_call_back", "call", 2_000, 4.0, 0.35, 0.0, 0.25),
    ("service_call_back", "call", 3_000, 3.5, 0.25, 5.0, 0.30),
    ("senior_retention_call", "call", 500, 8.0, 0.50, 0.0, 0.30),
    ("early_upgrade", "sms", 5_000, 60.0, 0.60, 120.0, 0.08),
    ("loyalty_discount", "email", 30_000, 12.0, 0.40, 0.0, 0.15),
    ("bill_credit", "email", 20_000, 8.0, 0.30, 0.0, 0.20),
    ("data_boost", "sms", 100_000, 1.0, 0.12, 2.0, 0.30),
    ("roaming_pack", "sms", 20_000, 2.0, 0.05, 10.0, 0.25),
    ("family_plan", "email", 10_000, 15.0, 0.20, 80.0, 0.04),
    ("retention_email", "email", UNLIMITED, 0.05, 0.03, 0.0, 0.10),
    ("retention_sms", "sms", UNLIMITED, 0.03, 0.025, 0.0, 0.08),
    ("loyalty_app", "push", 250_000, 0.10, 0.05, 0.5, 0.12),
)
CONSENT = {"call": 0.5, "sms": 0.6, "email": 0.75, "push": 0.4}


def make_instance(customers: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (value, eligible, capacity, cost) for ``customers`` customers; capacities scale with the base."""
    rng = np.random.default_rng(seed)
    k = len(TREATMENTS)
    arpu = rng.lognormal(mean=3.4, sigma=0.5, size=customers)  # monthly revenue, ~30
    churn = rng.beta(2.0, 8.0, size=customers)
    at_risk = churn * arpu * 12
    channel_ok = {ch: rng.random(customers) < p for ch, p in CONSENT.items()}
    upgrade_due = rng.random(customers) < 0.2
    traveller = rng.random(customers) < 0.1
    heavy_user = rng.random(customers) < 0.3
    family = rng.random(customers) < 0.15
    affinity = rng.lognormal(mean=0.0, sigma=0.35, size=(customers, 1))  # some customers answer everything
    value = np.empty((customers, k))
    eligible = np.empty((customers, k), dtype=bool)
    capacity = np.empty(k)
    cost = np.empty(k)
    scale = customers / 1_000_000
    for t, (name, channel, cap, unit_cost, save, per_accept, accept) in enumerate(TREATMENTS):
        p = np.clip(accept * affinity[:, 0] * rng.lognormal(0.0, 0.6, size=customers), 0, 0.95)
        value[:, t] = p * (at_risk * save + per_accept) - unit_cost
        ok = channel_ok[channel].copy()
        if name == "early_upgrade":
            ok &= upgrade_due
        elif name == "roaming_pack":
            ok &= traveller
        elif name == "data_boost":
            ok &= heavy_user
        elif name == "family_plan":
            ok &= family
        eligible[:, t] = ok
        capacity[t] = cap if cap == UNLIMITED else max(1, round(cap * scale))
        cost[t] = unit_cost
    return np.round(value, 4), eligible, capacity, cost


def timed(fn, *args):
    """Run ``fn`` once; return its result and wall seconds."""
    gc.collect()
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def peak_mb(fn, *args) -> float:
    """Peak memory ``fn`` allocates (tracemalloc, numpy buffers included), in a separate untimed run."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--budget-share", type=float, default=0.6, help="budget = this x the cost of the no-budget optimum")
    parser.add_argument("--exact-lp", action="store_true", help="also solve the whole LP with HiGHS (slow past ~200k)")
    args = parser.parse_args()
    n = args.customers
    tag = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
    value, eligible, capacity, cost = make_instance(n, args.seed)
    print(f"customers={n}")
    print(f"treatments={value.shape[1]}")
    print(f"eligible_positive_pairs={int((eligible & (value > 0)).sum())}")

    free, free_s = timed(assign, value, eligible, capacity, cost)
    print(f"optimizer_no_budget_method={free.method}")
    print(f"optimizer_no_budget_value_over_upper_bound={free.total_value / free.upper_bound:.9f}")
    print(f"optimizer_no_budget_gap={free.gap:.3e}")
    print(f"optimizer_no_budget_seconds_{tag}={free_s:.2f}")
    print(f"fcfs_no_budget_value_over_upper_bound={fcfs_greedy(value, eligible, capacity, cost).total_value / free.upper_bound:.6f}")
    print(f"greedy_no_budget_value_over_upper_bound={value_greedy(value, eligible, capacity, cost).total_value / free.upper_bound:.6f}")
    if args.exact_lp:
        from scipy.optimize import linprog
        from scipy.sparse import csr_array

        start = time.perf_counter()
        rows, cols = np.nonzero(eligible & (value > 0))
        npairs = rows.size
        capped = np.flatnonzero(np.isfinite(capacity))
        cap_row = np.full(value.shape[1], -1)
        cap_row[capped] = n + np.arange(capped.size)
        keep = cap_row[cols] >= 0
        a = csr_array(
            (np.ones(npairs + int(keep.sum())), (np.concatenate([rows, cap_row[cols[keep]]]),
             np.concatenate([np.arange(npairs), np.flatnonzero(keep)]))), shape=(n + capped.size, npairs)
        )
        res = linprog(-value[rows, cols], A_ub=a, b_ub=np.concatenate([np.ones(n), capacity[capped]]), method="highs")
        print(f"exact_lp_seconds_{tag}={time.perf_counter() - start:.2f}")
        print(f"optimizer_no_budget_value_over_exact_lp={free.total_value / -res.fun:.9f}")

    budget = round(args.budget_share * free.total_cost, 2)
    print(f"budget={budget}")
    opt, opt_s = timed(assign, value, eligible, capacity, cost, budget)
    fcfs, fcfs_s = timed(fcfs_greedy, value, eligible, capacity, cost, budget)
    greedy, greedy_s = timed(value_greedy, value, eligible, capacity, cost, budget)
    ub = opt.upper_bound
    print(f"optimizer_method={opt.method}")
    print(f"optimizer_rounds={opt.rounds}")
    print(f"optimizer_working_set={opt.working_set}")
    print(f"optimizer_value_over_upper_bound={opt.total_value / ub:.6f}")
    print(f"optimizer_gap={opt.gap:.3e}")
    print(f"fcfs_value_over_upper_bound={fcfs.total_value / ub:.6f}")
    print(f"greedy_value_over_upper_bound={greedy.total_value / ub:.6f}")
    print(f"optimizer_over_fcfs={opt.total_value / fcfs.total_value:.4f}")
    print(f"optimizer_over_greedy={opt.total_value / greedy.total_value:.4f}")
    print(f"optimizer_budget_used={opt.total_cost / budget:.6f}")
    print(f"optimizer_seconds_{tag}={opt_s:.2f}")
    print(f"fcfs_seconds_{tag}={fcfs_s:.2f}")
    print(f"greedy_seconds_{tag}={greedy_s:.2f}")
    print(f"optimizer_peak_memory_mb={peak_mb(assign, value, eligible, capacity, cost, budget):.0f}")
    print(f"input_arrays_mb={(value.nbytes + eligible.nbytes) / 2**20:.0f}")
    print(f"process_peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
