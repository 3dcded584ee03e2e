"""``cvm process --batch``: the columnar path, its result files and its summary."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from cvm.agents.batch import BatchOutcome, BatchRunner
from cvm.cli.run import Run, finish_run, result_path
from cvm.tools.columnar import ColumnarData
from cvm.tools.results import write_json_atomic
from cvm.utils.errors import UsageError


def _say(message: str) -> None:
    if sys.stderr.isatty():
        print(message, file=sys.stderr)


def run_batch(run: Run, customer_ids: list[str] | None, output_file: str | None, budget: float | None) -> int:
    """Decide with the batch path and write results: the JSON contract when small, Parquet when large."""
    runtime = run.runtime
    if runtime.selector == "llm":
        raise UsageError("the batch path scores with the rules model; drop --batch to use --selector llm, or use --selector rules")
    path = result_path(run, output_file)
    started = time.perf_counter()
    _say("batch: reading tables ...")
    data = ColumnarData(run.options.data_dir)
    if customer_ids is not None:
        for cid in customer_ids:
            runtime.orchestrator.data.check_customer_id(cid)
    runner = BatchRunner(
        config=runtime.config, data=data, ledger=runtime.ledger, clock=runtime.clock, zone=runtime.zone,
        run_id=runtime.run_id, dry_run=run.options.dry_run, auto_approve=run.options.auto_approve, budget=budget,
    )
    outcome = runner.run(customer_ids)
    elapsed = time.perf_counter() - started
    if outcome.records is not None:
        code = finish_run(run, outcome.records, path)
        _add_batch_summary(path, outcome, elapsed)
        return code
    return _write_large(run, outcome, path, data, elapsed)


def _batch_summary(outcome: BatchOutcome, elapsed: float) -> dict:
    return {
        "path": "batch",
        "optimiser": outcome.optimiser,
        "seconds": round(elapsed, 2),
        "customers_per_second": round(len(outcome.customer_ids) / elapsed, 1) if elapsed > 0 else None,
    }


def _add_batch_summary(path: Path, outcome: BatchOutcome, elapsed: float) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["summary"]["batch"] = _batch_summary(outcome, elapsed)
    write_json_atomic(path, document)


def _write_large(run: Run, outcome: BatchOutcome, path: Path, data: ColumnarData, elapsed: float) -> int:
    """Results as Parquet beside a JSON file with the run id, the summary and where the rows are."""
    runtime = run.runtime
    parquet = path.with_suffix(".parquet")
    columns = outcome.columns()
    import pyarrow as pa  # DuckDB hands Arrow tables to Parquet without a Python row loop

    # A number that is not finite (an error row has none) is written as null, never as NaN or Infinity.
    table = pa.table({
        k: pa.array(v, mask=~np.isfinite(v)) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else pa.array(v)
        for k, v in columns.items()
    })
    cursor = data.con.cursor()  # its own connection state, whatever the feature queries left behind
    cursor.register("results_arrow", table)
    cursor.execute(f"COPY results_arrow TO '{str(parquet).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
    statuses = Counter(outcome.status)
    by_status = dict(sorted(statuses.items()))
    given = [t for t, s in zip(outcome.treatment, outcome.status, strict=True) if s in ("success", "pending_approval")]
    summary = {
        "total_customers": len(outcome.customer_ids),
        "by_status": by_status,
        "by_treatment": dict(sorted(Counter(given).items())),
        "expected_value_total": round(float(sum(v for v, s in zip(outcome.expected_value, outcome.status, strict=True)
                                               if s in ("success", "pending_approval"))), 2),
        "currency": runtime.config.settings.currency,
        "selector": "rules",
        "approvals_pending": statuses.get("pending_approval", 0),
        "dry_run": run.options.dry_run,
        "auto_approve": "ON (testing)" if run.options.auto_approve else "off",
        "batch": _batch_summary(outcome, elapsed),
    }
    write_json_atomic(path, {
        "run_id": runtime.run_id, "generated_at": runtime.clock.now().isoformat(), "summary": summary,
        "results_file": str(parquet), "results": [],
    })
    print(f"{summary['total_customers']} customer(s): " + ", ".join(f"{n} {s}" for s, n in by_status.items()))
    print(f"optimiser {outcome.optimiser.get('method')}: value {outcome.optimiser.get('total_value'):.2f}, "
          f"upper bound {outcome.optimiser.get('upper_bound'):.2f}, gap {outcome.optimiser.get('gap'):.4%}")
    print(f"results written to {parquet} (summary in {path})")
    return 1 if statuses.get("error") else 0
