"""Shared by the report tests: the sample decided on a real ledger, report generation, SQL on the ledger file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvm.agents.messages import GenerateReport, ReportArtifact
from tests.conftest import CONFIG

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))
RUN = "run-report-test"
PNG = b"\x89PNG\r\n\x1a\n"
SECTIONS = (
    "## Executive triggers", "## Goal and plan", "## Decisions", "### By treatment", "### By channel",
    "## Expected value and cost", "## Capacity", "## Approvals", "### Pending", "### Decided",
    "## Data quality and errors", "## Customers most at risk", "## Charts",
)


def write_config(folder: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    edit(doc)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def thresholds(**values: int | None) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("reporting", {}).setdefault("executive_triggers", {}).update(values)

    return edit


def sql(db_url: str, query: str, *params: Any) -> list[tuple]:
    conn = sqlite3.connect(db_url[len("sqlite:///"):])
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def generate(runtime, **fields: Any) -> tuple[ReportArtifact, dict[str, Any], str]:
    artifact = runtime.report.process(GenerateReport(run_id=RUN, **fields))
    assert isinstance(artifact, ReportArtifact), artifact
    doc = json.loads(Path(artifact.json_path).read_text(encoding="utf-8"))
    return artifact, doc, Path(artifact.markdown_path).read_text(encoding="utf-8")


@pytest.fixture
def no_charts(monkeypatch):
    """Skip drawing (about a second per report on a slow machine) where only the numbers matter; TestFiles draws."""
    monkeypatch.setattr("cvm.reporting.charts._figure_class", lambda: None)


@pytest.fixture
def processed(make_runtime):
    runtime = make_runtime(run_id=RUN)
    runtime.orchestrator.decide_many(list(SAMPLE_IDS))
    return runtime


@pytest.fixture
def portfolio(processed):
    return generate(processed)
