"""A small synthetic-customer generator for benchmarks (seeded, every table, both field shapes).

Smaller than the production generator (``cvm data generate``, ``cvm.synth``); just
enough variety, in plain Python, to push the per-customer path through every branch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TREATMENT_IDS = (
    "service_call_back", "marketing_call_back", "retention_email", "retention_sms", "service_sms", "loyalty_app",
    "early_upgrade", "family_plan", "data_boost", "loyalty_points", "personalized_offer",
)
PAGES = ("/plans/family", "/phones/upgrade", "/support/coverage-checker", "/roaming/eu", "/account/cancel", "/rewards", "/billing/explain-my-bill")
LINES = (
    "Customer: My signal keeps dropping at home, this is the third time. Agent: I'm sorry, let me check the mast.",
    "Customer: Thanks, that was really helpful. Agent: You're welcome.",
    "Customer: My bill is far too high, I was overcharged for roaming in Spain. Agent: Let me explain the charges.",
    "Customer: I want to add a line for my kids on a family plan. Agent: Happy to help.",
    "Customer: I'm thinking of leaving, Vodafone offered me a cheaper deal. Agent: Let me see what we can do.",
    "Customer: I keep running out of data every month. Agent: We have data add-ons.",
)


def generate(out: Path, customers: int, seed: int = 7) -> list[str]:
    """Write every table for ``customers`` customers into ``out``; return their ids."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = [f"B{i:07d}" for i in range(customers)]
    tables: dict[str, list[dict]] = {name: [] for name in (
        "customers", "billing_data", "usage_data", "network_data", "churn_score", "call_transcripts",
        "offer_recommendations", "permissions", "web_clicks",
    )}
    for cid in ids:
        base = round(rng.uniform(15, 110), 2)
        tables["customers"].append({"customer_id": cid, "join_date": f"20{rng.randint(15, 25)}-0{rng.randint(1, 9)}-15"})
        for month in (9, 10, 11):
            bill = base * (2.5 if month == 11 and rng.random() < 0.1 else 1.0)
            if rng.random() < 0.5:
                tables["billing_data"].append({"customer_id": cid, "billing_date": f"2026-{month:02d}-01", "monthly_bill": round(bill, 2), "additional_charges": round(rng.uniform(0, 10), 2)})
            else:
                extra = [{"description": "Roaming data - Spain", "amount": round(rng.uniform(5, 60), 2)}] if rng.random() < 0.1 else []
                tables["billing_data"].append({"customer_id": cid, "date": f"2026-{month:02d}-01", "monthly_charge": round(bill, 2), "additional_charges": extra})
            gb = round(rng.uniform(1, 40) * (1 + (month - 9) * rng.uniform(-0.1, 0.3)), 1)
            key = "total_data_gb" if rng.random() < 0.5 else "data_usage_gb"
            tables["usage_data"].append({"customer_id": cid, "month": f"2026-{month:02d}", key: max(gb, 0.1)})
        poor = rng.random() < 0.15
        tables["network_data"].append({"customer_id": cid, "date": "2026-11-10", "avg_latency_ms": rng.uniform(90, 170) if poor else rng.uniform(25, 55), "dropped_calls": rng.randint(3, 10) if poor else rng.randint(0, 1)})
        tables["churn_score"].append({"customer_id": cid, "churn_score": round(rng.betavariate(2, 4), 3), "score_date": "2026-11-20"})
        if rng.random() < 0.4:
            tables["call_transcripts"].append({"customer_id": cid, "date": "2026-11-12", "transcript": rng.choice(LINES)})
        for offer in rng.sample(TREATMENT_IDS, 3):
            tables["offer_recommendations"].append({"customer_id": cid, "offer_id": offer, "acceptance_probability": round(rng.uniform(0.05, 0.6), 2)})
        if rng.random() < 0.95:
            consent = {ch: {p: ("Y" if rng.random() < 0.7 else "N") for p in ("marketing", "service_updates", "billing")} for ch in ("email", "sms", "call", "push_notifications")}
            tables["permissions"].append({"customer_id": cid, "permissions": consent, "do_not_disturb": "22:00-08:00"})
        tables["web_clicks"].append({"customer_id": cid, "timestamp": "2026-11-15T12:00:00", "page": rng.choice(PAGES)})
    for name, rows in tables.items():
        (out / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    return ids
