"""Declarative flows: YAML DAGs of agent actions, validated before they run, run and resumed from a store.

``schema`` (the file's models), ``schedule`` (cron), ``references`` (``${...}``),
``catalog`` (what the agents can do), ``validate`` (loading and every check),
``plan`` (the plan artifact), ``store`` (runs and steps in SQLite), ``runner``
(execution, retries, resume) and ``testing`` (``FlowTestCase``). The ``flow``
pseudo-agent itself is ``cvm.agents.flows.FlowAgent``.
"""
