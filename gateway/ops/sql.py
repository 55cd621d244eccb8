"""SQL on a warehouse: run_query, and statements that outlive a request.

`run_query` submits a statement (bound parameters only: SQL text is never built from values),
waits for it within the query deadline and returns every row typed per `gateway.sqltypes`:
as one JSON answer (capped: `truncated` says so), as NDJSON or as one Arrow IPC stream, read
chunk by chunk with a prefetch window (`gateway.results`). The statement is cancelled on the
warehouse when the deadline passes, the caller goes away or the gateway shuts down.

`submit_query` / `query_status` / `fetch_result` / `cancel_query` split that in time for
queries longer than a request may last (the Apps proxy cuts requests at ~120 s): the statement
belongs to the identity that submitted it, and is invisible (404) to any other.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from gateway.auth import current_identity, get_workspace_client
from gateway.errors import GatewayError, bad_request, masked_internal_error, translate
from gateway.logs import current_request_id, logger
from gateway.ndjson import line
from gateway.ops.catalog import Name
from gateway.registry import ARROW_STREAM, NDJSON, ByteStream, Delivery, Piece
from gateway.results import ChunkReader, Manifest
from gateway.runtime import Runtime
from gateway.statements import ENDED, Execution, StatementsApi, Want, state_of, statement_error

_MARKER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_STRINGS_AND_COMMENTS = re.compile(
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.S
)
_DECLARED = re.compile(r"--\s*@param\s+([A-Za-z_]\w*)\s+([A-Za-z_][\w(), ]*)")

ParamValue = StrictBool | StrictInt | StrictFloat | str | None
SqlType = Annotated[str, Field(pattern=r"^[A-Za-z_]+(\(\s*\d+\s*(,\s*\d+\s*)?\))?$", max_length=40)]


class QueryParameter(BaseModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z_]\w*$")]
    value: ParamValue = None
    type: SqlType | None = Field(None, description="Databricks SQL type; default STRING")


class Column(BaseModel):
    name: str
    type: str | None
    type_text: str | None = None
    key: str | None = Field(None, description="object key when rows_as=objects (disambiguated)")


class QueryResult(BaseModel):
    statement_id: str
    columns: list[Column]
    rows: list[list[Any]] | list[dict[str, Any]]
    row_count: int
    truncated: bool


StatementText = Annotated[str | None, Field(min_length=1, max_length=1_000_000)]
QueryName = Annotated[str | None, Field(pattern=r"^[a-z0-9_]+$", max_length=100)]
WarehouseId = Annotated[str | None, Field(pattern=r"^[A-Za-z0-9]+$")]
StatementId = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]
RowLimit = Annotated[int | None, Field(ge=1, le=2**63 - 1)]
Parameters = dict[str, ParamValue] | list[QueryParameter] | None


class Submitted(BaseModel):
    statement_id: str
    state: str


class QueryStatus(BaseModel):
    statement_id: str
    state: str = Field(description="PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED or CLOSED")
    error: dict[str, Any] | None = Field(None, description="the error envelope when FAILED")
    columns: list[Column] | None = None
    row_count: int | None = None
    chunk_count: int | None = None
    truncated: bool | None = None


class ChunkRows(BaseModel):
    statement_id: str
    chunk_index: int
    columns: list[Column]
    rows: list[list[Any]] | list[dict[str, Any]]
    next_chunk_index: int | None = Field(None, description="absent after the last chunk")


class Cancelled(BaseModel):
    statement_id: str


async def run_query(
    runtime: Runtime,
    delivery: Delivery,
    statement: StatementText = None,
    query: QueryName = None,
    parameters: Parameters = None,
    warehouse_id: WarehouseId = None,
    catalog: Name | None = None,
    schema: Name | None = None,
    row_limit: RowLimit = None,
    timeout_seconds: Annotated[float | None, Field(gt=0, le=600)] = None,
    rows_as: Literal["arrays", "objects"] = "arrays",
    disposition: Literal["INLINE", "EXTERNAL_LINKS"] | None = None,
) -> QueryResult | ByteStream:
    """Run SQL (`statement`, or the named `query` file) with bound `parameters` and return every
    row, typed. `Accept: application/x-ndjson` streams rows as NDJSON, and
    `Accept: application/vnd.apache.arrow.stream` as one Arrow IPC stream, of any size."""
    settings = runtime.settings
    submit = _submission(runtime, statement, query, parameters, warehouse_id, catalog, schema)
    submit["row_limit"] = row_limit
    api = await _api(runtime)
    execution = Execution(api, runtime.running_statements, runtime.sql_shapes)
    # Inside the request deadline, so the query's own 504 (naming the cancelled statement) wins.
    ceiling = min(settings.query_timeout_seconds, settings.request_timeout_seconds * 0.95)
    limit = min(timeout_seconds or ceiling, ceiling)
    want: Want = "stream" if delivery.stream or delivery.arrow else "rows"
    response = await execution.run(submit, want, disposition, limit, settings.max_inline_bytes)
    reader = ChunkReader(
        api,
        runtime.links_http,
        Manifest.of(response),
        settings.prefetch_chunks,
        settings.max_chunk_bytes,
    )
    if delivery.arrow:
        return ByteStream(await _begun(_guarded(reader.arrow_stream(), execution)), ARROW_STREAM)
    if delivery.stream:
        return ByteStream(_guarded(_ndjson(reader), execution), NDJSON)
    try:
        return await _collect(reader, rows_as, settings.max_inline_rows, settings.max_inline_bytes)
    except BaseException:
        await execution.cancel()
        raise
    finally:
        execution.forget()


async def submit_query(
    runtime: Runtime,
    statement: StatementText = None,
    query: QueryName = None,
    parameters: Parameters = None,
    warehouse_id: WarehouseId = None,
    catalog: Name | None = None,
    schema: Name | None = None,
    row_limit: RowLimit = None,
) -> Submitted:
    """Start a statement and return its id at once; follow it with `query_status`, read it with
    `fetch_result`, stop it with `cancel_query`. Only the identity that submitted it sees it."""
    submit = _submission(runtime, statement, query, parameters, warehouse_id, catalog, schema)
    submit["row_limit"] = row_limit
    api = await _api(runtime)
    execution = Execution(api, {}, runtime.sql_shapes)  # not cancelled when this request ends
    response = await execution.submit_only(submit, "stream")
    statement_id = str(response.get("statement_id") or "")
    runtime.statement_owners[statement_id] = _owner()
    state = state_of(response) or "PENDING"
    return Submitted(statement_id=statement_id, state=state)


async def query_status(runtime: Runtime, statement_id: StatementId) -> QueryStatus:
    """Where a submitted statement is: its state, its error, and once it succeeded its columns
    and size."""
    api = await _owned(runtime, statement_id)
    response = await api.get(statement_id)
    state = str(state_of(response) or "UNKNOWN")
    status = QueryStatus(statement_id=statement_id, state=state)
    if state in ENDED:
        status.error = statement_error(response, statement_id).fields(current_request_id())
    if state == "SUCCEEDED":
        manifest = Manifest.of(response)
        status.columns = _columns(manifest)
        status.chunk_count = manifest.total_chunks
        status.truncated = manifest.truncated
        status.row_count = (response.get("manifest") or {}).get("total_row_count")
    return status


async def fetch_result(
    runtime: Runtime,
    delivery: Delivery,
    statement_id: StatementId,
    chunk_index: Annotated[int, Field(ge=0)] = 0,
    rows_as: Literal["arrays", "objects"] = "arrays",
) -> ChunkRows | ByteStream:
    """Rows of a finished statement: one chunk as JSON (`next_chunk_index` says where to go
    on), or with `Accept: application/x-ndjson` every row from `chunk_index` on, with a
    `{"chunk_done": n}` line after each chunk so an interrupted reader can resume."""
    api = await _owned(runtime, statement_id)
    response = await api.get(statement_id)
    if state_of(response) != "SUCCEEDED":
        raise (
            statement_error(response, statement_id)
            if state_of(response) in ENDED
            else GatewayError(
                409, "QUERY_RUNNING", "The statement has not finished; poll query_status."
            )
        )
    manifest = Manifest.of(response)
    if chunk_index and chunk_index >= manifest.total_chunks:
        raise bad_request("INVALID_PARAMS", "chunk_index is past the last chunk.")
    settings = runtime.settings
    reader = ChunkReader(
        api, runtime.links_http, manifest, settings.prefetch_chunks, settings.max_chunk_bytes
    )
    reader.start = chunk_index
    if delivery.stream:
        return ByteStream(_ndjson(reader, checkpoints=True), NDJSON)
    rows: list[list[Any]] = []
    async for batch in reader.row_batches(last=chunk_index):
        rows += batch
    following = chunk_index + 1
    columns = _columns(manifest)
    shaped, columns = _shape(rows, columns, rows_as)
    return ChunkRows(
        statement_id=statement_id,
        chunk_index=chunk_index,
        columns=columns,
        rows=shaped,
        next_chunk_index=following if following < manifest.total_chunks else None,
    )


async def cancel_query(runtime: Runtime, statement_id: StatementId) -> Cancelled:
    """Cancel a submitted statement on the warehouse (a finished one stays as it is)."""
    api = await _owned(runtime, statement_id)
    await anyio.to_thread.run_sync(api.cancel, statement_id, abandon_on_cancel=True)
    return Cancelled(statement_id=statement_id)


# --- shared parts ---------------------------------------------------------------------------


def _submission(
    runtime: Runtime,
    statement: str | None,
    query: str | None,
    parameters: Parameters,
    warehouse_id: str | None,
    catalog: str | None,
    schema: str | None,
) -> dict[str, Any]:
    sql, declared = _sql_text(runtime, statement, query)
    bound = _bind(parameters, declared, _markers(sql) if query else None)
    warehouse = warehouse_id or runtime.settings.warehouse_id
    if not warehouse:
        raise bad_request("WAREHOUSE_REQUIRED", "Give warehouse_id or set DATABRICKS_WAREHOUSE_ID.")
    return {
        "statement": sql,
        "warehouse_id": warehouse,
        "catalog": catalog,
        "schema": schema,
        "parameters": bound,
    }


async def _api(runtime: Runtime) -> StatementsApi:
    client = await anyio.to_thread.run_sync(get_workspace_client)
    return StatementsApi(client, runtime.upstream)


def _owner() -> str:
    """Who may see a submitted statement: a digest of the identity (host and token)."""
    host, token_digest = current_identity().cache_key
    return hashlib.sha256(f"{host}|{token_digest}".encode()).hexdigest()


async def _owned(runtime: Runtime, statement_id: str) -> StatementsApi:
    if runtime.statement_owners.get(statement_id) != _owner():
        # Another identity's statement, or one we never submitted: the same answer, so ids
        # cannot be probed.
        raise GatewayError(404, "STATEMENT_NOT_FOUND", "No such statement for this identity.")
    return await _api(runtime)


def _columns(manifest: Manifest) -> list[Column]:
    return [Column(name=c.name, type=c.type, type_text=c.type_text) for c in manifest.columns]


async def _collect(reader: ChunkReader, rows_as: str, max_rows: int, max_bytes: int) -> QueryResult:
    rows: list[list[Any]] = []
    size, capped = 0, False
    async for batch in reader.row_batches():
        for row in batch:
            size += _row_size(row)
            if len(rows) >= max_rows or size > max_bytes:
                capped = True
                break
            rows.append(row)
        if capped:
            break
    shaped, columns = _shape(rows, _columns(reader.manifest), rows_as)
    return QueryResult(
        statement_id=reader.manifest.statement_id,
        columns=columns,
        rows=shaped,
        row_count=len(rows),
        truncated=capped or reader.manifest.truncated,
    )


def _row_size(row: list[Any]) -> int:
    return sum(len(v) if isinstance(v, str) else 8 for v in row) + 4 * len(row)


def _shape(
    rows: list[list[Any]], columns: list[Column], rows_as: str
) -> tuple[list[list[Any]] | list[dict[str, Any]], list[Column]]:
    if rows_as != "objects":
        return rows, columns
    keys = _unique_keys([c.name for c in columns])
    columns = [c.model_copy(update={"key": k}) for c, k in zip(columns, keys, strict=True)]
    return [dict(zip(keys, row, strict=True)) for row in rows], columns


def _unique_keys(names: list[str]) -> list[str]:
    """Object keys that never collapse two columns: a second `a` becomes `a_2`."""
    taken: set[str] = set()
    keys = []
    for name in names:
        key, n = name, 1
        while key in taken:
            n += 1
            key = f"{name}_{n}"
        taken.add(key)
        keys.append(key)
    return keys


async def _ndjson(reader: ChunkReader, checkpoints: bool = False) -> AsyncGenerator[bytes, None]:
    manifest = reader.manifest
    header: dict[str, Any] = {
        "statement_id": manifest.statement_id,
        "columns": [c.model_dump(exclude_none=True) for c in _columns(manifest)],
    }
    if checkpoints:
        header["chunk_index"] = reader.start
    yield line(header)
    count = 0
    try:
        async for chunk in reader.chunks():
            for lines, rows in reader.ndjson_of(chunk):
                yield lines
                count += rows
            if checkpoints:
                yield line({"chunk_done": chunk.index})
        yield line({"row_count": count, "truncated": manifest.truncated})
    except Exception as exc:
        yield line({"error": _stream_error(exc)})


async def _guarded(
    chunks: AsyncGenerator[Piece, None], execution: Execution
) -> AsyncGenerator[Piece, None]:
    """A result stream that cancels its statement if the caller leaves before the end."""
    finished = False
    try:
        async for data in chunks:
            yield data
        finished = True
    finally:
        await chunks.aclose()
        if not finished:
            await execution.cancel()
        execution.forget()


async def _begun(stream: AsyncGenerator[Piece, None]) -> AsyncGenerator[Piece, None]:
    """`stream` with its first piece read now, within the op: a binary stream has no place
    for an error once its head is out, so what fails before its first byte (the first chunk's
    link, its Arrow schema) is the op's error, an envelope, rather than a cut stream."""
    try:
        first = await anext(stream)
    except BaseException:
        await stream.aclose()  # its statement is cancelled
        raise
    return _after(first, stream)


async def _after(first: Piece, rest: AsyncGenerator[Piece, None]) -> AsyncGenerator[Piece, None]:
    try:
        yield first
        async for piece in rest:
            yield piece
    finally:
        await rest.aclose()


def _stream_error(exc: Exception) -> dict[str, Any]:
    error = translate(exc)
    if error is None:
        logger.error("stream failed", exc_info=exc, extra={"request_id": current_request_id()})
        error = masked_internal_error()
    return error.fields(current_request_id())


# --- SQL text and parameters ------------------------------------------------------------------


def _sql_text(
    runtime: Runtime, statement: str | None, query: str | None
) -> tuple[str, dict[str, str]]:
    if (statement is None) == (query is None):
        raise bad_request("INVALID_PARAMS", "Give exactly one of statement or query.")
    if statement is not None:
        if not runtime.settings.allow_raw_sql:
            raise GatewayError(
                403,
                "RAW_SQL_DISABLED",
                "This gateway runs named queries only (GATEWAY_ALLOW_RAW_SQL=false).",
            )
        return statement, {}
    folder = runtime.settings.queries_dir
    path = folder / f"{query}.sql" if folder else None
    if path is None or not path.is_file():
        raise GatewayError(404, "QUERY_NOT_FOUND", f"No named query {query!r}.")
    text = Path(path).read_text(encoding="utf-8")
    return text, {m[1]: m[2].strip() for m in _DECLARED.finditer(text)}


def _markers(sql: str) -> set[str]:
    return set(_MARKER.findall(_STRINGS_AND_COMMENTS.sub(" ", sql)))


def _bind(
    given: dict[str, ParamValue] | list[QueryParameter] | None,
    declared: dict[str, str],
    used: set[str] | None,
) -> list[dict[str, Any]]:
    """Parameters always travel as the API's `parameters`; SQL text is never built from them."""
    if isinstance(given, list):
        items = [_item(p.name, p.value, p.type) for p in given]
    else:
        items = [_item(n, v, declared.get(n)) for n, v in (given or {}).items()]
    names = [item["name"] for item in items]
    if len(set(names)) != len(names):
        raise bad_request("PARAMETER_MISMATCH", "A parameter is given twice.")
    if used is not None and set(names) != used:
        missing, extra = sorted(used - set(names)), sorted(set(names) - used)
        raise bad_request(
            "PARAMETER_MISMATCH",
            f"The query's parameters do not match: missing {missing}, unexpected {extra}.",
            missing=missing,
            unexpected=extra,
        )
    return items


def _item(name: str, value: ParamValue, sql_type: str | None) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise bad_request("INVALID_PARAMS", f"Invalid parameter name {name!r}.")
    if _outside_int64(value):
        # JSON integers past 64 bits parse as floats: refuse rather than bind a rounded DOUBLE.
        raise bad_request(
            "INVALID_PARAMS",
            f"Parameter {name!r} is outside the 64-bit integer range; send it as a string "
            "with an explicit type (e.g. DECIMAL(38,0)).",
            field=f"parameters.{name}",
        )
    item = {"name": name, "value": _text(value), "type": sql_type or _infer(value)}
    return {k: v for k, v in item.items() if v is not None}


def _outside_int64(value: ParamValue) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float):
        return not math.isfinite(value) or (value.is_integer() and abs(value) >= 2**63)
    return not -(2**63) <= value < 2**63


def _infer(value: ParamValue) -> str | None:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    return None  # STRING, the API's default (and for NULL)


def _text(value: ParamValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


# The ops of this family the gateway serves (gateway/ops/__init__.py gathers every family's).
OPS: list[Callable[..., Any]] = [run_query, submit_query, query_status, fetch_result, cancel_query]
