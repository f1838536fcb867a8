"""JSON on the hot paths: orjson (several times the stdlib's speed), the stdlib where orjson differs.

Writing: orjson refuses lone surrogates in strings and integers over 64 bits, which the stdlib
writes; a non-finite float becomes ``null`` (the stdlib would write ``Infinity``, which is not JSON).
Reading: orjson refuses what the stdlib reads leniently (lone surrogates, ``NaN``, UTF-16) and reads
an integer over 64 bits as a float, losing digits; such texts go to the stdlib, so what relay reads
(and echoes back, like metadata) is exactly what the stdlib would give.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["dumps", "loads"]

#: 19 digits in a row may be an integer orjson would read as a float
_LONG_NUMBER = re.compile(rb"\d{19}")


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":")).encode()


def loads(raw: bytes) -> Any:
    """What ``json.loads(raw)`` gives, raising what it raises."""
    if _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)
