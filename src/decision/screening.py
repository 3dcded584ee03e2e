"""Which treatments a customer may not be given, and why: one rule for one customer or a million.

Both decision paths build the same (N, T) boolean masks here, one per reason, and word
a customer's refusals from its row of them:

* ``policy_blocks``: disabled in config, an eligibility rule missed, no explicit ``Y``
  for the channel and purpose (from the feature columns, ``cvm.decision.vector``);
* ``contact_blocks``: the purpose cap over the rolling window, the repeat window, the
  daily cap on the day the contact would happen, and an approver's recent rejection
  (from the ledger's live contacts and rejected requests, read by the caller).

The batch path passes every customer; the Allocation agent passes one (N = 1) when the
per-customer path screens a customer. ``refusals`` turns one row into the ``Alternative``
records both paths report, in the per-customer screening order. Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

import numpy as np

from cvm.decision import policy, vector
from cvm.decision.models import Journey
from cvm.tools.ledger import SYSTEM_WITHDRAWERS, utc_text
from cvm.tools.ledger_models import ApprovalRow, LiveContact
from cvm.tools.results import Alternative, RejectionReason
from cvm.utils.config import IGNORE_ID, ContactPolicy, Eligibility, Treatment

SCREEN_ORDER = ("disabled", "not_eligible", "no_consent", "repeat_limit", "contact_limit", "daily_contact_limit")
"""Mask names in the order a treatment is screened (after an approver's rejection, which is looked at first)."""

BLOCKS: dict[str, tuple[RejectionReason, str]] = {
    "disabled": ("disabled", "treatment is disabled in config"),
    "not_eligible": ("not_eligible", "the customer does not meet the treatment's eligibility rules"),
    "no_consent": ("no_consent", "customer has not said Y for this channel and purpose"),
    "contact_limit": ("contact_limit", "the contact cap for this purpose is reached"),
    "daily_contact_limit": ("contact_limit", "daily cap: the customer's contacts on that day already reach the cap per customer per day, across all purposes"),
    "repeat_limit": ("repeat_limit", "already given to this customer within the repeat window"),
    "approval_rejected": ("approval_rejected", "an approver rejected it for this customer within the repeat window"),
}
"""Mask name -> (rejection reason, detail used when no better words were kept)."""


@dataclass
class Blocks:
    """(N, T) masks by name (True = may not be given) and, where kept, the words for one (name, customer, treatment)."""

    masks: dict[str, np.ndarray]
    details: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def row(self, i: int, treatments: Sequence[Treatment]) -> dict[str, dict[str, str]]:
        """Customer ``i``'s blocks as rule -> treatment id -> why (the form an agent's answer carries)."""
        return {
            name: {t.id: self.details.get((name, i, j)) or BLOCKS[name][1] for j, t in enumerate(treatments) if mask[i, j]}
            for name, mask in self.masks.items() if mask[i].any()
        }

    @classmethod
    def of_one(cls, blocked: Mapping[str, Mapping[str, str]], treatments: Sequence[Treatment]) -> Blocks:
        """``row`` read back: one customer's blocks as N = 1 masks and details."""
        column = {t.id: j for j, t in enumerate(treatments)}
        blocks = cls({name: np.zeros((1, len(treatments)), dtype=bool) for name in blocked})
        for name, refused in blocked.items():
            for tid, detail in refused.items():
                if tid in column:
                    blocks.masks[name][0, column[tid]] = True
                    blocks.details[(name, 0, column[tid])] = detail
        return blocks


def policy_blocks(
    columns: Mapping[str, np.ndarray], consent: Mapping[tuple[str, str], np.ndarray], active: Mapping[str, np.ndarray],
    treatments: Sequence[Treatment], count: int,
) -> dict[str, np.ndarray]:
    """Disabled, not eligible (``vector.not_eligible``) and no consent (no explicit Y for channel and purpose), per customer."""
    masks = {name: np.zeros((count, len(treatments)), dtype=bool) for name in ("disabled", "not_eligible", "no_consent")}
    verdicts: dict[Eligibility, np.ndarray] = {}  # most treatments share the same (often empty) rules
    for j, treatment in enumerate(treatments):
        if treatment.id == IGNORE_ID:
            continue
        masks["disabled"][:, j] = not treatment.enabled
        rules = treatment.eligibility
        if rules not in verdicts:
            verdicts[rules] = vector.not_eligible(columns, rules, active, count)
        masks["not_eligible"][:, j] = verdicts[rules]
        yes = consent.get((treatment.channel, treatment.purpose))
        masks["no_consent"][:, j] = True if yes is None else ~yes
    return masks


@dataclass(frozen=True)
class ContactContext:
    """What the contact rules need besides the ledger rows: the policy, the moment and do-not-disturb.

    A contact's day is its calendar day in ``now``'s zone (``policy.contact_day``), on both paths.
    """

    policy: ContactPolicy
    now: datetime
    quiet_shift: Callable[[int], datetime | None]
    """Customer index -> when do-not-disturb moves an interrupting contact to (None: now is fine)."""

    @property
    def since(self) -> datetime:
        """The oldest contact any rule looks at: the live contacts to read from the ledger."""
        return self.now - timedelta(days=max(self.policy.window_days, self.policy.repeat_window_days))

    @property
    def repeat_start(self) -> datetime | None:
        days = self.policy.repeat_window_days
        return self.now - timedelta(days=days) if days else None


def contact_blocks(
    contacts: Iterable[LiveContact], rejected: Iterable[ApprovalRow], index: Mapping[str, int], count: int,
    treatments: Sequence[Treatment], context: ContactContext, *, words: bool = True,
) -> Blocks:
    """The contact policy's masks for ``count`` customers (``index``: id -> row), from their live contacts since
    ``context.since`` and the requests an approver rejected; ``words=False`` words nothing (a million-customer run).

    Counting is one pass over the ledger rows; each rule is then a comparison per treatment over every customer.
    """
    policy_ = context.policy
    window_start = utc_text(context.now - timedelta(days=policy_.window_days))
    repeat_start = context.repeat_start
    repeat_text = utc_text(repeat_start) if repeat_start is not None else None
    today = context.now.date()
    today_start = utc_text(policy.contact_day(context.now)[0])
    in_window: defaultdict[str, list[int]] = defaultdict(list)
    on_day: defaultdict[int, list[int]] = defaultdict(list)  # days after today -> rows, one per contact that day
    repeated: set[tuple[int, str]] = set()
    for cid, purpose, tid, contact_at in contacts:
        i = index.get(cid)
        if i is None:
            continue
        if contact_at > window_start:
            in_window[purpose].append(i)
        if repeat_text is not None and contact_at > repeat_text:
            repeated.add((i, tid))
        if contact_at >= today_start:
            on_day[(datetime.fromisoformat(contact_at).astimezone(context.now.tzinfo).date() - today).days].append(i)
    t = len(treatments)
    column = {tr.id: j for j, tr in enumerate(treatments)}
    blocks = Blocks({name: np.zeros((count, t), dtype=bool) for name in ("contact_limit", "daily_contact_limit", "repeat_limit", "approval_rejected")})
    masks, details = blocks.masks, blocks.details
    for j, treatment in enumerate(treatments):
        cap = policy.purpose_cap(policy_, treatment.purpose)
        if cap is None or treatment.id == IGNORE_ID:
            continue
        contacts_ = np.bincount(np.array(in_window[treatment.purpose], dtype=np.int64), minlength=count)
        masks["contact_limit"][:, j] = contacts_ >= cap
        if words:
            for i in np.flatnonzero(masks["contact_limit"][:, j]).tolist():
                details[("contact_limit", i, j)] = (
                    f"{contacts_[i]} {treatment.purpose} contact(s) in the last {policy_.window_days} days (cap {cap})")
    for i, tid in repeated:
        if tid in column and tid != IGNORE_ID:
            masks["repeat_limit"][i, column[tid]] = True
            if words:
                details[("repeat_limit", i, column[tid])] = f"already given to this customer in the last {policy_.repeat_window_days} days"
    _daily_cap(masks["daily_contact_limit"], details if words else None, on_day, treatments, context, count)
    if repeat_text is not None:
        for request in rejected:
            row, col = index.get(request.customer_id), column.get(request.treatment_id)
            # A request the system withdrew (consent or contact policy changed) was never an approver's verdict.
            if request.decided_by in SYSTEM_WITHDRAWERS:
                continue
            if row is not None and col is not None and (request.decided_at or "") > repeat_text:
                masks["approval_rejected"][row, col] = True
                if words:
                    details[("approval_rejected", row, col)] = (
                        f"rejected by {request.decided_by} on {(request.decided_at or '')[:10]}: {request.reason}")
    return blocks


def _daily_cap(
    blocked: np.ndarray, details: dict[tuple[str, int, int], str] | None, on_day: Mapping[int, list[int]],
    treatments: Sequence[Treatment], context: ContactContext, count: int,
) -> None:
    """The customer's contacts on the day the treatment's contact would happen already reach the daily cap.

    A contact by an interrupting channel happens when do-not-disturb lets it (``context.quiet_shift``, asked only of
    customers with a contact from today on: the others have none to count), maybe tomorrow; any other contact today.
    """
    caps = [policy.daily_cap(t, context.policy) for t in treatments]
    if all(cap is None for cap in caps) or not on_day:
        return
    tz, today = context.now.tzinfo, context.now.date()
    per_day = {days: np.bincount(np.array(rows, dtype=np.int64), minlength=count) for days, rows in on_day.items()}
    none = np.zeros(count, dtype=np.int64)
    shift = np.zeros(count, dtype=np.int64)  # days after today an interrupting contact would happen
    for i in {i for rows in on_day.values() for i in rows}:
        moved = context.quiet_shift(i)
        if moved is not None:
            shift[i] = (moved.astimezone(tz).date() - today).days
    interrupting = none.copy()
    for days in np.unique(shift).tolist():
        chosen = shift == days
        interrupting[chosen] = per_day.get(days, none)[chosen]
    for j, (treatment, cap) in enumerate(zip(treatments, caps, strict=True)):
        if cap is None:
            continue
        later = treatment.channel in policy.INTERRUPTING_CHANNELS
        contacts = interrupting if later else per_day.get(0, none)
        blocked[:, j] = contacts >= cap
        if details is not None:
            for i in np.flatnonzero(blocked[:, j]).tolist():
                day = datetime.combine(today + timedelta(days=int(shift[i]) if later else 0), time(), tzinfo=tz)
                details[("daily_contact_limit", i, j)] = policy.daily_cap_detail(int(contacts[i]), cap, day)


def refusals(
    masks: Mapping[str, np.ndarray], details: Mapping[tuple[str, int, int], str], i: int, treatments: Sequence[Treatment],
    journey: Journey, capacity: Callable[[int, Treatment], Alternative | None] | None = None,
) -> dict[str, Alternative]:
    """Customer ``i``'s refused treatments, with why: an approver's rejection first, then the screening order, then
    ``capacity`` (the caller's check of today's slots, for treatments nothing else refused), treatment by treatment.

    Eligibility and consent are worded from the customer's journey (``policy.eligibility_problem``,
    ``policy.consent_problem``); the contact rules from the details ``contact_blocks`` kept.
    """
    refused: dict[str, Alternative] = {}
    rejected = masks.get("approval_rejected")
    for k, t in enumerate(treatments):
        if rejected is not None and rejected[i, k]:
            refused[t.id] = _refusal("approval_rejected", details.get(("approval_rejected", i, k)), t)
    for k, t in enumerate(treatments):
        if t.id in refused:
            continue
        block = next((name for name in SCREEN_ORDER if name in masks and masks[name][i, k]), None)
        if block is not None:
            refused[t.id] = _refusal(block, details.get((block, i, k)) or _journey_words(block, t, journey), t)
        elif capacity is not None and (full := capacity(k, t)) is not None:
            refused[t.id] = full
    return refused


def _journey_words(block: str, treatment: Treatment, journey: Journey) -> str | None:
    if block == "not_eligible":
        return policy.eligibility_problem(treatment.eligibility, journey)
    if block == "no_consent":
        return policy.consent_problem(treatment, journey.permissions)
    return None


def _refusal(block: str, detail: str | None, treatment: Treatment) -> Alternative:
    reason, fallback = BLOCKS[block]
    return Alternative(treatment_id=treatment.id, reason=reason, detail=detail or fallback)


def one_customer_policy_blocks(journey: Journey, treatments: Sequence[Treatment]) -> dict[str, np.ndarray]:
    """``policy_blocks`` for one journey (N = 1): the features eligibility reads as one-row columns, its signals, its
    permissions' Y answers."""
    f = journey.features
    columns = {name: np.array([np.nan if (v := getattr(f, name)) is None else v], dtype=float) for name in vector.ELIGIBILITY_COLUMNS}
    active = {name: np.array([True]) for name in journey.signals}
    permissions = journey.permissions
    consent = {} if permissions is None else {
        (channel, purpose): np.array([yes]) for channel, answers in permissions.consents.items() for purpose, yes in answers.items()
    }
    return policy_blocks(columns, consent, active, treatments, 1)
