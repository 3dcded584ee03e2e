"""Wiring: settings + flags -> config, tools and agents, ready to decide: the one composition root.

The only place that chooses implementations (file data source, SQLite ledger,
OpenAI client, clock) and builds runners and stores (the runtime and its
agents, the governance tools, the flow store and runner, the custom-treatments
store); agents receive them and never build their own, and the CLIs ask here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cvm.agents.allocation import AllocationAgent
from cvm.agents.base import BaseAgent
from cvm.agents.data import DataAgent
from cvm.agents.decision import DecisionAgent
from cvm.agents.execution import ExecutionAgent
from cvm.agents.governance import GovernanceAgent
from cvm.agents.insight import InsightAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.orchestrator import PathChoosingOrchestrator
from cvm.agents.report import ReportAgent
from cvm.agents.treatment import LLMSelector, TreatmentAgent
from cvm.agents.trigger import LLMSemanticMatcher, TriggerAgent
from cvm.decision.journey import JourneyBuilder
from cvm.engine.deciding import Decider
from cvm.tools.churn_feed import PortfolioData
from cvm.tools.clock import Clock, make_clock, zone
from cvm.tools.customer_subset import CustomerSubset
from cvm.tools.data_source import FileDataSource
from cvm.tools.ledger import Ledger, SQLiteLedger
from cvm.tools.llm import LLMClient
from cvm.tools.run_aggregates import RunAggregates
from cvm.tools.snapshot_store import SnapshotStore
from cvm.utils.config import CVMConfig, load_config, load_custom_treatments
from cvm.utils.errors import UsageError
from cvm.utils.ids import new_run_id as new_run_id  # re-exported: callers import it from here
from cvm.utils.progress import NO_PROGRESS, Progress
from cvm.utils.settings import RuntimeSettings, SelectorName

if TYPE_CHECKING:
    from cvm.flows.catalog import ActionCatalog
    from cvm.flows.runner import FlowRunner, StepEvent
    from cvm.flows.store import FlowStore
    from cvm.flows.validate import LoadedFlow
    from cvm.tools.firing_store import FiringStore
    from cvm.tools.risk_store import RiskStore
    from cvm.tools.telemetry import TelemetryStore
    from cvm.tools.treatment_store import TreatmentStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """What a processing command was asked to do (flags over environment over defaults)."""

    data_dir: Path
    config_path: Path
    custom_treatments_path: Path
    db_url: str
    selector: SelectorName = "auto"
    as_of: str | datetime | None = None
    run_id: str | None = None
    dry_run: bool = False
    max_workers: int = 1
    auto_approve: bool = False
    """Approve every decision that needs approval as ``auto-approve (testing)``."""

    @classmethod
    def from_settings(cls, settings: RuntimeSettings, **overrides: object) -> RunOptions:
        values = dict(
            data_dir=settings.data_dir,
            config_path=settings.config_path,
            custom_treatments_path=settings.custom_treatments_path,
            db_url=settings.db_url,
            selector=settings.selector,
            as_of=settings.now,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("data_dir", "config_path", "custom_treatments_path"):
            path = values[key]
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"{key} must be a str or a path, not {type(path).__name__}")
            values[key] = Path(path)
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Runtime:
    """Everything one command needs, built once."""

    config: CVMConfig
    orchestrator: PathChoosingOrchestrator
    ledger: Ledger
    clock: Clock
    zone: tzinfo
    run_id: str
    selector: str
    insight: InsightAgent
    report: ReportAgent
    decision: DecisionAgent | None = None
    """The flows document's ``decision_agent`` (renewal risk and offers); built by ``build_runtime``."""
    execution: ExecutionAgent | None = None
    """Notifications and calendar events (``execution`` in flows); ``build_runtime`` always sets it."""
    progress: Progress = NO_PROGRESS
    """Where long work reports its stages (the CLI's terminal bar, else silent)."""

    def decider(self, notify: Callable[[str], None] | None = None, status: Callable[[str], None] | None = None) -> Decider:
        """Decides for many customers, choosing the per-customer or the batch path (``cvm.engine.deciding``)."""
        return self.orchestrator.decider(notify=notify, status=status, progress=self.progress)

    def agents(self) -> dict[str, BaseAgent]:
        """Every agent by the name flows use for it (``agent:`` in a flow step).

        The orchestrator's decide steps (``process_batch``, ``trigger_and_process``) choose the path like ``cvm process``.
        """
        o = self.orchestrator
        agents: dict[str, BaseAgent] = {
            "orchestrator": o, "data": o.data, "journey": o.journey, "treatment": o.treatment,
            "allocation": o.allocation, "trigger": o.trigger, "governance": o.governance, "insight": self.insight,
            "report": self.report,
            **({"decision": self.decision} if self.decision is not None else {}),
        }
        if self.execution is not None:
            agents["execution"] = self.execution
        return agents


def resolve_selector(requested: SelectorName, settings: RuntimeSettings) -> str:
    """``auto`` means the LLM only when ``OPENAI_API_KEY`` is set; ``llm`` needs a key or a base URL."""
    if requested == "rules":
        return "rules"
    has_endpoint = settings.openai_api_key is not None or settings.openai_base_url is not None
    if requested == "llm" and not has_endpoint:
        raise UsageError("--selector llm needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local endpoint); or use --selector rules")
    if requested == "auto":
        return "llm" if settings.openai_api_key is not None else "rules"
    return "llm"


def warn_of_unknown_exemptions(config: CVMConfig) -> None:
    """An id in ``policies.contact.daily_cap_exempt`` that no treatment has exempts nothing: most likely a typo.

    Only a warning: the id may be a custom treatment added later, so the config file alone cannot be refused for it.
    """
    unknown = [tid for tid in config.policies.contact.daily_cap_exempt if tid not in config.treatments]
    if unknown:
        log.warning(
            "daily_cap_exempt_names_no_treatment", ids=unknown,
            hint="policies.contact.daily_cap_exempt lists ids no standard or custom treatment has; check their spelling",
        )


def load_full_config(options: RunOptions) -> CVMConfig:
    """The YAML config plus the custom treatments file."""
    return load_config(options.config_path).with_treatments(load_custom_treatments(options.custom_treatments_path))


def llm_client(config: CVMConfig, settings: RuntimeSettings) -> LLMClient:
    """The OpenAI-compatible client, configured from ``model`` and the environment (imported lazily)."""
    from cvm.tools.llm import OpenAIJSONClient

    m = config.model
    return OpenAIJSONClient(
        model=settings.model_id or m.id,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        base_url=settings.openai_base_url,
        timeout_seconds=m.timeout_seconds,
        max_retries=m.max_retries,
        max_concurrency=m.max_concurrency,
        temperature=m.temperature,
        max_tokens=m.max_tokens,
        requests_per_second=m.requests_per_second,
        circuit_breaker_failures=m.circuit_breaker_failures,
    )


@dataclass
class GovernanceTools:
    """What approval commands need: config, ledger, clock, and the data folder only to re-check consent on approving."""

    config: CVMConfig
    ledger: Ledger
    clock: Clock
    agent: GovernanceAgent


def build_governance(
    config_path: Path, custom_treatments_path: Path, db_url: str, as_of: str | datetime | None, data_dir: Path | None = None,
) -> GovernanceTools:
    """``data_dir``: where approving re-checks consent, reading only that customer's rows (None: cannot approve).

    The config includes the custom treatments, as a processing run's does: a request may be for one of them.
    """
    config = load_config(config_path).with_treatments(load_custom_treatments(custom_treatments_path))
    clock = make_clock(as_of, zone(config.settings.timezone))
    ledger = SQLiteLedger.from_url(db_url)
    data_for = None if data_dir is None else partial(one_customer_data, data_dir, config.validation.customer_id_pattern)
    return GovernanceTools(config, ledger, clock, GovernanceAgent(config, ledger, clock, data_for))


def one_customer_data(data_dir: Path, customer_id_pattern: str, customer_id: str) -> DataAgent:
    """A Data agent over one customer's rows of the folder, however large the folder is."""
    return DataAgent(CustomerSubset(data_dir, [customer_id]), customer_id_pattern)


def orchestrator_parts(
    options: RunOptions, settings: RuntimeSettings, config: CVMConfig, progress: Progress = NO_PROGRESS,
) -> dict[str, Any]:
    """The tools and agents a ``PathChoosingOrchestrator`` is made of, built from the options (keyword arguments).

    ``progress`` is where long work (reading and matching customers, ...) reports its stages; the CLI passes a
    terminal bar, everything else the silent default.
    """
    tz = zone(config.settings.timezone)
    clock = make_clock(options.as_of, tz)
    selector = resolve_selector(options.selector, settings)
    client = llm_client(config, settings) if selector == "llm" else None
    source = FileDataSource(options.data_dir)
    ledger = SQLiteLedger.from_url(options.db_url)
    data = DataAgent(source, config.validation.customer_id_pattern)
    journey = JourneyAgent(JourneyBuilder(config.scoring, config.validation.required_journey_fields), clock)
    cache_size = config.model.cache_size
    return dict(
        data_dir=options.data_dir,
        selector=selector,
        config=config,
        data=data,
        journey=journey,
        treatment=TreatmentAgent(config, LLMSelector(client, cache_size) if client else None),
        allocation=AllocationAgent(config, ledger, clock),
        governance=GovernanceAgent(config, ledger, clock, lambda _customer: data),
        trigger=TriggerAgent(
            config, data, journey, LLMSemanticMatcher(client, cache_size) if client else None,
            max_workers=config.model.max_concurrency, progress=progress,
        ),
        ledger=ledger,
        clock=clock,
        zone=tz,
        run_id=options.run_id or new_run_id(clock.now()),
        dry_run=options.dry_run,
        max_workers=options.max_workers,
        auto_approve=options.auto_approve,
    )


def build_runtime(
    options: RunOptions, settings: RuntimeSettings, config: CVMConfig | None = None, progress: Progress = NO_PROGRESS,
) -> Runtime:
    """Everything a command needs; pass ``config`` when the caller already loaded it (no second read)."""
    config = config or load_full_config(options)
    warn_of_unknown_exemptions(config)
    parts = orchestrator_parts(options, settings, config, progress)
    orchestrator = PathChoosingOrchestrator(**parts)
    data, journey, ledger, clock = parts["data"], parts["journey"], parts["ledger"], parts["clock"]
    aggregates = RunAggregates.from_url(options.db_url)
    portfolio = PortfolioData(Path(options.data_dir), aggregates, config.validation.customer_id_pattern)
    insight = InsightAgent(data, journey, config.scoring, portfolio=portfolio, progress=progress)
    report = ReportAgent(
        ledger=ledger, config=config, output_dir=settings.output_dir, clock=clock, data=data, journey=journey,
        insight=insight, aggregates=aggregates, portfolio=portfolio, snapshots=SnapshotStore.from_url(options.db_url),
        progress=progress,
    )
    return Runtime(
        config=config, orchestrator=orchestrator, ledger=ledger, clock=clock, zone=parts["zone"], run_id=parts["run_id"],
        selector=parts["selector"],
        insight=insight,
        report=with_mission_control(report, options.db_url, config, clock),
        execution=execution_agent(settings, ledger, clock, parts["zone"]),
        decision=DecisionAgent(data, journey, orchestrator.treatment, clock),
        progress=progress,
    )


def with_mission_control(report: ReportAgent, db_url: str, config: CVMConfig, clock: Clock) -> ReportAgent:
    """The portfolio report's Mission Control sections: agent performance (run telemetry) and the risk events
    its executive triggers open or close (``cvm.agents.mission_control``)."""
    from cvm.agents.mission_control import RiskEvents, agent_performance

    report.add_section_source(agent_performance(telemetry_store(db_url)))
    report.add_report_hook(RiskEvents(risk_store(db_url), config.reporting.risk_owners, clock))
    return report


def execution_agent(settings: RuntimeSettings, ledger: Ledger | None, clock: Clock, tz: tzinfo) -> ExecutionAgent:
    """The Execution agent with a transport factory per configured channel (``CVM_SMTP_*``, ``CVM_WEBHOOK_*``).

    A channel is configured once any of its variables is set; a wrong or missing one is a ``ConfigError`` on first use,
    so a command that never notifies is not stopped by a notification setting.
    """
    from cvm.tools.notify import NotificationTransport, RetryPolicy, split_list
    from cvm.tools.smtp import SMTPConfig, SMTPTransport
    from cvm.tools.webhook import WebhookConfig, WebhookTransport

    retry = RetryPolicy(retries=settings.notify_retries)
    timeout = settings.notify_timeout_seconds
    transports: dict[Any, Callable[[], NotificationTransport]] = {}
    if settings.smtp_host:
        smtp = SMTPConfig(
            host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from or "", username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls, ssl=settings.smtp_ssl, ca_file=settings.smtp_ca_file, timeout_seconds=timeout, retry=retry,
        )
        transports["email"] = lambda: SMTPTransport(smtp)
    if settings.webhook_urls or settings.webhook_secret:
        webhook = WebhookConfig(
            urls=split_list(settings.webhook_urls), secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else "",
            timeout_seconds=timeout, retry=retry,
        )
        transports["webhook"] = lambda: WebhookTransport(webhook)
    return ExecutionAgent(
        transports=transports, ledger=ledger, clock=clock, output_dir=settings.output_dir, zone=tz,
        default_recipients=split_list(settings.notify_to),
    )


# --- the other runners and stores a command may need (the CLIs never construct them) ---------------


def treatment_store(settings: RuntimeSettings) -> TreatmentStore:
    """The custom-treatments file (``CVM_CUSTOM_TREATMENTS``) as a store."""
    from cvm.tools.treatment_store import TreatmentStore

    return TreatmentStore(settings.custom_treatments_path)


def flow_store(db_url: str) -> FlowStore:
    """The flow runs' store, in the state database (``CVM_DB_URL``)."""
    from cvm.flows.store import FlowStore

    return FlowStore.from_url(db_url)


def firing_store(db_url: str) -> FiringStore:
    """The flow scheduler's firing records and leases, in the state database (``CVM_DB_URL``)."""
    from cvm.tools.firing_store import FiringStore

    return FiringStore.from_url(db_url)


def telemetry_store(db_url: str) -> TelemetryStore:
    """Agent call stats per run (calls, errors, p50/p95 latency), in the state database (``CVM_DB_URL``)."""
    from cvm.tools.telemetry import TelemetryStore

    return TelemetryStore.from_url(db_url)


def record_agent_stats(db_url: str, run_id: str) -> int:
    """Write the agent call stats counted in this process since the last write, under ``run_id`` (end of a run)."""
    from cvm.tools.telemetry import AGENT_CALLS

    return telemetry_store(db_url).flush(run_id, AGENT_CALLS.drain())


def risk_store(db_url: str) -> RiskStore:
    """The risk events executive triggers raise, in the state database (``CVM_DB_URL``)."""
    from cvm.tools.risk_store import RiskStore

    return RiskStore.from_url(db_url)


def flow_runner(
    loaded: LoadedFlow, runtime: Runtime, store: FlowStore, *, catalog: ActionCatalog, max_parallel: int,
    on_step: Callable[[StepEvent], None] | None = None, progress: Progress = NO_PROGRESS,
    pauses_end: threading.Event | None = None,
) -> FlowRunner:
    """A flow runner over the runtime's agents and ledger (the audit trail), with the flow variables of the environment.

    ``pauses_end``: an event that stops the run when set (the scheduler's stop), ending any step's pause at once.
    """
    from cvm.flows.recording import RecordingFlowRunner
    from cvm.tools.telemetry import TelemetryStore

    return RecordingFlowRunner(
        loaded, runtime.agents(), store, catalog=catalog, max_parallel=max_parallel, on_step=on_step, ledger=runtime.ledger,
        variables=flow_variables(), progress=progress, telemetry=TelemetryStore(store.path), pauses_end=pauses_end,
    )


SECRET_WORDS = (
    "PASSWORD", "PASSWD", "PWD", "PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "BEARER", "CERT",
    "SIGN", "SALT", "COOKIE", "SESSION", "URL", "URI", "DSN", "HOST", "USER",
)
"""Environment names holding any of these are never flow variables (a URL may carry a password or a token)."""


def _cvm_settings_names() -> frozenset[str]:
    """The environment names of CVM's own settings: configuration of the engine, never a flow's variable."""
    names: set[str] = set()
    for field in RuntimeSettings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.update(str(a).upper() for a in (choices if choices is not None else [alias]) if isinstance(a, str))
    return frozenset(names)


def flow_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Bare ``${name}`` references of flows: ``CVM_NAME`` of the environment (``${admin_email}`` is ``CVM_ADMIN_EMAIL``).

    CVM's own settings (``CVM_DB_URL``, ``CVM_SMTP_*``, ``CVM_WEBHOOK_*``, ...) and names that look secret (password,
    token, key, auth, URL, host, user, ...) are left out, so a flow cannot read or pass them on.
    """
    env = os.environ if environ is None else environ
    own = _cvm_settings_names()
    return {
        name[4:].lower(): value for name, value in env.items()
        if name.startswith("CVM_") and len(name) > 4 and name.upper() not in own
        and not any(word in name.upper() for word in SECRET_WORDS)
    }
