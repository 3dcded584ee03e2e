"""The result file of DESIGN section 8, written atomically, and its summary."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cvm.agents.governance import AUTO_APPROVER
from cvm.agents.messages import DecisionResult


def summarize(
    results: Sequence[DecisionResult], *, selector: str, dry_run: bool, currency: str, auto_approve: bool = False
) -> dict[str, Any]:
    """Counts a CRM lead reads first: statuses, treatments, value, fallbacks, data problems."""
    given = [r for r in results if r.status in ("success", "pending_approval")]
    return {
        "total_customers": len(results),
        "by_status": dict(sorted(Counter(r.status for r in results).items())),
        "by_treatment": dict(sorted(Counter(r.selected_treatment for r in given).items())),
        "expected_value_total": round(sum(r.expected_value or 0.0 for r in given), 2),
        "currency": currency,
        "selector": selector,
        "llm_fallbacks": sum(1 for r in results if r.selector_fallback),
        "capacity_fallbacks": sum(
            1 for r in given if any(a.reason == "capacity_exhausted" for a in r.alternatives)
        ),
        "customers_with_data_quality_issues": sum(1 for r in results if r.data_quality),
        "scheduled_for_later": sum(1 for r in given if r.scheduled_for),
        "replayed": sum(1 for r in results if r.replayed),
        "approvals_pending": sum(1 for r in results if r.status == "pending_approval"),
        "auto_approved": sum(1 for r in results if r.approved_by == AUTO_APPROVER),
        "auto_approve": "ON (testing): decisions needing approval were approved without a human" if auto_approve else "off",
        "dry_run": dry_run,
    }


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temp file beside ``path`` and rename it over, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # os.open with 0o666 lets the umask decide the mode, as for any normally created file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, document: Any) -> None:
    """``document`` as indented JSON, written atomically (serialised first: a bad value never touches the file)."""
    write_text_atomic(path, json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


def write_result_file(
    path: Path, *, run_id: str, generated_at: datetime, summary: dict[str, Any], results: Sequence[DecisionResult]
) -> None:
    write_json_atomic(
        path,
        {
            "run_id": run_id,
            "generated_at": generated_at.isoformat(),
            "summary": summary,
            "results": [r.model_dump(mode="json", exclude={"type"}) for r in results],
        },
    )
