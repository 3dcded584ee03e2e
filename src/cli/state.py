"""``cvm state reset [--yes]``: clear the ledger (and flow runs), the outputs and the logs; never ``.venv``.

Without ``--yes`` it lists what it would remove and asks on a terminal; when
nobody can answer (a script, CI) it removes nothing and exits 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cvm.cli.common import load_settings, new_app
from cvm.tools import local_state
from cvm.utils.errors import UsageError

app = new_app(no_args_is_help=True, help="Local state: reset the ledger, outputs and logs (never .venv).")

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask: remove it all.")]


@app.command("reset")
def reset(yes: Yes = False) -> None:
    """Remove the state database (CVM_DB_URL: ledger, approvals, flow runs); empty CVM_OUTPUT_DIR and CVM_LOG_DIR.

    Config, data, custom treatments and .venv are never touched.
    """
    settings = load_settings()
    kept = {"CVM_DATA_DIR": settings.data_dir, "CVM_CONFIG": settings.config_path, "CVM_CUSTOM_TREATMENTS": settings.custom_treatments_path}
    plan = local_state.plan_reset(settings.db_url, settings.output_dir, settings.log_dir, kept)
    if plan.empty():
        print("nothing to reset: no state database, outputs or logs")
        return
    if not yes:
        _confirm(plan)
    for path in local_state.reset(plan):
        print(f"{'emptied' if path.is_dir() else 'removed'} {path}")


def _confirm(plan: local_state.ResetPlan) -> None:
    listing = "\n".join(f"  {path}" for path in plan.paths())
    if not sys.stdin.isatty():
        raise UsageError("cvm state reset removes " + ", ".join(str(p) for p in plan.paths()) + "; add --yes to confirm (nothing removed)")
    print(f"This removes:\n{listing}")
    if input("Type 'yes' to go on: ").strip().lower() != "yes":
        raise UsageError("not confirmed; nothing removed")
