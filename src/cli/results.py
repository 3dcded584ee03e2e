"""Either path's result file, its run artifacts and its console output, with one contract and one set of exit codes
(``cvm process``, ``triggers process``, ``treatments process|batch``).

Every run writes ``output/runs/<run id>/results.json`` (at scale a JSON summary
beside ``results.parquet``) and ``run.json`` (``cvm.tools.run_artifacts``);
``--output-file`` gets a copy on every run, and ``output/cvm_results.json``
(the config's ``default_output_file``) a copy of the latest non-dry run that
exited 0, so a dry or failed run never replaces a real run's file.

Apart from ``cvm.cli.run`` so that it can reach the batch path's writer
(``cvm.cli.batch``, which imports ``cvm.cli.run``) without an import cycle,
and only when the batch path decided: a small run never imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvm.cli.listing import View
from cvm.cli.run import ResultFiles, Run, Written, how_to_get_the_file, record_failed_run, run_basics, write_decisions
from cvm.tools import run_artifacts
from cvm.utils.errors import EXIT_OK, EXIT_SOME_FAILED, CVMError

if TYPE_CHECKING:
    from cvm.engine.deciding import Decided
    from cvm.utils.config import Treatment

RESULT_COLUMNS = (
    "customer_id", "status", "selected_treatment", "channel", "scheduled_for", "expected_value", "confidence",
    "requires_approval", "approval_request_id", "approved_by", "error",
)


def write_results(run: Run, decided: Decided, files: ResultFiles, view: View | None = None) -> int:
    """Write the run's folder (results and run.json) and the copies it earns, print what the view asks; the exit code."""
    view = view or View()
    try:
        folder = run_artifacts.new_run_folder(run.settings.output_dir, run.runtime.run_id)
    except OSError as exc:
        raise CVMError(f"could not create the run folder under {run.settings.output_dir} ({exc.strerror or exc})") from None
    primary = folder / run_artifacts.RESULTS_FILE
    try:
        written = _write(run, decided, primary)
    except CVMError as exc:
        run.stages.lap("write")
        record_failed_run(run, exc, folder)
        raise
    copies, copy_error = _copy(run, primary, files, written.code)
    run.stages.lap("write")
    record = run_record(run, decided, written, primary, copies)
    if copy_error:  # the command then ends with this error's exit code, whatever the decisions' own code was
        record = {**record, "copy_error": copy_error, "exit_code": CVMError.exit_code}
    run_artifacts.write_run_record(folder, record)
    if not run.options.dry_run:
        from cvm.runtime import record_agent_stats

        record_agent_stats(run.options.db_url, run.runtime.run_id)
    if copy_error:
        raise CVMError(f"{copy_error}; {how_to_get_the_file(run, primary)}")
    _print(run, written, view, primary, copies)
    return written.code


def _write(run: Run, decided: Decided, primary: Path) -> Written:
    if decided.path == "batch":
        from cvm.cli.batch import write_batch

        return write_batch(run, decided, primary)
    results = decided.results or []
    summary = write_decisions(run, results, primary)
    return Written(summary, results, 1 if any(r.status == "error" for r in results) else 0)


def _copy(run: Run, primary: Path, files: ResultFiles, code: int) -> tuple[list[Path], str | None]:
    """``--output-file`` always; the default file for a non-dry run that completed. The copies, or why it failed.

    Completed: exit 0, or 1 when some customers failed (DESIGN section 8: the file still holds every customer, the
    failed ones with ``status: error``); a stale file from an earlier run must not stand in for this one.
    """
    if not files.explicit and (run.options.dry_run or code not in (EXIT_OK, EXIT_SOME_FAILED)):
        return [], None
    try:
        run_artifacts.copy_result_file(primary, files.target)
    except OSError as exc:
        return [], f"could not write {files.target} ({exc.strerror or exc})"
    return [files.target], None


def run_record(run: Run, decided: Decided, written: Written, primary: Path, copies: list[Path]) -> dict[str, Any]:
    """``run.json``: what ran, on what, how long each stage took, the counts and the exit code."""
    return {
        **run_basics(run, written.code, decided.path),
        "counts": {"customers": written.summary.get("total_customers", 0), "by_status": written.summary.get("by_status", {})},
        "summary": written.summary,
        "results_file": str(primary),
        "results_parquet": str(written.parquet) if written.parquet else None,
        "copies": [str(p) for p in copies],
        "notices": list(decided.notices),
    }


def _print(run: Run, written: Written, view: View, primary: Path, copies: list[Path]) -> None:
    """json: the result document on stdout; csv: every row; table: at most --show rows. Then the summary lines."""
    from cvm.cli.render import print_results, summary_line

    if view.output == "json":
        sys.stdout.write(primary.read_text(encoding="utf-8"))
    elif view.output == "csv":
        _print_csv(written, run.runtime.config.treatments)
    elif not view.quiet and written.results is not None:
        print_results(written.results, written.summary, run_id=run.runtime.run_id, show=view.show, where=str(primary))
    elif not view.quiet and written.parquet is not None:
        _print_parquet_head(run, written, view.show)
    sys.stdout.flush()
    view.note(summary_line(written.summary))
    for note in written.notes:
        view.note(note)
    where = f"{written.parquet} (summary in {primary})" if written.parquet else str(primary)
    view.note(f"results written to {where}" + "".join(f"; copied to {p}" for p in copies))
    view.note(f"run record: {primary.parent / run_artifacts.RUN_RECORD} (cvm runs show {run.runtime.run_id})")


def _print_parquet_head(run: Run, written: Written, show: int | None) -> None:
    """At scale the rows live in Parquet: the table reads only the ``--show`` rows it prints (``--show all`` reads all).

    Like the per-customer table, errors and decisions waiting for approval come first when rows are left out:
    each batch is filtered on its status column, and only the rows kept are turned into Python values.
    """
    import pyarrow.parquet as pq

    from cvm.cli.render import print_rows, results_title

    assert written.parquet is not None
    source = pq.ParquetFile(written.parquet)
    total = source.metadata.num_rows
    columns = [c for c in ("customer_id", "status", "selected_treatment", "expected_value", "confidence", "error")
               if c in source.schema_arrow.names]
    first = ("error", "pending_approval")
    buckets: dict[str | None, list[list[Any]]] = {**{s: [] for s in first}, None: []}
    for batch in source.iter_batches(batch_size=65_536, columns=columns):
        for status, kept in buckets.items():
            need = None if show is None else show - len(kept)
            if need is not None and need <= 0:
                continue
            picked = _with_status(batch, status, first)
            kept.extend(_cells(picked if need is None else picked.slice(0, need), columns))
        if show is not None and len(buckets["error"]) >= show:
            break
    shown = [row for kept in buckets.values() for row in kept]
    print_rows(results_title(written.summary, run.runtime.run_id), columns, shown if show is None else shown[:show],
               None, str(written.parquet), total)


def _with_status(batch: Any, status: str | None, first: tuple[str, ...]) -> Any:
    """The batch's rows of ``status`` (None: every row whose status is not in ``first``); the whole batch without a status column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "status" not in batch.schema.names:
        return batch if status is None else batch.slice(0, 0)
    column = batch.column("status")
    if status is None:
        mask = pc.invert(pc.fill_null(pc.is_in(column, value_set=pa.array(first)), False))
    else:
        mask = pc.fill_null(pc.equal(column, status), False)
    return batch.filter(mask)


def _cells(batch: Any, columns: list[str]) -> list[list[Any]]:
    return [[f"{v:.2f}" if isinstance(v := row[c], float) else v for c in columns] for row in batch.to_pylist()]


def _print_csv(written: Written, treatments: Mapping[str, Treatment]) -> None:
    """Every row as CSV, with the same columns on both paths: from memory, or from the Parquet file batch by batch.

    The Parquet rows leave out what follows from the treatment (its channel, whether it requires approval), so
    those are filled in from the config: a script reading by header must not break when a run crosses the threshold.
    """
    from cvm.cli.listing import print_csv

    if written.results is not None:
        print_csv(RESULT_COLUMNS, ([getattr(r, c) for c in RESULT_COLUMNS] for r in written.results))
        return
    assert written.parquet is not None, "a batch run without rows in memory has them in Parquet"
    import pyarrow.parquet as pq

    source = pq.ParquetFile(written.parquet)
    stored = [c for c in RESULT_COLUMNS if c in source.schema_arrow.names]
    rows = (row for batch in source.iter_batches(columns=stored) for row in batch.to_pylist())
    print_csv(RESULT_COLUMNS, ([_with_treatment(row, treatments).get(c) for c in RESULT_COLUMNS] for row in rows))


def _with_treatment(row: dict[str, Any], treatments: Mapping[str, Treatment]) -> dict[str, Any]:
    """A stored batch row with its treatment's channel and approval flag, as the per-customer result carries them."""
    from cvm.decision.scoring import NO_ACTION  # not at import: every command loads this module, most never need numpy

    treatment_id = row.get("selected_treatment")
    treatment = treatments.get(treatment_id) if treatment_id else None
    if treatment is not None:
        return {**row, "channel": treatment.channel, "requires_approval": treatment.requires_approval}
    return {**row, "channel": NO_ACTION.channel if treatment_id == NO_ACTION.treatment_id else None, "requires_approval": False}
