"""The HTTP layer: routes, body parsing, and the error boundary. It never touches the SDK."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway import __version__, readiness
from gateway.auth import (
    clear_databricks_auth,
    make_backend,
    resolve_identity,
    set_databricks_auth,
)
from gateway.deadlines import deadline_in
from gateway.errors import GatewayError, translate
from gateway.logs import current_request_id, logger
from gateway.memory import collect_soon
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.middleware import JsonAnswer, RequestContext
from gateway.ops import ALL_OPS
from gateway.registry import (
    ARROW_STREAM,
    NDJSON,
    ByteStream,
    Delivery,
    Op,
    Piece,
    Registry,
    Upload,
)
from gateway.runtime import Runtime
from gateway.settings import Settings


class GatewayApp:
    """The ASGI app the server runs: RequestContext first for every request (id, secret, log
    line, metrics), then POST /run handled right there and every other route by the FastAPI
    app (/ops, /health, /ready, /metrics, /openapi.json).

    /run skips FastAPI's and Starlette's layers (a telemetry check, body-limit, error and
    exception middlewares, the router): they do nothing for it, at a cost on every call.
    """

    def __init__(self, api: FastAPI, entry: RequestContext) -> None:
        self.state = api.state  # the runtime and the registry, as on the FastAPI app
        self._entry = entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> GatewayApp:
    settings = settings or Settings()
    runtime = runtime or Runtime.create(settings, make_backend(settings))
    registry, ops_body = _registry()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await _cancel_running_statements(runtime)
            await runtime.aclose()

    app = FastAPI(
        title="Databricks Gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        exception_handlers={
            GatewayError: _gateway_error_response,
            StarletteHTTPException: _http_exception_response,
        },
    )
    app.state.runtime = runtime
    app.state.registry = registry
    runtime.metrics.watch_admission(lambda: runtime.admission)

    run = RunEndpoint(runtime, registry)

    async def ops() -> Response:
        return Response(ops_body, media_type="application/json")

    async def health() -> Response:
        return _json({"status": "ok", "version": __version__})

    async def ready(deep: bool = False) -> Response:
        return await _ready(runtime, deep)

    async def metrics() -> Response:
        return Response(runtime.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    entry = RequestContext(
        app,
        secret=settings.secret.get_secret_value() if settings.secret else None,
        is_draining=lambda: runtime.draining,
        metrics=runtime.metrics,
        telemetry=runtime.telemetry,
        post_run=run,
    )
    # POST /run never reaches the router (see GatewayApp); the route is there so another
    # method on /run gets the router's 405, and for _openapi, which writes its entry.
    app.router.routes.append(Route("/run", run, methods=["POST"]))
    app.add_api_route("/ops", ops, methods=["GET"], summary="Every op and its schemas")
    app.add_api_route("/health", health, methods=["GET"], summary="Liveness")
    app.add_api_route("/ready", ready, methods=["GET"], summary="Readiness")
    app.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics")
    # FastAPI's documented way to supply the schema; mypy forbids assigning to a method.
    app.openapi = lambda: _openapi(app, registry)  # type: ignore[method-assign]
    return GatewayApp(app, entry)


@functools.cache
def _registry() -> tuple[Registry, bytes]:
    """The ops and their /ops document, built once per process: every app serves the same ops,
    and building their schemas costs more than the rest of create_app."""
    registry = Registry(ALL_OPS)
    return registry, orjson.dumps({"ops": [op.describe() for op in registry]})


# --- /run -------------------------------------------------------------------------------------


class RunEndpoint:
    """POST /run as a bare ASGI app: the request read straight from its scope (`RunRequest`), a
    JSON answer sent as its two messages (`JsonAnswer`), streams as Starlette streams them.

    Starlette's Request (its headers, state and stream objects) and Response cost ~5% of a fast
    call's CPU at c = 64 (py-spy) for what these few lines do."""

    def __init__(self, runtime: Runtime, registry: Registry) -> None:
        self.runtime = runtime
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = RunRequest(scope, receive)
        answer: JsonAnswer | Response
        try:
            answer = await _run(request, self.runtime, self.registry)
        except GatewayError as exc:
            answer = _error_answer(request.state, exc)
        await answer(scope, receive, send)


class RunRequest:
    """What POST /run reads of its HTTP request: its headers (a dict by lower-case name, the
    first of a repeated one, as Starlette's `Request.headers.get` answers), its query string
    (uploads), its body and the caller leaving (`receive`)."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.receive = receive
        self.state: dict[str, Any] = scope["state"]  # request_id and log, from RequestContext
        self.headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
        }
        self._query: bytes = scope["query_string"]

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self._query.decode("latin-1"), keep_blank_values=True))


async def _run(request: RunRequest, runtime: Runtime, registry: Registry) -> JsonAnswer | Response:
    log = request.state["log"]
    # Streamed bodies (uploads, downloads, NDJSON) get the longer stream budget, counted from
    # the start of the request, so a trickling upstream or caller cannot hold a request open.
    # (The loop's clock is anyio.current_time(), without its per-call backend lookup.)
    stream_deadline = asyncio.get_running_loop().time() + runtime.settings.stream_timeout_seconds
    raw, upload = await _read_run_body(request, runtime.settings)
    op = registry.get(raw.get("op"))
    log["op"] = op.name
    params = op.parse(raw)
    identity = resolve_identity(runtime.settings, request.headers)
    log["identity"] = identity.kind
    supplied = {
        Runtime: runtime,
        Upload: upload,
        Delivery: _delivery(request.headers.get("accept", "")),
    }
    release = _admit(runtime, op.name)
    reset = set_databricks_auth(identity, runtime.backend)
    try:
        call = _call_with_deadline(op, params, supplied, runtime)
        # Only async ops stop when cancelled (a query is cancelled on the warehouse); a blocking
        # SDK call in a worker thread runs to its end either way, so watching costs for nothing.
        watch = op.is_async and not (op.streams_input or op.quick)
        result = await (_until_disconnect(request, call) if watch else call)
        response = _render(op, result, stream_deadline, release)
    except BaseException:
        release()
        raise
    finally:
        clear_databricks_auth(reset)
    if not isinstance(response, StreamingResponse):
        release()  # a stream gives its slot back when it ends
    return response


def _delivery(accept: str) -> Delivery:
    accept = accept.lower()
    return Delivery(stream=NDJSON in accept, arrow=ARROW_STREAM in accept)


def _admit(runtime: Runtime, op: str) -> Callable[[], None]:
    """Take one of the op's in-flight slots, or answer 503 BUSY at once (queueing would only
    turn into timeouts for everyone). Returns the release, safe to call more than once."""
    slots, borrower = runtime.admission_for(op), object()
    try:
        slots.acquire_on_behalf_of_nowait(borrower)
    except anyio.WouldBlock:
        error = GatewayError(503, "BUSY", f"Too many {op} requests are in flight; retry shortly.")
        error.headers["Retry-After"] = "1"
        raise error from None
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.release_on_behalf_of(borrower)

    return release


async def _until_disconnect(request: RunRequest, call: Awaitable[Any]) -> Any:
    """Run the op, cancelling it if the client goes away (so e.g. a query is cancelled on the
    warehouse instead of running on for nobody)."""
    outcome: list[Any] = []
    failure: Exception | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            outcome.append(await call)
        except Exception as exc:  # raised outside the group, not wrapped in an ExceptionGroup
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if not outcome:
        raise GatewayError(499, "CLIENT_DISCONNECTED", "The client went away.")
    return outcome[0]


async def _call_with_deadline(
    op: Op, params: Any, supplied: dict[type, Any], runtime: Runtime
) -> Any:
    settings = runtime.settings
    # An upload takes as long as its bytes take, within the stream budget (and its idle limit).
    deadline = (
        settings.stream_timeout_seconds if op.streams_input else settings.request_timeout_seconds
    )
    try:
        # The deadline for this coroutine, and for the worker threads it starts (deadlines.py).
        async with asyncio.timeout(deadline):  # anyio.fail_after's outcome, at half its cost
            try:
                with deadline_in(deadline):
                    return await op.call(params, supplied, runtime.limiter)
            except GatewayError:
                raise
            except Exception as exc:
                mapped = translate(exc)
                if mapped is None:
                    raise
                _log_upstream_failure(exc, mapped)
                runtime.metrics.upstream_error(mapped.code, mapped.databricks_error_code)
                raise mapped from exc
    except TimeoutError:
        raise GatewayError(
            504, "GATEWAY_TIMEOUT", "The operation did not finish within the gateway's deadline."
        ) from None


def _log_upstream_failure(exc: BaseException, mapped: GatewayError) -> None:
    fields = {
        "code": mapped.code,
        "status": mapped.status,
        "sdk_error": type(exc).__name__,
        "databricks_error_code": mapped.databricks_error_code,
    }
    # A response the API never sends deserves its traceback: it is how we learn what it was.
    detail = exc if mapped.code == "DATABRICKS_BAD_RESPONSE" else None
    logger.warning("databricks error", exc_info=detail, extra=fields)


# An upload moves on in pieces of 2 MiB (the download read size too). Scratch runs, 256 MiB
# uploads to the fake in 6 interleaved pairs against handing each socket read (~256 KiB) on as
# it came: the gateway's CPU per GiB 0.90x with 1 MiB pieces, 0.81x with 2 MiB, 0.77x with
# 4 MiB, 0.85x with 8 MiB (over the 4 MiB socket send buffer); wall time 0.91x, 0.81x, 0.82x,
# 0.96x. Bigger pieces hold more memory per upload for little more.
UPLOAD_PIECE_BYTES = 2 * 1024 * 1024
UPLOAD_PIECE_SECONDS = 0.5


async def _read_run_body(request: RunRequest, settings: Settings) -> tuple[dict[str, Any], Upload]:
    raw_type = request.headers.get("content-type", "application/json")
    content_type = raw_type.split(";")[0].strip().lower()  # media types are case-insensitive
    declared = _declared_length(request)
    if content_type == "application/octet-stream":
        # Streaming upload: the op and its params travel in the query string.
        raw: dict[str, Any] = request.query()
        return raw, Upload(_client_body(request, settings.upload_idle_seconds), declared)
    if content_type not in ("application/json", ""):
        raise GatewayError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "POST /run takes application/json, or application/octet-stream for uploads.",
        )
    body = await _read_limited(request, declared, settings.max_json_body_bytes)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's reason names the position and the problem (NaN, Infinity...), never content.
        raise GatewayError(
            400, "INVALID_JSON", f"The request body is not valid JSON: {exc}."
        ) from None
    if not isinstance(parsed, dict):
        raise GatewayError(400, "INVALID_JSON", "The request body must be a JSON object.")
    return parsed, Upload(_empty_stream(), None, present=False)


async def _client_body(request: RunRequest, idle_seconds: float) -> AsyncIterator[bytes]:
    """The upload's bytes in pieces of about `UPLOAD_PIECE_BYTES`: what the server hands over
    (a socket read each, 256 KiB at most under uvloop) is joined before it goes down the chain
    of layers to the Files API, each of which costs per piece, not per byte. Bytes wait at most
    `UPLOAD_PIECE_SECONDS` for more, so a slow caller's upload still moves on."""
    loop = asyncio.get_running_loop()
    pieces: list[bytes] = []
    size, more, send_at = 0, True, 0.0  # send_at: when the bytes waiting in `pieces` go
    idle_at = loop.time() + idle_seconds
    try:
        while more:
            message = await _receive_by(request, min(idle_at, send_at) if pieces else idle_at)
            if message is None and loop.time() >= idle_at:
                raise GatewayError(
                    408, "UPLOAD_IDLE", f"The upload sent no byte for {idle_seconds:g} s."
                )
            if message is not None:  # else the waiting bytes' time is up
                idle_at = loop.time() + idle_seconds
                if message["type"] == "http.disconnect":
                    raise _client_left()
                more = message.get("more_body", False)
                if body := message.get("body", b""):
                    if not pieces:
                        send_at = loop.time() + UPLOAD_PIECE_SECONDS
                    pieces.append(body)
                    size += len(body)
            if pieces and (not more or size >= UPLOAD_PIECE_BYTES or loop.time() >= send_at):
                piece = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                size = 0
                yield piece
    finally:
        pieces.clear()  # an aborted upload's buffered bytes go now, not at the next collection
        if more:  # cut short: the piece it last handed on waits in reference cycles
            collect_soon()


async def _receive_by(request: RunRequest, deadline: float) -> Message | None:
    """The request's next ASGI message, or None if the loop's clock reaches `deadline` first.
    Cancelling uvicorn's receive() loses nothing: its bytes wait for the next call."""
    try:
        async with asyncio.timeout_at(deadline):
            return await request.receive()
    except TimeoutError:
        return None


async def _empty_stream() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def _declared_length(request: RunRequest) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise GatewayError(400, "INVALID_CONTENT_LENGTH", "Content-Length is not a number.")
    return int(value)


async def _read_limited(request: RunRequest, declared: int | None, limit: int) -> bytes:
    if declared is not None and declared > limit:
        raise _too_large(limit)
    pieces: list[bytes] = []
    size, more = 0, True
    while more:  # straight from receive(): a JSON body nearly always comes in one message
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise _client_left()
        piece = message.get("body", b"")
        size += len(piece)
        if size > limit:
            raise _too_large(limit)
        pieces.append(piece)
        more = message.get("more_body", False)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, "BODY_TOO_LARGE", f"The JSON body exceeds the {limit}-byte limit.")


def _client_left() -> GatewayError:
    # Nobody reads this answer: it makes the request's one log line say 499, not a traceback.
    return GatewayError(499, "CLIENT_DISCONNECTED", "The client went away mid-body.")


def _render(
    op: Op, result: Any, deadline: float, release: Callable[[], None]
) -> JsonAnswer | Response:
    if isinstance(result, ByteStream):
        chunks = _until(deadline, result.chunks, result.media_type == NDJSON)
        return _Streamed(chunks, release, media_type=result.media_type, headers=result.headers)
    return JsonAnswer(b'{"result":' + op.dump_json(result) + b"}")


class _Streamed(StreamingResponse):
    """A streamed response that gives its op's admission slot back when it ends, however it
    ends (done, cut, or the client gone before the first byte)."""

    def __init__(
        self, content: AsyncGenerator[Piece, None], release: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self.content = content  # the body_iterator, typed as what it is: closeable
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Close the producer now, not whenever the garbage collector gets to it: its
            # upstream socket (or statement) must not outlive a caller who left mid-stream.
            with anyio.CancelScope(shield=True):
                await self.content.aclose()
            self.release()


async def _until(
    deadline: float, chunks: AsyncGenerator[Piece, None], ndjson: bool
) -> AsyncGenerator[Piece, None]:
    """Relay a streamed body until `deadline`. Past it the producer is cancelled (its upstream
    socket closed, its statement cancelled); NDJSON ends with an error line, raw bytes end short
    of their Content-Length so the caller cannot take them for the whole file."""
    ended = False
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):  # anyio's cancel scope cost 2x per piece
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                ended = True
                return
            except TimeoutError:
                break
            yield chunk
    finally:
        await chunks.aclose()
        if not ended:  # cut short: the chunks its generators held wait in reference cycles
            collect_soon()
    logger.warning("stream passed its deadline", extra={"code": "GATEWAY_TIMEOUT"})
    if ndjson:
        error = GatewayError(
            504,
            "GATEWAY_TIMEOUT",
            "The stream did not finish within GATEWAY_STREAM_TIMEOUT_SECONDS.",
        )
        yield orjson.dumps(error.body(current_request_id())) + b"\n"


# --- readiness ------------------------------------------------------------------------------


async def _ready(runtime: Runtime, deep: bool) -> Response:
    state = await readiness.check(runtime, deep)
    if not state.ready:
        return _not_ready(state.reason or "Not ready.")
    if state.identity:
        return _json({"status": "ready", "identity": state.identity})
    return _json({"status": "ready", "deep": deep})


def _not_ready(reason: str) -> Response:
    return _json({"status": "not_ready", "reason": reason}, status=503)


async def _cancel_running_statements(runtime: Runtime) -> None:
    """Cancel every statement on the warehouse before the process goes (bounded: 5 s).

    Statements still being submitted have no id yet: their submitting thread cancels them as
    soon as it has one, and removes them, so this waits for the registry to empty."""
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as group:
            for cancel in list(runtime.running_statements.values()):
                group.start_soon(cancel)
        # Entries leave from worker threads, which cannot set an anyio Event: poll.
        while runtime.running_statements:  # noqa: ASYNC110
            await anyio.sleep(0.05)


# --- responses --------------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def _gateway_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    _log_error(request.state.log, exc)
    return _json(exc.body(request.state.request_id), exc.status, exc.headers)


def _error_answer(state: dict[str, Any], exc: GatewayError) -> JsonAnswer:
    _log_error(state["log"], exc)
    return JsonAnswer(orjson.dumps(exc.body(state["request_id"])), exc.status, exc.headers)


def _log_error(log: dict[str, Any], exc: GatewayError) -> None:
    # For the request's log line (and its span, when GATEWAY_OTEL is on).
    log["error_code"] = exc.code
    if exc.databricks_error_code:
        log["databricks_error_code"] = exc.databricks_error_code


async def _http_exception_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "ROUTE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    error = GatewayError(exc.status_code, code, str(exc.detail))
    return _json(error.body(request.state.request_id), exc.status_code, dict(exc.headers or {}))


# --- OpenAPI --------------------------------------------------------------------------------


_RUN_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "write_file upload; op and params in the query string.",
        },
    },
}


def _openapi(app: FastAPI, registry: Registry) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schema["paths"]["/run"] = {
        "post": {
            "summary": "Run one operation",
            "operationId": "run",
            "requestBody": _RUN_REQUEST_BODY,
            "responses": {
                "200": {"description": '{"result": ...}, raw bytes (read_file) or NDJSON'},
                "4XX": {"description": '{"error": {"code", "message", "status", "request_id"}}'},
            },
        }
    }
    union = TypeAdapter(registry.request_union()).json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(union.pop("$defs", {}))
    components["RunRequest"] = union
    app.openapi_schema = schema
    return schema
