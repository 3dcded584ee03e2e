"""Every test here runs once per ledger backend (``backends.BACKENDS``): the ``ledger`` it gets is that backend's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cvm.tools.ledger import Ledger
from tests.tools.ledger_conformance.backends import BACKENDS, LedgerBackend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    """The backend under test, making ledgers in this test's temp dir."""
    made = BACKENDS[request.param](tmp_path)
    yield made
    made.cleanup()


@pytest.fixture
def ledger(backend: LedgerBackend) -> Ledger:
    """A fresh, empty ledger of the backend under test."""
    return backend.open()
