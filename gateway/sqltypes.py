"""Typing SQL values: Databricks sends every non-null value as a string; callers want JSON.

Some Databricks-compatible servers (and some result formats) send already-typed JSON values
instead (`true`, `42`, `[1, 2]`); every converter accepts both. The type comes from the
manifest's `type_name`; when that is missing or unknown, from the head of its `type_text`
(`BIGINT`, `DECIMAL(10,2)`, `ARRAY<INT>`...).

| type_name                          | JSON value                                             |
|------------------------------------|--------------------------------------------------------|
| BYTE, SHORT, INT                   | number                                                 |
| LONG                               | number within ±(2^53-1), else string (exact)           |
| FLOAT, DOUBLE                      | number; NaN/±Infinity stay strings                     |
| BOOLEAN                            | true / false                                           |
| DECIMAL                            | string (keeps precision)                               |
| DATE, TIMESTAMP, TIMESTAMP_NTZ     | ISO-8601 string as Databricks sends it                 |
| BINARY                             | base64 string as Databricks sends it                   |
| ARRAY, MAP, STRUCT                 | parsed JSON                                            |
| STRING, CHAR, INTERVAL, others     | string                                                 |
| any SQL NULL                       | null                                                   |
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

MAX_SAFE_INTEGER = 2**53 - 1
Converter = Callable[[Any], Any] | None  # None: keep the value as it is


def _int(value: Any) -> int:
    return int(value)


def _long(value: Any) -> int | str:
    number = int(value)
    return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else str(number)


def _float(value: Any) -> float | str:
    number = float(value)
    return number if math.isfinite(number) else str(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _text(value: Any) -> str:
    # DECIMAL and friends stay strings even when a server sends them as JSON numbers.
    return value if isinstance(value, str) else str(value)


def _nested(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # already a JSON array or object
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


_CONVERTERS: dict[str, Converter] = {
    "BYTE": _int,
    "SHORT": _int,
    "INT": _int,
    "LONG": _long,
    "FLOAT": _float,
    "DOUBLE": _float,
    "BOOLEAN": _boolean,
    "DECIMAL": _text,
    "ARRAY": _nested,
    "MAP": _nested,
    "STRUCT": _nested,
}

# SQL spellings in `type_text` for the type names above.
_TYPE_TEXT_NAMES = {
    "TINYINT": "BYTE",
    "SMALLINT": "SHORT",
    "INTEGER": "INT",
    "BIGINT": "LONG",
    "REAL": "FLOAT",
    "DEC": "DECIMAL",
    "NUMERIC": "DECIMAL",
}
_TYPE_TEXT_HEAD = re.compile(r"\s*([A-Za-z_]+)")


def type_from_text(type_text: str | None) -> str | None:
    """`type_name` for a `type_text` such as `BIGINT` or `ARRAY<INT>`."""
    match = _TYPE_TEXT_HEAD.match(type_text or "")
    if not match:
        return None
    head = match.group(1).upper()
    return _TYPE_TEXT_NAMES.get(head, head)


def converter_for(type_name: str | None, type_text: str | None = None) -> Converter:
    name = (type_name or "").upper()
    if name not in _CONVERTERS and name not in _KEPT_AS_IS:
        name = type_from_text(type_text) or name
    return _CONVERTERS.get(name)


_KEPT_AS_IS = frozenset(
    {"STRING", "CHAR", "DATE", "TIMESTAMP", "TIMESTAMP_NTZ", "BINARY", "INTERVAL", "NULL"}
)


class RowTyper:
    """Types whole rows with one converter per column, chosen once from the manifest."""

    def __init__(self, types: list[tuple[str | None, str | None]]) -> None:
        self._typed = [
            (i, c) for i, (name, text) in enumerate(types) if (c := converter_for(name, text))
        ]

    def __call__(self, row: list[Any]) -> list[Any]:
        for index, convert in self._typed:
            value = row[index]
            if value is not None:
                row[index] = convert(value)
        return row
