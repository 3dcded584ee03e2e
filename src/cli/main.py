"""``cvm``: the one command over every CVM tool: process, triggers, treatments, approvals, runs, state."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from cvm import __version__
from cvm.cli.approvals import app as approvals_app
from cvm.cli.common import new_app, run_app
from cvm.cli.data import app as data_app
from cvm.cli.flows import app as flows_app
from cvm.cli.processor import process
from cvm.cli.report import report
from cvm.cli.risks import app as risks_app
from cvm.cli.runs import app as runs_app
from cvm.cli.state import app as state_app
from cvm.cli.treatments import app as treatments_app
from cvm.cli.triggers import app as triggers_app

app = new_app(
    completion=True,
    no_args_is_help=True,
    help="CVM: next best treatment decisions for telecom customers, consent-safe and capacity-aware.",
)


def _print_version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", "-V", is_eager=True, callback=_print_version, help="Print the CVM version and exit."),
    ] = False,
) -> None:
    """CVM: next best treatment decisions for telecom customers, consent-safe and capacity-aware."""


app.command("process")(process)
app.command("report")(report)
app.add_typer(approvals_app, name="approvals", help="Review decisions that need a human approval.")
app.add_typer(triggers_app, name="triggers", help="Find customers who need attention (trigger_customers_cli).")
app.add_typer(treatments_app, name="treatments", help="Add, inspect, change and use custom treatments (dynamic_treatment_cli).")
app.add_typer(flows_app, name="flows", help="Declarative flows: validate, plan, run, resume, runs, show, next, export (Step Functions), scheduler.")
app.add_typer(data_app, name="data", help="Generate synthetic data at scale: every table, seeded, Parquet or JSON.")
app.add_typer(risks_app, name="risks", help="Risk events raised by executive triggers: list, show, ack, close.")
app.add_typer(runs_app, name="runs", help="Past processing runs: list them, show one (output/runs/RUN_ID/run.json).")
app.add_typer(state_app, name="state", help="Local state: reset the ledger, outputs and logs (never .venv).")


@app.command("version")
def version() -> None:
    """Print the CVM version (also: cvm --version)."""
    print(__version__)


def run() -> NoReturn:
    """Console-script entry point of ``cvm``."""
    run_app(app)
