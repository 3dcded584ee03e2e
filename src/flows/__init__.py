"""Declarative flows: YAML DAGs of agent actions, validated before they run, run and resumed from a store.

``schema`` (the file's models, the flows document's names), ``schedule`` (cron),
``references`` (``${...}``), ``catalog`` (what the agents can do), ``problems``
and ``validate`` (loading and every check), ``plan`` (the plan artifact),
``store`` (runs, steps and failure notices in SQLite), ``runner`` (execution,
retries, resume) with ``customer_runs`` (a customer flow's customer),
``failure_notice`` and ``fan_out`` (one run per selected customer),
``customers`` (the customer namespace and filter), ``asl`` (Step Functions
export), ``registry`` and ``api`` (the Python API: ``Flow``, ``Step``,
``Trigger``, ``FlowEngine``) and ``testing`` (``FlowTestCase``). The ``flow``
pseudo-agent itself is ``cvm.agents.flows.FlowAgent``.
"""
