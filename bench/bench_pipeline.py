"""Per-customer agent path: customers per second, and a cold CLI start.

Prints ``name=value`` lines measured in this run; nothing here passes or fails.

    .venv/bin/python bench/bench_pipeline.py --customers 1000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from synthetic import generate  # noqa: E402

from cvm.agents.base import expect  # noqa: E402
from cvm.agents.messages import CustomerListResponse, ListCustomers  # noqa: E402
from cvm.runtime import RunOptions, build_runtime  # noqa: E402
from cvm.utils.logging import configure_logging  # noqa: E402
from cvm.utils.settings import RuntimeSettings  # noqa: E402


def per_customer_throughput(customers: int, workers: int, work: Path) -> float:
    data = work / "data"
    if not data.exists():
        generate(data, customers)
    options = RunOptions(
        data_dir=data, config_path=REPO / "config" / "cvm_config.yaml",
        custom_treatments_path=work / "none.json", db_url=f"sqlite:///{work / f'ledger-{workers}.sqlite3'}",
        selector="rules", as_of="2026-11-23T10:00:00+00:00", max_workers=workers,
    )
    runtime = build_runtime(options, RuntimeSettings(_env_file=None))
    listing = runtime.orchestrator.data.process(ListCustomers())
    ids = list(expect(listing, CustomerListResponse).customer_ids)
    start = time.perf_counter()
    results = runtime.orchestrator.decide_many(ids)
    elapsed = time.perf_counter() - start
    assert len(results) == customers
    return customers / elapsed


def cold_cli_seconds(runs: int, work: Path) -> float:
    timings = []
    env_db = f"sqlite:///{work / 'cli.sqlite3'}"
    for i in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "cvm_processor_cli"), "--customer_ids", "U124", "--selector", "rules",
             "--output_file", str(work / f"cli-{i}.json"), "--data-dir", str(REPO / "data" / "sample"),
             "--config", str(REPO / "config" / "cvm_config.yaml")],
            check=True, capture_output=True, cwd=REPO, env={"CVM_DB_URL": env_db, "PATH": "/usr/bin:/bin", "CVM_LOG_DIR": str(work / "logs")},
        )
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--cli-runs", type=int, default=5)
    args = parser.parse_args()
    configure_logging(console_level="ERROR", file_level="ERROR", log_file=None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for workers in (1, 2):
            rate = per_customer_throughput(args.customers, workers, work)
            print(f"per_customer_customers_per_second_workers{workers}_at_{args.customers}={rate:.1f}")
        print(f"cold_cli_single_customer_seconds_median_of_{args.cli_runs}={cold_cli_seconds(args.cli_runs, work):.3f}")


if __name__ == "__main__":
    main()
