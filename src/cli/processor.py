"""``cvm_processor_cli`` / ``cvm process``: decide the next best treatment for customers."""

from __future__ import annotations

from typing import NoReturn

import typer

from cvm.cli.common import new_app, run_app
from cvm.cli.listing import View
from cvm.cli.options import (
    DEFAULT_SHOW,
    AllCustomers,
    AsOf,
    AutoApprove,
    Batch,
    Budget,
    ConfigFile,
    CustomerIds,
    DataDir,
    DryRun,
    ListOutput,
    LogLevel,
    MaxWorkers,
    OutputFile,
    Quiet,
    RunId,
    Selector,
    Show,
)
from cvm.cli.results import write_results
from cvm.cli.run import decide, result_path, select_customers, start_run
from cvm.utils.errors import UsageError

app = new_app()


@app.command("process")
def process(
    customer_ids: CustomerIds = None,
    all_customers: AllCustomers = False,
    output_file: OutputFile = None,
    log_level: LogLevel = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    selector: Selector = None,
    max_workers: MaxWorkers = 1,
    run_id: RunId = None,
    dry_run: DryRun = False,
    as_of: AsOf = None,
    auto_approve: AutoApprove = False,
    batch: Batch = False,
    budget: Budget = None,
    output: ListOutput = "table",
    show: Show = DEFAULT_SHOW,
    quiet: Quiet = False,
) -> None:
    """Decide the next best treatment for customers and write the result file.

    From batch.auto_threshold customers on (or with --batch) the batch path decides for all at once.
    Every run is recorded in output/runs/RUN_ID/ (results.json, run.json; see: cvm runs list).
    """
    view = View.of(output, show, quiet)
    run = start_run(
        log_level=log_level, data_dir=data_dir, config=config, selector=selector,
        max_workers=max_workers, run_id=run_id, dry_run=dry_run, as_of=as_of, auto_approve=auto_approve,
    )
    if bool(customer_ids) == all_customers:
        raise UsageError("give exactly one of --customer_ids IDS or --all_customers")
    from cvm.engine.deciding import check_budget  # not at import: it loads numpy

    check_budget(batch, budget)
    ids = select_customers(run, customer_ids, False) if customer_ids else None  # None: the whole folder, counted once
    path = result_path(run, output_file)
    raise typer.Exit(write_results(run, decide(run, ids, batch=batch, budget=budget), path, view))


def run() -> NoReturn:
    """Console-script entry point of ``cvm_processor_cli``."""
    run_app(app)
