"""``cvm_processor_cli`` / ``cvm process``: decide the next best treatment for customers."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from cvm.agents.messages import CustomerListResponse, DecisionResult, ListCustomers
from cvm.agents.base import expect
from cvm.cli.common import load_settings, run_app, setup_logging
from cvm.utils.errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

SELECTORS = ("auto", "rules", "llm")


def parse_customer_ids(text: str) -> list[str]:
    """``U123, U124,,U123`` -> ``["U123", "U124"]`` (trimmed, de-duplicated, order kept)."""
    seen: dict[str, None] = {}
    for part in text.split(","):
        if part.strip():
            seen.setdefault(part.strip(), None)
    if not seen:
        raise UsageError("--customer_ids is empty; give ids like U123,U124 or use --all_customers")
    return list(seen)


@app.command("process")
def process(
    customer_ids: Annotated[str | None, typer.Option("--customer_ids", "--customer-ids", help="Comma-separated ids, e.g. U123,U124.")] = None,
    all_customers: Annotated[bool, typer.Option("--all_customers", "--all-customers", help="Decide for every customer in the data folder.")] = False,
    output_file: Annotated[str | None, typer.Option("--output_file", "--output-file", help="Result file; a bare name goes under output/ (CVM_OUTPUT_DIR).")] = None,
    log_level: Annotated[str | None, typer.Option("--log_level", "--log-level", help="Console log level (default WARNING; the log file uses the config's level).")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", "--data_dir", help="Folder of tables (default data/sample, CVM_DATA_DIR).")] = None,
    config: Annotated[str | None, typer.Option("--config", help="Config YAML (default config/cvm_config.yaml, CVM_CONFIG).")] = None,
    selector: Annotated[str | None, typer.Option("--selector", help="auto (LLM only when OPENAI_API_KEY is set), rules or llm (CVM_SELECTOR).")] = None,
    max_workers: Annotated[int, typer.Option("--max_workers", "--max-workers", min=1, max=64, help="Customers decided in parallel.")] = 1,
    run_id: Annotated[str | None, typer.Option("--run-id", "--run_id", help="Re-use a run id: a re-run returns the same decisions and takes no new capacity.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "--dry_run", help="Decide and report without taking capacity or writing to the ledger.")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", "--as_of", help="The clock for day keys and windows, e.g. 2026-11-23T10:00 (CVM_NOW).")] = None,
) -> None:
    """Decide the next best treatment for customers and write the result file."""
    from cvm.runtime import RunOptions, build_runtime, load_full_config

    settings = load_settings()
    setup_logging(settings, log_level)
    if bool(customer_ids) == all_customers:
        raise UsageError("give exactly one of --customer_ids IDS or --all_customers")
    if selector is not None and selector.lower() not in SELECTORS:
        raise UsageError(f"--selector must be one of {', '.join(SELECTORS)}, not {selector!r}")
    if run_id is not None and not run_id.strip():
        raise UsageError("--run-id is empty")
    options = RunOptions.from_settings(
        settings,
        data_dir=data_dir, config_path=config, selector=selector.lower() if selector else None,
        as_of=as_of, run_id=run_id, dry_run=dry_run, max_workers=max_workers,
    )
    setup_logging(settings, log_level, load_full_config(options))
    ids = parse_customer_ids(customer_ids) if customer_ids else None
    runtime = build_runtime(options, settings)
    orchestrator = runtime.orchestrator
    if ids is None:
        ids = list(expect(orchestrator.data.process(ListCustomers()), CustomerListResponse).customer_ids)
        if not ids:
            print(f"warning: no customers found in {options.data_dir}", file=sys.stderr)
    else:
        for cid in ids:
            orchestrator.data.check_customer_id(cid)
    results = _decide_with_progress(orchestrator, ids)
    from cvm.tools.results import summarize, write_result_file

    summary = summarize(results, selector=runtime.selector, dry_run=dry_run, currency=runtime.config.settings.currency)
    path = settings.resolve_output_path(output_file or runtime.config.settings.default_output_file)
    write_result_file(path, run_id=runtime.run_id, generated_at=runtime.clock.now(), summary=summary, results=results)
    from cvm.cli.render import print_results

    print_results(results, summary, run_id=runtime.run_id, path=path)
    raise typer.Exit(1 if any(r.status == "error" for r in results) else 0)


def _decide_with_progress(orchestrator, ids: list[str]) -> list[DecisionResult]:
    """A rich progress bar on a terminal for batches; silent when piped."""
    if len(ids) < 2 or not sys.stderr.isatty():
        return orchestrator.decide_many(ids)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("deciding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task("decide", total=len(ids))
        return orchestrator.decide_many(ids, progress=lambda _result: bar.advance(task))


def run() -> NoReturn:
    """Console-script entry point of ``cvm_processor_cli``."""
    run_app(app)
