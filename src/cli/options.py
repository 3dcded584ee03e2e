"""Command-line options shared by every processing command, declared once.

Both spellings are accepted everywhere: ``--customer_ids`` (the prototype's)
and ``--customer-ids``.
"""

from __future__ import annotations

from typing import Annotated

import typer

CustomerIds = Annotated[str | None, typer.Option("--customer_ids", "--customer-ids", help="Comma-separated ids, e.g. U123,U124.")]
AllCustomers = Annotated[bool, typer.Option("--all_customers", "--all-customers", help="Every customer in the data folder.")]
OutputFile = Annotated[str | None, typer.Option("--output_file", "--output-file", help="Output file; a bare name goes under output/ (CVM_OUTPUT_DIR).")]
LogLevel = Annotated[str | None, typer.Option("--log_level", "--log-level", help="Console log level (default WARNING; the log file uses the config's level).")]
DataDir = Annotated[str | None, typer.Option("--data-dir", "--data_dir", help="Folder of tables (default data/sample, CVM_DATA_DIR).")]
ConfigFile = Annotated[str | None, typer.Option("--config", help="Config YAML (default config/cvm_config.yaml, CVM_CONFIG).")]
Selector = Annotated[str | None, typer.Option("--selector", help="auto (LLM only when OPENAI_API_KEY is set), rules or llm (CVM_SELECTOR).")]
MaxWorkers = Annotated[int, typer.Option("--max_workers", "--max-workers", min=1, max=64, help="Customers decided in parallel.")]
RunId = Annotated[str | None, typer.Option("--run-id", "--run_id", help="Re-use a run id: a re-run returns the same decisions and takes no new capacity.")]
DryRun = Annotated[bool, typer.Option("--dry-run", "--dry_run", help="Decide and report without taking capacity or writing to the ledger.")]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", "--auto_approve", help="TESTING ONLY: approve every decision that needs approval, as 'auto-approve (testing)'.")]
Batch = Annotated[bool, typer.Option("--batch", help="Decide for everyone at once with the columnar path and the global optimiser (rules model).")]
Budget = Annotated[float | None, typer.Option("--budget", min=0, help="Batch path: total contact cost the run may commit (default batch.budget_per_day).")]
AsOf = Annotated[str | None, typer.Option("--as-of", "--as_of", help="The clock for day keys and windows, e.g. 2026-11-23T10:00 (CVM_NOW).")]
