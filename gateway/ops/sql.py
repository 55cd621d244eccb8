"""run_query: SQL Statement Execution with bound parameters, every chunk, typed values.

A statement is submitted, polled with backoff until it ends, and cancelled on the warehouse when
the deadline passes, the caller goes away, or the gateway shuts down. Results follow every chunk
(`next_chunk_index`), typed per `gateway.sqltypes`; inline responses are capped and say
`truncated`, streamed (NDJSON) responses fetch one chunk at a time as the client reads.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
import httpx
import orjson
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, NotImplemented
from databricks.sdk.service.sql import (
    Disposition,
    ExecuteStatementRequestOnWaitTimeout,
    Format,
    ResultData,
    StatementParameterListItem,
    StatementResponse,
    StatementState,
)
from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from gateway.auth import get_workspace_client
from gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    bad_request,
    masked_internal_error,
    translate,
)
from gateway.logs import current_request_id, logger
from gateway.ops.catalog import Name
from gateway.registry import ByteStream, Delivery
from gateway.runtime import Runtime
from gateway.sqltypes import RowTyper, type_from_text

NDJSON = "application/x-ndjson"
_MARKER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_STRINGS_AND_COMMENTS = re.compile(
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.S
)
_DECLARED = re.compile(r"--\s*@param\s+([A-Za-z_]\w*)\s+([A-Za-z_][\w(), ]*)")
_RUNNING = (StatementState.PENDING, StatementState.RUNNING)

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


async def run_query(
    runtime: Runtime,
    delivery: Delivery,
    statement: Annotated[str | None, Field(min_length=1, max_length=1_000_000)] = None,
    query: Annotated[str | None, Field(pattern=r"^[a-z0-9_]+$", max_length=100)] = None,
    parameters: dict[str, ParamValue] | list[QueryParameter] | None = None,
    warehouse_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9]+$")] = None,
    catalog: Name | None = None,
    schema: Name | None = None,
    row_limit: Annotated[int | None, Field(ge=1, le=2**63 - 1)] = None,
    timeout_seconds: Annotated[float | None, Field(gt=0, le=600)] = None,
    rows_as: Literal["arrays", "objects"] = "arrays",
    disposition: Literal["INLINE", "EXTERNAL_LINKS"] = "INLINE",
) -> QueryResult | ByteStream:
    """Run SQL (`statement`, or the named `query` file) with bound `parameters` and return every
    row, typed. Send `Accept: application/x-ndjson` to stream rows as NDJSON instead."""
    settings = runtime.settings
    sql, declared = _sql_text(runtime, statement, query)
    bound = _bind(parameters, declared, _markers(sql) if query else None)
    warehouse = warehouse_id or settings.warehouse_id
    if not warehouse:
        raise bad_request("WAREHOUSE_REQUIRED", "Give warehouse_id or set DATABRICKS_WAREHOUSE_ID.")
    client = await anyio.to_thread.run_sync(get_workspace_client)
    execution = Execution(client, runtime)
    # Inside the request deadline, so the query's own 504 (naming the cancelled statement) wins.
    ceiling = min(settings.query_timeout_seconds, settings.request_timeout_seconds * 0.95)
    limit = min(timeout_seconds or ceiling, ceiling)
    submit = {
        "statement": sql,
        "warehouse_id": warehouse,
        "catalog": catalog,
        "schema": schema,
        "parameters": bound,
        "row_limit": row_limit,
    }
    response = await execution.run(submit, Disposition(disposition), limit)
    reader = ResultReader(client, runtime, response)
    if delivery.stream:
        return ByteStream(_ndjson(reader, execution), NDJSON)
    try:
        return await _collect(reader, rows_as, settings.max_inline_rows, settings.max_inline_bytes)
    except BaseException:
        await execution.cancel()
        raise
    finally:
        execution.forget()


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
) -> list[StatementParameterListItem]:
    """Parameters always travel as the API's `parameters`; SQL text is never built from them."""
    if isinstance(given, list):
        items = [_item(p.name, p.value, p.type) for p in given]
    else:
        items = [_item(n, v, declared.get(n)) for n, v in (given or {}).items()]
    names = [item.name for item in items]
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


def _item(name: str, value: ParamValue, sql_type: str | None) -> StatementParameterListItem:
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
    return StatementParameterListItem(name=name, value=_text(value), type=sql_type or _infer(value))


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


# --- execution --------------------------------------------------------------------------------


class Execution:
    """One statement's life on the warehouse, cancelled unless it ends by itself."""

    def __init__(self, client: WorkspaceClient, runtime: Runtime) -> None:
        self.api = client.statement_execution
        self.runtime = runtime
        self.statement_id: str | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        self._cancelled = False

    async def run(
        self, submit: dict[str, Any], disposition: Disposition, seconds: float
    ) -> StatementResponse:
        with anyio.move_on_after(seconds) as scope:
            try:
                response = await self._submit(submit, disposition)
                response = await self._wait(response)
            except BaseException:
                await self.cancel()
                raise
        if scope.cancelled_caught:
            await self.cancel()
            raise GatewayError(
                504,
                "QUERY_TIMEOUT",
                f"The query did not finish within {seconds:g} s; it was cancelled.",
                {"statement_id": self.statement_id},
            )
        return self._finished(response)

    async def _submit(self, submit: dict[str, Any], disposition: Disposition) -> StatementResponse:
        try:
            return await self._execute(submit, disposition)
        except (BadRequest, NotImplemented):
            if disposition != Disposition.EXTERNAL_LINKS:
                raise
            # The workspace refused external links (by error class): fall back to inline.
            return await self._execute(submit, Disposition.INLINE)

    async def _execute(self, submit: dict[str, Any], disposition: Disposition) -> StatementResponse:
        def execute() -> StatementResponse:
            response = self.api.execute_statement(
                **submit,
                disposition=disposition,
                format=Format.JSON_ARRAY,
                # No server-side wait: the statement id must be ours at once, so a deadline, a
                # client leaving or a shutdown can cancel it immediately; waiting (even 5 s)
                # left a window where none of them could. Costs one poll on fast queries.
                wait_timeout="0s",
                on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
            )
            with self._lock:  # a caller that gave up meanwhile still gets its statement cancelled
                self.statement_id = response.statement_id
                abandoned = self._abandoned
            if abandoned:
                self._cancel_now()
                self.forget()
            return response

        # Known from before the submit, so a shutdown can wait for the id and cancel it.
        self.runtime.running_statements[self] = self.cancel
        try:
            return await anyio.to_thread.run_sync(execute, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            with self._lock:
                self._abandoned = True  # the thread, still submitting, cancels when it returns
            raise
        except BaseException:
            self.forget()
            raise

    async def _wait(self, response: StatementResponse) -> StatementResponse:
        delay = 0.05
        while response.status and response.status.state in _RUNNING:
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
            assert self.statement_id is not None  # a running statement has an id
            response = await anyio.to_thread.run_sync(
                self.api.get_statement, self.statement_id, abandon_on_cancel=True
            )
        return response

    def _finished(self, response: StatementResponse) -> StatementResponse:
        status = response.status
        state = status.state if status else None
        if state == StatementState.SUCCEEDED:
            return response
        self.forget()
        details = {"statement_id": self.statement_id}
        if state == StatementState.FAILED and status is not None:
            error = status.error
            return_code = error.error_code.value if error and error.error_code else None
            raise GatewayError(
                400,
                "SQL_ERROR",
                (error.message if error else None) or "The statement failed.",
                {**details, "sql_state": status.sql_state},
                databricks_error_code=return_code,
            )
        if state == StatementState.CANCELED:
            raise GatewayError(409, "QUERY_CANCELED", "The statement was cancelled.", details)
        raise GatewayError(
            410, "QUERY_CLOSED", "The statement's result is no longer available.", details
        )

    async def cancel(self) -> None:
        """Cancel on the warehouse (idempotent, shielded: it runs even while being cancelled)."""
        with self._lock:
            if self.statement_id is None:
                self._abandoned = True  # still submitting: cancelled as soon as the id is known
                return
            if self._cancelled:
                return
            self._cancelled = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await anyio.to_thread.run_sync(self._cancel_now, abandon_on_cancel=True)
        self.forget()

    def _cancel_now(self) -> None:
        try:
            self.api.cancel_execution(self.statement_id or "")
            logger.info("statement cancelled", extra={"statement_id": self.statement_id})
        except Exception as exc:  # best effort: the statement may have ended meanwhile
            logger.warning(
                "cancel failed",
                extra={"statement_id": self.statement_id, "error": type(exc).__name__},
            )

    def forget(self) -> None:
        self.runtime.running_statements.pop(self, None)


# --- results ---------------------------------------------------------------------------------


class ResultReader:
    """Every chunk of a finished statement, in order, one request per chunk as asked."""

    def __init__(
        self, client: WorkspaceClient, runtime: Runtime, response: StatementResponse
    ) -> None:
        self.api = client.statement_execution
        self.http = runtime.links_http
        self.statement_id = response.statement_id or ""
        manifest = response.manifest
        columns = manifest.schema.columns if manifest and manifest.schema else None
        self.columns = [
            Column(
                name=c.name or "",
                type=c.type_name.value if c.type_name else type_from_text(c.type_text),
                type_text=c.type_text,
            )
            for c in columns or []
        ]
        self.total_chunks = (manifest.total_chunk_count or 0) if manifest else 0
        self.server_truncated = bool(manifest and manifest.truncated)
        self.first = response.result
        self.typer = RowTyper([(c.type, c.type_text) for c in self.columns])

    async def chunks(self) -> AsyncIterator[list[list[Any]]]:
        result = self.first
        if result is None and self.total_chunks:
            result = await self._fetch(0)
        for _ in range(self.total_chunks):
            if result is None:
                return
            yield await self._rows(result)
            following = _next_chunk_index(result)
            if following is None:
                return
            result = await self._fetch(following)

    async def _fetch(self, index: int) -> ResultData:
        return await anyio.to_thread.run_sync(
            self.api.get_statement_result_chunk_n, self.statement_id, index, abandon_on_cancel=True
        )

    async def _rows(self, result: ResultData) -> list[list[Any]]:
        if result.data_array is not None:
            return result.data_array
        rows: list[list[Any]] = []
        for link in result.external_links or []:
            # Presigned URLs carry their own signature: never send our Authorization header.
            response = await self.http.get(
                link.external_link or "", headers=link.http_headers or {}
            )
            response.raise_for_status()
            rows += _link_rows(response)
        return rows


def _link_rows(response: httpx.Response) -> list[list[Any]]:
    """The rows of one external link: a JSON array of arrays, or an upstream that is not the
    storage the link promised (a proxy's HTML page, an error document)."""
    try:
        rows = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        rows = None
    if not isinstance(rows, list):
        kind = response.headers.get("content-type", "")
        raise UpstreamBadResponse(f"external link answered {response.status_code} {kind!r}")
    return rows


def _next_chunk_index(result: ResultData) -> int | None:
    if result.next_chunk_index is not None:
        return result.next_chunk_index
    links = result.external_links or []
    return links[-1].next_chunk_index if links else None


async def _collect(
    reader: ResultReader, rows_as: str, max_rows: int, max_bytes: int
) -> QueryResult:
    rows: list[list[Any]] = []
    size, capped = 0, False
    async for chunk in reader.chunks():
        for row in chunk:
            size += sum(len(v) for v in row if isinstance(v, str)) + 4 * len(row)
            if len(rows) >= max_rows or size > max_bytes:
                capped = True
                break
            rows.append(reader.typer(row))
        if capped:
            break
    columns = reader.columns
    shaped: list[list[Any]] | list[dict[str, Any]] = rows
    if rows_as == "objects":
        keys = _unique_keys([c.name for c in columns])
        columns = [c.model_copy(update={"key": k}) for c, k in zip(columns, keys, strict=True)]
        shaped = [dict(zip(keys, row, strict=True)) for row in rows]
    return QueryResult(
        statement_id=reader.statement_id,
        columns=columns,
        rows=shaped,
        row_count=len(rows),
        truncated=capped or reader.server_truncated,
    )


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


async def _ndjson(reader: ResultReader, execution: Execution) -> AsyncGenerator[bytes, None]:
    header = {
        "statement_id": reader.statement_id,
        "columns": [c.model_dump(exclude_none=True) for c in reader.columns],
    }
    yield orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE)
    count, finished = 0, False
    try:
        async for chunk in reader.chunks():
            typer = reader.typer
            yield b"".join(
                [orjson.dumps(typer(row), option=orjson.OPT_APPEND_NEWLINE) for row in chunk]
            )
            count += len(chunk)
        finished = True
        yield orjson.dumps(
            {"row_count": count, "truncated": reader.server_truncated},
            option=orjson.OPT_APPEND_NEWLINE,
        )
    except Exception as exc:
        finished = True
        yield orjson.dumps({"error": _stream_error(exc)}, option=orjson.OPT_APPEND_NEWLINE)
    finally:
        if not finished:  # the client went away mid-stream
            await execution.cancel()
        execution.forget()


def _stream_error(exc: Exception) -> dict[str, Any]:
    error = translate(exc)
    if error is None:
        logger.error("stream failed", exc_info=exc, extra={"request_id": current_request_id()})
        error = masked_internal_error()
    return error.fields(current_request_id())
