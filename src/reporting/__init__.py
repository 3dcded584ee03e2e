"""Executive reports: what a run decided, read back from the ledger, as Markdown, JSON and PNG charts.

The outside-world half of the Report agent. The portfolio view is built from
grouped rows at any size: ``collect_portfolio`` asks the ledger's SQL for them
(``cvm.tools.run_aggregates``) and ``build_portfolio_report`` computes the typed
``Report`` (``portfolio``, ``model``). The single-customer view reads that
customer's records (``collect_run``) and ``build_report`` computes it
(``build``). ``write_report`` writes either (``files``: ``markdown`` and, when
matplotlib is installed, ``charts``). ``trend`` keeps a snapshot of KPIs per
run and renders them over runs. Nothing here imports the agents layer.
"""

from cvm.reporting.build import build_report
from cvm.reporting.collect import CustomerRisk, ReportLedger, RunRecords, collect_run
from cvm.reporting.files import REPORTS_FOLDER, WrittenReport, write_report
from cvm.reporting.model import Report
from cvm.reporting.portfolio import PortfolioRecords, PortfolioRisk, build_portfolio_report, collect_portfolio

__all__ = [
    "REPORTS_FOLDER",
    "CustomerRisk",
    "PortfolioRecords",
    "PortfolioRisk",
    "Report",
    "ReportLedger",
    "RunRecords",
    "WrittenReport",
    "build_portfolio_report",
    "build_report",
    "collect_portfolio",
    "collect_run",
    "write_report",
]
