"""Trigger evaluation throughput over generated customers.

Prints ``name=value`` lines measured in this run; nothing here passes or fails.

    .venv/bin/python bench/bench_triggers.py --customers 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from synthetic import generate  # noqa: E402

from cvm.agents.base import expect  # noqa: E402
from cvm.agents.messages import TriggerCustomers, TriggerResult  # noqa: E402
from cvm.runtime import RunOptions, build_runtime  # noqa: E402
from cvm.utils.logging import configure_logging  # noqa: E402
from cvm.utils.settings import RuntimeSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    configure_logging(console_level="ERROR", file_level="ERROR", log_file=None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate(work / "data", args.customers)
        runs = {
            "builtin_network_issues": TriggerCustomers(trigger_type="network_issues"),
            "keyword": TriggerCustomers(trigger_type="custom", keywords=("signal", "poor coverage", "drop")),
            "semantic_lexical": TriggerCustomers(
                trigger_type="custom", description="Customers complaining about dropped calls and weak signal at home"
            ),
        }
        for name, message in runs.items():
            # A fresh runtime per run: nothing cached from the previous trigger.
            options = RunOptions(
                data_dir=work / "data", config_path=REPO / "config" / "cvm_config.yaml",
                custom_treatments_path=work / "none.json", db_url=f"sqlite:///{work / 'ledger.sqlite3'}",
                selector="rules", as_of="2026-11-23T10:00:00+00:00",
            )
            orchestrator = build_runtime(options, RuntimeSettings(_env_file=None)).orchestrator
            start = time.perf_counter()
            result = expect(orchestrator.process(message), TriggerResult)
            elapsed = time.perf_counter() - start
            print(f"trigger_{name}_customers_per_second_at_{args.customers}={result.total_customers / elapsed:.1f}")
            print(f"trigger_{name}_matches_at_{args.customers}={result.total_matches}")


if __name__ == "__main__":
    main()
