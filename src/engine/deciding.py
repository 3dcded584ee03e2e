"""Deciding for many customers: one at a time, or all at once on the batch path, chosen by how many.

Every command and flow step that decides for a list of customers comes here
(``Decider.decide``): ``cvm process``, ``cvm triggers process``, ``cvm
treatments batch`` and a flow's ``orchestrator.process_batch`` and
``trigger_and_process`` steps (the runtime's orchestrator is a
``cvm.agents.orchestrator.PathChoosingOrchestrator``, whose handlers of those two messages come here).

The rule, the same everywhere:

- ``batch=True`` (``--batch``) takes the batch path (``cvm.engine.batch``). It
  scores with the rules model over every treatment, so with the LLM selector or a
  proposed treatment (``--treatment``) it is a usage error that says which flag to drop.
- Otherwise a run of at least ``batch.auto_threshold`` customers takes the batch
  path, unless the selector is the LLM (it cannot score a million customers: the
  run stays on the per-customer path), a treatment is proposed, or DuckDB (the
  ``scale`` extra) is not installed; each of those says so in one line
  (``notify``, stderr by default), once per decider.
- Fewer customers: the per-customer path (the orchestrator's ``decide_many``).

Counting: a list of ids is its length. "Every customer in the folder" is first
bounded without reading a row (``customers_at_most``); only a folder that could
hold ``auto_threshold`` customers is counted exactly, by DuckDB, and that same
DuckDB copy of the tables is handed to the batch path when it is taken.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from cvm.agents.base import expect
from cvm.agents.messages import (
    CustomerListResponse,
    DecisionResult,
    ListCustomers,
    TriggerCustomers,
    TriggerResult,
)
from cvm.agents.orchestrator import OrchestratorAgent
from cvm.tools.data_source import FORMATS
from cvm.tools.records import TABLES
from cvm.utils.errors import DataError, UsageError, reinstall_hint
from cvm.utils.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from cvm.engine.batch import BatchOutcome
    from cvm.tools.columnar import ColumnarData

log = structlog.get_logger(__name__)


MIN_BYTES_PER_CUSTOMER = {".csv": 2, ".json": 18, ".jsonl": 18}
"""The fewest bytes a text table needs per distinct customer id.

Both readers take a customer's id from a ``customer_id`` field. In CSV each
customer needs a row: an id of at least one character and a line break (2
bytes). In JSON and JSON lines each needs an object holding the key:
``{"customer_id":0}`` (17 bytes; escapes, spaces and longer ids only add) and a
comma or line break between objects (1 byte). A file of ``size`` bytes therefore
holds at most ``(size + 1) // min_bytes`` customers. Parquet is compressed, so
its size proves nothing; its footer's row count (read without reading a row)
bounds the customers it holds instead.
"""


def table_files(folder: Path) -> list[Path]:
    """The file each table is read from: the first format found, in the order both readers use."""
    found = []
    for table in TABLES:
        path = next((folder / f"{table}{ext}" for ext in FORMATS if (folder / f"{table}{ext}").is_file()), None)
        if path is not None:
            found.append(path)
    return found


def customers_at_most(folder: Path) -> int | None:
    """An upper bound on the distinct customer ids the folder holds, reading no rows; None when none is known.

    The union of the tables holds at most the sum of what each table holds; a
    text table holds at most ``(size + 1) // MIN_BYTES_PER_CUSTOMER`` (see there),
    a Parquet table at most its footer's row count. So a folder whose bound is
    below ``batch.auto_threshold`` provably cannot reach it, and is decided on the
    per-customer path without starting DuckDB (which costs about a second: as long
    as deciding the sample data itself).
    """
    if not folder.is_dir():
        return 0
    total = 0
    for path in table_files(folder):
        if path.suffix == ".parquet":
            rows = _parquet_rows(path)
            if rows is None:
                return None
            total += rows
        else:
            total += (path.stat().st_size + 1) // MIN_BYTES_PER_CUSTOMER[path.suffix]
    return total


def _parquet_rows(path: Path) -> int | None:
    """The row count in a Parquet file's footer; None when it cannot be read (no pyarrow, a corrupt file)."""
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # no pyarrow or not Parquet: no bound, so the exact count decides
        return None


def check_budget(batch: bool, budget: float | None) -> None:
    """A ``--budget`` is the batch optimiser's; the CLIs call this before any work, the Decider again for every caller."""
    if budget is not None and not batch:
        raise UsageError("--budget applies to the batch path; add --batch")


def duckdb_installed() -> bool:
    """Whether the batch path can run (the ``scale`` extra); looked up without importing DuckDB."""
    try:
        return importlib.util.find_spec("duckdb") is not None
    except (ImportError, ValueError):  # an import hook that refuses it, a broken install
        return False


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Decided:
    """What a decision over many customers produced, and on which path."""

    path: Literal["per_customer", "batch"]
    results: list[DecisionResult] | None
    """Every customer's result; None only on the batch path when there are more than ``records_max``."""
    outcome: BatchOutcome | None = None
    """The batch path's columns (what a large run writes to Parquet)."""
    data: ColumnarData | None = None
    """The batch path's DuckDB tables."""
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    def failed(self) -> bool:
        """Whether some customer's decision is an error (exit code 1)."""
        if self.results is not None:
            return any(r.status == "error" for r in self.results)
        return self.outcome is not None and "error" in self.outcome.status


OneByOne = Callable[[list[str]], list[DecisionResult]]
"""Decides a list of customers on the per-customer path (the CLI passes one with a progress bar)."""


class Decider:
    """Chooses the path for a list of customers (or the whole folder) and decides them on it."""

    def __init__(
        self, *, orchestrator: OrchestratorAgent, data_dir: Path, selector: str,
        notify: Callable[[str], None] | None = None, status: Callable[[str], None] | None = None,
        progress: Progress = NO_PROGRESS,
    ):
        """``progress`` gets the batch path's stages (loading tables, features, scoring, optimising, wording
        records, committing); the per-customer path reports through ``decide``'s ``one_by_one``."""
        self.orchestrator = orchestrator
        self.progress = progress
        self.data_dir = Path(data_dir)
        self.selector = selector
        self._notify = notify or _stderr
        self._status = status
        self._said: set[str] = set()

    @property
    def threshold(self) -> int:
        return self.orchestrator.config.batch.auto_threshold

    # -- the choice -------------------------------------------------------------------

    def check_batch(self, proposed: str | None = None) -> None:
        """``--batch`` with what the batch path cannot do is a usage error naming the flag to drop."""
        if self.selector == "llm":
            raise UsageError(
                "--batch decides with the rules model and cannot use the LLM selector (--selector llm, or auto with "
                "OPENAI_API_KEY set): add --selector rules, or drop --batch to decide one customer at a time with the LLM"
            )
        if proposed is not None:
            raise UsageError("--batch chooses among every treatment and cannot propose one (--treatment): drop one of the two")

    def _why_not_batch(self, proposed: str | None) -> str | None:
        """Why a large run stays on the per-customer path, or None when the batch path can take it."""
        if self.selector == "llm":
            return "the LLM selector decides one customer at a time (use --selector rules for the batch path)"
        if proposed is not None:
            return "a proposed treatment (--treatment) is decided one customer at a time"
        if not duckdb_installed():
            return reinstall_hint("DuckDB", "the batch path")
        return None

    def _say(self, decided: Decided, message: str) -> None:
        decided.notices.append(message)
        log.info("decision_path", message=message)  # the user sees it once, through notify
        if message not in self._said:
            self._said.add(message)
            self._notify(message)

    def _large(self, count: int, reason: str) -> str:
        return (f"{count} customers reach batch.auto_threshold ({self.threshold}), but {reason}: "
                "staying on the per-customer path")

    # -- deciding ---------------------------------------------------------------------

    def decide(
        self, customer_ids: list[str] | None, *, batch: bool = False, run_id: str | None = None,
        proposed: str | None = None, budget: float | None = None, errors: Mapping[str, str] | None = None,
        one_by_one: OneByOne | None = None, records_max: int | None = None, max_customers: int | None = None,
    ) -> Decided:
        """Decide for ``customer_ids`` (None: every customer in the folder) on the path the rule above chooses.

        ``errors`` are customers that could not even be considered (a trigger could not
        evaluate them): they are added to the results as errors, on either path.
        ``records_max`` is how many results the batch path returns as records (default
        ``batch.json_results_max``; above it only the columns). More than ``max_customers``
        ids is a usage error, raised before anything is decided. An id given twice is decided once, on either path.
        """
        if customer_ids is not None:
            customer_ids = list(dict.fromkeys(customer_ids))
        if max_customers is not None and customer_ids is not None and len(customer_ids) > max_customers:
            raise UsageError(
                f"{len(customer_ids)} customers exceed validation.max_customers_per_batch ({max_customers}); a flow step's "
                "output holds every decision: split the batch, raise the limit, or run cvm process --batch"
            )
        started = time.perf_counter()
        run_id = run_id or self.orchestrator.run_id
        data: ColumnarData | None = None
        check_budget(batch, budget)
        if batch:
            self.check_batch(proposed)
        decided = Decided(path="per_customer", results=None)
        if not batch:
            batch, data = self._automatic(customer_ids, proposed, decided)
        if batch:
            self._batch(decided, customer_ids, data, run_id, budget, records_max)
        else:
            ids = customer_ids if customer_ids is not None else self._every_customer(decided, proposed)
            decide = one_by_one or (lambda todo: self.orchestrator.decide_many(todo, run_id, proposed=proposed))
            decided.results = decide(ids)
        if errors:
            _add_errors(decided, errors, self.orchestrator.dry_run)
        decided.seconds = time.perf_counter() - started
        return decided

    def _automatic(self, customer_ids: list[str] | None, proposed: str | None, decided: Decided) -> tuple[bool, ColumnarData | None]:
        """Whether a run without ``--batch`` takes the batch path, and the DuckDB tables when they were read to count."""
        if customer_ids is not None:
            if len(customer_ids) < self.threshold:
                return False, None
            reason = self._why_not_batch(proposed)
            if reason is not None:
                self._say(decided, self._large(len(customer_ids), reason))
                return False, None
            return True, None
        bound = customers_at_most(self.data_dir)
        if (bound is not None and bound < self.threshold) or self._why_not_batch(proposed) is not None:
            return False, None  # a stay-put reason is said once the per-customer listing has counted them
        from cvm.tools.columnar import ColumnarData

        try:
            data = ColumnarData(self.data_dir, progress=self.progress)
            count = len(data.customer_ids())
        except DataError as exc:  # the per-customer reader reports an unreadable table as a data-quality issue
            self._say(decided, f"could not count the customers with DuckDB ({exc}): staying on the per-customer path")
            return False, None
        log.info("customers_counted", customers=count, threshold=self.threshold)
        return (True, data) if count >= self.threshold else (False, None)

    def _every_customer(self, decided: Decided, proposed: str | None) -> list[str]:
        ids = list(expect(self.orchestrator.data.process(ListCustomers()), CustomerListResponse).customer_ids)
        if not ids:
            self._say(decided, f"warning: no customers found in {self.data_dir}")
        reason = self._why_not_batch(proposed)
        if reason is not None and len(ids) >= self.threshold:
            self._say(decided, self._large(len(ids), reason))
        return ids

    def _batch(
        self, decided: Decided, customer_ids: list[str] | None, data: ColumnarData | None, run_id: str,
        budget: float | None, records_max: int | None,
    ) -> None:
        from cvm.engine.batch import BatchRunner
        from cvm.tools.columnar import ColumnarData

        if self._status is not None:
            self._status("batch: reading tables ...")
        data = data or ColumnarData(self.data_dir, progress=self.progress)
        o = self.orchestrator
        runner = BatchRunner(
            config=o.config, data=data, ledger=o.ledger, clock=o.clock, zone=o.zone, run_id=run_id,
            dry_run=o.dry_run, auto_approve=o.auto_approve, budget=budget, progress=self.progress,
        )
        outcome = runner.run(customer_ids, records_max)
        decided.path, decided.outcome, decided.data, decided.results = "batch", outcome, data, outcome.records
        if customer_ids is not None:
            _only(decided, customer_ids)

    def trigger_then_decide(
        self, trigger: TriggerCustomers, *, treatment: str | None = None, batch: bool = False, run_id: str | None = None,
        budget: float | None = None, one_by_one: OneByOne | None = None, records_max: int | None = None,
        max_customers: int | None = None,
    ) -> tuple[TriggerResult, Decided]:
        """The trigger's matches, decided; customers the trigger could not evaluate stay in the results as errors."""
        if treatment is not None:
            self.orchestrator.config.treatment(treatment)
        if batch:
            self.check_batch(treatment)  # refused before the trigger does any work
        found = expect(self.orchestrator.trigger.process(trigger), TriggerResult)
        errors = {e["customer_id"]: e["error"] for e in found.errors}
        decided = self.decide(
            [m.customer_id for m in found.matches], batch=batch, run_id=run_id, proposed=treatment, budget=budget,
            errors=errors, one_by_one=one_by_one, records_max=records_max, max_customers=max_customers,
        )
        return found, decided


def _columns(outcome: BatchOutcome) -> dict[str, Any]:
    """The outcome's per-customer columns (lists and arrays as long as its id list), by attribute name."""
    import numpy as np  # only the batch path, which has it loaded already

    n = len(outcome.customer_ids)
    return {k: v for k, v in vars(outcome).items() if k != "records" and isinstance(v, (list, np.ndarray)) and len(v) == n}


def _only(decided: Decided, wanted: list[str]) -> None:
    """Keep the results of the customers asked for: a re-run of a run id also answers with customers it decided before."""
    keep = set(wanted)
    if decided.results is not None:
        decided.results = [r for r in decided.results if r.customer_id in keep]
    outcome = decided.outcome
    if outcome is None or keep.issuperset(outcome.customer_ids):
        return
    rows = [i for i, cid in enumerate(outcome.customer_ids) if cid in keep]
    for name, column in _columns(outcome).items():
        setattr(outcome, name, [column[i] for i in rows] if isinstance(column, list) else column[rows])
    if outcome.records is not None:
        outcome.records = decided.results


def _add_errors(decided: Decided, errors: Mapping[str, str], dry_run: bool) -> None:
    """Customers that could not be considered, as error results at the end (records and columns alike)."""
    if decided.results is not None:
        decided.results = [
            *decided.results,
            *(DecisionResult(customer_id=cid, status="error", error=error, dry_run=dry_run) for cid, error in errors.items()),
        ]
    outcome = decided.outcome
    if outcome is None:
        return
    import numpy as np

    added = {"customer_ids": list(errors), "status": ["error"] * len(errors), "errors": list(errors.values())}
    for name, column in _columns(outcome).items():
        if isinstance(column, np.ndarray):
            setattr(outcome, name, np.concatenate([column, np.full(len(errors), np.nan)]))
        else:
            setattr(outcome, name, [*column, *added.get(name, [None] * len(errors))])
    if outcome.records is not None:
        outcome.records = decided.results
