"""``cvm``: the one command over every CVM tool: process, triggers, treatments, approvals, runs, state."""

from __future__ import annotations

import sys
from pathlib import Path
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


def _named_shell(argv: list[str]) -> str | None:
    """The shell of ``--show-completion SHELL`` (or ``=SHELL``) when that is the whole command line, else None."""
    from typer._completion_shared import Shells

    if len(argv) == 2 and argv[0] == "--show-completion":
        shell = argv[1]
    elif len(argv) == 1 and argv[0].startswith("--show-completion="):
        shell = argv[0].partition("=")[2]
    else:
        return None
    return shell if shell in {s.value for s in Shells} else None


def _print_completion_script(shell: str) -> NoReturn:
    """The script for the shell named: typer's own flag guesses the shell from the parent processes and ignores the name
    (``cvm --show-completion bash`` printed zsh's script under zsh, and "Shell not supported" where no shell is a parent)."""
    from typer._completion_shared import get_completion_script

    prog = Path(sys.argv[0]).name
    print(get_completion_script(prog_name=prog, complete_var=f"_{prog.replace('-', '_').upper()}_COMPLETE", shell=shell))
    raise SystemExit(0)


def run() -> NoReturn:
    """Console-script entry point of ``cvm``."""
    shell = _named_shell(sys.argv[1:])
    if shell is not None:
        _print_completion_script(shell)
    run_app(app)
