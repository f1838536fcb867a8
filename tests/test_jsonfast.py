"""orjson where it can, the stdlib where orjson refuses: the same values either way."""

from __future__ import annotations

import json

import pytest

from relay import jsonfast


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True], "c": "é", "d": {"e": []}},
        {"big": 2**70},  # orjson refuses: the stdlib writes it
        {"s": "lone \ud800 surrogate"},  # likewise
    ],
)
def test_dumps_round_trips(value: object) -> None:
    assert json.loads(jsonfast.dumps(value)) == value


def test_non_finite_floats_become_null() -> None:
    assert json.loads(jsonfast.dumps([float("inf"), float("nan")])) == [None, None]
