"""Executive reports: what a run decided, read back from the ledger, as Markdown, JSON and PNG charts.

The outside-world half of the Report agent: ``collect_run`` reads the run
(``collect``), ``build_report`` computes the typed ``Report`` (``build``,
``model``), ``write_report`` writes it (``files``: ``markdown`` and, when
matplotlib is installed, ``charts``). Nothing here imports the agents layer.
"""

from cvm.reporting.build import build_report
from cvm.reporting.collect import CustomerRisk, ReportLedger, RunRecords, collect_run
from cvm.reporting.files import REPORTS_FOLDER, WrittenReport, write_report
from cvm.reporting.model import Report

__all__ = [
    "REPORTS_FOLDER",
    "CustomerRisk",
    "Report",
    "ReportLedger",
    "RunRecords",
    "WrittenReport",
    "build_report",
    "collect_run",
    "write_report",
]
