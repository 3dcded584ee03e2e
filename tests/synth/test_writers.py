"""The writers: the numpy JSON encoder agrees with json.loads and with the Parquet columns."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cvm.synth.columns import category, integer, listof, number, struct, text
from cvm.synth.writers import arrow_table, json_rows


class TestJsonEncoding:
    """The numpy JSON writer agrees with json.loads and with the Parquet columns, absent fields included."""

    def chunk(self) -> list[tuple[str, Any]]:
        present = np.array([True, False, True])
        item = struct([("name", category(np.array([0, 1, 0, 1]), ('say "hi"', "tab\there"))), ("n", integer(np.array([1, -2, 3, 4])))])
        return [
            ("id", category(np.array([2, 0, 1]), ("a", "b", "c"))),
            ("words", text(np.array(['quote " and \\ back', "line\nbreak", "£ and ü"]))),
            ("maybe", number(np.array([1.25, 0.0, -3.5]), 2, present=present)),
            ("big", number(np.array([1e-7, 123456789.125, 0.1 + 0.2]))),
            ("items", listof(np.array([0, 2, 2, 4]), item, present=np.array([True, True, False]))),
            ("inner", struct([("x", integer(np.array([1, 2, 3]), present=~present)), ("y", text(["p", "q", "r"]))])),
        ]

    def test_rows_round_trip_through_json(self) -> None:
        rows = [json.loads(row) for row in json_rows(self.chunk())]
        assert rows == [
            {"id": "c", "words": 'quote " and \\ back', "maybe": 1.25, "big": 1e-7,
             "items": [{"name": 'say "hi"', "n": 1}, {"name": "tab\there", "n": -2}], "inner": {"y": "p"}},
            {"id": "a", "words": "line\nbreak", "big": 123456789.125, "items": [], "inner": {"x": 2, "y": "q"}},
            {"id": "b", "words": "£ and ü", "maybe": -3.5, "big": 0.1 + 0.2, "inner": {"y": "r"}},
        ]

    def test_parquet_columns_hold_the_same_rows(self) -> None:
        arrow_rows = arrow_table(self.chunk()).to_pylist()

        def drop_nulls(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: drop_nulls(v) for k, v in value.items() if v is not None}
            if isinstance(value, list):
                return [drop_nulls(v) for v in value]
            return value

        assert [drop_nulls(row) for row in arrow_rows] == [json.loads(row) for row in json_rows(self.chunk())]
