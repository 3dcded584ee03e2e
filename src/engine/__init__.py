"""The decision engine's two paths and the choice between them.

``batch`` decides every customer at once with the global optimiser; ``deciding``
(the ``Decider``) sends a run to it or to the orchestrator's per-customer walk by
customer count. Both run the agents and the rules of ``cvm.decision``; neither is
an agent itself, so they live beside ``cvm.agents``, in the same layer.
"""
