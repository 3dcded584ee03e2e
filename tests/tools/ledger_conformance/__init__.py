"""The ledger conformance suite: the ``Ledger`` contract, run against every backend in ``backends.BACKENDS``.

SQLite-only checks (file URLs, WAL mode, the schema's own index) live in ``tests/tools/test_ledger_sqlite.py``.
"""
