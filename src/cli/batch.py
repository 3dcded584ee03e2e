"""The batch path's result files and summary (``cvm process --batch``, and every deciding command
that takes the batch path: ``cvm.cli.results.write_results``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from cvm.cli.run import Run, Written, write_decisions
from cvm.engine.batch import BatchOutcome
from cvm.engine.deciding import Decided
from cvm.tools.columnar import ColumnarData
from cvm.tools.results import write_json_atomic


def write_batch(run: Run, decided: Decided, path: Path) -> Written:
    """Write the batch path's results: the JSON contract when small, Parquet beside a JSON summary when large."""
    outcome, data, elapsed = decided.outcome, decided.data, decided.seconds
    assert outcome is not None and data is not None, "write_batch takes what the batch path decided"
    if decided.results is not None:
        summary = write_decisions(run, decided.results, path)
        summary["batch"] = _add_batch_summary(path, outcome, elapsed)
        return Written(summary, decided.results, 1 if decided.failed() else 0, notes=(_optimiser_line(outcome),))
    return _write_large(run, outcome, path, data, elapsed)


def _optimiser_line(outcome: BatchOutcome) -> str:
    o = outcome.optimiser
    if o.get("total_value") is None or o.get("upper_bound") is None or o.get("gap") is None:
        return f"optimiser {o.get('method')}"
    return f"optimiser {o.get('method')}: value {o['total_value']:.2f}, upper bound {o['upper_bound']:.2f}, gap {o['gap']:.4%}"


def _batch_summary(outcome: BatchOutcome, elapsed: float) -> dict:
    return {
        "path": "batch",
        "optimiser": outcome.optimiser,
        "seconds": round(elapsed, 2),
        "customers_per_second": round(len(outcome.customer_ids) / elapsed, 1) if elapsed > 0 else None,
    }


def _add_batch_summary(path: Path, outcome: BatchOutcome, elapsed: float) -> dict:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["summary"]["batch"] = batch = _batch_summary(outcome, elapsed)
    write_json_atomic(path, document)
    return batch


def _write_large(run: Run, outcome: BatchOutcome, path: Path, data: ColumnarData, elapsed: float) -> Written:
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
    return Written(summary, None, 1 if statuses.get("error") else 0, parquet=parquet, notes=(_optimiser_line(outcome),))
