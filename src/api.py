"""The prototype's programmatic entry points, so its scripts run with only the import changed.

    from cvm import OrchestratorAgent, get_all_customer_ids

    orchestrator = OrchestratorAgent()          # built from the environment and .env, as the CLI is
    result = orchestrator.process({"type": "process_customer_with_treatment",
                                   "customer_id": "U124", "treatment_id": "retention_email"})
    result["status"]                             # results read like the prototype's dicts, or as models

This module sits beside ``runtime.py`` (it composes, it decides nothing):
the agents themselves never read the environment.
"""

from __future__ import annotations

from typing import Any

import structlog

from cvm.agents.orchestrator import PathChoosingOrchestrator
from cvm.runtime import RunOptions, load_full_config, orchestrator_parts
from cvm.tools.data_source import FileDataSource
from cvm.utils.logging import configure_logging
from cvm.utils.settings import RuntimeSettings


class OrchestratorAgent(PathChoosingOrchestrator):
    """The orchestrator; with no arguments it builds itself from the environment and ``.env``.

    Like the CLI's, its decide messages (``process_batch``, ``trigger_and_process``)
    take the batch path when the customer count reaches ``batch.auto_threshold``.

    ``CVM_DATA_DIR``, ``CVM_CONFIG``, ``CVM_CUSTOM_TREATMENTS``, ``CVM_DB_URL``,
    ``CVM_SELECTOR``, ``CVM_NOW`` and the ``OPENAI_*`` variables mean what they
    mean to the CLI. Keyword arguments (``data_dir=``, ``config_path=``,
    ``db_url=``, ``selector=``, ``as_of=``, ``run_id=``, ``dry_run=`` ...)
    override them; passing the built parts (``config=``, ``data=`` ...) wires
    it by hand as ``runtime.py`` does.
    """

    def __init__(self, **overrides: Any):
        if "config" in overrides and "data" in overrides:  # wired by hand: only the defaults of what is missing
            overrides.setdefault("selector", "rules")
            if "data_dir" not in overrides:
                overrides["data_dir"] = RuntimeSettings().data_dir
            super().__init__(**overrides)
            return
        settings = RuntimeSettings()
        if not structlog.is_configured():  # quiet like the CLI, unless the host program set up logging itself
            configure_logging(console_level=settings.log_level or "WARNING", log_file=None)
        options = RunOptions.from_settings(settings, **overrides)
        super().__init__(**orchestrator_parts(options, settings, load_full_config(options)))


def get_all_customer_ids(data_dir: str | None = None) -> list[str]:
    """Every customer id in the data folder (``CVM_DATA_DIR`` or ``data/sample`` unless given), sorted."""
    return FileDataSource(data_dir or RuntimeSettings().data_dir).customer_ids()
