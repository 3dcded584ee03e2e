"""What every deciding command shares: settings and runtime for one run, customer selection,
the choice of path, the result file and the progress bar (``cvm process``, the batch path, triggers,
treatments, flows).

``decide`` and ``trigger_then_decide`` choose between the per-customer and the batch path
with ``Runtime.decider()`` (``cvm.engine.deciding``, where flows choose too);
``cvm.cli.results.write_results`` writes either path's result file with the same contract
and exit codes.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvm.agents.base import expect
from cvm.agents.governance import AUTO_APPROVER
from cvm.agents.messages import CheckCustomerIds, CustomerListResponse, DecisionResult, ListCustomers
from cvm.cli.common import load_settings, output_path, setup_logging
from cvm.cli.progress import terminal_progress
from cvm.tools import run_artifacts
from cvm.utils.errors import CVMError, UsageError
from cvm.utils.progress import NO_PROGRESS, Progress
from cvm.utils.settings import RuntimeSettings

if TYPE_CHECKING:
    from cvm.agents.messages import TriggerCustomers, TriggerResult
    from cvm.agents.orchestrator import OrchestratorAgent
    from cvm.engine.deciding import Decided, OneByOne
    from cvm.runtime import RunOptions, Runtime

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


class StageClock:
    """Wall-clock seconds of each stage of a command (setup, select, decide, write), for ``run.json``."""

    def __init__(self) -> None:
        self.started_at = datetime.now(timezone.utc)
        self._start = self._mark = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """Close ``stage``: the time since the last lap is added to it."""
        now = time.monotonic()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._mark, 3)
        self._mark = now

    def total(self) -> float:
        return round(time.monotonic() - self._start, 3)


@dataclass(frozen=True)
class Run:
    """A processing command's settings and built runtime."""

    settings: RuntimeSettings
    options: RunOptions
    runtime: Runtime
    stages: StageClock = field(default_factory=StageClock)


def start_run(*, log_level: str | None, selector: str | None, run_id: str | None = None, **flags: Any) -> Run:
    """Read settings, set up logging, validate the flags and build the runtime."""
    from cvm.runtime import RunOptions, build_runtime, load_full_config

    stages = StageClock()
    settings = load_settings()
    if selector is not None and selector.lower() not in SELECTORS:
        raise UsageError(f"--selector must be one of {', '.join(SELECTORS)}, not {selector!r}")
    if run_id is not None and not run_id.strip():
        raise UsageError("--run-id is empty")
    renamed = {"data_dir": flags.pop("data_dir", None), "config_path": flags.pop("config", None)}
    options = RunOptions.from_settings(
        settings, selector=selector.lower() if selector else None, run_id=run_id, **renamed, **flags,
    )
    config = load_full_config(options)
    setup_logging(settings, log_level, config)
    if options.auto_approve:
        print(f"WARNING: --auto-approve is for testing: decisions needing approval are approved as '{AUTO_APPROVER}'", file=sys.stderr)
    built = Run(settings, options, build_runtime(options, settings, config, progress=terminal_progress()), stages)
    stages.lap("setup")
    return built


def select_customers(run: Run, customer_ids: str | None, all_customers: bool) -> list[str]:
    """The ids to work on: exactly one of the two flags, every id checked against the pattern."""
    if bool(customer_ids) == all_customers:
        raise UsageError("give exactly one of --customer_ids IDS or --all_customers")
    data = run.runtime.orchestrator.data
    if customer_ids:
        checked = data.process(CheckCustomerIds(customer_ids=tuple(parse_customer_ids(customer_ids))))
        ids = list(expect(checked, CustomerListResponse).customer_ids)
    else:
        ids = list(expect(data.process(ListCustomers()), CustomerListResponse).customer_ids)
        if not ids:
            print(f"warning: no customers found in {run.options.data_dir}", file=sys.stderr)
    run.stages.lap("select")
    return ids


@dataclass(frozen=True)
class ResultFiles:
    """Where a run's result file is copied besides its own ``output/runs/<run id>/results.json``.

    ``--output-file`` is written on every run (dry or not); without it the config's
    ``default_output_file`` (``output/cvm_results.json``) is refreshed only by a
    non-dry run that exits 0, so a dry or failed run never replaces a real run's file.
    """

    target: Path
    explicit: bool


def result_path(run: Run, output_file: str | None) -> ResultFiles:
    """Where the result file goes, checked before any capacity is taken (and the runs folder with it)."""
    runs = run.settings.output_dir / "runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the run folder {runs} ({exc.strerror or exc}); set CVM_OUTPUT_DIR to a writable folder") from None
    if not os.access(runs, os.W_OK):
        raise UsageError(f"the run folder {runs} is not writable; set CVM_OUTPUT_DIR to a writable folder")
    name = output_file or run.runtime.config.settings.default_output_file
    return ResultFiles(output_path(run.settings, name), explicit=output_file is not None)


@dataclass(frozen=True)
class Written:
    """What a result file holds, for the console and ``run.json``: summary, rows (None when only in Parquet), exit code."""

    summary: dict[str, Any]
    results: list[DecisionResult] | None
    code: int
    parquet: Path | None = None
    notes: tuple[str, ...] = ()


def decision_summary(run: Run, results: list[DecisionResult]) -> dict[str, Any]:
    from cvm.tools.results import summarize

    runtime = run.runtime
    return summarize(
        results, selector=runtime.selector, dry_run=run.options.dry_run, currency=runtime.config.settings.currency,
        auto_approve=run.options.auto_approve,
    )


def write_decisions(run: Run, results: list[DecisionResult], path: Path) -> dict[str, Any]:
    """Write the per-customer result file (DESIGN section 8) and return its summary."""
    from cvm.tools.results import write_result_file

    runtime = run.runtime
    summary = decision_summary(run, results)
    try:
        write_result_file(path, run_id=runtime.run_id, generated_at=runtime.clock.now(), summary=summary, results=results)
    except OSError as exc:
        raise CVMError(f"could not write {path} ({exc.strerror or exc}); {how_to_get_the_file(run)}") from None
    return summary


def how_to_get_the_file(run: Run, saved: Path | None = None) -> str:
    """What to do when a result file could not be written: a dry run recorded nothing, a real run can be replayed.

    ``saved`` is the run folder's own copy, when that one was written.
    """
    kept = f", but the results are in {saved}" if saved else ""
    if run.options.dry_run:
        return f"nothing was recorded (dry run){kept}; run it again with --output-file OTHER"
    run_id = run.runtime.run_id
    return (
        f"the decisions are recorded under run id {run_id}{kept}: "
        f"re-run with --run-id {run_id} --output-file OTHER to get the file without taking new capacity"
    )


def decide_with_progress(
    orchestrator: OrchestratorAgent, ids: list[str], proposed: str | None = None, progress: Progress = NO_PROGRESS,
) -> list[DecisionResult]:
    """Decide one by one, advancing a ``deciding`` stage per customer (drawn on a terminal only)."""
    with progress.stage("deciding", len(ids)) as stage:
        return orchestrator.decide_many(ids, progress=lambda _result: stage.advance(), proposed=proposed)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _tty(message: str) -> None:
    if sys.stderr.isatty():
        print(message, file=sys.stderr)


def _one_by_one(run: Run, proposed: str | None) -> OneByOne:
    return lambda ids: decide_with_progress(run.runtime.orchestrator, ids, proposed, terminal_progress())


def decide(run: Run, customer_ids: list[str] | None, *, batch: bool = False, budget: float | None = None) -> Decided:
    """Decide for the ids (None: every customer in the folder): ``--batch``, or the batch path from
    ``batch.auto_threshold`` customers on, else one at a time with a progress bar (``cvm.engine.deciding``)."""
    try:
        decided = run.runtime.decider(notify=_stderr, status=_tty).decide(
            customer_ids, batch=batch, budget=budget, one_by_one=_one_by_one(run, None),
        )
    except CVMError as exc:
        _record_failure(run, exc, "decide")
        raise
    run.stages.lap("decide")
    return decided


def _record_failure(run: Run, error: CVMError, stage: str) -> None:
    """A run that fails part way still gets its folder and run.json (exit code, error): ``cvm runs`` lists it."""
    run.stages.lap(stage)
    record_failed_run(run, error)


def trigger_then_decide(
    run: Run, trigger: TriggerCustomers, *, treatment: str | None, batch: bool = False, budget: float | None = None,
) -> tuple[TriggerResult, Decided]:
    """The trigger's matches, decided on the path ``decide`` would choose for them."""
    try:
        found = run.runtime.decider(notify=_stderr, status=_tty).trigger_then_decide(
            trigger, treatment=treatment, batch=batch, budget=budget, one_by_one=_one_by_one(run, treatment),
        )
    except CVMError as exc:
        _record_failure(run, exc, "trigger_and_decide")
        raise
    run.stages.lap("trigger_and_decide")
    return found


def record_failed_run(run: Run, error: CVMError, folder: Path | None = None) -> None:
    """``run.json`` of a run that ended in an error before its results were written: exit code and error, no results.

    Best effort: when even this cannot be written, the error itself is what the user sees.
    """
    from cvm.utils.logging import redact

    try:
        folder = folder or run_artifacts.new_run_folder(run.settings.output_dir, run.runtime.run_id)
        run_artifacts.write_run_record(folder, {**run_basics(run, error.exit_code, None), "error": redact(str(error))})
    except OSError:
        pass


def run_basics(run: Run, exit_code: int, path: str | None) -> dict[str, Any]:
    """What every run.json holds: what ran, on what, when, how long each stage took and the exit code."""
    from cvm import __version__
    from cvm.utils.logging import redact

    o, runtime = run.options, run.runtime
    return {
        "run_id": runtime.run_id,
        "cvm_version": __version__,
        "command": [redact(arg) for arg in [Path(sys.argv[0]).name, *sys.argv[1:]]],
        "started_at": run.stages.started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "exit_code": exit_code,
        "dry_run": o.dry_run,
        "auto_approve": o.auto_approve,
        "path": path,
        "selector": runtime.selector,
        "as_of": _as_of(run),
        "clock": "fixed (--as-of / CVM_NOW)" if o.as_of is not None else "system",
        "config": {
            "path": str(o.config_path.resolve()), "digest": run_artifacts.file_digest(o.config_path),
            "custom_treatments": {
                "path": str(o.custom_treatments_path.resolve()), "digest": run_artifacts.file_digest(o.custom_treatments_path),
            },
        },
        "data": run_artifacts.table_digests(o.data_dir),
        "timings_seconds": {**run.stages.seconds, "total": run.stages.total()},
    }


def _as_of(run: Run) -> str:
    """The run's clock with its offset: the fixed instant (--as-of / CVM_NOW, in the config's zone), else the start."""
    now = run.runtime.clock.now()
    return (now if run.options.as_of is not None else run.stages.started_at.astimezone(now.tzinfo)).isoformat()
