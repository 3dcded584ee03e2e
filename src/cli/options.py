"""Command-line options shared by every command, declared once.

Help shows one spelling, hyphenated (``--customer-ids``); the prototype's
underscore spellings (``--customer_ids``) are declared too and hidden from
help by ``cvm.cli.common.run_app``, which still accepts them.

``--output`` takes the same values on every command that lists things
(``table``, ``json``, ``csv``); ``--show`` bounds the rows a table prints and
``--quiet`` leaves only the data asked for (``cvm.cli.listing``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

CustomerIds = Annotated[str | None, typer.Option("--customer-ids", "--customer_ids", help="Comma-separated ids, e.g. U123,U124.")]
AllCustomers = Annotated[bool, typer.Option("--all-customers", "--all_customers", help="Every customer in the data folder.")]
OutputFile = Annotated[str | None, typer.Option("--output-file", "--output_file", help="Also write the result file here; a bare name goes under output/ (CVM_OUTPUT_DIR).")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None,
    typer.Option("--log-level", "--log_level", case_sensitive=False, help="Console log level (default WARNING; the log file uses the config's level)."),
]
DataDir = Annotated[str | None, typer.Option("--data-dir", "--data_dir", help="Folder of tables (default data/sample, CVM_DATA_DIR).")]
ConfigFile = Annotated[str | None, typer.Option("--config", help="Config YAML (default config/cvm_config.yaml, CVM_CONFIG).")]
Selector = Annotated[
    Literal["auto", "rules", "llm"] | None,
    typer.Option("--selector", case_sensitive=False, help="auto: the LLM only when OPENAI_API_KEY is set (default auto, CVM_SELECTOR)."),
]
MaxWorkers = Annotated[int, typer.Option("--max-workers", "--max_workers", min=1, max=64, help="Customers decided in parallel.")]
RunId = Annotated[str | None, typer.Option("--run-id", "--run_id", help="Re-use a run id: a re-run returns the same decisions and takes no new capacity.")]
DryRun = Annotated[bool, typer.Option("--dry-run", "--dry_run", help="Decide and report without taking capacity or writing to the ledger.")]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", "--auto_approve", help="TESTING ONLY: approve every decision that needs approval, as 'auto-approve (testing)'.")]
Batch = Annotated[bool, typer.Option("--batch", help="Decide for everyone at once with the columnar path and the global optimiser (rules model).")]
Budget = Annotated[float | None, typer.Option("--budget", min=0, help="Batch path: total contact cost the run may commit (default batch.budget_per_day).")]
AsOf = Annotated[str | None, typer.Option("--as-of", "--as_of", help="The clock for day keys and windows, e.g. 2026-11-23T10:00 (CVM_NOW).")]

OutputFormat = Literal["table", "json", "csv"]
ListOutput = Annotated[
    OutputFormat,
    typer.Option("--output", help="table (bounded by --show), json (every row, to stdout) or csv (every row, to stdout)."),
]
Show = Annotated[str, typer.Option("--show", metavar="N|all", help="Rows the table prints: a number, or all.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No table or summary: only warnings, errors and the json/csv asked for.")]
DEFAULT_SHOW = "20"
