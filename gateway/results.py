"""Reading a finished statement's result, whatever shape the warehouse chose.

A result is a list of chunks. A chunk arrives as JSON_ARRAY rows (`data_array`), as a base64
Arrow `attachment` (INLINE ARROW_STREAM on some warehouses), or as `external_links` to fetch
without our Authorization header (JSON_ARRAY, ARROW_STREAM or CSV bytes). `ChunkReader` asks
for up to `window` chunks ahead at once and hands them over in order, so the next chunks
download while the caller reads this one (their bodies read in chunk order, see `_turn`); an
expired link is refreshed once through the chunk endpoint. Memory stays bounded by the window,
whatever the result size.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
import orjson

from gateway.errors import UpstreamBadResponse, error_from_response
from gateway.ndjson import batch_ndjson, rows_ndjson
from gateway.registry import Piece
from gateway.sqltypes import RowTyper, arrow_rows, type_from_text
from gateway.statements import StatementsApi

S = TypeVar("S")
T = TypeVar("T")
Body = bytes | bytearray  # a chunk's bytes as they arrived
# Arrow passthrough hands uvicorn a chunk's messages in pieces of at most this: each piece is
# copied once, into the response's chunked framing (a whole chunk was a 4 MiB copy at a time).
PIECE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ResultColumn:
    name: str
    type: str | None
    type_text: str | None


@dataclass
class Manifest:
    statement_id: str
    format: str
    columns: list[ResultColumn]
    total_chunks: int
    truncated: bool
    first: dict[str, Any] | None  # chunk 0 as the statement response carried it, if it did

    @classmethod
    def of(cls, response: dict[str, Any]) -> Manifest:
        manifest = response.get("manifest") or {}
        schema = manifest.get("schema") or {}
        columns = [
            ResultColumn(
                name=str(c.get("name") or ""),
                type=c.get("type_name") or type_from_text(c.get("type_text")),
                type_text=c.get("type_text"),
            )
            for c in schema.get("columns") or []
        ]
        first = response.get("result")
        total = manifest.get("total_chunk_count")
        if total is None:  # not every server says; a first chunk implies at least one
            total = 1 if first else 0
        return cls(
            statement_id=str(response.get("statement_id") or ""),
            format=str(manifest.get("format") or "JSON_ARRAY"),
            columns=columns,
            total_chunks=int(total),
            truncated=bool(manifest.get("truncated")),
            first=first if isinstance(first, dict) else None,
        )


@dataclass
class Chunk:
    """One chunk's data: JSON rows, Arrow IPC bytes or CSV bytes (the first has a header)."""

    index: int
    rows: list[list[Any]] | None = None
    arrow: Body | None = None
    csv: bytes | None = None


class ChunkReader:
    def __init__(
        self,
        api: StatementsApi,
        http: httpx.AsyncClient,
        manifest: Manifest,
        window: int,
        chunk_limit: int,
    ) -> None:
        self.api = api
        self.http = http
        self.manifest = manifest
        self.window = max(1, window)
        self.chunk_limit = chunk_limit  # bytes of one link's body, at most
        self.typer = RowTyper([(c.type, c.type_text) for c in manifest.columns])
        self.start = 0  # the first chunk to read (fetch_result resumes from any)
        self._read: dict[int, asyncio.Event] = {}  # chunk index -> its data has been read

    # --- chunks, in order, fetched ahead ------------------------------------------------------

    def chunks(self, last: int | None = None) -> AsyncIterator[Chunk]:
        total = self.manifest.total_chunks
        end = total if last is None else min(last + 1, total)
        # Each chunk's result (its links) is asked for up to a window ahead of the downloads,
        # so a download that frees its slot hands it to a known link, not to an API call first.
        results = in_order(self._result, _each(range(self.start, end)), self.window)
        return in_order(self._data, results, self.window)

    async def row_batches(self, last: int | None = None) -> AsyncIterator[list[list[Any]]]:
        """Typed rows, one list per Arrow batch or JSON chunk."""
        async for chunk in self.chunks(last):
            for rows in self.rows_of(chunk):
                yield rows

    def rows_of(self, chunk: Chunk) -> Iterator[list[list[Any]]]:
        """A chunk's typed rows, one Arrow batch at a time: only one batch is ever held as
        Python objects (a whole chunk of them took over 100 MiB at 100,000 rows)."""
        if chunk.arrow is not None:
            for batch in _arrow_batches(chunk.arrow):
                yield arrow_rows(batch)
            return
        if chunk.csv is not None:
            rows: list[list[Any]] = [
                [None if v == "" else v for v in line] for line in self._csv_strings(chunk)
            ]
            yield [self.typer(row) for row in rows]
            return
        yield [self.typer(row) for row in chunk.rows or []]

    def ndjson_of(self, chunk: Chunk) -> Iterator[tuple[bytes, int]]:
        """A chunk's typed rows as NDJSON lines, one Arrow batch at a time, with their count."""
        if chunk.arrow is None:
            for rows in self.rows_of(chunk):
                yield rows_ndjson(rows), len(rows)
            return
        for batch in _arrow_batches(chunk.arrow):
            yield batch_ndjson(batch), batch.num_rows if batch.num_columns else 0

    async def _result(self, index: int) -> tuple[int, dict[str, Any]]:
        first = self.manifest.first
        if index == 0 and first is not None:
            return index, first
        return index, await self.api.chunk(self.manifest.statement_id, index)

    async def _data(self, indexed: tuple[int, dict[str, Any]]) -> Chunk:
        index = indexed[0]
        try:
            return await self._chunk_data(*indexed)
        finally:  # read or failed: the next chunk's body may go
            self._read_event(index).set()
            # Chunks in flight are at most a window ahead of the reader, so no chunk can wait
            # any more on one this far back: the events stay as few as the window, whatever
            # kind of chunks (links or inline) the result has.
            self._read.pop(index - self.window - 1, None)

    def _read_event(self, index: int) -> asyncio.Event:
        return self._read.setdefault(index, asyncio.Event())

    async def _turn(self, index: int) -> None:
        """Wait until the chunk before has been read. Links are asked for a window ahead, all
        at once, so their time to first byte overlaps; their bodies are read in order, so the
        chunk the caller waits for has the link host to itself instead of a share of it (four
        fair shares made the first chunk of a 1M-row Arrow stream arrive ~30 ms later)."""
        if index > self.start:
            await self._read_event(index - 1).wait()

    async def _chunk_data(self, index: int, result: dict[str, Any]) -> Chunk:
        if "attachment" in result:
            return Chunk(index, arrow=_attachment(result["attachment"], index))
        links = result.get("external_links")
        if not links:
            return Chunk(index, rows=self._rows(result.get("data_array") or [], index))
        parts = [await self._download(index, link, refreshed=False) for link in links]
        if self.manifest.format == "ARROW_STREAM":
            return Chunk(index, arrow=parts[0] if len(parts) == 1 else _merge_arrow(parts))
        if self.manifest.format == "CSV":
            return Chunk(index, csv=b"".join(parts))
        rows: list[list[Any]] = []
        for part in parts:
            rows += _json_rows(part)
        return Chunk(index, rows=self._rows(rows, index))

    def _rows(self, rows: list[Any], index: int) -> list[list[Any]]:
        """JSON or CSV rows, each a list as wide as the manifest's columns (when it names
        them): every reader of rows indexes them by column."""
        width = self.width
        if any(type(row) is not list or (width and len(row) != width) for row in rows):
            raise UpstreamBadResponse(f"chunk {index} has rows that are not {width} values wide")
        return rows

    async def _download(self, index: int, link: dict[str, Any], refreshed: bool) -> Body:
        """One presigned link: no Authorization header ever; refreshed once if it expired."""
        if not refreshed and _expired(link.get("expiration")):
            link = await self._fresh_link(index, link)
            refreshed = True
        request = self.http.build_request(
            "GET", str(link.get("external_link") or ""), headers=link.get("http_headers") or {}
        )
        response = await self.http.send(request, stream=True)
        try:
            status = response.status_code
            if status < 300:
                await self._turn(index)
                return await _body(response, self.chunk_limit)
        finally:
            await response.aclose()
        if status < 400:
            # Not followed: a presigned link's signature names its host, and its headers are
            # for that host alone. A redirect's body is no chunk.
            raise UpstreamBadResponse(f"chunk {index}'s link answered a redirect ({status})")
        if status == 403 and not refreshed:
            return await self._download(index, await self._fresh_link(index, link), True)
        raise error_from_response(status, b"")

    async def _fresh_link(self, index: int, stale: dict[str, Any]) -> dict[str, Any]:
        result = await self.api.chunk(self.manifest.statement_id, index)
        links: list[dict[str, Any]] = result.get("external_links") or []
        for link in links:
            if link.get("row_offset") == stale.get("row_offset"):
                return link
        raise UpstreamBadResponse(f"chunk {index} has no fresh link")

    # --- Arrow passthrough --------------------------------------------------------------------

    async def arrow_stream(self) -> AsyncGenerator[Piece, None]:
        """One Arrow IPC stream (schema, every batch, end marker) from all chunks. An Arrow
        chunk's batch messages are forwarded as they arrived, never decoded: only its schema
        message is read (the first is sent, later ones must match it) and its end marker is
        dropped. A warehouse that refused Arrow gives utf8 columns of its strings."""
        schema: Any = None
        async for chunk in self.chunks():
            data = chunk.arrow if chunk.arrow is not None else self._strings_ipc(chunk)
            if data is None:
                continue
            head, batches = _ipc_parts(data, chunk.index)
            if schema is None:
                schema = head
                yield bytes(data[: head.size])
            elif not head.schema.equals(schema.schema):
                raise UpstreamBadResponse(f"chunk {chunk.index} has another Arrow schema")
            for start in range(0, len(batches), PIECE_BYTES):
                yield batches[start : start + PIECE_BYTES]
        if schema is None:
            yield _ipc_stream(self._string_schema(), [])
            return
        yield _END_OF_STREAM

    def _strings_ipc(self, chunk: Chunk) -> bytes | None:
        """A JSON or CSV chunk as an IPC stream of utf8 columns (None when it has no rows)."""
        import pyarrow as pa

        rows = (chunk.rows or []) if chunk.csv is None else self._csv_strings(chunk)
        if not rows:
            return None
        columns = [pa.array([_text(r[i]) for r in rows], pa.string()) for i in range(self.width)]
        batch = pa.RecordBatch.from_arrays(columns, schema=self._string_schema())
        return _ipc_stream(batch.schema, [batch])

    def _csv_strings(self, chunk: Chunk) -> list[list[Any]]:
        """A CSV chunk's rows of strings (the first chunk's header row dropped)."""
        try:
            text = (chunk.csv or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise UpstreamBadResponse(f"chunk {chunk.index} is not UTF-8 CSV") from None
        # An empty line is a one-column row whose value is empty (or NULL): csv reads it as [].
        lines: list[list[Any]] = [line or [""] for line in csv.reader(io.StringIO(text))]
        return self._rows(lines[chunk.index == 0 :], chunk.index)

    @property
    def width(self) -> int:
        return len(self.manifest.columns)

    def _string_schema(self) -> Any:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, pa.string()) for c in self.manifest.columns])


async def in_order(
    fetch: Callable[[S], Awaitable[T]], items: AsyncGenerator[S, None], window: int
) -> AsyncGenerator[T, None]:
    """fetch(item) for every item, up to `window` at once, yielded in the items' order. The
    caller's pace is the backpressure: a new fetch starts only when one is handed over."""
    pending: deque[asyncio.Future[T]] = deque()
    more = True
    try:
        while True:
            while more and len(pending) < window:
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    more = False
                except Exception as exc:  # raised in its turn, after the items before it
                    more = False
                    pending.append(_failed(exc))
                else:
                    pending.append(asyncio.ensure_future(fetch(item)))
            if not pending:
                return
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*pending, return_exceptions=True)
            await items.aclose()


def _failed(exc: Exception) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def _each(indices: range) -> AsyncGenerator[int, None]:
    for index in indices:
        yield index


# What ends an IPC stream: a continuation marker and a zero metadata length.
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


@dataclass(frozen=True)
class _SchemaMessage:
    schema: Any  # pyarrow.Schema
    size: int  # its message's bytes at the start of the stream


async def _body(response: httpx.Response, limit: int) -> Body:
    """A link's whole body in one buffer, of `limit` bytes at most. Sized from Content-Length
    when it says (and no content coding changes the size): a bytearray grown piece by piece was
    reallocated, and copied, over and over; the pieces and their join held a chunk twice."""
    length = response.headers.get("content-length")
    if length is None or not length.isdigit() or "content-encoding" in response.headers:
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > limit:
                raise _chunk_too_large(limit)
        return body
    if int(length) > limit:  # before a buffer of that size is made
        raise _chunk_too_large(limit)
    body = bytearray(int(length))
    filled = 0
    with memoryview(body) as view:
        async for piece in response.aiter_bytes():
            end = filled + len(piece)
            if end > len(body):  # the client enforces Content-Length: a guard, not a path
                raise UpstreamBadResponse("an external link sent more than its Content-Length")
            view[filled:end] = piece
            filled = end
    return body


def _chunk_too_large(limit: int) -> UpstreamBadResponse:
    return UpstreamBadResponse(
        f"an external link's chunk is over GATEWAY_MAX_CHUNK_BYTES ({limit} bytes)"
    )


def _attachment(value: str, index: int) -> bytes:
    """An INLINE chunk's base64 Arrow bytes."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error
        raise UpstreamBadResponse(f"chunk {index}'s attachment is not base64") from None


def _ipc_parts(data: Body, index: int) -> tuple[_SchemaMessage, memoryview]:
    """A chunk's IPC stream split into its schema message and (a view of, not a copy) the bytes
    of every message after it, up to its end marker. Messages are framed, not decoded: a
    truncated or malformed stream fails here, its batches are left to the reader."""
    import pyarrow as pa

    source = pa.BufferReader(pa.py_buffer(data))
    try:
        messages = pa.ipc.MessageReader.open_stream(source)
        first = messages.read_next_message()
        if first.type != "schema":
            raise UpstreamBadResponse(f"chunk {index}'s Arrow stream does not start with a schema")
        schema = _SchemaMessage(pa.ipc.read_schema(first), source.tell())
        end = schema.size
        for _ in messages:
            end = source.tell()
    except (pa.ArrowInvalid, StopIteration) as exc:
        raise UpstreamBadResponse(f"an Arrow chunk did not parse: {exc}") from exc
    return schema, memoryview(data)[schema.size : end]


def _ipc_stream(schema: Any, batches: list[Any]) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue()


def _arrow_batches(data: Body) -> Any:
    import pyarrow as pa

    try:
        return list(pa.ipc.open_stream(data))
    except pa.ArrowInvalid as exc:
        raise UpstreamBadResponse(f"an Arrow chunk did not parse: {exc}") from exc


def _merge_arrow(parts: list[Body]) -> bytes:
    batches = [batch for part in parts for batch in _arrow_batches(part)]
    return _ipc_stream(batches[0].schema, batches)


def _json_rows(body: Body) -> list[list[Any]]:
    """The rows of one JSON_ARRAY link, or a clear error for a body that is not them (a proxy's
    HTML page, an XML error document)."""
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError:
        rows = None
    if not isinstance(rows, list):
        raise UpstreamBadResponse("an external link did not answer JSON rows")
    return rows


def _expired(expiration: Any) -> bool:
    if not isinstance(expiration, str):
        return False
    try:
        when = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() <= time.time() + 5  # a link about to expire is as good as gone


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if isinstance(value, list | dict) else str(value)
