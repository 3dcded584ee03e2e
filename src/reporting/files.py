"""Writing a report: ``report.md`` / ``report.json`` (portfolio) or ``customer-<ID>.md`` / ``.json`` (one customer).

Under ``<output_dir>/reports/<run_id>/``, atomically, with the PNG charts
beside them when matplotlib is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cvm.reporting.charts import draw_charts
from cvm.reporting.markdown import render_markdown
from cvm.reporting.model import Report, file_stem, safe_name
from cvm.tools.results import write_json_atomic, write_text_atomic
from cvm.utils.errors import UsageError

REPORTS_FOLDER = "reports"


def report_folder(reports_dir: Path, run_id: str) -> Path:
    return reports_dir / safe_name(run_id)


@dataclass(frozen=True)
class WrittenReport:
    report: Report
    folder: Path
    markdown_path: Path
    json_path: Path
    chart_paths: tuple[Path, ...]


def write_report(report: Report, reports_dir: Path) -> WrittenReport:
    """Write the charts, then the JSON and the Markdown, under ``reports_dir/<run_id>/``."""
    folder = report_folder(reports_dir, report.run_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report folder {folder} ({exc.strerror or exc}); choose another --output-dir") from None
    charts, note = draw_charts(report, folder)
    report = report.model_copy(update={"charts": charts, "charts_note": note})
    stem = file_stem(report)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    try:
        write_json_atomic(json_path, report.model_dump(mode="json"))
        write_text_atomic(md_path, render_markdown(report))
    except OSError as exc:
        raise UsageError(f"cannot write the report in {folder} ({exc.strerror or exc}); choose another --output-dir") from None
    return WrittenReport(report, folder, md_path, json_path, tuple(folder / c for c in charts))
