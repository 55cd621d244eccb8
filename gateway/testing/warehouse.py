"""The fake workspace's SQL warehouse: the Statement Execution API on top of DuckDB.

It behaves like Databricks SQL where that shapes a client (shared/reference/databricks-rest.md,
section 6 and 8), not like a convenient test double:
- `:name` markers are bound, never interpolated; every JSON_ARRAY value is a **string**.
- Statements go PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELED on a clock
  (`pending_seconds`, `delay_seconds`) and not before their query, which runs in the
  background, has finished; so `wait_timeout: "0s"` answers at once and clients really poll;
  `wait_timeout` must be `0s` or `5s`..`50s`. Failures are HTTP 200 with state FAILED.
- INLINE takes only JSON_ARRAY and fails a result over `inline_byte_cap` (25 MiB) with
  Databricks' error; `byte_limit` truncates instead. Results are chunked **by bytes**
  (`chunk_bytes`, and at most `chunk_rows` rows) in the statement's format (the JSON text of
  JSON_ARRAY and CSV, the Arrow buffers of ARROW_STREAM) with `row_offset`, `row_count`,
  `byte_count` and `next_chunk_index`; a zero-row result has no chunks and no data.
- EXTERNAL_LINKS serve JSON_ARRAY, ARROW_STREAM (Arrow IPC stream per chunk) or CSV from a
  separate link host that rejects any Authorization header and refuses expired links
  (`link_ttl_seconds`).
- Results are kept up to `results_budget_bytes` (2 GiB); past it the oldest are dropped and
  their statements CLOSED (the result is gone), so a long benchmark does not grow without end.
- Switches for what some warehouses do: `reject_json_array` (serverless-like), no
  ARROW_STREAM at all (`reject_arrow_stream`), an INLINE
  ARROW_STREAM answered as a base64 `attachment` (`inline_arrow_attachment`), JSON-typed
  values (`typed_values`), columns without `type_name` (`omit_type_names`).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import importlib.util
import io
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from gateway.testing._http import Server

if TYPE_CHECKING:
    from gateway.testing._http import Handler

MiB = 1024 * 1024
INLINE_BYTE_CAP = 25 * MiB
_INLINE_LIMIT_MESSAGE = (
    "Inline byte limit exceeded. Statements executed with disposition=INLINE can have a result "
    "size of at most {cap} bytes. Please execute the statement with disposition=EXTERNAL_LINKS "
    "if you want to download the full result."
)
_WAIT_TIMEOUT = re.compile(r"(\d+)s")
_FORMATS = ("JSON_ARRAY", "ARROW_STREAM", "CSV")

WAREHOUSE_ID = "fakewarehouse0001"
# Literals and comments first, so a `:name` inside them is left alone, as Databricks does.
_MARKER = re.compile(
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|--[^\n]*|/\*.*?\*/|(?<![:\w]):([A-Za-z_]\w*)", re.S
)
# `current_user()` is the caller, as in Databricks SQL (outside literals and comments).
_CURRENT_USER = re.compile(
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|--[^\n]*|/\*.*?\*/|(\bcurrent_user\s*\(\s*\))",
    re.S | re.I,
)
# DuckDB's own schemas in every database: not Unity Catalog's to list.
_DUCKDB_SCHEMAS = {"main", "pg_catalog", "information_schema"}
# Names DuckDB keeps for itself: a Unity Catalog catalog called so has no tables in the fake.
_RESERVED_DATABASES = {"main", "temp", "system", "memory"}
_PARAM_TYPES = {
    "STRING": "VARCHAR",
    "BIGINT": "BIGINT",
    "LONG": "BIGINT",
    "INT": "INTEGER",
    "INTEGER": "INTEGER",
    "SMALLINT": "SMALLINT",
    "SHORT": "SMALLINT",
    "TINYINT": "TINYINT",
    "BYTE": "TINYINT",
    "DOUBLE": "DOUBLE",
    "FLOAT": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP_NTZ": "TIMESTAMP",
    "BINARY": "BLOB",
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


@dataclass
class Chunk:
    index: int
    row_offset: int
    row_count: int
    byte_count: int


@dataclass
class Statement:
    id: str
    owner: str | None
    table: str | None  # the typed result in DuckDB, one row per result row, in order
    columns: list[dict[str, Any]]
    chunks: list[Chunk]
    total_rows: int
    truncated: bool
    disposition: str
    format: str
    pending_until: float
    ready_at: float
    state: str = "PENDING"
    error: dict[str, Any] | None = None
    duck_types: list[str] = field(default_factory=list)
    arrow: Any = None  # an ARROW_STREAM result is kept as a pyarrow Table instead of `table`
    result_bytes: int = 0  # the kept result's size, as its chunks are sized
    fetched_chunks: list[int] = field(default_factory=list)
    # Set once the query ran (its result table and chunks exist, or its error): until then the
    # statement stays PENDING/RUNNING whatever the clock says.
    executed: threading.Event = field(default_factory=threading.Event)


class Warehouse:
    def __init__(self, apply_fault: Callable[[Handler, str], bool]) -> None:
        import duckdb

        self._duckdb = duckdb
        self.apply_fault = apply_fault  # the workspace's faults apply to link fetches too
        self.db = duckdb.connect(":memory:")
        # Results are tables of the connection's own database, named in full: a statement's
        # `catalog`/`schema` (its USE) must not decide where a later cursor looks for them.
        (home,) = self.db.execute("SELECT current_database()").fetchone() or ("memory",)
        self._results_schema = f'"{home}".main'
        self.lock = threading.RLock()
        self.chunk_bytes = 4 * MiB
        self.chunk_rows = 100_000  # a cap per chunk on top of the bytes (tests set it low)
        self.inline_byte_cap = INLINE_BYTE_CAP
        self.pending_seconds = 0.01  # time a statement spends PENDING
        self.delay_seconds = 0.02  # then RUNNING
        self.link_ttl_seconds = 900.0
        # Results kept at once; past it the oldest are dropped and their statements CLOSED.
        self.results_budget_bytes = 2 * 1024**3
        self.link_latency_seconds = 0.0  # added to every external link fetch (benchmarks)
        self.external_base: str | None = None  # where EXTERNAL_LINKS point (default: link host)
        # Variants some Databricks-compatible servers send: JSON-typed values in `data_array`
        # instead of strings, and columns with no `type_name` (only `type_text`).
        self.typed_values = False
        self.omit_type_names = False
        self.reject_json_array = False
        self.inline_arrow_attachment = False
        self.reject_arrow_stream = False  # a warehouse that serves no ARROW_STREAM at all
        self.statements: dict[str, Statement] = {}
        self.canceled: list[str] = []
        self.submitted: list[dict[str, Any]] = []  # request bodies, for tests
        self.link_fetches: list[tuple[str, int, str | None]] = []  # (id, chunk, Authorization)
        self.stale_links_to_issue = (
            0  # links whose signature has expired though `expiration` says not
        )
        self.links_in_flight = 0
        # Chunk index -> an event its link fetches wait for (tests hold a chunk back with it).
        self.held_chunks: dict[int, threading.Event] = {}
        self.most_links_in_flight = 0  # how many link fetches overlapped at most (prefetch)
        self._link_key = secrets.token_bytes(16)
        self._links: Server | None = None

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("duckdb") is not None

    def start(self) -> None:
        """The link host: a separate server, like the cloud storage presigned URLs point at."""
        self._links = Server(("127.0.0.1", 0), _LinkHost(self))
        self._links.serve_in_background("fake-links")

    def close(self) -> None:
        if self._links is not None:
            self._links.shutdown()
            self._links.server_close()
        self.db.close()

    @property
    def links_url(self) -> str:
        assert self._links is not None, "start() the workspace first"
        return self._links.url

    def execute_setup(self, sql: str) -> None:
        with self.lock:
            self.db.execute(sql)

    # --- the warehouse sees the workspace's Unity Catalog --------------------------------------

    def ensure_catalog(self, name: str) -> None:
        """A Unity Catalog catalog is a database SQL can use (in memory, like everything here)."""
        with self.lock:
            attached = {
                row[0]
                for row in self.db.execute(
                    "SELECT database_name FROM duckdb_databases()"
                ).fetchall()
            }
            if name not in attached and name not in _RESERVED_DATABASES:
                self.db.execute(f"ATTACH ':memory:' AS \"{name}\"")

    def ensure_schema(self, catalog: str, name: str) -> None:
        if catalog in _RESERVED_DATABASES:
            return
        with self.lock:
            self.db.execute(f'CREATE SCHEMA IF NOT EXISTS "{catalog}"."{name}"')

    def schemas_of(self, catalog: str) -> list[str]:
        """Schemas SQL created (or the workspace did), as Unity Catalog would list them."""
        with self.lock:
            rows = self.db.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ?",
                [catalog],
            ).fetchall()
        return sorted({row[0] for row in rows} - _DUCKDB_SCHEMAS)

    def tables_of(self, catalog: str, schema: str) -> list[dict[str, Any]]:
        """Tables and views of a schema with their columns, shaped like Unity Catalog's."""
        with self.lock:
            tables = self.db.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name",
                [catalog, schema],
            ).fetchall()
            columns = self.db.execute(
                "SELECT table_name, column_name, data_type, ordinal_position, is_nullable "
                "FROM information_schema.columns WHERE table_catalog = ? AND table_schema = ? "
                "ORDER BY table_name, ordinal_position",
                [catalog, schema],
            ).fetchall()
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, column, duck, position, nullable in columns:
            type_name, type_text = _databricks_type(duck)
            by_table.setdefault(table, []).append(
                {
                    "name": column,
                    "type_name": type_name,
                    "type_text": type_text.lower(),
                    "position": position - 1,
                    "nullable": nullable == "YES",
                }
            )
        return [
            {
                "name": name,
                "catalog_name": catalog,
                "schema_name": schema,
                "full_name": f"{catalog}.{schema}.{name}",
                "table_type": "VIEW" if kind == "VIEW" else "MANAGED",
                "data_source_format": None if kind == "VIEW" else "DELTA",
                "columns": by_table.get(name, []),
            }
            for name, kind in tables
        ]

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"/api/2\.0/sql/statements/?", self._submit),
            ("GET", r"/api/2\.0/sql/statements/(?P<id>[\w-]+)", self._get),
            (
                "GET",
                r"/api/2\.0/sql/statements/(?P<id>[\w-]+)/result/chunks/(?P<n>\d+)",
                self._chunk,
            ),
            ("POST", r"/api/2\.0/sql/statements/(?P<id>[\w-]+)/cancel", self._cancel),
        ]

    # --- endpoints -----------------------------------------------------------------------------

    def _submit(self, rq: Handler, _: re.Match[str]) -> None:
        body = rq.json_body()
        with self.lock:
            self.submitted.append(body)
        problem = self._invalid(body)
        if problem:
            rq.send_error_body(400, "INVALID_PARAMETER_VALUE", problem)
            return
        if body.get("warehouse_id") != WAREHOUSE_ID:
            rq.send_error_body(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Warehouse {body.get('warehouse_id')} does not exist.",
            )
            return
        statement = self._run(body, getattr(rq, "user", None))
        wait = int(_WAIT_TIMEOUT.fullmatch(body.get("wait_timeout", "10s"))[1])  # type: ignore[index]
        deadline = time.monotonic() + wait
        if wait > 0 and statement.executed.wait(wait):
            remaining = min(statement.ready_at, deadline) - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        if body.get("on_wait_timeout") == "CANCEL" and not self._finished(statement):
            self._mark_canceled(statement)
        rq.send_json(200, self._response(statement))

    def _invalid(self, body: dict[str, Any]) -> str | None:
        wait = _WAIT_TIMEOUT.fullmatch(str(body.get("wait_timeout", "10s")))
        if not wait or not (int(wait[1]) == 0 or 5 <= int(wait[1]) <= 50):
            return "wait_timeout must be 0s or between 5s and 50s."
        disposition = body.get("disposition", "INLINE")
        fmt = body.get("format", "JSON_ARRAY")
        if disposition not in ("INLINE", "EXTERNAL_LINKS") or fmt not in _FORMATS:
            return f"Unsupported disposition/format {disposition}/{fmt}."
        if fmt == "ARROW_STREAM" and self.reject_arrow_stream:
            return "ARROW_STREAM is not supported."
        if fmt == "JSON_ARRAY" and self.reject_json_array:
            return "JSON_ARRAY format is not supported on this warehouse; use ARROW_STREAM."
        inline_arrow = fmt == "ARROW_STREAM" and self.inline_arrow_attachment
        if disposition == "INLINE" and fmt != "JSON_ARRAY" and not inline_arrow:
            return "ARROW_STREAM and CSV require EXTERNAL_LINKS disposition."
        return None

    def _get(self, rq: Handler, match: re.Match[str]) -> None:
        statement = self._find(rq, match["id"])
        if statement is not None:
            rq.send_json(200, self._response(statement))

    def _chunk(self, rq: Handler, match: re.Match[str]) -> None:
        statement = self._find(rq, match["id"])
        if statement is None:
            return
        self._advance(statement)
        n = int(match["n"])
        if statement.state != "SUCCEEDED" or n >= len(statement.chunks):
            rq.send_error_body(400, "INVALID_PARAMETER_VALUE", f"Chunk index {n} is not valid.")
            return
        rq.send_json(200, self._result(statement, n))

    def _cancel(self, rq: Handler, match: re.Match[str]) -> None:
        rq.read_body()
        statement = self._find(rq, match["id"])
        if statement is None:
            return
        self._mark_canceled(statement)
        rq.send_json(200, {})

    # --- execution -----------------------------------------------------------------------------

    def _run(self, body: dict[str, Any], user: Any) -> Statement:
        statement_id = f"01ef{uuid.uuid4().hex[4:8]}-{uuid.uuid4()}"[:36]
        now = time.monotonic()
        pending_until = now + self.pending_seconds
        ready_at = pending_until + self.delay_seconds
        disposition = body.get("disposition", "INLINE")
        fmt = body.get("format", "JSON_ARRAY")
        owner = getattr(user, "user_name", None)
        statement = Statement(
            statement_id, owner, None, [], [], 0, False, disposition, fmt, pending_until, ready_at
        )
        with self.lock:
            self.statements[statement_id] = statement
        # The query runs in the background, as on a warehouse: `wait_timeout: 0s` answers at
        # once however long it takes (a 10M-row result took longer than a client's HTTP timeout
        # when it ran inside the request).
        threading.Thread(
            target=self._execute, args=(statement, body), name="fake-statement", daemon=True
        ).start()
        return statement

    def _execute(self, statement: Statement, body: dict[str, Any]) -> None:
        try:
            self._materialise(statement, body)
        except Exception as exc:  # a SQL error, or the workspace stopped under the query
            statement.error = _failure(exc)
        finally:
            statement.executed.set()

    def _materialise(self, statement: Statement, body: dict[str, Any]) -> None:
        sql, params = _bind(
            str(body.get("statement", "")).strip(), body.get("parameters") or [], statement.owner
        )
        statements = self._duckdb.extract_statements(sql)
        if len(statements) != 1:
            raise self._duckdb.ParserException(
                "Multiple statements in one request are not supported"
            )
        sql = sql.rstrip().rstrip(";")
        cursor = self.db.cursor()
        try:
            self._use(cursor, body.get("catalog"), body.get("schema"))
            if statements[0].type != self._duckdb.StatementType.SELECT:
                cursor.execute(sql, params)
                return
            # DESCRIBE keeps duplicate column names as Databricks does (a subquery renames them).
            described = [
                (name, dtype)
                for name, dtype, *_ in cursor.execute(f"DESCRIBE {sql}", params).fetchall()
            ]
            statement.columns = [_column(i, n, d) for i, (n, d) in enumerate(described)]
            statement.duck_types = [duck for _, duck in described]
            row_limit = int(body.get("row_limit") or 0)
            limit = f" LIMIT {row_limit + 1}" if row_limit else ""
            aliases = ", ".join(f"c{i}" for i in range(len(described)))
            source = f"({sql}) AS q({aliases}){limit}"
            sums = self._store(cursor, statement, source, params, described)
        finally:
            cursor.close()
        rows = len(sums)
        truncated = bool(row_limit) and rows > row_limit
        rows = min(rows, row_limit) if row_limit else rows
        byte_limit = int(body.get("byte_limit") or 0)
        if byte_limit:
            kept = sums.rows_within(byte_limit, 0, rows)
            truncated = truncated or kept < rows
            rows = kept
        if statement.disposition == "INLINE" and sums.total(0, rows) > self.inline_byte_cap:
            statement.error = {
                "error_code": "BAD_REQUEST",
                "message": _INLINE_LIMIT_MESSAGE.format(cap=self.inline_byte_cap),
            }
            return
        statement.total_rows, statement.truncated = rows, truncated
        statement.chunks = self._split(sums, rows)
        statement.result_bytes = sums.total(0, len(sums))
        self._close_oldest_results(statement)

    def _close_oldest_results(self, newest: Statement) -> None:
        """Drop the oldest results past `results_budget_bytes` and CLOSE their statements, as
        Databricks closes a statement whose result is gone: a benchmark's 10M-row results, all
        kept, grew the fake by gigabytes and slowed every later query."""
        dropped: list[str] = []
        with self.lock:
            kept = [s for s in self.statements.values() if s.result_bytes and s is not newest]
            total = newest.result_bytes + sum(s.result_bytes for s in kept)
            for old in kept:  # in the order they were submitted: oldest first
                if total <= self.results_budget_bytes:
                    break
                total -= old.result_bytes
                if old.table is not None:
                    dropped.append(old.table)
                old.state, old.arrow, old.table, old.result_bytes = "CLOSED", None, None, 0
        for table in dropped:
            cursor = self.db.cursor()
            try:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
            finally:
                cursor.close()

    def _store(
        self,
        cursor: Any,
        statement: Statement,
        source: str,
        params: dict[str, Any],
        described: list[tuple[str, str]],
    ) -> _RunningTotals:
        """Keep the result where its chunks are cheap to serve, and the running totals of its
        rows' sizes (as Arrow: 10M rows as Python ints took a GiB).

        An ARROW_STREAM result stays a pyarrow Table: a chunk is a zero-copy slice, written as
        IPC when its link is fetched (a DuckDB query per chunk cost the link host 8x as much).
        A JSON_ARRAY or CSV result is a DuckDB table, whose SQL spells every value as a string."""
        if statement.format != "ARROW_STREAM":
            name = f"{self._results_schema}.r_{statement.id.replace('-', '_')}"
            cursor.execute(f"CREATE TABLE {name} AS SELECT * FROM {source}", params)
            statement.table = name
            sizes = cursor.execute(f"SELECT {_json_row_size(described)} FROM {name}")
            return _RunningTotals(sizes.to_arrow_table().column(0))
        # Each row's size comes with it, in a last column: a second query, over the Arrow
        # table, cost DuckDB as much again as converting the rows.
        query = f"SELECT *, {_arrow_row_size(described)} FROM {source}"
        result = cursor.execute(query, params).to_arrow_table()
        sizes = result.num_columns - 1
        sums = _RunningTotals(result.column(sizes))
        names = [c["name"] for c in statement.columns]
        statement.arrow = result.remove_column(sizes).rename_columns(names)
        return sums

    def _split(self, sums: _RunningTotals, rows: int) -> list[Chunk]:
        """Chunks of at most `chunk_bytes` (one row at least) and `chunk_rows` rows."""
        chunks: list[Chunk] = []
        start = 0
        while start < rows:
            end = min(start + self.chunk_rows, rows)
            count = max(1, sums.rows_within(self.chunk_bytes, start, end) - start)
            chunks.append(Chunk(len(chunks), start, count, sums.total(start, start + count)))
            start += count
        return chunks

    def _use(self, cursor: Any, catalog: str | None, schema: str | None) -> None:
        if catalog and schema:
            cursor.execute(f'USE "{catalog}"."{schema}"')
        elif catalog:
            cursor.execute(f'USE "{catalog}"')

    def _advance(self, statement: Statement) -> None:
        with self.lock:
            if statement.state in ("PENDING", "RUNNING"):
                if self._finished(statement):
                    statement.state = "FAILED" if statement.error else "SUCCEEDED"
                elif time.monotonic() >= statement.pending_until:
                    statement.state = "RUNNING"

    @staticmethod
    def _finished(statement: Statement) -> bool:
        return statement.executed.is_set() and time.monotonic() >= statement.ready_at

    def _mark_canceled(self, statement: Statement) -> None:
        with self.lock:
            self.canceled.append(statement.id)
            if statement.state in ("PENDING", "RUNNING"):
                statement.state = "CANCELED"

    def _find(self, rq: Handler, statement_id: str) -> Statement | None:
        with self.lock:
            statement = self.statements.get(statement_id)
        if statement is None:
            rq.send_error_body(
                404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} does not exist."
            )
        return statement

    # --- response shapes ---------------------------------------------------------------------

    def _response(self, statement: Statement) -> dict[str, Any]:
        self._advance(statement)
        status: dict[str, Any] = {"state": statement.state}
        out: dict[str, Any] = {"statement_id": statement.id, "status": status}
        if statement.state == "FAILED" and statement.error:
            status["error"] = {k: v for k, v in statement.error.items() if k != "sql_state"}
            if "sql_state" in statement.error:
                status["sql_state"] = statement.error["sql_state"]
        if statement.state != "SUCCEEDED":
            return out
        columns = statement.columns
        if self.omit_type_names:
            columns = [{k: v for k, v in c.items() if k != "type_name"} for c in columns]
        manifest: dict[str, Any] = {
            "format": statement.format,
            "schema": {"column_count": len(columns), "columns": columns},
            "total_chunk_count": len(statement.chunks),
            "total_row_count": statement.total_rows,
            "truncated": statement.truncated,
        }
        if statement.chunks:  # Databricks leaves chunks and result out of an empty result
            manifest["chunks"] = [_chunk_meta(c) for c in statement.chunks]
            manifest["total_byte_count"] = sum(c.byte_count for c in statement.chunks)
            out["result"] = self._result(statement, 0)
        out["manifest"] = manifest
        return out

    def _result(self, statement: Statement, n: int) -> dict[str, Any]:
        with self.lock:
            statement.fetched_chunks.append(n)
        chunk = statement.chunks[n]
        meta = _chunk_meta(chunk)
        if n + 1 < len(statement.chunks):
            meta["next_chunk_index"] = n + 1
            meta["next_chunk_internal_link"] = (
                f"/api/2.0/sql/statements/{statement.id}/result/chunks/{n + 1}"
            )
        if statement.disposition == "EXTERNAL_LINKS":
            expires = time.time() + self.link_ttl_seconds
            link = {
                **meta,
                "external_link": self._link_url(statement.id, n, expires),
                "expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            }
            return {"external_links": [link]}
        if statement.format == "ARROW_STREAM":  # INLINE, on warehouses that do it
            return {**meta, "attachment": base64.b64encode(self.arrow_bytes(statement, n)).decode()}
        return {**meta, "data_array": self._rows(statement, n)}

    def _link_url(self, statement_id: str, n: int, expires: float) -> str:
        path = f"/external/{statement_id}/{n}"
        with self.lock:
            if self.stale_links_to_issue > 0:
                self.stale_links_to_issue -= 1
                expires = time.time() - 60
        signature = _sign(self._link_key, f"{path}:{int(expires)}")
        base = self.external_base or self.links_url
        return f"{base}{path}?X-Amz-Expires={int(expires)}&X-Amz-Signature={signature}"

    def _select_strings(self, statement: Statement, n: int) -> Any:
        """A cursor over chunk `n`'s rows, every value as Databricks spells it in a string."""
        chunk = statement.chunks[n]
        assert statement.table is not None
        columns = ", ".join(
            _as_string(f"c{i}", duck) for i, duck in enumerate(statement.duck_types)
        )
        cursor = self.db.cursor()
        try:
            # By rowid, the rows' place in the table (filled in the query's order; a scan keeps
            # that order, as OFFSET relied on too): OFFSET read every row before the chunk and
            # cost the link host 4x as much.
            start, end = chunk.row_offset, chunk.row_offset + chunk.row_count
            return cursor.execute(
                f"SELECT {columns} FROM {statement.table} WHERE rowid >= {start} AND rowid < {end}"
            )
        except BaseException:
            cursor.close()
            raise

    def _rows(self, statement: Statement, n: int) -> list[list[Any]]:
        cursor = self._select_strings(statement, n)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if self.typed_values:
            types = [c["type_name"] for c in statement.columns]
            return [[_typed(v, t) for v, t in zip(r, types, strict=True)] for r in rows]
        return [list(r) for r in rows]

    def arrow_bytes(self, statement: Statement, n: int) -> bytes:
        """Chunk `n` as one Arrow IPC stream (schema, batches, end marker), as links serve it."""
        import pyarrow as pa

        chunk = statement.chunks[n]
        table = statement.arrow.slice(chunk.row_offset, chunk.row_count)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=10_000)
        return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]

    def _csv_bytes(self, statement: Statement, n: int) -> bytes:
        import csv

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if n == 0:  # the header row travels in the first chunk only
            writer.writerow([c["name"] for c in statement.columns])
        writer.writerows(self._rows(statement, n))
        return out.getvalue().encode()

    def serve_link(self, rq: Handler) -> None:
        """GET on the link host: presigned, expiring, and allergic to Authorization headers."""
        path = urlsplit(rq.path).path
        match = re.fullmatch(r"/external/(?P<id>[\w-]+)/(?P<n>\d+)", path)
        with self.lock:
            self.link_fetches.append(
                (
                    match["id"] if match else path,
                    int(match["n"]) if match else -1,
                    rq.headers.get("Authorization"),
                )
            )
        with self.lock:
            self.links_in_flight += 1
            self.most_links_in_flight = max(self.most_links_in_flight, self.links_in_flight)
        try:
            self._serve_link(rq, path, match)
        except self._duckdb.Error:  # the workspace is stopping
            rq.close_connection = True
        finally:
            with self.lock:
                self.links_in_flight -= 1

    def _serve_link(self, rq: Handler, path: str, match: re.Match[str] | None) -> None:
        # The latency is the time to the first byte, as from cloud storage: the answer is made
        # meanwhile (a stored chunk costs storage nothing to produce; making it after the wait
        # added its Arrow encoding to every fetch).
        first_byte = time.monotonic() + self.link_latency_seconds
        status, body, kind = self._link_answer(rq, path, match)
        time.sleep(max(0.0, first_byte - time.monotonic()))
        rq.send(status, body, content_type=kind)

    def _link_answer(
        self, rq: Handler, path: str, match: re.Match[str] | None
    ) -> tuple[int, bytes, str]:
        xml = "application/xml"
        if rq.headers.get("Authorization"):
            return 400, _s3_error("InvalidArgument", "Only one auth mechanism allowed"), xml
        expires = rq.query.get("X-Amz-Expires", "0")
        valid = match and hmac.compare_digest(
            rq.query.get("X-Amz-Signature", ""), _sign(self._link_key, f"{path}:{expires}")
        )
        if not valid:
            message = "The request signature does not match"
            return 403, _s3_error("SignatureDoesNotMatch", message), xml
        if time.time() > int(expires):
            return 403, _s3_error("AccessDenied", "Request has expired"), xml
        with self.lock:
            statement = self.statements.get(match["id"])  # type: ignore[index]
        n = int(match["n"])  # type: ignore[index]
        if statement is None or statement.state == "CLOSED" or n >= len(statement.chunks):
            return 404, _s3_error("NoSuchKey", "The specified key does not exist."), xml
        held = self.held_chunks.get(n)
        if held is not None:
            held.wait(60)  # a hang guard: the test that held it lets it go
        body, kind = self.link_body(statement, n)
        return 200, body, kind

    def link_body(self, statement: Statement, n: int) -> tuple[bytes, str]:
        """What a link of chunk `n` serves, in the statement's format, with its content type."""
        if statement.format == "ARROW_STREAM":
            return self.arrow_bytes(statement, n), "application/vnd.apache.arrow.stream"
        if statement.format == "CSV":
            return self._csv_bytes(statement, n), "text/csv"
        return orjson.dumps(self._rows(statement, n)), "application/json"


class _LinkHost:
    """What the link server dispatches to (the `workspace` of its handler)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def handle(self, rq: Handler) -> None:
        if self.warehouse.apply_fault(rq, urlsplit(rq.path).path):
            return  # tests inject faults on "/external/" paths as on any other
        if rq.command != "GET":
            rq.send(
                405,
                _s3_error("MethodNotAllowed", "Method not allowed"),
                content_type="application/xml",
            )
            return
        self.warehouse.serve_link(rq)


def _chunk_meta(chunk: Chunk) -> dict[str, Any]:
    return {
        "chunk_index": chunk.index,
        "row_offset": chunk.row_offset,
        "row_count": chunk.row_count,
        "byte_count": chunk.byte_count,
    }


class _RunningTotals:
    """Running totals of the rows' sizes (an Arrow column), searched without a Python list."""

    def __init__(self, sizes: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        sizes = sizes.cast(pa.int64())
        self._sums = pc.cumulative_sum(sizes).combine_chunks() if len(sizes) else sizes

    def __len__(self) -> int:
        return len(self._sums)

    def _before(self, row: int) -> int:
        return int(self._sums[row - 1].as_py()) if row else 0

    def total(self, start: int, end: int) -> int:
        """The size of rows start..end-1."""
        return self._before(end) - self._before(start)

    def rows_within(self, limit: int, start: int, end: int) -> int:
        """The row after the longest run from `start` (before `end`) whose size is <= limit."""
        base = self._before(start)
        return (
            bisect.bisect_right(
                range(start, end), base + limit, key=lambda row: int(self._sums[row].as_py())
            )
            + start
        )


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _s3_error(code: str, message: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def _typed(value: str | None, type_name: str) -> Any:
    """A string cell as a JSON-typed value, the way some compatible servers send it."""
    if value is None:
        return None
    if type_name == "BOOLEAN":
        return value == "true"
    if type_name in ("BYTE", "SHORT", "INT", "LONG"):
        return int(value)
    if type_name in ("FLOAT", "DOUBLE"):
        number = float(value)
        return number if math.isfinite(number) else value  # JSON has no NaN/Infinity
    if type_name in ("ARRAY", "MAP", "STRUCT"):
        return orjson.loads(value)
    return value


def _bind(
    sql: str, parameters: list[dict[str, Any]], user: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Turn Databricks `:name` markers into typed DuckDB `$name` parameters."""
    given = {p["name"]: p for p in parameters}
    values: dict[str, Any] = {}

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name is None:
            return match[0]  # a literal or a comment
        if name not in given:
            raise _UnboundParameter(name)
        spec = given[name]
        values[name] = spec.get("value")
        return f"CAST(${name} AS {_duck_type(spec.get('type') or 'STRING')})"

    try:
        bound = _MARKER.sub(replace, sql)
    except _UnboundParameter as exc:
        import duckdb

        raise duckdb.BinderException(f"UNBOUND_SQL_PARAMETER: {exc.args[0]}") from None

    def current_user(match: re.Match[str]) -> str:
        if match[1] is None:
            return match[0]  # a literal or a comment
        values["__current_user"] = user or "unknown@example.com"
        return "CAST($__current_user AS VARCHAR)"

    return _CURRENT_USER.sub(current_user, bound), values


class _UnboundParameter(Exception):
    pass


def _duck_type(databricks_type: str) -> str:
    upper = databricks_type.upper().strip()
    if _DECIMAL.fullmatch(upper) or upper == "DECIMAL":
        return upper
    return _PARAM_TYPES.get(upper, "VARCHAR")


def _column(position: int, name: str, duck: str) -> dict[str, Any]:
    type_name, type_text = _databricks_type(duck)
    column: dict[str, Any] = {
        "name": name,
        "position": position,
        "type_name": type_name,
        "type_text": type_text,
    }
    if decimal := _DECIMAL.fullmatch(duck):
        column["type_precision"], column["type_scale"] = int(decimal[1]), int(decimal[2])
    return column


def _databricks_type(duck: str) -> tuple[str, str]:
    simple = {
        "BIGINT": ("LONG", "BIGINT"),
        "INTEGER": ("INT", "INT"),
        "SMALLINT": ("SHORT", "SMALLINT"),
        "TINYINT": ("BYTE", "TINYINT"),
        "DOUBLE": ("DOUBLE", "DOUBLE"),
        "FLOAT": ("FLOAT", "FLOAT"),
        "BOOLEAN": ("BOOLEAN", "BOOLEAN"),
        "VARCHAR": ("STRING", "STRING"),
        "DATE": ("DATE", "DATE"),
        "TIMESTAMP": ("TIMESTAMP", "TIMESTAMP"),
        "TIMESTAMP WITH TIME ZONE": ("TIMESTAMP", "TIMESTAMP"),
        "BLOB": ("BINARY", "BINARY"),
        "HUGEINT": ("DECIMAL", "DECIMAL(38,0)"),
        "INTERVAL": ("INTERVAL", "INTERVAL"),
        '"NULL"': ("NULL", "VOID"),
        "NULL": ("NULL", "VOID"),
    }
    if duck in simple:
        return simple[duck]
    if duck.startswith("DECIMAL"):
        return "DECIMAL", duck
    if duck.endswith("[]"):
        return "ARRAY", f"ARRAY<{_databricks_type(duck[:-2])[1]}>"
    if duck.startswith("STRUCT"):
        return "STRUCT", duck
    if duck.startswith("MAP"):
        return "MAP", duck
    return "STRING", "STRING"


# Bytes per value of the fixed-width Arrow types DuckDB's columns become.
_ARROW_WIDTHS = {
    "BOOLEAN": 1,  # a bit, rounded up: a row is never less than a byte per column
    "TINYINT": 1,
    "UTINYINT": 1,
    "SMALLINT": 2,
    "USMALLINT": 2,
    "INTEGER": 4,
    "UINTEGER": 4,
    "FLOAT": 4,
    "DATE": 4,
    "BIGINT": 8,
    "UBIGINT": 8,
    "DOUBLE": 8,
    "TIME": 8,
    "TIMESTAMP": 8,
    "TIMESTAMP WITH TIME ZONE": 8,
    "HUGEINT": 16,
    "INTERVAL": 16,
}


def _json_row_size(described: list[tuple[str, str]]) -> str:
    """SQL for a row's size as JSON_ARRAY (or CSV) text: each value's string form, its quotes
    and separators."""
    parts = [
        f"coalesce(length({_as_string(f'c{i}', duck)}) + 3, 5)"
        for i, (_, duck) in enumerate(described)
    ]
    return f"{' + '.join(parts) or '0'} + 2"


def _arrow_row_size(described: list[tuple[str, str]]) -> str:
    """SQL for a row's size in Arrow record batches."""
    return " + ".join(_arrow_size(f"c{i}", duck) for i, (_, duck) in enumerate(described)) or "0"


def _arrow_size(column: str, duck: str) -> str:
    """A value's bytes in an Arrow record batch: its width, or a string's bytes and offset.
    Cheap to compute (no value is turned into text), unlike the JSON size of every value."""
    if duck.startswith("DECIMAL"):
        return "16"
    if duck in _ARROW_WIDTHS:
        return str(_ARROW_WIDTHS[duck])
    if duck == "VARCHAR":
        return f"coalesce(strlen({column}), 0) + 4"  # strlen counts bytes, not characters
    if duck == "BLOB":
        return f"coalesce(octet_length({column}), 0) + 4"
    # Nested and other types: their JSON text is near enough to their Arrow buffers.
    return f"coalesce(length({_as_string(column, duck)}), 0) + 4"


def _as_string(column: str, duck: str) -> str:
    if duck == "TIMESTAMP":
        return f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%gZ')"
    if duck == "TIMESTAMP WITH TIME ZONE":
        return f"strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ')"
    if duck == "BLOB":
        return f"base64({column})"
    if duck.endswith("[]") or duck.startswith(("STRUCT", "MAP")):
        return f"CAST(to_json({column}) AS VARCHAR)"
    if duck in ("DOUBLE", "FLOAT"):  # Spark's spellings of the non-finite values
        return (
            f"CASE WHEN isnan({column}) THEN 'NaN' WHEN {column} = 'inf'::DOUBLE THEN 'Infinity' "
            f"WHEN {column} = '-inf'::DOUBLE THEN '-Infinity' ELSE CAST({column} AS VARCHAR) END"
        )
    return f"CAST({column} AS VARCHAR)"


def _failure(exc: Exception) -> dict[str, Any]:
    name = type(exc).__name__
    label, sql_state = {
        "CatalogException": ("TABLE_OR_VIEW_NOT_FOUND", "42P01"),
        "ParserException": ("PARSE_SYNTAX_ERROR", "42601"),
        "BinderException": ("UNRESOLVED_COLUMN", "42703"),
        "ConversionException": ("CAST_INVALID_INPUT", "22018"),
    }.get(name, ("INTERNAL_ERROR", "XX000"))
    first_line = str(exc).splitlines()[0] if str(exc) else name
    return {
        "error_code": "BAD_REQUEST",
        "message": f"[{label}] {first_line} SQLSTATE: {sql_state}",
        "sql_state": sql_state,
    }
