"""``trigger_customers_cli`` / ``cvm triggers``: find customers who need attention, then act on them."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from cvm.agents.base import expect
from cvm.agents.messages import (
    CheckCustomerIds,
    CustomerListResponse,
    ListTriggers,
    TriggerCatalog,
    TriggerCustomers,
    TriggerResult,
)
from cvm.cli.common import new_app, output_path, run_app
from cvm.cli.listing import View, emit
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
    Quiet,
    RunId,
    Selector,
    Show,
)
from cvm.cli.results import write_results
from cvm.cli.run import Run, parse_customer_ids, result_path, start_run, trigger_then_decide
from cvm.decision.text_match import parse_keywords
from cvm.tools.results import write_text_atomic
from cvm.utils.config import unknown_treatment
from cvm.utils.errors import UsageError

app = new_app(
    no_args_is_help=True,
    help="Find customers who match a trigger (built-in, config, keywords or a description) and decide for them.",
)

TriggerType = Annotated[str, typer.Option("--trigger-type", "--trigger_type", help="A trigger name from list-triggers, or custom.")]
Description = Annotated[str | None, typer.Option("--description", help="custom: what to look for, in words (semantic matching).")]
Keywords = Annotated[str | None, typer.Option("--keywords", help="custom: comma-separated keywords or phrases, e.g. 'signal,poor coverage'.")]
KeywordMatch = Annotated[
    Literal["stemmed", "exact"],
    typer.Option("--keyword-match", "--keyword_match", help="custom keywords: stemmed (drop finds dropped, dropping) or exact."),
]
DataTypes = Annotated[str, typer.Option("--data-types", "--data_types", help="Where custom triggers look: call_transcripts, web_transcripts, web_clicks.")]
MinScore = Annotated[float | None, typer.Option("--min-score", "--min_score", min=0, max=1, help="Semantic match threshold for the offline matcher (default 0.3).")]
TriggerOutputFile = Annotated[str | None, typer.Option("--output-file", "--output_file", help="Write the output here; a bare name goes under output/.")]


def _trigger_message(
    customer_ids: str | None, all_customers: bool, trigger_type: str, description: str | None,
    keywords: str | None, data_types: str, min_score: float | None, keyword_match: Literal["stemmed", "exact"] = "stemmed",
) -> TriggerCustomers:
    if bool(customer_ids) == all_customers:
        raise UsageError("give exactly one of --customer-ids IDS or --all-customers")
    if keywords is not None and not parse_keywords(keywords):
        raise UsageError("--keywords is empty; give comma-separated words, e.g. 'signal,poor coverage'")
    if description is not None and not description.strip():
        raise UsageError("--description is empty; describe the customers to find")
    if trigger_type != "custom" and (keywords or description):
        raise UsageError("--keywords and --description go with --trigger-type custom")
    return TriggerCustomers(
        trigger_type=trigger_type,
        customer_ids=tuple(parse_customer_ids(customer_ids)) if customer_ids else None,
        description=description, keywords=tuple(parse_keywords(keywords or "")), keyword_match=keyword_match,
        data_types=tuple(t.strip() for t in data_types.split(",") if t.strip()), min_score=min_score,
    )


def _check_ids(run: Run, message: TriggerCustomers) -> None:
    if message.customer_ids:
        expect(run.runtime.orchestrator.data.process(CheckCustomerIds(customer_ids=message.customer_ids)), CustomerListResponse)


def trigger_csv(result: TriggerResult) -> str:
    """One row per match: customer_id, reason, evidence (sources and texts joined with ' | '), score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["customer_id", "reason", "evidence", "score"])
    for m in result.matches:
        evidence = " | ".join(f"[{e.source} {e.date or ''}] {e.text}".replace("  ", " ") for e in m.evidence)
        writer.writerow([m.customer_id, m.reason, evidence, "" if m.score is None else m.score])
    return buffer.getvalue()


def trigger_json(result: TriggerResult) -> str:
    return json.dumps(result.model_dump(mode="json", exclude={"type"}), indent=2, ensure_ascii=False) + "\n"


def _emit(result: TriggerResult, view: View, path: Path | None) -> None:
    """The matches as a bounded table (--show) or every one as json/csv; --output-file gets json (csv with --output csv)."""
    output = view.output
    if output == "table" and not view.quiet:
        from cvm.cli.render import print_trigger_result

        print_trigger_result(result, view.show)
    text = {"json": trigger_json, "csv": trigger_csv, "table": trigger_json}[output](result)
    if path is not None:
        write_text_atomic(path, text)
        print(f"{result.total_matches} match(es) written to {path}", file=sys.stderr)
    elif output != "table":
        sys.stdout.write(text)
    if output != "table":
        for error in result.errors:
            print(f"warning: {error['customer_id']}: {error['error']}", file=sys.stderr)


@app.command("list-triggers")
def list_triggers(
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
    data_dir: DataDir = None, config: ConfigFile = None, log_level: LogLevel = None,
) -> None:
    """Show every trigger with its description, condition and source (built-in or config)."""
    view = View.of(output, show, quiet)
    run = start_run(log_level=log_level, selector="rules", data_dir=data_dir, config=config, dry_run=True)
    catalog = expect(run.runtime.orchestrator.trigger.process(ListTriggers()), TriggerCatalog)
    from cvm.cli.render import print_trigger_catalog

    emit(
        view, as_json=lambda: [t.model_dump(mode="json") for t in catalog.triggers],
        header=("name", "source", "description", "condition"),
        csv_rows=lambda: ((t.name, t.source, t.description, t.condition) for t in catalog.triggers),
        table=lambda bound: print_trigger_catalog(catalog, bound),
    )


@app.command("trigger")
def trigger(
    trigger_type: TriggerType,
    customer_ids: CustomerIds = None,
    all_customers: AllCustomers = False,
    description: Description = None,
    keywords: Keywords = None,
    keyword_match: KeywordMatch = "stemmed",
    data_types: DataTypes = "call_transcripts,web_transcripts",
    min_score: MinScore = None,
    output: ListOutput = "table",
    show: Show = DEFAULT_SHOW,
    quiet: Quiet = False,
    output_file: TriggerOutputFile = None,
    data_dir: DataDir = None, config: ConfigFile = None, selector: Selector = None,
    log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """List the customers a trigger fires for, each with a reason and evidence."""
    view = View.of(output, show, quiet)
    message = _trigger_message(customer_ids, all_customers, trigger_type, description, keywords, data_types, min_score, keyword_match)
    run = start_run(log_level=log_level, selector=selector, data_dir=data_dir, config=config, as_of=as_of, dry_run=True)
    path = output_path(run.settings, output_file) if output_file else None  # refused before any work
    _check_ids(run, message)
    result = expect(run.runtime.orchestrator.process(message), TriggerResult)
    _emit(result, view, path)
    raise typer.Exit(1 if result.errors else 0)


@app.command("process")
def process(
    trigger_type: TriggerType,
    customer_ids: CustomerIds = None,
    all_customers: AllCustomers = False,
    description: Description = None,
    keywords: Keywords = None,
    keyword_match: KeywordMatch = "stemmed",
    data_types: DataTypes = "call_transcripts,web_transcripts",
    min_score: MinScore = None,
    treatment: Annotated[str | None, typer.Option("--treatment", help="Propose this treatment for every match (consent, contact policy and capacity still apply).")] = None,
    output_file: TriggerOutputFile = None,
    data_dir: DataDir = None, config: ConfigFile = None, selector: Selector = None, log_level: LogLevel = None,
    max_workers: MaxWorkers = 1, run_id: RunId = None, dry_run: DryRun = False, as_of: AsOf = None,
    auto_approve: AutoApprove = False, batch: Batch = False, budget: Budget = None,
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
) -> None:
    """Find the matching customers, then decide for them like cvm process (the batch path from batch.auto_threshold matches on)."""
    view = View.of(output, show, quiet)
    message = _trigger_message(customer_ids, all_customers, trigger_type, description, keywords, data_types, min_score, keyword_match)
    run = start_run(
        log_level=log_level, selector=selector, data_dir=data_dir, config=config, as_of=as_of,
        dry_run=dry_run, run_id=run_id, max_workers=max_workers, auto_approve=auto_approve,
    )
    _check_ids(run, message)
    if treatment is not None and treatment not in run.runtime.config.treatments:
        raise UsageError(f"--treatment: {unknown_treatment(treatment, run.runtime.config.treatments)}")
    from cvm.engine.deciding import check_budget  # not at import: it loads numpy

    check_budget(batch, budget)
    path = result_path(run, output_file)
    found, decided = trigger_then_decide(run, message, treatment=treatment, batch=batch, budget=budget)
    print(
        f"trigger {found.trigger_type} ({found.matcher}): {found.total_matches} of {found.total_customers} customer(s) matched",
        file=sys.stderr,
    )
    raise typer.Exit(write_results(run, decided, path, view))


def run() -> NoReturn:
    """Console-script entry point of ``trigger_customers_cli``."""
    run_app(app)
