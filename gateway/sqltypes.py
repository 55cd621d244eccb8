"""Typing SQL values: Databricks sends every non-null value as a string; callers want JSON.

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
from collections.abc import Callable
from typing import Any

import orjson

MAX_SAFE_INTEGER = 2**53 - 1
Converter = Callable[[str], Any] | None  # None: keep the string as it is


def _long(value: str) -> int | str:
    number = int(value)
    return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else value


def _float(value: str) -> float | str:
    number = float(value)
    return number if math.isfinite(number) else value


def _boolean(value: str) -> bool:
    return value.lower() == "true"


def _nested(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


_CONVERTERS: dict[str, Converter] = {
    "BYTE": int,
    "SHORT": int,
    "INT": int,
    "LONG": _long,
    "FLOAT": _float,
    "DOUBLE": _float,
    "BOOLEAN": _boolean,
    "ARRAY": _nested,
    "MAP": _nested,
    "STRUCT": _nested,
}


def converter_for(type_name: str | None) -> Converter:
    return _CONVERTERS.get((type_name or "").upper())


class RowTyper:
    """Types whole rows with one converter per column, chosen once from the manifest."""

    def __init__(self, type_names: list[str | None]) -> None:
        self._typed = [(i, c) for i, t in enumerate(type_names) if (c := converter_for(t))]

    def __call__(self, row: list[Any]) -> list[Any]:
        for index, convert in self._typed:
            value = row[index]
            if value is not None:
                row[index] = convert(value)
        return row
