"""The batch path at 10k, 100k and 1M customers, and its speed-up over the per-customer path.

Each size is generated with ``cvm data generate`` (Parquet) and decided with
``cvm process --all_customers --batch`` in a fresh process, so wall time and
peak memory are the command's own, from Parquet to committed allocations and
result file. Prints ``name=value`` lines measured in this run.

    .venv/bin/python bench/bench_batch.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--per-customer-sample", type=int, default=2000, help="customers for the per-customer comparison")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "CVM_LOG_DIR": str(work / "logs"), "CVM_NOW": "2026-11-23T10:00:00", "CVM_SELECTOR": "rules",
               "CVM_CONFIG": str(REPO / "config" / "cvm_config.yaml"), "CVM_CUSTOM_TREATMENTS": str(work / "none.json")}
        rates = {}
        for size in sizes:
            data = work / f"data-{size}"
            subprocess.run([str(BIN / "cvm"), "data", "generate", "--customers", str(size), "--out", str(data)],
                           check=True, capture_output=True, env=env)
            run_env = {**env, "CVM_DB_URL": f"sqlite:///{work / f'ledger-{size}.sqlite3'}"}
            seconds, peak = run([str(BIN / "cvm"), "process", "--all_customers", "--batch", "--data-dir", str(data),
                                 "--output_file", str(work / f"results-{size}.json")], run_env)
            rates[size] = size / seconds
            print(f"batch_seconds_at_{size}={seconds:.1f}")
            print(f"batch_customers_per_second_at_{size}={rates[size]:.0f}")
            print(f"batch_peak_memory_mb_at_{size}={peak:.0f}")
        sample = work / "data-sample"
        subprocess.run([str(BIN / "cvm"), "data", "generate", "--customers", str(args.per_customer_sample), "--out", str(sample)],
                       check=True, capture_output=True, env=env)
        seconds, _ = run([str(BIN / "cvm"), "process", "--all_customers", "--data-dir", str(sample),
                          "--output_file", str(work / "per-customer.json")],
                         {**env, "CVM_DB_URL": f"sqlite:///{work / 'ledger-per-customer.sqlite3'}"})
        per_customer = args.per_customer_sample / seconds
        print(f"per_customer_customers_per_second_at_{args.per_customer_sample}={per_customer:.0f}")
        print(f"batch_speedup_over_per_customer={rates[max(sizes)] / per_customer:.1f}")


if __name__ == "__main__":
    main()
