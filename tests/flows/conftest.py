"""Shared for the flow tests: a catalog of the real agents, a flow-file writer, a good flow."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cvm.flows.catalog import ActionCatalog


@pytest.fixture
def catalog(make_runtime: Callable[..., object]) -> ActionCatalog:
    return ActionCatalog.from_agents(make_runtime().agents())  # type: ignore[attr-defined]


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


GOOD = """
    flow_id: demo
    description: A demo
    inputs:
      horizon_days: {default: 90, type: integer}
    steps:
      - id: load
        agent: data
        action: list_customers
      - id: fuse
        agent: insight
        action: fuse_signals
        depends_on: [load]
        parameters: {customer_ids: "${steps.load.output.customer_ids}"}
      - id: forecast
        agent: insight
        action: forecast_churn
        depends_on: [load]
        parameters: {customer_ids: "${steps.load.output.customer_ids}", horizon_days: "${inputs.horizon_days}"}
      - id: decide
        agent: orchestrator
        action: process_batch
        depends_on: [fuse, forecast]
        parameters: {customer_ids: "${steps.fuse.output.at_risk.*.customer_id}", run_id: "${run.id}"}
"""


