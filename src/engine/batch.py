"""The batch decision: every customer and every treatment at once, assigned by the global optimiser.

The per-customer path decides in arrival order, so scarce slots go to whoever
comes first. Here the same ``rules`` model (``cvm.decision.scoring``) scores a
customers x treatments matrix from the columnar features, the same policy
(enabled, eligibility, consent, contact cap, daily cap, repeat window, pending
approvals not yet expired) becomes boolean masks, and ``cvm.tools.optimizer.assign`` gives each slot to
the customer where it is worth most. When capacity does not bind, each
customer gets the allowed treatment with the highest positive expected value,
ties broken by priority then id: the per-customer choice.

The same rules as the per-customer path, through the same functions: ids are
checked by the Data agent's ``check_customer_id`` (a bad id is an error record,
the rest of the batch goes on), expired approval requests are expired by the
ledger before pending ones are read, and a re-run's recorded decisions are
re-checked by ``cvm.agents.allocation.recheck_replayed``.

The rules themselves are pure array functions (``cvm.decision.vector``, ``cvm.decision.screening``); the
runner reads the ledger for capacity, contacts and pending requests, and commits the run in one transaction.

Size: the batch decision's stages (masks, scores, assignment, records, commit) run in one pass over
shared arrays; a split would pass a dozen arrays between modules.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from json.encoder import encode_basestring_ascii

import numpy as np

from cvm.agents.allocation import CONTACT_STATUSES, recheck_replayed, waiting_refusal, withdraw_waiting
from cvm.agents.base import expect
from cvm.agents.data import DataAgent
from cvm.agents.governance import AUTO_APPROVER, approval_rule
from cvm.agents.messages import (
    Alternative,
    ApprovalRequestInfo,
    CustomerDataResponse,
    DecisionResult,
    GetCustomerData,
    Journey,
    Recommendation,
    RecommendTreatment,
)
from cvm.agents.orchestrator import Pick, decision_result, waiting_result
from cvm.agents.treatment import TreatmentAgent
from cvm.decision import screening, vector
from cvm.decision.journey import JourneyBuilder
from cvm.decision.policy import (
    INTERRUPTING_CHANNELS,
    contact_day,
    daily_cap,
    no_consent_detail,
)
from cvm.decision.scoring import (
    description_words,
    history_adjusted,
    similar_past_offers,
    treatment_kinds,
)
from cvm.tools.clock import Clock
from cvm.tools.columnar import ColumnarData, FeatureTable, kind_mask
from cvm.tools.data_source import FileDataSource
from cvm.tools.ledger import BatchCommit, Ledger, utc_text
from cvm.tools.ledger_models import CapacityTake, NewAllocation, NewApprovalRequest, NewDecision, StoredDecision
from cvm.tools.results import stored_form
from cvm.utils.config import IGNORE_ID, CVMConfig, Treatment
from cvm.utils.errors import InvalidCustomerIdError
from cvm.utils.ids import decision_key, new_approval_request_id
from cvm.utils.progress import NO_PROGRESS, Progress, Stage


def signals(features: FeatureTable, config: CVMConfig) -> dict[str, np.ndarray]:
    """The Journey agent's signals as boolean columns (``vector.signal_flags`` over the feature table)."""
    return vector.signal_flags(features.columns, features.interests, config.scoring)


@dataclass
class Scores:
    """Expected value per customer and treatment, and what went into it."""

    value: np.ndarray
    """(N, T) expected value, rounded to the penny as in the per-customer path."""
    relevance: np.ndarray
    p_accept: np.ndarray
    at_risk: np.ndarray


def score(features: FeatureTable, treatments: list[Treatment], config: CVMConfig, active: dict[str, np.ndarray]) -> Scores:
    """``cvm.decision.scoring.score`` for every customer and treatment at once (the formulas of ``cvm.decision.vector``)."""
    s = config.scoring
    c = features.columns
    risk = vector.at_risk(c["churn_probability"], c["monthly_revenue"], s)
    n, t = len(features), len(treatments)
    strength = vector.signal_strengths(active, c["churn_probability"])
    relevance = np.zeros((n, t))
    p_accept = np.empty((n, t))
    value = np.empty((n, t))
    for j, treatment in enumerate(treatments):
        relevance[:, j] = vector.relevance(strength, description_words(treatment), n)
        offer = features.offer_scores.get(treatment.id)
        p = np.full(n, s.default_acceptance) if offer is None else np.where(np.isnan(offer), s.default_acceptance, offer)
        p = with_history(p, features, treatment, s.offer_history_weight)
        p_accept[:, j] = p
        value[:, j] = vector.expected_value(p, risk, relevance[:, j], treatment)
    return Scores(value=value, relevance=relevance, p_accept=p_accept, at_risk=risk)


def with_history(prior: np.ndarray, features: FeatureTable, treatment: Treatment, weight: float) -> np.ndarray:
    """``scoring.history_adjusted`` for every customer: the customer's own accepts and declines of the same kind of offer.

    The bits find who has a similar decided offer; for those few customers the per-customer functions decide.
    """
    history = features.history
    mask = kind_mask(treatment_kinds(treatment))
    if history is None or not len(history.customer) or not mask or weight <= 0:
        return prior
    out = prior.copy()
    for i in np.unique(history.customer[(history.kinds & mask) != 0]).tolist():
        similar = similar_past_offers(treatment, history.past[i])
        if similar:
            out[i] = history_adjusted(float(prior[i]), similar, weight)
    return out


def missing_required(features: FeatureTable, active: dict[str, np.ndarray], required: list[str] | tuple[str, ...]) -> np.ndarray:
    """How many of ``validation.required_journey_fields`` each customer lacks (``vector.missing_fields``, as the
    Journey agent asks it for one customer)."""
    if not required:
        return np.zeros(len(features), dtype=np.int64)
    present = {**features.parts_present(), "signals": np.any(np.stack(list(active.values())), axis=0)}
    return vector.missing_fields(features.columns, present, required, len(features)).sum(axis=1)


def confidence(features: FeatureTable, value: np.ndarray, allowed: np.ndarray, quality_issues: np.ndarray) -> np.ndarray:
    """``cvm.decision.scoring.confidence`` for every customer (``vector.confidence`` over what the feature table knows)."""
    c = features.columns
    has_offer = features.has_offer_score
    if has_offer is None:
        has_offer = np.zeros(len(features), dtype=bool)
        for scores in features.offer_scores.values():
            has_offer |= ~np.isnan(scores)
    known = [~np.isnan(c["churn_probability"]), ~np.isnan(c["monthly_revenue"]), ~np.isnan(c["tenure_months"]),
             has_offer, features.has_permissions]
    return vector.confidence(known, value, allowed, quality_issues)


def approval_rules(
    choice: np.ndarray, treatments: list[Treatment], config: CVMConfig, confidence_: np.ndarray, revenue: np.ndarray
) -> list[str | None]:
    """The governance rule each chosen decision needs, as in the per-customer path."""
    policy = config.governance.approval_policy
    rules: list[str | None] = [None] * len(choice)
    for k in np.flatnonzero(choice >= 0):
        value = None if np.isnan(revenue[k]) else float(revenue[k])
        rules[k] = approval_rule(treatments[int(choice[k])], policy, confidence=float(confidence_[k]), customer_value=value)
    return rules


def contact_times(features: FeatureTable, choice: np.ndarray, treatments: list[Treatment], now: datetime) -> list[datetime | None]:
    """``policy.next_contact_time`` for every chosen contact (do-not-disturb, preferred time)."""
    times: list[datetime | None] = [None] * len(choice)
    for k in np.flatnonzero(choice >= 0):
        if treatments[int(choice[k])].channel in INTERRUPTING_CHANNELS:
            times[k] = quiet_hours_shift(features, int(k), now)
    return times


def quiet_hours_shift(features: FeatureTable, k: int, now: datetime) -> datetime | None:
    """When customer ``k`` may get an interrupting contact, if do-not-disturb forbids ``now``; None means now is fine."""
    quiet = features.do_not_disturb[k]
    preferred = features.preferred[k]
    return vector.quiet_hours_shift((int(quiet[0]), int(quiet[1])), (int(preferred[0]), int(preferred[1])), now)


@dataclass
class BatchOutcome:
    """What a batch run decided, in columns (for Parquet) and, for small runs, as result records."""

    run_id: str
    customer_ids: list[str]
    status: list[str]
    treatment: list[str | None]
    expected_value: np.ndarray
    confidence: np.ndarray
    scheduled_for: list[str | None]
    approval_request_id: list[str | None]
    approval_rule: list[str | None]
    errors: list[str | None]
    approved_by: list[str | None]
    """Who approved the decision (``auto-approve (testing)`` under ``--auto-approve``), as ``DecisionResult.approved_by``."""
    optimiser: dict[str, float | str]
    records: list[DecisionResult] | None = None

    def columns(self) -> dict[str, list | np.ndarray]:
        return {
            "customer_id": self.customer_ids, "status": self.status, "selected_treatment": self.treatment,
            "expected_value": self.expected_value, "confidence": self.confidence, "scheduled_for": self.scheduled_for,
            "approval_request_id": self.approval_request_id, "approval_rule": self.approval_rule, "approved_by": self.approved_by,
            "error": self.errors,
        }


class BatchRunner:
    """Reads columns, scores, masks, assigns, and commits a whole run in one ledger transaction."""

    def __init__(
        self, *, config: CVMConfig, data: ColumnarData, ledger: Ledger, clock: Clock, zone: tzinfo,
        run_id: str, dry_run: bool = False, auto_approve: bool = False, budget: float | None = None,
        progress: Progress = NO_PROGRESS,
    ):
        """``progress`` gets the run's stages in order: features, scoring, optimising, wording records (small runs
        only) and committing, so a million-customer run shows where it is."""
        self.config = config
        self.progress = progress
        self.data = data
        self.ledger = ledger
        self.clock = clock
        self.zone = zone
        self.run_id = run_id
        self.dry_run = dry_run
        self.auto_approve = auto_approve
        self.budget = budget if budget is not None else config.batch.budget_per_day
        self._details: dict[tuple[str, int, int], str] = {}
        self._journeys = JourneyBuilder(config.scoring, config.validation.required_journey_fields)
        # The per-customer path's Treatment agent (rules): result records rank and word a decision with it.
        self._treatment_agent = TreatmentAgent(config)
        # The per-customer path's Data agent for the same folder: its id check is the one both paths apply.
        self._data_agent = DataAgent(FileDataSource(data.data_dir), config.validation.customer_id_pattern)

    def run(self, customer_ids: list[str] | None = None, records_max: int | None = None) -> BatchOutcome:
        from cvm.tools.optimizer import assign

        now = self.clock.now()
        day = now.date().isoformat()
        if customer_ids is not None:
            customer_ids = list(dict.fromkeys(customer_ids))  # an id given twice is one customer, decided once
        treatments = list(self.config.treatments.values())
        offer_ids = [t.id for t in treatments]
        if not self.dry_run:
            self.ledger.expire_approvals(now)  # as the per-customer path does before deciding
        done = {} if self.dry_run else self._replays(self._decided_before(customer_ids), now, offer_ids)
        if customer_ids is None and not done:  # the common case: everyone, nothing decided yet in this run
            features = self.data.features(now.date(), self.config.scoring, offer_ids, progress=self.progress)
            errors = self._invalid_ids(features.customer_ids)
            if errors:  # rare: decide again without them, so a bad id never reaches scoring, capacity or the ledger
                todo = [cid for cid in features.customer_ids if cid not in errors]
                features = self.data.features(now.date(), self.config.scoring, offer_ids, todo, progress=self.progress)
        else:
            known = set(self.data.customer_ids())
            wanted = [cid for cid in (customer_ids if customer_ids is not None else sorted(known)) if cid not in done]
            errors = self._invalid_ids(wanted)
            errors.update({cid: f"unknown customer {cid}: no table in the data folder mentions it"
                           for cid in wanted if cid not in known and cid not in errors})
            todo = [cid for cid in wanted if cid not in errors]
            features = self.data.features(now.date(), self.config.scoring, offer_ids, todo, progress=self.progress)
        with self.progress.stage("scoring", 3) as stage:
            active = signals(features, self.config)
            features.quality_issues = features.quality_issues + missing_required(
                features, active, self.config.validation.required_journey_fields)
            stage.advance()
            scores = score(features, treatments, self.config, active)
            # Nothing non-finite is ever decided on or written: such a value is treated as not worth doing.
            scores.value[~np.isfinite(scores.value)] = np.nan
            stage.advance()
            blocked = screening.policy_blocks(features.columns, features.consent, active, treatments, len(features))
            waiting = self._waiting(features, now)  # first: a withdrawn request's hold no longer counts as a contact
            records_limit = self.config.batch.json_results_max if records_max is None else records_max
            blocked.update(self._contact_masks(features, treatments, now, words=len(features) <= records_limit))
            stage.advance()
        with self.progress.stage("optimising", 2) as stage:
            allowed = ~np.any(np.stack(list(blocked.values())), axis=0) & ~waiting[:, None]
            capacity = np.array([self._remaining(t, day) for t in treatments], dtype=float)
            costs = np.array([t.cost_per_contact for t in treatments])
            worth = allowed & (np.nan_to_num(scores.value, nan=0.0) > 0)
            result = assign(vector.tie_broken(np.nan_to_num(scores.value, nan=0.0), treatments), worth, capacity, cost=costs, budget=self.budget)
            choice = np.asarray(result.choice)
            stage.advance()
            conf = confidence(features, scores.value, allowed, features.quality_issues)
            revenue = features.columns["monthly_revenue"]
            rules = approval_rules(choice, treatments, self.config, conf, revenue)
            times = contact_times(features, choice, treatments, now)
            outcome = self._outcome(features, treatments, scores, choice, conf, rules, times, waiting, now)
            stage.advance()
        self._add_previous_and_errors(outcome, done, errors)
        outcome.optimiser = {
            "method": getattr(result, "method", "optimizer"), "total_value": float(result.total_value),
            "upper_bound": float(result.upper_bound), "gap": float(result.gap),
        }
        if len(outcome.customer_ids) <= records_limit:
            with self.progress.stage("wording records", len(outcome.customer_ids)) as stage:
                outcome.records = self._records(outcome, features, treatments, choice, blocked, waiting, capacity, now, stage)
        if not self.dry_run:
            with self.progress.stage("committing", len(features)) as stage:
                self.ledger.commit_batch(self._commit_rows(outcome, treatments, features, choice, scores, waiting, now, day, stage))
        return outcome

    # -- ids and replays, as on the per-customer path ------------------------------

    def _invalid_ids(self, ids: list[str] | np.ndarray) -> dict[str, str]:
        """Ids the per-customer path refuses (``validation.customer_id_pattern``), with its error message."""
        errors: dict[str, str] = {}
        for cid in ids:
            try:
                self._data_agent.check_customer_id(cid)
            except InvalidCustomerIdError as exc:
                errors[cid] = str(exc)
        return errors

    def _decided_before(self, customer_ids: list[str] | None) -> dict[str, StoredDecision]:
        """This run's recorded decisions of the customers asked for (all of them when none were named), as the
        per-customer path replays only the customers it is given."""
        decided = self.ledger.decided_in_run(self.run_id)
        if customer_ids is None:
            return decided
        return {cid: decided[cid] for cid in customer_ids if cid in decided}

    def _replays(self, done: dict[str, StoredDecision], now: datetime, offer_ids: list[str]) -> dict[str, DecisionResult]:
        """This run's recorded decisions, each contact re-checked against today's consent and contact policy."""
        replayed = {cid: DecisionResult.model_validate({**stored.result, "replayed": True}) for cid, stored in done.items()}
        contacts = [cid for cid, result in replayed.items() if result.status in CONTACT_STATUSES]
        if not contacts:
            return replayed
        today = self.data.features(now.date(), self.config.scoring, offer_ids, contacts)
        for i, cid in enumerate(contacts):
            no_consent = self._no_consent(today, i, self.config.treatment(replayed[cid].selected_treatment or IGNORE_ID))
            replayed[cid] = recheck_replayed(self.ledger, self.config, replayed[cid], self.run_id, no_consent, now)
        return replayed

    # -- masks and capacity from the ledger ---------------------------------------

    def _contact_masks(
        self, features: FeatureTable, treatments: list[Treatment], now: datetime, *, words: bool,
    ) -> dict[str, np.ndarray]:
        """``screening.contact_blocks`` over every customer, from the ledger's live contacts and rejected requests.

        ``words``: keep the words of each refusal, for a run that gets result records.
        """
        context = screening.ContactContext(self.config.policies.contact, now, lambda i: quiet_hours_shift(features, i, now))
        index = {cid: i for i, cid in enumerate(features.customer_ids)}
        repeat_start = context.repeat_start
        rejected = [] if repeat_start is None else self.ledger.approvals(status="rejected", decided_since=repeat_start)
        blocks = screening.contact_blocks(self.ledger.live_contacts_since(context.since), rejected, index, len(features),
                                          treatments, context, words=words)
        self._details = blocks.details
        return blocks.masks

    def _waiting(self, features: FeatureTable, now: datetime) -> np.ndarray:
        """Customers with a request still waiting from an earlier run, as on the per-customer path.

        A request that may no longer go ahead (``waiting_refusal``: its treatment left the
        configuration, or today's permissions refuse it) is withdrawn (in a real run) and
        its customer decided afresh.
        """
        pending = self.ledger.pending_by_customer(now)
        self._pending = {}
        for i, cid in enumerate(features.customer_ids if pending else ()):
            request = pending.get(cid)
            if request is None:
                continue
            refused = waiting_refusal(self.config, request.treatment_id, functools.partial(self._no_consent, features, i))
            if refused is None:
                self._pending[cid] = request
            elif not self.dry_run:
                withdraw_waiting(self.ledger, request, *refused, now)
        return np.array([cid in self._pending for cid in features.customer_ids], dtype=bool)

    @staticmethod
    def _no_consent(features: FeatureTable, i: int, treatment: Treatment) -> str | None:
        """Why customer ``i`` of ``features`` has not consented to ``treatment`` (no explicit Y), or None."""
        consent = features.consent.get((treatment.channel, treatment.purpose))
        return None if consent is not None and consent[i] else no_consent_detail(treatment)

    def _remaining(self, treatment: Treatment, day: str) -> float:
        if not treatment.enabled:
            return 0.0
        if treatment.max_per_day is None:
            return np.inf
        return float(max(0, treatment.max_per_day - self.ledger.used(treatment.id, day)))

    # -- the outcome --------------------------------------------------------------

    def _outcome(
        self, features: FeatureTable, treatments: list[Treatment], scores: Scores, choice: np.ndarray, conf: np.ndarray,
        rules: list[str | None], times: list[datetime | None], waiting: np.ndarray, now: datetime,
    ) -> BatchOutcome:
        """Status, treatment and approval fields per customer, vectorised (only decided rows are visited)."""
        n = len(features)
        ids = [t.id for t in treatments] + [IGNORE_ID]
        treatment = np.array(ids, dtype=object)[np.where(choice >= 0, choice, len(treatments))]
        ev = np.where(choice >= 0, scores.value[np.arange(n), np.maximum(choice, 0)], 0.0)
        status = np.where(choice >= 0, "success", "no_action").astype(object)
        request_ids: list[str | None] = [None] * n
        applied: list[str | None] = list(rules)
        approved_by: list[str | None] = [None] * n
        for i in np.flatnonzero(choice >= 0):
            if rules[i] is None:
                continue
            if not self.dry_run:  # as on the per-customer path, a dry run opens no request, so it names none
                request_ids[i] = new_approval_request_id(now)
            if self.auto_approve:
                approved_by[i] = AUTO_APPROVER
            else:
                status[i] = "pending_approval"
        for i in np.flatnonzero(waiting):
            pending = self._pending[features.customer_ids[i]]
            status[i], treatment[i] = "pending_approval", pending.treatment_id
            request_ids[i], applied[i], ev[i] = pending.request_id, pending.rule, pending.expected_value or 0.0
        outcome = BatchOutcome(
            run_id=self.run_id, customer_ids=list(features.customer_ids), status=status.tolist(), treatment=treatment.tolist(),
            expected_value=ev, confidence=conf,
            scheduled_for=[t.astimezone(self.zone).isoformat() if t else None for t in times],
            approval_request_id=request_ids, approval_rule=applied, errors=[None] * n, approved_by=approved_by, optimiser={},
        )
        return outcome

    def _add_previous_and_errors(self, outcome: BatchOutcome, done: dict[str, DecisionResult], errors: dict[str, str]) -> None:
        """Decisions this run already recorded come back (re-checked); bad or unknown ids are error records."""
        extra_ev, extra_conf = [], []
        approved_by = outcome.approved_by
        for cid, result in done.items():
            outcome.customer_ids.append(cid)
            outcome.status.append(result.status)
            outcome.treatment.append(result.selected_treatment)
            extra_ev.append(result.expected_value or 0.0)
            extra_conf.append(result.confidence if result.confidence is not None else np.nan)
            outcome.scheduled_for.append(result.scheduled_for)
            outcome.approval_request_id.append(result.approval_request_id)
            outcome.approval_rule.append(result.approval_rule)
            outcome.errors.append(result.error)
            approved_by.append(result.approved_by)
        for cid, error in errors.items():
            outcome.customer_ids.append(cid)
            outcome.status.append("error")
            outcome.treatment.append(None)
            extra_ev.append(np.nan)
            extra_conf.append(np.nan)
            outcome.scheduled_for.append(None)
            outcome.approval_request_id.append(None)
            outcome.approval_rule.append(None)
            outcome.errors.append(error)
            approved_by.append(None)
        outcome.expected_value = np.concatenate([outcome.expected_value, np.array(extra_ev, dtype=float)])
        outcome.confidence = np.concatenate([outcome.confidence, np.array(extra_conf, dtype=float)])
        self._replayed = done

    def _commit_rows(
        self, outcome: BatchOutcome, treatments: list[Treatment], features: FeatureTable, choice: np.ndarray,
        scores: Scores, waiting: np.ndarray, now: datetime, day: str, stage: Stage,
    ) -> BatchCommit:
        """Ledger rows: an allocation (or hold) and maybe a request per assigned customer, a decision per customer."""
        by_id = {t.id: t for t in treatments}
        decided_at = utc_text(now)
        expiry = utc_text(now + timedelta(hours=self.config.governance.approval_policy.expiry_hours))
        approved_by = outcome.approved_by
        allocations, approvals = [], []
        taken: Counter[str] = Counter()
        contact = self.config.policies.contact
        daily_windows: list[tuple[str, str, str]] = []
        day_windows: dict[date, tuple[str, str]] = {}  # a run's contacts fall on one or two days: convert each once
        for i in np.flatnonzero((choice >= 0) & ~waiting):
            j = int(choice[i])
            t, cid, key = treatments[j], outcome.customer_ids[i], decision_key(self.run_id, outcome.customer_ids[i])
            scheduled = outcome.scheduled_for[i]
            scheduled_utc = utc_text(datetime.fromisoformat(scheduled)) if scheduled else None
            if daily_cap(t, contact) is not None:
                moment = datetime.fromisoformat(scheduled) if scheduled else now
                if moment.date() not in day_windows:
                    start, end = contact_day(moment)
                    day_windows[moment.date()] = (utc_text(start), utc_text(end))
                daily_windows.append((cid, *day_windows[moment.date()]))
            held = outcome.status[i] == "pending_approval"
            allocations.append(NewAllocation(key, self.run_id, cid, t.id, t.channel, t.purpose, day, scheduled_utc or decided_at,
                                scheduled_utc, decided_at, "held" if held else "allocated"))
            taken[t.id] += 1
            request_id, rule = outcome.approval_request_id[i], outcome.approval_rule[i]
            if request_id:
                assert rule is not None  # a request is made only where an approval rule applies
                auto = approved_by[i] is not None
                approvals.append(NewApprovalRequest(
                    request_id, key, self.run_id, cid, t.id, day, rule,
                    "batch optimiser: " + _formula(scores, int(i), int(j), t), float(outcome.confidence[i]),
                    float(outcome.expected_value[i]), t.priority, decided_at, expiry,
                    "approved" if auto else "pending", approved_by[i], decided_at if auto else None,
                    "--auto-approve" if auto else None,
                ))
        n = len(features)
        texts = _counted(
            (stored_decision(record) for record in itertools.islice(outcome.records, n)) if outcome.records is not None
            else _decision_texts(outcome, n, by_id),
            stage,
        )
        # Lazily, row by row: a million decision rows go to SQLite without being held in memory at once (nor
        # copies of the columns). tuple.__new__ makes each NewDecision in C (its own __new__ is a Python call per row).
        decisions: Iterator[NewDecision] = map(functools.partial(tuple.__new__, NewDecision), zip(
            itertools.repeat(self.run_id), itertools.islice(outcome.customer_ids, n), itertools.islice(outcome.status, n),
            itertools.islice(outcome.treatment, n), texts, features.digests, itertools.repeat(decided_at), strict=False,
        ))
        summary = {
            "customers": len(features), "allocations": len(allocations), "approval_requests": len(approvals),
            "by_treatment": dict(sorted(taken.items())), "optimiser": outcome.optimiser,
        }
        return BatchCommit(run_id=self.run_id, day=day, at=now, capacity={tid: CapacityTake(k, by_id[tid].max_per_day) for tid, k in taken.items()},
                           allocations=allocations, approvals=approvals, decisions=decisions, summary=summary,
                           daily_cap=contact.max_contacts_per_day, daily_windows=tuple(daily_windows))

    # -- result records for small runs ---------------------------------------------

    def _records(
        self, outcome: BatchOutcome, features: FeatureTable, treatments: list[Treatment], choice: np.ndarray,
        blocked: dict[str, np.ndarray], waiting: np.ndarray, capacity: np.ndarray, now: datetime, stage: Stage,
    ) -> list[DecisionResult]:
        """The JSON result contract, built as the per-customer path builds it.

        Each customer's journey is the per-customer one (its Data agent and journey builder), the
        ranking comes from its Treatment agent over the treatments the policy allows, and the record
        is worded by ``orchestrator.decision_result`` (``waiting_result`` for a customer whose
        request is still waiting): only the choice itself is the optimiser's. Every treatment the
        customer would rather have had, that the optimiser gave to others, is ``capacity_exhausted``,
        as the per-customer walk reports a treatment whose slots ran out.
        """
        by_id = {t.id: t for t in treatments}
        records = []
        for i in range(len(outcome.customer_ids)):
            stage.advance()
            cid = outcome.customer_ids[i]
            if i >= len(features):
                replayed = self._replayed.get(cid)
                records.append(
                    replayed if replayed is not None
                    else DecisionResult(customer_id=cid, status="error", error=outcome.errors[i], dry_run=self.dry_run)
                )
                continue
            journey = self._journey(cid, now)
            if waiting[i]:
                request = ApprovalRequestInfo.model_validate(self._pending[cid].model_dump(exclude={"idempotency_key"}))
                records.append(waiting_result(self.config, journey, request, self.dry_run))
                continue
            rejected = self._refused(i, treatments, blocked, capacity, journey)
            allowed = tuple(t.id for t in treatments if t.id not in rejected)
            recommendation = expect(self._treatment_agent.process(RecommendTreatment(journey=journey, allowed=allowed)), Recommendation)
            j = int(choice[i])
            chosen = treatments[j].id if j >= 0 else IGNORE_ID
            for candidate in recommendation.candidates:  # what the customer would rather have had went to others
                if candidate.treatment_id in (chosen, IGNORE_ID):
                    break
                rejected[candidate.treatment_id] = Alternative(
                    treatment_id=candidate.treatment_id, reason="capacity_exhausted", expected_value=candidate.expected_value,
                    detail="the optimiser gave the slots (or budget) to customers where they are worth more",
                )
            pick = None
            if j >= 0:
                candidate = next(c for c in recommendation.candidates if c.treatment_id == chosen)
                pick = Pick(candidate, outcome.scheduled_for[i], outcome.approval_request_id[i], outcome.approval_rule[i],
                            outcome.approved_by[i])
                assert by_id[chosen].id == outcome.treatment[i]
            records.append(decision_result(self.config, self.zone, self.dry_run, journey, recommendation, pick, rejected))
        return records

    def _journey(self, customer_id: str, now: datetime) -> Journey:
        """The customer's journey as the per-customer path builds it (its Data agent and journey builder)."""
        data = expect(self._data_agent.process(GetCustomerData(customer_id=customer_id)), CustomerDataResponse).data
        return self._journeys.build(data, now)

    def _refused(
        self, i: int, treatments: list[Treatment], blocked: dict[str, np.ndarray], capacity: np.ndarray, journey: Journey,
    ) -> dict[str, Alternative]:
        """The treatments the policy refuses this customer, with why (``screening.refusals``), then today's capacity."""
        def full(k: int, t: Treatment) -> Alternative | None:
            if capacity[k] > 0:
                return None
            return Alternative(treatment_id=t.id, reason="capacity_exhausted", detail=f"all {t.max_per_day} of today's slots are used")

        return screening.refusals(blocked, self._details, i, treatments, journey, capacity=full)


def _formula(scores: Scores, i: int, j: int, t: Treatment) -> str:
    p, value = scores.p_accept[i, j], scores.at_risk[i] * scores.relevance[i, j] + t.value_per_accept
    return f"expected value {p:.0%} x £{value:,.2f} - £{t.cost_per_contact:,.2f} = £{scores.value[i, j]:,.2f}"


def stored_decision(result: DecisionResult) -> str:
    """A decision as the ledger stores it on the per-customer path (``record_decision``): ``stored_form``, keys sorted."""
    return json.dumps(stored_form(result), sort_keys=True, default=str)


def _stored_template(varying: tuple[str, ...], fixed: dict[str, object]) -> str:
    """``stored_decision``'s JSON text with a ``%s`` for each field in ``varying`` (filled with JSON values, in name order).

    Built once from ``DecisionResult``'s own fields, so a large run stores what validates back into the
    same record as the per-customer path (a varying field is written even when it holds its default),
    keys sorted as ``json.dumps(sort_keys=True)`` sorts them. A million
    rows each validated into a model and dumped would cost seconds per hundred thousand; a filled
    template costs a few ``json.dumps`` of scalars.
    """
    unknown = (set(varying) | set(fixed)) - set(DecisionResult.model_fields)
    if unknown:
        raise ValueError(f"not DecisionResult fields: {sorted(unknown)}")
    # The required fields, what the run fixes, and a slot for each varying one (stored_form drops the other defaults).
    fields = stored_form(DecisionResult(customer_id="", status="no_action")) | fixed | dict.fromkeys(varying)
    parts = [
        f"{json.dumps(name)}: " + ("%s" if name in varying else json.dumps(value, sort_keys=True).replace("%", "%%"))
        for name, value in sorted(fields.items())
    ]
    return "{" + ", ".join(parts) + "}"


# Large runs keep no result records, so their stored decisions carry what the columns hold; the wording,
# reasons and alternatives are in the result records of small runs (``batch.json_results_max``).
_LARGE_RUN_EXPLANATION = "decided by the batch optimiser (runs above batch.json_results_max keep no worded result record)"
_NO_ACTION_JSON = _stored_template(
    ("confidence", "customer_id"),
    {"status": "no_action", "selected_treatment": IGNORE_ID, "display_name": "No action", "channel": "none",
     "expected_value": 0.0, "selector": "rules", "explanation": _LARGE_RUN_EXPLANATION},
)
_GIVEN_FIELDS = ("approval_request_id", "approval_rule", "approved_by", "confidence", "customer_id", "expected_value",
                 "scheduled_for", "status")
"""What varies between the stored decisions giving one treatment (in name order, as the template fills them)."""


@functools.lru_cache(maxsize=1024)
def _given_json(treatment: Treatment) -> str:
    """The stored-decision template of a run giving ``treatment``: its own fields written in once."""
    return _stored_template(_GIVEN_FIELDS, {
        "selected_treatment": treatment.id, "display_name": treatment.display_name, "channel": treatment.channel,
        "purpose": treatment.purpose, "requires_approval": treatment.requires_approval, "selector": "rules",
        "explanation": _LARGE_RUN_EXPLANATION,
    })


def _counted(items: Iterator[str], stage: Stage, every: int = 16384) -> Iterator[str]:
    """``items`` unchanged, the stage advanced as each ``every`` of them are handed on (not per item: a million calls).

    Advanced before a chunk is yielded: a consumer that stops at the last item never resumes the generator.
    """
    for chunk in iter(lambda: list(itertools.islice(items, every)), []):
        stage.advance(len(chunk))
        yield from chunk


def _decision_texts(outcome: BatchOutcome, n: int, treatments: dict[str, Treatment]) -> Iterator[str]:
    """``_decision_json`` of the first ``n`` customers, lazily; the no-action rows (nearly all) without a call each.

    ``encode_basestring_ascii`` is what ``json.dumps`` does with a string, without its Python-level layers.
    """
    no_action = _NO_ACTION_JSON
    columns = zip(outcome.status, outcome.customer_ids, map(float, outcome.confidence[:n]), strict=False)  # the first n
    for i, (status, cid, conf) in enumerate(columns):
        if status == "no_action":
            yield no_action % (repr(conf), encode_basestring_ascii(cid))
        else:
            yield _decision_json(outcome, i, treatments)


def _decision_json(outcome: BatchOutcome, i: int, treatments: dict[str, Treatment]) -> str:
    """The stored decision of a large run (``stored_decision``'s shape), by template; the common no-action row cheapest."""
    dump = json.dumps
    if outcome.status[i] == "no_action":
        return _NO_ACTION_JSON % (repr(float(outcome.confidence[i])), dump(outcome.customer_ids[i]))
    return _given_json(treatments[str(outcome.treatment[i])]) % (
        dump(outcome.approval_request_id[i]), dump(outcome.approval_rule[i]), dump(outcome.approved_by[i]),
        repr(float(outcome.confidence[i])), dump(outcome.customer_ids[i]), repr(round(float(outcome.expected_value[i]), 2)),
        dump(outcome.scheduled_for[i]), dump(outcome.status[i]),
    )
