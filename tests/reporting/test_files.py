"""The report files: layout, Markdown, JSON and PNG charts, overwriting, no matplotlib, hostile run ids."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cvm.agents.messages import GenerateReport, ReportArtifact
from cvm.reporting.charts import CHARTS_HINT
from cvm.reporting.model import safe_name
from tests.reporting.conftest import PNG, RUN, SECTIONS, generate


class TestFiles:
    def test_layout_json_markdown_and_charts(self, portfolio, tmp_path):
        artifact, doc, markdown = portfolio
        folder = (tmp_path / "output" / "reports" / RUN).resolve()
        assert Path(artifact.markdown_path).resolve() == folder / "report.md"
        assert Path(artifact.json_path).resolve() == folder / "report.json"
        assert doc["view"] == "portfolio" and doc["run_id"] == RUN and doc["report_version"] == 1
        for section in SECTIONS:
            assert section in markdown, section
        assert markdown.index("## Executive triggers") < markdown.index("## Decisions")
        names = {Path(c).name for c in artifact.charts}
        assert names == {"decisions_by_treatment.png", "capacity_use.png", "risk_distribution.png"}
        for chart in artifact.charts:
            assert Path(chart).resolve().parent == folder
            assert Path(chart).read_bytes()[:8] == PNG
            assert f"]({Path(chart).name})" in markdown
        assert sorted(doc["charts"]) == sorted(names)
        assert not [p for p in folder.iterdir() if p.name.startswith(".")], "no temp files left behind"

    @pytest.mark.slow
    def test_regenerating_overwrites(self, processed, portfolio):
        first = portfolio[1]
        artifact, doc, _ = generate(processed)
        assert doc["totals"] == first["totals"]
        assert len(list(Path(artifact.json_path).parent.glob("report*"))) == 2

    def test_without_matplotlib_still_writes_markdown_and_json(self, processed, monkeypatch):
        for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
            monkeypatch.setitem(sys.modules, module, None)
        artifact, doc, markdown = generate(processed, customer_id="U127")
        assert artifact.charts == () and doc["charts"] == []
        assert artifact.charts_note == CHARTS_HINT and CHARTS_HINT in markdown
        assert "matplotlib, which is missing" in markdown and "make install" in markdown
        assert not list(Path(artifact.json_path).parent.glob("*.png"))

    def test_hostile_run_id_stays_inside_the_reports_folder(self, make_runtime, tmp_path):
        run_id = "../../escape/run"
        runtime = make_runtime(run_id=run_id)
        runtime.orchestrator.decide_many(["U123"])
        artifact = runtime.report.process(GenerateReport(run_id=run_id))
        assert isinstance(artifact, ReportArtifact), artifact
        reports = (tmp_path / "output" / "reports").resolve()
        assert Path(artifact.json_path).resolve().parent.parent == reports
        assert safe_name(run_id) != run_id and "/" not in safe_name(run_id)
        assert safe_name("run-20261123T100000-abc123") == "run-20261123T100000-abc123"
