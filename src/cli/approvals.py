"""``cvm approvals``: the human side of governance: list, inspect, approve, reject, history.

Every command first expires the requests past their deadline (releasing their
capacity), so what it shows is current.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from cvm.agents.base import expect
from cvm.agents.messages import (
    Ack,
    ApprovalList,
    ApprovalRequestInfo,
    DecideApproval,
    ExpireApprovals,
    GetApproval,
    ListApprovals,
)
from cvm.cli.common import load_settings, new_app, setup_logging
from cvm.cli.listing import View, emit
from cvm.cli.options import DEFAULT_SHOW, AsOf, ConfigFile, DataDir, ListOutput, LogLevel, Quiet, Show

app = new_app(
    no_args_is_help=True,
    help="Review decisions that need a human: list, show, approve, reject, history.",
)

RequestId = Annotated[str, typer.Argument(metavar="ID", help="An approval request id, e.g. apr-20261123-1a2b3c4d.")]
By = Annotated[str, typer.Option("--by", help="Who decides (recorded in the audit log).")]
Output = Annotated[Literal["table", "json"], typer.Option("--output", help="table or json.")]
Status = Annotated[Literal["pending", "approved", "rejected", "expired"] | None, typer.Option("--status", help="pending, approved, rejected or expired.")]


def _governance(config: str | None, log_level: str | None, as_of: str | None, *, data_dir: str | None = None, approving: bool = False):
    """The Governance agent; ``approving``: able to re-check consent in the data folder (``--data-dir``, CVM_DATA_DIR)."""
    from pathlib import Path

    from cvm.runtime import build_governance

    settings = load_settings()
    folder = (Path(data_dir) if data_dir else settings.data_dir) if approving else None
    tools = build_governance(
        Path(config) if config else settings.config_path, settings.custom_treatments_path, settings.db_url, as_of or settings.now, folder,
    )
    setup_logging(settings, log_level, tools.config)
    expect(tools.agent.process(ExpireApprovals()), Ack)
    return tools.agent


CSV_COLUMNS = ("request_id", "status", "customer_id", "treatment_id", "expected_value", "rule", "requested_at", "expires_at",
               "decided_by", "decided_at", "reason")


def _print(requests: tuple[ApprovalRequestInfo, ...], view: View, title: str) -> None:
    from cvm.cli.render import print_approvals

    emit(
        view, as_json=lambda: [r.model_dump(mode="json", exclude={"type"}) for r in requests], header=CSV_COLUMNS,
        csv_rows=lambda: ([getattr(r, c) for c in CSV_COLUMNS] for r in requests),
        table=lambda bound: print_approvals(requests, title, bound),
    )


def _decide(
    request_id: str, decision: Literal["approve", "reject"], by: str, reason: str | None,
    *, config: str | None, log_level: str | None, as_of: str | None, data_dir: str | None = None,
) -> ApprovalRequestInfo:
    """Approve or reject; the name is checked first, so a blank or hostile ``--by`` is one usage line, not a validation dump."""
    from cvm.agents.governance import approval_reason, approver_name

    name = approver_name(by)
    agent = _governance(config, log_level, as_of, data_dir=data_dir, approving=decision == "approve")
    message = DecideApproval(request_id=request_id, decision=decision, by=name, reason=approval_reason(reason))
    return expect(agent.process(message), ApprovalRequestInfo)


@app.command("list")
def list_requests(
    status: Status = "pending", output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
    config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """Approval requests, most urgent first (default: the pending ones)."""
    view = View.of(output, show, quiet)
    agent = _governance(config, log_level, as_of)
    found = expect(agent.process(ListApprovals(status=status)), ApprovalList)
    _print(found.requests, view, f"Approval requests ({status or 'all'})")


@app.command("show")
def show(request_id: RequestId, output: Output = "table", config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None) -> None:
    """One request in full: customer, treatment, the rule that fired, the explanation."""
    agent = _governance(config, log_level, as_of)
    request = expect(agent.process(GetApproval(request_id=request_id)), ApprovalRequestInfo)
    if output == "json":
        print(json.dumps(request.model_dump(mode="json", exclude={"type"}), indent=2, ensure_ascii=False))
        return
    from cvm.cli.render import plain

    for key, value in request.model_dump(exclude={"type"}).items():
        print(f"{key:>15}: {plain(value)}")


@app.command("approve")
def approve(
    request_id: RequestId, by: By, reason: Annotated[str | None, typer.Option("--reason", help="Why (optional).")] = None,
    data_dir: DataDir = None, config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """Approve: the held capacity becomes an allocation and the treatment goes ahead.

    The customer's consent is re-checked first in the data folder (only that customer's rows are read):
    if they no longer say Y to the treatment's channel and purpose, the request is withdrawn instead,
    its capacity released, and the command exits with an error.
    """
    done = _decide(request_id, "approve", by, reason, config=config, log_level=log_level, as_of=as_of, data_dir=data_dir)
    print(f"approved {done.request_id}: {done.treatment_id} for {done.customer_id} (by {done.decided_by} at {done.decided_at})")


@app.command("reject")
def reject(
    request_id: RequestId, by: By, reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """Reject: the held capacity is released and the customer is not contacted."""
    done = _decide(request_id, "reject", by, reason, config=config, log_level=log_level, as_of=as_of)
    print(f"rejected {done.request_id}: {done.treatment_id} for {done.customer_id} (by {done.decided_by}: {done.reason})")


@app.command("history")
def history(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's requests.")] = None,
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
    config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """Every request, decided or not, with who decided, when and why."""
    view = View.of(output, show, quiet)
    agent = _governance(config, log_level, as_of)
    found = expect(agent.process(ListApprovals(customer_id=customer)), ApprovalList)
    ordered = tuple(sorted(found.requests, key=lambda r: r.requested_at))
    _print(ordered, view, "Approval history" + (f" of {customer}" if customer else ""))
