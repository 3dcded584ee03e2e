"""``cvm report``: the executive report of a run (or of one customer in it), as Markdown, JSON and PNG charts.

Reads the ledger only: it never takes capacity, decides approvals or expires
them; it keeps one snapshot of the run's KPIs (``--trend`` shows them over
runs, in ``<output dir>/reports/trend.md``). Files go under
``<output dir>/reports/<run id>/`` (``--output-dir`` or ``CVM_OUTPUT_DIR``,
default ``output``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from cvm.agents.base import expect
from cvm.agents.messages import GenerateReport, ReportArtifact, ReportTrend, TrendArtifact
from cvm.cli.common import load_settings, setup_logging
from cvm.cli.options import AsOf, ConfigFile, DataDir, LogLevel
from cvm.utils.errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

ReportRunId = Annotated[
    str | None, typer.Option("--run-id", "--run_id", help="The run to report on (printed by cvm process, in its result file).")
]
TrendFlag = Annotated[
    bool, typer.Option("--trend", help="KPIs over every run in the ledger (a snapshot per run, taken now where missing).")
]
Customer = Annotated[str | None, typer.Option("--customer", help="Only this customer of the run (single-customer view).")]
OutputDir = Annotated[str | None, typer.Option("--output-dir", "--output_dir", help="Reports go under DIR/reports/<run id>/ (default output/, CVM_OUTPUT_DIR).")]
Title = Annotated[str | None, typer.Option("--title", help="The report's title.")]
Goal = Annotated[str | None, typer.Option("--goal", help="What the run was for, shown at the top of the report.")]
Output = Annotated[
    Literal["table", "text", "json"],
    typer.Option("--output", help="table (text is the same: the paths and what fired), or json (the paths and headline numbers)."),
]


@app.command("report")
def report(
    run_id: ReportRunId = None,
    trend: TrendFlag = False,
    customer: Customer = None,
    output_dir: OutputDir = None,
    title: Title = None,
    goal: Goal = None,
    output: Output = "table",
    data_dir: DataDir = None,
    config: ConfigFile = None,
    log_level: LogLevel = None,
    as_of: AsOf = None,
) -> None:
    """Write the executive report of a run: decisions, value and cost, capacity, approvals, data quality, risk, triggers.

    With --trend: Mission Control over time, the KPIs of every run in the ledger.
    """
    from cvm.cli.progress import terminal_progress
    from cvm.runtime import RunOptions, build_runtime, load_full_config

    if trend and (run_id is not None or customer is not None):
        raise UsageError("--trend covers every run: give it without --run-id and --customer")
    if not trend and run_id is None:
        raise UsageError("--run-id is missing; give the run id printed by cvm process (or --trend for every run)")
    if run_id is not None and not run_id.strip():
        raise UsageError("--run-id is empty; give the run id printed by cvm process")
    if customer is not None and not customer.strip():
        raise UsageError("--customer is empty; give a customer id of the run, e.g. U128")
    settings = load_settings()
    if output_dir is not None:
        if not output_dir.strip():
            raise UsageError("--output-dir is empty")
        settings = settings.model_copy(update={"output_dir": Path(output_dir)})
    options = RunOptions.from_settings(
        settings, selector="rules", as_of=as_of,
        data_dir=Path(data_dir) if data_dir else None, config_path=Path(config) if config else None,
    )
    full_config = load_full_config(options)
    setup_logging(settings, log_level, full_config)
    runtime = build_runtime(options, settings, full_config, progress=terminal_progress())
    if trend:
        trend_artifact = expect(runtime.report.process(ReportTrend()), TrendArtifact)
        if output == "json":
            print(json.dumps(trend_artifact.model_dump(mode="json", exclude={"type"}), indent=2, ensure_ascii=False))
        else:
            print_trend(trend_artifact)
        return
    assert run_id is not None
    request = GenerateReport(run_id=run_id.strip(), customer_id=customer.strip() if customer else None, title=title, goal=goal)
    artifact = expect(runtime.report.process(request), ReportArtifact)
    if output == "json":
        print(json.dumps(artifact.model_dump(mode="json", exclude={"type"}), indent=2, ensure_ascii=False))
        return
    print_artifact(artifact)


def print_artifact(artifact: ReportArtifact) -> None:
    from cvm.reporting.markdown import money

    view = f"customer {artifact.customer_id}" if artifact.customer_id else "portfolio"
    print(f"report ({view}) of run {artifact.run_id}")
    _print_files(artifact)
    counts = ", ".join(f"{n} {status}" for status, n in artifact.by_status.items()) or "no decisions"
    if artifact.by_status_now != artifact.by_status:
        counts += " (now, after approvals: " + ", ".join(f"{n} {status}" for status, n in artifact.by_status_now.items()) + ")"
    print(
        f"{artifact.customers} customer(s): {counts}; expected value {money(artifact.expected_value_total, artifact.currency)}"
        f" (contact cost {money(artifact.contact_cost_total, artifact.currency)})"
    )
    if artifact.headlines:
        print(f"executive triggers fired ({len(artifact.headlines)}):")
        for line in artifact.headlines:
            print(f"  - {line}")
    else:
        print("executive triggers fired: none")


def print_trend(artifact: TrendArtifact) -> None:
    print(f"trend of {len(artifact.runs)} run(s)")
    _print_files(artifact)
    if artifact.computed:
        print(f"snapshots taken now for {len(artifact.computed)} run(s) never reported on")


def _print_files(artifact: ReportArtifact | TrendArtifact) -> None:
    print(f"  markdown: {artifact.markdown_path}")
    print(f"  json:     {artifact.json_path}")
    for chart in artifact.charts:
        print(f"  chart:    {chart}")
    if artifact.charts_note:
        print(f"  charts:   {artifact.charts_note}")
