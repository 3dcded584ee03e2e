"""The result file of DESIGN section 8: its record (``DecisionResult``), written atomically, and its summary.

The record is defined here, below the agents layer, so the result writer and
the reports (``cvm.reporting``) read it without importing the agents;
``cvm.agents.messages`` re-exports it with the messages it travels in.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from cvm.utils.models import FrozenModel

AUTO_APPROVER = "auto-approve (testing)"
"""``approved_by`` of a decision approved under ``--auto-approve`` (for testing, never a human)."""

RejectionReason = Literal[
    "disabled",
    "not_eligible",
    "no_consent",
    "contact_limit",
    "repeat_limit",
    "capacity_exhausted",
    "pending_approval_limit",
    "approval_rejected",
    "approval_expired",
    "consent_withdrawn",
    "below_no_action",
    "lower_ranked",
    "invalid_selector_choice",
]
DecisionStatus = Literal["success", "pending_approval", "no_action", "error"]

class Alternative(FrozenModel):
    """A treatment that was not given, and why."""

    treatment_id: str
    reason: RejectionReason
    detail: str
    expected_value: float | None = None


class DecisionResult(FrozenModel):
    """One customer's decision: the result-file record of DESIGN section 8."""

    type: Literal["decision"] = "decision"
    customer_id: str
    status: DecisionStatus
    selected_treatment: str | None = None
    display_name: str | None = None
    channel: str | None = None
    purpose: str | None = None
    explanation: str = ""
    confidence: float | None = None
    expected_value: float | None = None
    reasons: tuple[str, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    selector: str | None = None
    """``rules`` or ``llm``; on an LLM failure ``rules`` with ``selector_fallback`` set."""
    selector_fallback: str | None = None
    scheduled_for: str | None = None
    """Set when do-not-disturb moved the contact; ISO time in the settings zone."""
    requires_approval: bool = False
    approval_request_id: str | None = None
    """The approval request holding this decision's capacity (``pending_approval``), or that approved it."""
    approval_rule: str | None = None
    """The governance rule that sent the decision for approval, in words."""
    approved_by: str | None = None
    """Who approved it (``auto-approve (testing)`` under ``--auto-approve``)."""
    insights: tuple[str, ...] = ()
    data_quality: tuple[str, ...] = ()
    dry_run: bool = False
    replayed: bool = False
    """True when the decision was read back from the ledger for a re-run of the same run id."""
    error: str | None = None



def stored_form(result: DecisionResult) -> dict[str, Any]:
    """A decision as the ledger stores it, on every path: only the fields that differ from their defaults.

    Readers validate it back into ``DecisionResult``, which fills the defaults in; a million
    no-action rows then cost a third of the bytes of the full record (measured: 196 vs 619 bytes a row).
    """
    return result.model_dump(mode="json", exclude_defaults=True)


def summarize(
    results: Sequence[DecisionResult], *, selector: str, dry_run: bool, currency: str, auto_approve: bool = False
) -> dict[str, Any]:
    """Counts a CRM lead reads first: statuses, treatments, value, fallbacks, data problems."""
    given = [r for r in results if r.status in ("success", "pending_approval")]
    return {
        "total_customers": len(results),
        "by_status": dict(sorted(Counter(r.status for r in results).items())),
        "by_treatment": dict(sorted(Counter(r.selected_treatment for r in given).items())),
        "expected_value_total": round(sum(v for r in given if (v := r.expected_value) is not None and math.isfinite(v)), 2),
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


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def non_regular_kind(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a FIFO", "a character device" ...), else None.

    The atomic write renames a new regular file over its target, so writing to a
    device, FIFO or socket would silently replace it (as root, ``/dev/null`` itself).
    Symlinks are followed: a link to a device is a device.
    """
    try:
        mode = path.stat().st_mode
    except OSError:  # missing, or a parent that is not a folder: the write itself reports it
        return None
    return next((kind for is_kind, kind in _NOT_REGULAR if is_kind(mode)), None if stat.S_ISREG(mode) else "a special file")


def write_text_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Write text (or its pieces, in order) to a temp file beside ``path`` and rename it over, so readers never see half a file.

    An existing target that is not a regular file is refused (``OSError``), never replaced.
    """
    pieces = [text] if isinstance(text, str) else text
    with _atomic_file(path) as fd, os.fdopen(fd, "w", encoding="utf-8") as handle:
        for piece in pieces:
            handle.write(piece)
        handle.flush()
        os.fsync(handle.fileno())


def copy_file_atomic(source: Path, target: Path) -> None:
    """``source``'s bytes at ``target``, atomically like ``write_text_atomic``: never parsed (it may hold 50,000 results)."""
    with _atomic_file(target) as fd, os.fdopen(fd, "wb") as write, source.open("rb") as read:
        shutil.copyfileobj(read, write, 1 << 20)
        write.flush()
        os.fsync(write.fileno())


@contextmanager
def _atomic_file(path: Path) -> Iterator[int]:
    """A new temp file beside ``path`` (its descriptor), renamed over ``path`` when the block ends, removed if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if (kind := non_regular_kind(path)) is not None:
        raise FileExistsError(errno.EEXIST, f"it exists and is {kind}, not a regular file", str(path))
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # os.open with 0o666 lets the umask decide the mode, as for any normally created file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        yield fd
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finite_only(value: Any) -> Any:
    """``value`` with every NaN and infinity (at any depth) replaced by None.

    JSON has no NaN or Infinity; Python's ``json`` would write the bare tokens, which
    most readers reject, and a result or report must never claim an infinite value.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_only(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_only(item) for item in value]
    return value


def _json(document: Any) -> str:
    return json.dumps(finite_only(document), indent=2, ensure_ascii=False, default=str, allow_nan=False)


def write_json_atomic(path: Path, document: Any) -> None:
    """``document`` as indented JSON, written atomically (serialised first: a bad value never touches the file).

    Non-finite numbers become null, and ``allow_nan=False`` guarantees no NaN/Infinity token is ever written.
    """
    write_text_atomic(path, _json(document) + "\n")


def write_result_file(
    path: Path, *, run_id: str, generated_at: datetime, summary: dict[str, Any], results: Sequence[DecisionResult]
) -> None:
    """The result file, the same bytes as ``write_json_atomic`` of the whole document, written one result at a time.

    Serialising the whole document first held every result three times over (dicts, their finite copy, the text):
    about 470 MB on top of the run at 20,000 customers. Each result is indented as it would be at its depth.
    """
    head = _json({"run_id": run_id, "generated_at": generated_at.isoformat(), "summary": summary})
    if not results:
        write_text_atomic(path, head[:-2] + ',\n  "results": []\n}\n')
        return
    items = ("\n    " + _json(r.model_dump(mode="json", exclude={"type"})).replace("\n", "\n    ") for r in results)
    write_text_atomic(path, chain([head[:-2] + ',\n  "results": ['], _commas(items), ["\n  ]\n}\n"]))


def _commas(items: Iterator[str]) -> Iterator[str]:
    """The items with a comma between each two."""
    for index, item in enumerate(items):
        yield ("," if index else "") + item