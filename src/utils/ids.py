"""Every id CVM makes, formatted in one place so both decision paths (per customer, batch) make the same ones.

- run id: ``run-20261123T100000-1a2b3c`` (the run's start, then 6 random hex digits);
- approval request id: ``apr-20261123-1a2b3c4d`` (the day it was requested, then 8 random hex digits);
- decision key: ``<run id>:<customer id>``, the idempotency key of a run's one decision (and allocation)
  per customer, which a re-run or a resumed run finds again.
"""

from __future__ import annotations

import uuid
from datetime import datetime


def new_run_id(now: datetime) -> str:
    """A fresh run id, starting with the run's start time."""
    return f"run-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def new_approval_request_id(now: datetime) -> str:
    """A fresh approval request id, starting with the day it is requested."""
    return f"apr-{now:%Y%m%d}-{uuid.uuid4().hex[:8]}"


def decision_key(run_id: str, customer_id: str) -> str:
    """One decision (and at most one allocation) per customer per run: the key a re-run finds again."""
    return f"{run_id}:{customer_id}"
