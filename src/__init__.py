"""CVM: a Customer Value Management decisioning engine for telecom operators.

``from cvm import OrchestratorAgent, get_all_customer_ids`` gives the
prototype's programmatic entry points (see ``cvm.api``); they are imported on
first use, so ``import cvm`` stays cheap for the CLIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["OrchestratorAgent", "get_all_customer_ids", "__version__"]

if TYPE_CHECKING:
    from cvm.api import OrchestratorAgent, get_all_customer_ids


def __getattr__(name: str) -> Any:
    if name in ("OrchestratorAgent", "get_all_customer_ids"):
        from cvm import api

        return getattr(api, name)
    raise AttributeError(f"module 'cvm' has no attribute {name!r}")
