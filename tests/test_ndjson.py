"""NDJSON from Arrow batches: the column-wise encoder writes exactly the bytes of the per-row one.

The reference is what the gateway wrote before the encoder existed: every row typed by
`arrow_rows`, then `orjson.dumps(row, OPT_APPEND_NEWLINE, default=str)`. Random batches cover
every Arrow type the fake and `gateway.sqltypes` meet, with the values that tend to break
encoders: unicode, control characters, quotes, backslashes, nulls, NaN, ±Infinity, integers
around 2^53 and 2^63, floats at every magnitude.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ndjson import arrow_json, batch_ndjson
from gateway.sqltypes import arrow_rows

SPECIAL_TEXT = '"\\\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f/\u2028\u00e9\U0001f600'
LIMITS = {8: 2**7, 16: 2**15, 32: 2**31, 64: 2**63}
WIDE = decimal.Context(prec=40)  # 38 digits, unrounded


def per_row(batch: pa.RecordBatch) -> bytes:
    option = orjson.OPT_APPEND_NEWLINE
    return b"".join(orjson.dumps(row, option=option, default=str) for row in arrow_rows(batch))


def nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


def integers(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-LIMITS[bits], LIMITS[bits] - 1) if signed else (0, 2 * LIMITS[bits] - 1)
    edges = [v for v in (2**53 - 1, 2**53, -(2**53 - 1), -(2**53), low, high) if low <= v <= high]
    return st.one_of(st.integers(low, high), st.sampled_from(edges))


def floats(width: int) -> st.SearchStrategy[float]:
    edges = [0.0, -0.0, 1e-5, 9.99e-6, 1e10, 9999999999.9, 1e15, 1e16, 0.1, 100.0, 5e-324]
    return st.one_of(st.floats(width=width), st.sampled_from(edges).map(lambda v: float(v)))


TEXT = st.text(st.one_of(st.characters(codec="utf-8"), st.sampled_from(SPECIAL_TEXT)), max_size=12)
TIMESTAMP_LIMITS = {"s": 250_000_000_000, "ms": 250_000_000_000_000, "us": 2**62, "ns": 2**63 - 1}


@st.composite
def timestamp_column(draw: st.DrawFn, rows: int) -> pa.Array:
    unit = draw(st.sampled_from(list(TIMESTAMP_LIMITS)))
    tz = draw(st.sampled_from([None, "UTC", "Etc/UTC", "America/New_York", "+05:30"]))
    limit = TIMESTAMP_LIMITS[unit]
    values = draw(st.lists(nullable(st.integers(-limit, limit)), min_size=rows, max_size=rows))
    return pa.array(values, pa.int64()).cast(pa.timestamp(unit, tz=tz))


@st.composite
def decimal_column(draw: st.DrawFn, rows: int) -> pa.Array:
    precision = draw(st.integers(1, 38))
    scale = draw(st.integers(0, precision))
    digits = st.integers(-(10**precision) + 1, 10**precision - 1)
    values = draw(st.lists(nullable(digits), min_size=rows, max_size=rows))
    return pa.array(
        [None if v is None else decimal.Decimal(v).scaleb(-scale, WIDE) for v in values],
        pa.decimal128(precision, scale),
    )


def plain_column(kind: pa.DataType, values: st.SearchStrategy[Any]) -> Any:
    def build(rows: int) -> st.SearchStrategy[pa.Array]:
        return st.lists(nullable(values), min_size=rows, max_size=rows).map(
            lambda vs: pa.array(vs, kind)
        )

    return build


# Types Arrow compute writes alone (floats at magnitudes both write as plain decimals).
ENCODABLE = {
    **{
        f"{'int' if signed else 'uint'}{bits}": plain_column(
            pa.int64()
            if (bits, signed) == (64, True)
            else getattr(pa, f"{'' if signed else 'u'}int{bits}")(),
            integers(bits, signed),
        )
        for bits in LIMITS
        for signed in (True, False)
    },
    "bool": plain_column(pa.bool_(), st.booleans()),
    "string": plain_column(pa.string(), TEXT),
    "large_string": plain_column(pa.large_string(), TEXT),
    "date32": lambda rows: st.lists(
        nullable(st.integers(-1_000_000, 3_000_000)), min_size=rows, max_size=rows
    ).map(lambda days: pa.array(days, pa.int32()).cast(pa.date32())),
    "date64": plain_column(pa.date64(), st.dates(min_value=datetime.date(1900, 1, 1))),
    "null": lambda rows: st.just(pa.nulls(rows)),
    "timestamp": lambda rows: timestamp_column(rows),
    "decimal": lambda rows: decimal_column(rows),
    "plain_double": plain_column(
        pa.float64(),
        st.one_of(
            st.floats(1e-5, 1e10, exclude_max=True).flatmap(lambda v: st.sampled_from([v, -v])),
            st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf")]),
        ),
    ),
}
# Every type, including those written value by value with orjson.
EVERY_TYPE = {
    **ENCODABLE,
    "double": plain_column(pa.float64(), floats(64)),
    "float": plain_column(pa.float32(), floats(32)),
    "half_float": lambda rows: st.lists(nullable(floats(16)), min_size=rows, max_size=rows).map(
        lambda vs: pa.array(vs, pa.float64()).cast(pa.float16())
    ),
    "binary": plain_column(pa.binary(), st.binary(max_size=8)),
    "list": plain_column(pa.list_(pa.int32()), st.lists(nullable(integers(32, True)), max_size=3)),
    "struct": plain_column(
        pa.struct([("a", pa.int32()), ("b", pa.string())]),
        st.fixed_dictionaries({"a": nullable(integers(32, True)), "b": nullable(TEXT)}),
    ),
    "map": plain_column(
        pa.map_(pa.string(), pa.float64()),
        st.lists(st.tuples(TEXT, nullable(floats(64))), max_size=3),
    ),
    "time": plain_column(pa.time64("us"), st.times()),
    "interval": plain_column(
        pa.month_day_nano_interval(),
        st.tuples(integers(32, True), integers(32, True), integers(64, True)),
    ),
    "dictionary": lambda rows: st.lists(nullable(TEXT), min_size=rows, max_size=rows).map(
        lambda vs: pa.array(vs, pa.string()).dictionary_encode()
    ),
}


@st.composite
def batches(draw: st.DrawFn, kinds: dict[str, Any]) -> pa.RecordBatch:
    rows = draw(st.integers(0, 30))
    names = draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=6))
    columns = [draw(kinds[name](rows)) for name in names]
    batch = pa.RecordBatch.from_arrays(columns, names=[f"c{i}" for i in range(len(names))])
    start = draw(st.integers(0, rows))  # a slice: arrays that start at an offset
    return batch.slice(start, draw(st.integers(0, rows - start)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(EVERY_TYPE))
def test_every_type_gives_the_bytes_of_the_per_row_encoding(batch):
    assert batch_ndjson(batch) == per_row(batch)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(ENCODABLE))
def test_encodable_types_are_written_by_arrow_alone(batch):
    assert all(arrow_json(column) is not None for column in batch.columns)
    assert batch_ndjson(batch) == per_row(batch)


def test_floats_arrow_and_orjson_write_differently_are_written_by_orjson():
    batch = pa.RecordBatch.from_pydict({"x": [1.0, 1e16], "s": ["a", "b"]})
    assert arrow_json(batch.column(0)) is None
    assert arrow_json(batch.column(1)) is not None
    assert batch_ndjson(batch) == b'[1.0,"a"]\n[1e+16,"b"]\n'


def test_invalid_utf8_is_left_to_python_which_refuses_it_as_before():
    offsets = pa.py_buffer(b"\x00\x00\x00\x00\x01\x00\x00\x00")
    bad = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"\xff")])
    assert arrow_json(bad) is None
    with pytest.raises(UnicodeDecodeError):
        batch_ndjson(pa.RecordBatch.from_arrays([bad], names=["s"]))


def test_a_batch_without_columns_has_no_lines():
    batch = pa.RecordBatch.from_pydict({"x": [1, 2]}).select([])
    assert batch_ndjson(batch) == per_row(batch) == b""
