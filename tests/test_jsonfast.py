"""orjson where it can, the stdlib where orjson refuses: the same values either way."""

from __future__ import annotations

import json

import pytest

from relay.core import jsonfast


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


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "b": [1.5, null, "\\u00e9"], "a": 3}',
        b'{"n": 123456789012345678901234}',  # orjson would read a float
        b'{"n": 18446744073709551616, "m": 1}',  # 2**64: 20 digits, one past what orjson reads as an integer
        b"[-18446744073709551617]",
        b'{"n": 1234567890123456789}',  # 19 digits that fit: both read the integer
        b'{"f": 0.12345678901234567891}',
        b"[NaN, Infinity]",
        b'"\\ud800"',
        '{"é": 1}'.encode("utf-16"),
    ],
)
def test_loads_gives_what_the_stdlib_gives(raw: bytes) -> None:
    assert repr(jsonfast.loads(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe\xfd", b"", b"[1,]"])
def test_loads_refuses_what_the_stdlib_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        jsonfast.loads(raw)
