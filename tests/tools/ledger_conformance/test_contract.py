"""The ``Ledger`` Protocol is the whole contract: the code calls nothing else on a ledger, and every backend has all of it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from cvm.tools.ledger import Ledger
from tests.tools.ledger_conformance.backends import LedgerBackend

SRC = Path(__file__).resolve().parents[3] / "src"
# ``ledger.x(``, ``self.ledger.x(``, ``self._ledger.x(``, ``runtime.ledger.x(``...: a method called on a ledger.
CALL = re.compile(r"\b_?ledger\.([a-z_]+)\(")
MEMBERS = {name for name, _ in inspect.getmembers(Ledger, inspect.isfunction) if not name.startswith("_")}


def test_the_code_calls_only_protocol_methods_on_a_ledger() -> None:
    called = {
        (path.relative_to(SRC).as_posix(), name)
        for path in SRC.rglob("*.py") if path.name != "ledger.py"
        for name in CALL.findall(path.read_text(encoding="utf-8"))
    }
    assert called, "the pattern no longer finds ledger calls"
    assert sorted((where, name) for where, name in called if name not in MEMBERS) == []


def test_the_backend_has_every_protocol_method(backend: LedgerBackend, ledger: Ledger) -> None:
    missing = sorted(name for name in MEMBERS if not callable(getattr(ledger, name, None)))
    assert missing == [], f"{backend.name} ledger lacks {missing}"
    for name in MEMBERS:
        expected = list(inspect.signature(getattr(Ledger, name)).parameters)[1:]
        assert list(inspect.signature(getattr(ledger, name)).parameters) == expected, name
