"""Rows as NDJSON: one `[v1,v2,...]` line per row, each value typed per `gateway.sqltypes`.

An Arrow batch is encoded column by column with Arrow compute (each value's JSON text, then
every row's line joined from them), so no Python runs per row. The bytes are exactly those
`orjson.dumps` gives the typed row (tests/test_ndjson.py compares both on random batches). A
column whose JSON text Arrow cannot spell exactly (binary, nested, time, interval, dictionary,
a float that Arrow and orjson write in different notations) is written value by value with
orjson instead: that column only pays Python per value, the others still do not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from gateway.sqltypes import MAX_SAFE_INTEGER, arrow_strings, arrow_values

# orjson's escapes for what JSON forbids raw in a string (every other character stays as is).
_ESCAPES = {
    **{chr(c): f"\\u{c:04x}" for c in range(0x20)},
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
# Days since 1970 from 0001-01-01 to 9999-12-31: there Arrow's date cast to string is strftime's
# `%Y-%m-%d` (four-digit years).
_ISO_DAYS = (-719_162, 2_932_896)
# Magnitudes where Arrow and orjson both write a float's shortest digits as a plain decimal
# (Arrow without the ".0" of a whole number); outside, one of them uses an exponent.
_PLAIN_FLOATS = (1e-5, 1e10)


def line(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE, default=str)


def rows_ndjson(rows: Iterable[list[Any]]) -> bytes:
    return b"".join([line(row) for row in rows])


def batch_ndjson(batch: Any) -> bytes:
    """A pyarrow RecordBatch's rows as NDJSON lines, typed per `gateway.sqltypes`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if batch.num_columns == 0 or batch.num_rows == 0:
        return b""  # as `arrow_rows`: a batch without columns has no rows to write
    texts = [_column_json(column) for column in batch.columns]
    values = pc.binary_join_element_wise(*texts, ",") if len(texts) > 1 else texts[0]
    lines = pc.binary_join_element_wise("[", values, "]\n", "")
    offsets = memoryview(lines.buffers()[1]).cast("i")
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    data: pa.Buffer = lines.buffers()[2]
    return data[start:end].to_pybytes()  # type: ignore[no-any-return]


def _column_json(array: Any) -> Any:
    text = arrow_json(array)
    return _orjson_text(array) if text is None else text


def _orjson_text(array: Any) -> Any:
    """Each value's JSON text from orjson, for a column Arrow compute cannot spell exactly."""
    import pyarrow as pa

    values = arrow_values(array)
    return pa.array([orjson.dumps(v, default=str).decode() for v in values], pa.string())


def arrow_json(array: Any) -> Any | None:
    """Each value's JSON text as an Arrow string array without nulls, computed by Arrow alone;
    None when Arrow cannot write it exactly as orjson would."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_null(kind):
        text = pc.cast(array, pa.string())
    elif pa.types.is_boolean(kind):
        text = pc.if_else(array, "true", "false")
    elif pa.types.is_integer(kind):
        text = _integer_text(array)
    elif pa.types.is_floating(kind):
        text = _float_text(array)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            array.validate(full=True)  # invalid UTF-8: the per-row path raises, as it should
        except pa.ArrowInvalid:
            return None
        text = _quoted(array)
    elif pa.types.is_date32(kind) and _within(array, *_ISO_DAYS):
        text = _quoted(pc.cast(array, pa.string()))  # as strftime, in a fifth of the time
    elif (strings := arrow_strings(array)) is not None:
        text = _quoted(strings)
    else:
        return None
    if text is None or not text.null_count:
        return text
    return pc.fill_null(text, "null")


def _within(array: Any, low: int, high: int) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    bounds = pc.min_max(array.view(pa.int32()) if pa.types.is_date32(array.type) else array)
    least, most = bounds["min"].as_py(), bounds["max"].as_py()
    return least is None or (low <= least and most <= high)


def _integer_text(array: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.cast(array, pa.string())
    wide = pa.types.is_int64(array.type) or pa.types.is_uint64(array.type)
    if not wide or _within(array, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER):
        return digits
    # Past ±(2^53-1) a JSON number loses digits in JavaScript: the exact digits, quoted.
    safe = pc.less_equal(array, pa.scalar(MAX_SAFE_INTEGER, array.type))
    if pa.types.is_int64(array.type):
        safe = pc.and_(safe, pc.greater_equal(array, pa.scalar(-MAX_SAFE_INTEGER, array.type)))
    return pc.if_else(safe, digits, _quoted(digits))


def _float_text(array: Any) -> Any | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    number = pc.cast(array, pa.float64())  # exact; orjson writes float32 values as doubles
    finite = pc.is_finite(number)
    size = pc.abs(number)
    low, high = _PLAIN_FLOATS
    plain = pc.or_(pc.equal(size, 0), pc.and_(pc.greater_equal(size, low), pc.less(size, high)))
    if pc.all(pc.or_(pc.invert(finite), plain)).as_py() is False:  # None: no values at all
        return None
    digits = pc.cast(number, pa.string())
    whole = pc.invert(pc.match_substring(digits, "."))
    text = pc.if_else(whole, pc.binary_join_element_wise(digits, ".0", ""), digits)
    # NaN and ±Infinity have no JSON number: the strings `arrow_values` gives them.
    named = pc.if_else(
        pc.is_nan(number), '"NaN"', pc.if_else(pc.greater(number, 0), '"Infinity"', '"-Infinity"')
    )
    return pc.if_else(finite, text, named)


def _quoted(strings: Any) -> Any:
    """Strings as JSON strings, escaped as orjson escapes them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(strings.type):
        strings = pc.cast(strings, pa.string())
    if pc.any(pc.match_substring_regex(strings, _NEEDS_ESCAPE)).as_py():
        strings = pc.replace_substring(strings, "\\", "\\\\")
        strings = pc.replace_substring(strings, '"', '\\"')
        for raw, escaped in _ESCAPES.items():
            strings = pc.replace_substring(strings, raw, escaped)
    return pc.binary_join_element_wise('"', strings, '"', "")
