"""Typing SQL values: Databricks sends every non-null value as a string; callers want JSON.

Some Databricks-compatible servers (and some result formats) send already-typed JSON values
instead (`true`, `42`, `[1, 2]`); every converter accepts both. A value its type cannot hold
(`"yes"` for a BOOLEAN, `1.5` for an INT) is the upstream's fault: 502, never a guess. The type
comes from the manifest's `type_name`; when that is missing or unknown, from the head of its
`type_text` (`BIGINT`, `DECIMAL(10,2)`, `ARRAY<INT>`...).

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

import base64
import datetime
import decimal
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import UpstreamBadResponse

MAX_SAFE_INTEGER = 2**53 - 1
Converter = Callable[[Any], Any] | None  # None: keep the value as it is


def _int(value: Any) -> int:
    # A string or a JSON number; never a boolean, nor a fraction cut short without a word.
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _long(value: Any) -> int | str:
    number = _int(value)
    return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else str(number)


def _float(value: Any) -> float | str:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    return number if math.isfinite(number) else str(value)


_BOOLEANS = {"true": True, "false": False}


def _boolean(value: Any) -> bool:
    # "true"/"false" (any case) or a JSON boolean: anything else is no BOOLEAN, not false.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and (known := _BOOLEANS.get(value.lower())) is not None:
        return known
    raise ValueError(f"{value!r} is not a boolean")


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
        index = 0
        try:
            for index, convert in self._typed:
                value = row[index]
                if value is not None:
                    row[index] = convert(value)
        except (ValueError, TypeError) as exc:  # `abc` for an INT, an object for a DOUBLE
            kind = type(exc).__name__
            message = f"column {index} has a value its type cannot hold ({kind})"
            raise UpstreamBadResponse(message) from None
        return row


# --- Arrow ---------------------------------------------------------------------------------
# ARROW_STREAM results carry native types; they get the same JSON values as JSON_ARRAY strings
# would (the table above), converted column by column rather than value by value.


def arrow_rows(batch: Any) -> list[list[Any]]:
    """The rows of a pyarrow RecordBatch as JSON-ready lists, typed per the table above."""
    columns = [arrow_values(column) for column in batch.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def arrow_strings(array: Any) -> Any | None:
    """The column as Arrow strings when its JSON values are strings Arrow computes (timestamps,
    dates, decimals: the table above), else None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_timestamp(kind):
        millis = pc.cast(array, pa.timestamp("ms", tz=kind.tz), safe=False)
        return pc.strftime(millis, format="%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_date(kind):
        return pc.strftime(array, format="%Y-%m-%d")
    if pa.types.is_decimal(kind):
        return pc.cast(array, pa.string())
    return None


def arrow_values(array: Any) -> list[Any]:
    """One Arrow column's values as JSON-ready Python values, typed per the table above."""
    import pyarrow as pa

    kind = array.type
    strings = arrow_strings(array)
    if strings is not None:
        return strings.to_pylist()  # type: ignore[no-any-return]
    values = array.to_pylist()
    if pa.types.is_int64(kind) or pa.types.is_uint64(kind):
        return [_safe_integer(v) for v in values]
    if pa.types.is_floating(kind):
        return [_finite_or_text(v) for v in values]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return [None if v is None else base64.b64encode(v).decode() for v in values]
    if pa.types.is_nested(kind):
        return [_json_ready(v) for v in values]
    return values  # type: ignore[no-any-return]


def _safe_integer(value: int | None) -> int | str | None:
    if value is None or -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    return str(value)


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _finite_or_text(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NON_FINITE[value]


def _json_ready(value: Any) -> Any:
    """Nested Arrow values: maps (lists of pairs) become objects; leaves keep JSON types."""
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(k): _json_ready(v) for k, v in value}
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float):
        return _finite_or_text(value)
    if isinstance(value, datetime.datetime | datetime.date | decimal.Decimal):
        return str(value) if isinstance(value, decimal.Decimal) else value.isoformat()
    return value
