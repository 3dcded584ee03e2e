"""Flow-run state in the ledger's database: one row per run, one per step, written as each step moves.

Same style as the ledger (``cvm.tools.ledger``): one SQLite file in WAL mode, a
connection per thread, every write inside ``BEGIN IMMEDIATE``. A step's row is
written when the run starts (``pending``), when the step starts (``running``,
with its attempt number), after each failed attempt, and when it finishes
(``succeeded``/``failed`` with timing, output JSON, its SHA-256 digest and the
error) or is ``skipped``. So a run killed at any instant leaves a record from
which ``resume`` knows exactly which steps are done. The failure notifications
sent when a run ended failed or partial are kept beside it (``flow_notifications``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from cvm.tools.sqlite_store import SQLiteStore
from cvm.utils.errors import FlowError

RunStatus = Literal["running", "succeeded", "failed", "partial"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS flow_runs (
    run_id       TEXT PRIMARY KEY,
    flow_id      TEXT NOT NULL,
    flow_version TEXT NOT NULL,
    flow_file    TEXT NOT NULL,
    flow_digest  TEXT NOT NULL,
    inputs_json  TEXT NOT NULL,
    options_json TEXT NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    run_clock    TEXT NOT NULL,
    finished_at  TEXT,
    owner        TEXT,
    resumes      INTEGER NOT NULL DEFAULT 0,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS flow_runs_by_start ON flow_runs (started_at);
CREATE TABLE IF NOT EXISTS flow_steps (
    run_id        TEXT NOT NULL REFERENCES flow_runs (run_id),
    step_id       TEXT NOT NULL,
    position      INTEGER NOT NULL,
    agent         TEXT NOT NULL,
    action        TEXT NOT NULL,
    depends_on    TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    started_at    TEXT,
    finished_at   TEXT,
    duration_s    REAL,
    output_json   TEXT,
    output_digest TEXT,
    error         TEXT,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS flow_notifications (
    run_id          TEXT NOT NULL REFERENCES flow_runs (run_id),
    at              TEXT NOT NULL,
    run_status      TEXT NOT NULL,
    recipients_json TEXT NOT NULL,
    status          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    notification_id TEXT
);
CREATE INDEX IF NOT EXISTS flow_notifications_by_run ON flow_notifications (run_id);
"""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def canonical_json(value: Any) -> str:
    """The JSON text whose SHA-256 is a step's output digest (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StepRecord:
    """One step of one run, as stored."""

    step_id: str
    position: int
    agent: str
    action: str
    depends_on: tuple[str, ...]
    status: StepStatus
    attempts: int
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    output: Any
    """The response as JSON (``None`` until the step succeeded)."""
    output_digest: str | None
    error: str | None

    def as_dict(self, with_output: bool = True) -> dict[str, Any]:
        body = {
            "step_id": self.step_id, "agent": self.agent, "action": self.action, "depends_on": list(self.depends_on),
            "status": self.status, "attempts": self.attempts, "started_at": self.started_at,
            "finished_at": self.finished_at, "duration_seconds": self.duration_seconds,
            "output_digest": self.output_digest, "error": self.error,
        }
        if with_output:
            body["output"] = self.output
        return body


@dataclass(frozen=True)
class FlowRunRecord:
    """One run, with its steps in flow order."""

    run_id: str
    flow_id: str
    flow_version: str
    flow_file: str
    flow_digest: str
    inputs: dict[str, Any]
    options: dict[str, Any]
    status: RunStatus
    started_at: str
    run_clock: str
    """The run's clock at its first start (``${run.started_at}``; the ``--as-of`` instant when one was given)."""
    finished_at: str | None
    owner: str | None
    resumes: int
    error: str | None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    notifications: tuple[dict[str, Any], ...] = ()
    """Failure notifications of this run, oldest first: ``{at, run_status, recipients, status, detail, notification_id}``."""

    def step(self, step_id: str) -> StepRecord:
        try:
            return self.steps[step_id]
        except KeyError:
            raise FlowError(f"run {self.run_id} has no step {step_id!r}; its steps are: {', '.join(self.steps)}") from None

    def output(self, step_id: str) -> Any:
        """A step's stored output (``None`` when it did not succeed)."""
        return self.step(step_id).output

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for s in self.steps.values():
            found[s.status] = found.get(s.status, 0) + 1
        return found

    def as_dict(self, with_outputs: bool = True) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "flow_id": self.flow_id, "flow_version": self.flow_version,
            "flow_file": self.flow_file, "flow_digest": self.flow_digest, "inputs": self.inputs, "options": self.options,
            "status": self.status, "started_at": self.started_at, "run_clock": self.run_clock,
            "finished_at": self.finished_at, "resumes": self.resumes, "error": self.error,
            "steps": [s.as_dict(with_outputs) for s in self.steps.values()],
            "notifications": list(self.notifications),
        }


@dataclass(frozen=True)
class NewRun:
    """What is known when a run starts."""

    run_id: str
    flow_id: str
    flow_version: str
    flow_file: str
    flow_digest: str
    inputs: dict[str, Any]
    options: dict[str, Any]
    run_clock: str
    owner: str


@dataclass(frozen=True)
class NewStep:
    step_id: str
    agent: str
    action: str
    depends_on: tuple[str, ...]


class FlowStore(SQLiteStore):
    """Flow runs and steps in the SQLite file the ledger uses (``CVM_DB_URL``)."""

    SCHEMA = SCHEMA
    label = "flow-run store"

    # -- runs ------------------------------------------------------------------

    def create_run(self, run: NewRun, steps: Sequence[NewStep]) -> FlowRunRecord:
        """Record a new run with every step ``pending``; a run id already used is a ``FlowError``."""
        with self._transaction() as conn:
            existing = conn.execute("SELECT flow_id, status FROM flow_runs WHERE run_id = ?", (run.run_id,)).fetchone()
            if existing is not None:
                raise FlowError(
                    f"run {run.run_id} already exists (flow {existing['flow_id']}, {existing['status']}); "
                    f"continue it with 'cvm flows resume {run.run_id}' or choose another --run-id"
                )
            conn.execute(
                "INSERT INTO flow_runs (run_id, flow_id, flow_version, flow_file, flow_digest, inputs_json, options_json,"
                " status, started_at, run_clock, owner) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    run.run_id, run.flow_id, run.flow_version, run.flow_file, run.flow_digest,
                    canonical_json(run.inputs), canonical_json(run.options), _iso(utc_now()), run.run_clock, run.owner,
                ),
            )
            conn.executemany(
                "INSERT INTO flow_steps (run_id, step_id, position, agent, action, depends_on) VALUES (?, ?, ?, ?, ?, ?)",
                [(run.run_id, s.step_id, i, s.agent, s.action, json.dumps(list(s.depends_on))) for i, s in enumerate(steps)],
            )
        return self.require_run(run.run_id)

    def claim_for_resume(self, run_id: str, expected_owner: str | None, owner: str) -> FlowRunRecord:
        """Take over a run that stopped: its unfinished steps go back to ``pending``; finished ones stay.

        A compare-and-set on the owner the caller saw, so two resumes of the same run cannot both win.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT status, owner FROM flow_runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise FlowError(f"no flow run {run_id!r}; see 'cvm flows runs'")
            if row["status"] == "succeeded":
                raise FlowError(f"run {run_id} already succeeded; nothing to resume (start a new run with 'cvm flows run')")
            if row["owner"] != expected_owner:
                raise FlowError(f"run {run_id} was taken over by {row['owner']} while resuming; check 'cvm flows show {run_id}'")
            conn.execute(
                "UPDATE flow_runs SET status = 'running', finished_at = NULL, error = NULL, owner = ?, resumes = resumes + 1"
                " WHERE run_id = ?",
                (owner, run_id),
            )
            conn.execute(
                "UPDATE flow_steps SET status = 'pending', attempts = 0, started_at = NULL, finished_at = NULL,"
                " duration_s = NULL, output_json = NULL, output_digest = NULL, error = NULL"
                " WHERE run_id = ? AND status != 'succeeded'",
                (run_id,),
            )
        return self.require_run(run_id)

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        with self._transaction() as conn:
            conn.execute(
                "UPDATE flow_runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                (status, _iso(utc_now()), error, run_id),
            )

    # -- steps -----------------------------------------------------------------

    def step_started(self, run_id: str, step_id: str, attempt: int, at: datetime) -> None:
        """The step's attempt ``attempt`` began (the first one also sets ``started_at``)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE flow_steps SET status = 'running', attempts = ?, started_at = COALESCE(started_at, ?), error = NULL"
                " WHERE run_id = ? AND step_id = ?",
                (attempt, _iso(at), run_id, step_id),
            )

    def attempt_failed(self, run_id: str, step_id: str, attempt: int, error: str) -> None:
        """An attempt failed and another will follow: the error is kept until the next one finishes."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE flow_steps SET attempts = ?, error = ? WHERE run_id = ? AND step_id = ?",
                (attempt, error, run_id, step_id),
            )

    def step_finished(
        self, run_id: str, step_id: str, *, status: Literal["succeeded", "failed"], attempts: int,
        started_at: datetime, finished_at: datetime, output: Any = None, error: str | None = None,
    ) -> str | None:
        """The step's final state; returns the output digest (``None`` for a failure)."""
        body = canonical_json(output) if status == "succeeded" else None
        sha = hashlib.sha256(body.encode("utf-8")).hexdigest() if body is not None else None
        with self._transaction() as conn:
            conn.execute(
                "UPDATE flow_steps SET status = ?, attempts = ?, started_at = ?, finished_at = ?, duration_s = ?,"
                " output_json = ?, output_digest = ?, error = ? WHERE run_id = ? AND step_id = ?",
                (
                    status, attempts, _iso(started_at), _iso(finished_at),
                    round((finished_at - started_at).total_seconds(), 6), body, sha, error, run_id, step_id,
                ),
            )
        return sha

    def steps_skipped(self, run_id: str, reasons: dict[str, str]) -> None:
        """Mark steps that will not run, each with why."""
        if not reasons:
            return
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE flow_steps SET status = 'skipped', error = ? WHERE run_id = ? AND step_id = ? AND status = 'pending'",
                [(reason, run_id, step_id) for step_id, reason in reasons.items()],
            )

    def notification_recorded(
        self, run_id: str, *, run_status: str, recipients: Sequence[str], status: Literal["sent", "failed", "not_sent"],
        detail: str, notification_id: str | None = None,
    ) -> None:
        """What became of the failure notification of a run that ended failed or partial."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO flow_notifications (run_id, at, run_status, recipients_json, status, detail, notification_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, _iso(utc_now()), run_status, json.dumps(list(recipients)), status, detail, notification_id),
            )

    # -- reading ---------------------------------------------------------------

    def run(self, run_id: str) -> FlowRunRecord | None:
        conn = self._connection()
        row = conn.execute("SELECT * FROM flow_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        steps = conn.execute("SELECT * FROM flow_steps WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        sent = conn.execute("SELECT * FROM flow_notifications WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        notifications = tuple(
            {"at": n["at"], "run_status": n["run_status"], "recipients": json.loads(n["recipients_json"]), "status": n["status"],
             "detail": n["detail"], "notification_id": n["notification_id"]}
            for n in sent
        )
        return replace(_run_record(row, [_step_record(s) for s in steps]), notifications=notifications)

    def require_run(self, run_id: str) -> FlowRunRecord:
        found = self.run(run_id)
        if found is None:
            raise FlowError(f"no flow run {run_id!r}; see 'cvm flows runs'")
        return found

    def runs(self, *, flow_id: str | None = None, status: str | None = None, limit: int = 20) -> list[FlowRunRecord]:
        """The most recent runs first (steps included, outputs not loaded)."""
        clauses, params = [], []
        if flow_id is not None:
            clauses.append("flow_id = ?")
            params.append(flow_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        conn = self._connection()
        rows = conn.execute(f"SELECT * FROM flow_runs {where} ORDER BY started_at DESC, run_id LIMIT ?", (*params, limit)).fetchall()
        found = []
        for row in rows:
            steps = conn.execute(
                "SELECT run_id, step_id, position, agent, action, depends_on, status, attempts, started_at, finished_at,"
                " duration_s, NULL AS output_json, output_digest, error FROM flow_steps WHERE run_id = ? ORDER BY position",
                (row["run_id"],),
            ).fetchall()
            found.append(_run_record(row, [_step_record(s) for s in steps]))
        return found


def _step_record(row: sqlite3.Row) -> StepRecord:
    return StepRecord(
        step_id=row["step_id"], position=row["position"], agent=row["agent"], action=row["action"],
        depends_on=tuple(json.loads(row["depends_on"])), status=row["status"], attempts=row["attempts"],
        started_at=row["started_at"], finished_at=row["finished_at"], duration_seconds=row["duration_s"],
        output=json.loads(row["output_json"]) if row["output_json"] is not None else None,
        output_digest=row["output_digest"], error=row["error"],
    )


def _run_record(row: sqlite3.Row, steps: list[StepRecord]) -> FlowRunRecord:
    return FlowRunRecord(
        run_id=row["run_id"], flow_id=row["flow_id"], flow_version=row["flow_version"], flow_file=row["flow_file"],
        flow_digest=row["flow_digest"], inputs=json.loads(row["inputs_json"]), options=json.loads(row["options_json"]),
        status=row["status"], started_at=row["started_at"], run_clock=row["run_clock"], finished_at=row["finished_at"],
        owner=row["owner"], resumes=row["resumes"], error=row["error"], steps={s.step_id: s for s in steps},
    )
