"""The LLM path at scale: customers per second against a stub endpoint with fixed latency.

Prints ``name=value`` lines measured in this run; nothing here passes or fails.

    .venv/bin/python bench/bench_llm.py --customers 320 --latency 0.2 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import yaml  # noqa: E402
from synthetic import generate  # noqa: E402

from cvm.runtime import RunOptions, build_runtime  # noqa: E402
from cvm.utils.logging import configure_logging  # noqa: E402
from cvm.utils.settings import RuntimeSettings  # noqa: E402
from tests.stub_openai import StubOpenAI  # noqa: E402


def run(customers: list[str], work: Path, data: Path, concurrency: int, stub: StubOpenAI, tag: str) -> float:
    config = yaml.safe_load((REPO / "config" / "cvm_config.yaml").read_text(encoding="utf-8"))
    config["model"].update(max_concurrency=concurrency, timeout_seconds=30, max_retries=0)
    for constraint in config["constraints"].values():
        constraint["max_per_day"] = 10_000_000
    path = work / f"config-{tag}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    os.environ.update(OPENAI_BASE_URL=stub.base_url, OPENAI_API_KEY="bench", MODEL_ID="stub")
    options = RunOptions(
        data_dir=data, config_path=path, custom_treatments_path=work / "none.json",
        db_url=f"sqlite:///{work / f'ledger-{tag}.sqlite3'}", selector="llm", as_of="2026-11-23T10:00:00+00:00",
        max_workers=concurrency,
    )
    orchestrator = build_runtime(options, RuntimeSettings(_env_file=None)).orchestrator
    start = time.perf_counter()
    results = orchestrator.decide_many(customers)
    elapsed = time.perf_counter() - start
    fallbacks = sum(1 for r in results if r.selector_fallback)
    print(f"llm_{tag}_fallbacks={fallbacks}")
    return len(customers) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=320)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    configure_logging(console_level="ERROR", file_level="ERROR", log_file=None)
    with tempfile.TemporaryDirectory() as tmp, StubOpenAI(latency=args.latency) as stub:
        work = Path(tmp)
        ids = generate(work / "data", args.customers)
        serial = run(ids[: max(10, args.customers // 16)], work, work / "data", 1, stub, "serial")
        parallel = run(ids, work, work / "data", args.concurrency, stub, "parallel")
        target = 0.8 * args.concurrency / args.latency
        print(f"llm_customers_per_second_concurrency_1={serial:.1f}")
        print(f"llm_customers_per_second_concurrency_{args.concurrency}={parallel:.1f}")
        print(f"llm_speedup={parallel / serial:.2f}")
        print(f"llm_throughput_over_target={parallel / target:.3f}")
        print(f"llm_stub_requests={stub.request_count}")


if __name__ == "__main__":
    main()
