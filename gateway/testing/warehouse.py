"""The fake workspace's SQL warehouse: the Statement Execution API on top of DuckDB.

Like Databricks it binds `:name` markers (never interpolates), returns **every value as a
string** (SQL NULL as JSON null), splits results into chunks linked by `next_chunk_index`,
moves statements through PENDING/RUNNING to a terminal state, reports failures as HTTP 200 with
state FAILED and a SQLSTATE, and serves EXTERNAL_LINKS that reject an Authorization header.
"""

from __future__ import annotations

import importlib.util
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway.testing._http import Handler
    from gateway.testing.workspace import FakeWorkspace

WAREHOUSE_ID = "fakewarehouse0001"
# Literals and comments first, so a `:name` inside them is left alone, as Databricks does.
_MARKER = re.compile(
    r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|--[^\n]*|/\*.*?\*/|(?<![:\w]):([A-Za-z_]\w*)", re.S
)
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
class Statement:
    id: str
    table: str | None
    columns: list[dict[str, Any]]
    total_rows: int
    truncated: bool
    disposition: str
    ready_at: float
    state: str = "PENDING"
    error: dict[str, Any] | None = None
    fetched_chunks: list[int] = field(default_factory=list)


class Warehouse:
    def __init__(self, workspace: FakeWorkspace) -> None:
        import duckdb

        self._duckdb = duckdb
        self.workspace = workspace
        self.db = duckdb.connect(":memory:")
        self.lock = threading.RLock()
        self.chunk_rows = 1000
        self.delay_seconds = 0.0  # time a statement spends RUNNING
        self.external_base: str | None = None  # where EXTERNAL_LINKS point (default: this server)
        # Variants some Databricks-compatible servers send: JSON-typed values in `data_array`
        # instead of strings, and columns with no `type_name` (only `type_text`).
        self.typed_values = False
        self.omit_type_names = False
        self.statements: dict[str, Statement] = {}
        self.canceled: list[str] = []
        self.submitted: list[dict[str, Any]] = []  # request bodies, for tests

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("duckdb") is not None

    def close(self) -> None:
        self.db.close()

    def execute_setup(self, sql: str) -> None:
        with self.lock:
            self.db.execute(sql)

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
            ("GET", r"/external/(?P<id>[\w-]+)/(?P<n>\d+)", self._external),
        ]

    # --- endpoints -----------------------------------------------------------------------------

    def _submit(self, rq: Handler, _: re.Match[str]) -> None:
        body = rq.json_body()
        with self.lock:
            self.submitted.append(body)
        if body.get("warehouse_id") != WAREHOUSE_ID:
            rq.send_error_body(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Warehouse {body.get('warehouse_id')} does not exist.",
            )
            return
        disposition = body.get("disposition", "INLINE")
        if disposition == "INLINE" and body.get("format", "JSON_ARRAY") != "JSON_ARRAY":
            rq.send_error_body(
                400,
                "INVALID_PARAMETER_VALUE",
                "ARROW_STREAM and CSV require EXTERNAL_LINKS disposition.",
            )
            return
        statement = self._run(body, disposition)
        wait = _seconds(body.get("wait_timeout", "10s"))
        remaining = statement.ready_at - time.monotonic()
        if remaining > 0 and wait > 0:
            time.sleep(min(wait, remaining))
        if body.get("on_wait_timeout") == "CANCEL" and time.monotonic() < statement.ready_at:
            self._mark_canceled(statement)
        rq.send_json(200, self._response(statement))

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
        if statement.state != "SUCCEEDED" or n >= self._chunk_count(statement):
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

    def _external(self, rq: Handler, match: re.Match[str]) -> None:
        # Presigned cloud storage URLs reject a second auth mechanism.
        if rq.headers.get("Authorization"):
            rq.send(
                400,
                b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
                content_type="application/xml",
            )
            return
        with self.lock:
            statement = self.statements.get(match["id"])
        if statement is None:
            rq.send(404, b"<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
            return
        rq.send(
            200,
            orjson.dumps(self._rows(statement, int(match["n"]))),
            content_type="application/json",
        )

    # --- execution -----------------------------------------------------------------------------

    def _run(self, body: dict[str, Any], disposition: str) -> Statement:
        statement_id = f"01ef{uuid.uuid4().hex[4:8]}-{uuid.uuid4()}"[:36]
        ready_at = time.monotonic() + self.delay_seconds
        try:
            table, columns, total, truncated = self._materialise(statement_id, body)
            statement = Statement(
                statement_id, table, columns, total, truncated, disposition, ready_at
            )
        except self._duckdb.Error as exc:
            statement = Statement(statement_id, None, [], 0, False, disposition, ready_at)
            statement.error = _failure(exc)
        with self.lock:
            self.statements[statement_id] = statement
        return statement

    def _materialise(
        self, statement_id: str, body: dict[str, Any]
    ) -> tuple[str | None, list[dict[str, Any]], int, bool]:
        sql, params = _bind(str(body.get("statement", "")).strip(), body.get("parameters") or [])
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
                return None, [], 0, False
            # DESCRIBE keeps duplicate column names as Databricks does (a subquery renames them).
            described = [
                (name, dtype)
                for name, dtype, *_ in cursor.execute(f"DESCRIBE {sql}", params).fetchall()
            ]
            columns = [_column(i, name, dtype) for i, (name, dtype) in enumerate(described)]
            row_limit = int(body.get("row_limit") or 0)
            limit = f" LIMIT {row_limit + 1}" if row_limit else ""
            aliases = ", ".join(f"c{i}" for i in range(len(columns)))
            exprs = ", ".join(
                _as_string(f"c{i}", dtype) + f" AS c{i}" for i, (_, dtype) in enumerate(described)
            )
            table = f"r_{statement_id.replace('-', '_')}"
            cursor.execute(
                f"CREATE TABLE {table} AS SELECT {exprs} FROM ({sql}) AS q({aliases}){limit}",
                params,
            )
            counted = cursor.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert counted is not None  # count(*) always returns one row
            total = counted[0]
            truncated = bool(row_limit) and total > row_limit
            return table, columns, min(total, row_limit) if row_limit else total, truncated
        finally:
            cursor.close()

    def _use(self, cursor: Any, catalog: str | None, schema: str | None) -> None:
        if catalog and schema:
            cursor.execute(f'USE "{catalog}"."{schema}"')
        elif catalog:
            cursor.execute(f'USE "{catalog}"')

    def _advance(self, statement: Statement) -> None:
        with self.lock:
            if statement.state in ("PENDING", "RUNNING"):
                if time.monotonic() >= statement.ready_at:
                    statement.state = "FAILED" if statement.error else "SUCCEEDED"
                else:
                    statement.state = "RUNNING"

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
            status["sql_state"] = statement.error["sql_state"]
        if statement.state != "SUCCEEDED":
            return out
        count = self._chunk_count(statement)
        columns = statement.columns
        if self.omit_type_names:
            columns = [{k: v for k, v in c.items() if k != "type_name"} for c in columns]
        out["manifest"] = {
            "format": "JSON_ARRAY",
            "schema": {"column_count": len(columns), "columns": columns},
            "total_chunk_count": count,
            "chunks": [self._chunk_meta(statement, n) for n in range(count)],
            "total_row_count": statement.total_rows,
            "truncated": statement.truncated,
        }
        if count:
            out["result"] = self._result(statement, 0)
        return out

    def _chunk_count(self, statement: Statement) -> int:
        return -(-statement.total_rows // self.chunk_rows)

    def _chunk_meta(self, statement: Statement, n: int) -> dict[str, Any]:
        offset = n * self.chunk_rows
        return {
            "chunk_index": n,
            "row_offset": offset,
            "row_count": min(self.chunk_rows, statement.total_rows - offset),
        }

    def _result(self, statement: Statement, n: int) -> dict[str, Any]:
        with self.lock:
            statement.fetched_chunks.append(n)
        meta = self._chunk_meta(statement, n)
        links: dict[str, Any] = {}
        if n + 1 < self._chunk_count(statement):
            links = {
                "next_chunk_index": n + 1,
                "next_chunk_internal_link": f"/api/2.0/sql/statements/{statement.id}/result/chunks/{n + 1}",
            }
        if statement.disposition == "EXTERNAL_LINKS":
            link = {
                **meta,
                **links,
                "byte_count": 0,
                "external_link": f"{self.external_base or self.workspace.url}/external/{statement.id}/{n}?X-Amz-Signature=fake",
                "expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 900)),
            }
            return {"external_links": [link]}
        return {**meta, **links, "data_array": self._rows(statement, n)}

    def _rows(self, statement: Statement, n: int) -> list[list[str | None]]:
        if statement.table is None:
            return []
        meta = self._chunk_meta(statement, n)  # row_count stops at total_rows (row_limit)
        cursor = self.db.cursor()
        try:
            rows = cursor.execute(
                f"SELECT * FROM {statement.table} LIMIT {max(meta['row_count'], 0)} OFFSET {meta['row_offset']}"
            ).fetchall()
        finally:
            cursor.close()
        if self.typed_values:
            types = [c["type_name"] for c in statement.columns]
            return [[_typed(v, t) for v, t in zip(r, types, strict=True)] for r in rows]
        return [list(r) for r in rows]


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


def _bind(sql: str, parameters: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
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
    return bound, values


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


def _as_string(column: str, duck: str) -> str:
    if duck == "TIMESTAMP":
        return f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%gZ')"
    if duck == "TIMESTAMP WITH TIME ZONE":
        return f"strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ')"
    if duck == "BLOB":
        return f"base64({column})"
    if duck.endswith("[]") or duck.startswith(("STRUCT", "MAP")):
        return f"CAST(to_json({column}) AS VARCHAR)"
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


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", str(value))
    return float(match[1]) if match else 10.0
