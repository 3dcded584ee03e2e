"""The scheduler's claim and takeover, raced by real processes at the same instant.

The CLI test of two ``cvm flows scheduler --once`` processes cannot make them meet at
the claim (Python start-up staggers them), so here several processes wait on one
barrier and then claim the same scheduled time, or take over the same firing, at once.
"""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timezone
from pathlib import Path

from cvm.tools.firing_store import FiringStore

NOW = datetime(2026, 11, 23, 10, 2, tzinfo=timezone.utc)
DUE = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
RACERS = 4


def _claim(path: str, owner: str, barrier, results) -> None:
    store = FiringStore(Path(path))
    barrier.wait(timeout=60)
    results.put((owner, store.claim("daily", DUE, "sched-daily", owner, lease_seconds=60, now=NOW)))


def _take_over(path: str, owner: str, barrier, results) -> None:
    store = FiringStore(Path(path))
    seen = store.unfinished()[0]
    barrier.wait(timeout=60)
    results.put((owner, store.take_over(seen, owner, lease_seconds=60, now=NOW) is not None))


def race(target, path: Path) -> dict[str, bool]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    workers = [ctx.Process(target=target, args=(str(path), f"host:{i}:x", barrier, results)) for i in range(RACERS)]
    for w in workers:
        w.start()
    outcome = dict(results.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return outcome


def test_processes_claiming_one_scheduled_time_at_once_fire_it_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    FiringStore(path)  # the schema exists before the race, as it does once any cvm command ran
    outcome = race(_claim, path)
    winners = [owner for owner, won in outcome.items() if won]
    assert len(winners) == 1, outcome
    (firing,) = FiringStore(path).unfinished()
    assert firing.owner == winners[0]


def test_processes_taking_over_one_firing_at_once_resume_it_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    FiringStore(path).claim("daily", DUE, "sched-daily", "dead:1:x", lease_seconds=60, now=NOW)
    outcome = race(_take_over, path)
    winners = [owner for owner, won in outcome.items() if won]
    assert len(winners) == 1, outcome
    (firing,) = FiringStore(path).unfinished()
    assert (firing.owner, firing.takeovers) == (winners[0], 1)
