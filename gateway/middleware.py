"""The ASGI layer around every request: request id, caller secret, one log line."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError, masked_internal_error, translate
from gateway.logs import bind_request, log_request, logged_here, logger, unbind_request
from gateway.metrics import Metrics
from gateway.tracing import traceparent_from

if TYPE_CHECKING:
    from gateway.telemetry import Telemetry

_SANE_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
SECRET_HEADER = b"x-gateway-secret"
MAX_HEADER_BYTES = 32 * 1024  # more than any real caller sends; uvicorn's httptools sets none
OPEN_PATHS = frozenset({"/health"})
# Metric labels for requests that name no op: a known route, else "other" (bounded cardinality).
ROUTES = frozenset({"/run", "/ops", "/health", "/ready", "/metrics", "/openapi.json"})
# Headers that choose who a request runs as: sent twice, "first one wins" in one layer and
# "last one wins" in another would let a caller smuggle an identity past a proxy's check.
SINGLE_HEADERS = frozenset({SECRET_HEADER, b"x-databricks-token", b"x-databricks-host"})


# A fresh request id: this process's random prefix and a counter. Unique like a uuid4 (each
# worker process draws its own prefix), without a urandom call per request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def request_id_from(raw: bytes | None) -> str:
    """The caller's X-Request-Id when it is short and printable, else a fresh one."""
    if raw is not None:
        try:
            candidate = raw.decode("ascii")
        except UnicodeDecodeError:
            candidate = ""
        if _SANE_REQUEST_ID.match(candidate):
            return candidate
    return new_request_id()


class RequestContext:
    """Gives each request an id, checks X-Gateway-Secret, logs one line when it ends."""

    def __init__(
        self,
        app: ASGIApp,
        secret: str | None,
        is_draining: Callable[[], bool] = lambda: False,
        metrics: Metrics | None = None,
        telemetry: Telemetry | None = None,
        post_run: ASGIApp | None = None,
    ) -> None:
        self.app = app
        # POST /run's own handler, called directly: the app's layers do nothing for it.
        self.post_run = post_run
        self.secret = secret.encode() if secret else None
        self.is_draining = is_draining
        self.metrics = metrics
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = request_id_from(headers.get(b"x-request-id"))
        log: dict[str, Any] = {"op": None, "identity": None}
        echoed = [(b"x-request-id", request_id.encode())]
        if trace := traceparent_from(scope["headers"]):
            log["trace_id"] = trace[1]
            echoed.append((b"traceparent", trace[0].encode()))
        scope.setdefault("state", {}).update(request_id=request_id, log=log)
        span = None
        if self.telemetry is not None and scope["path"] == "/run":
            span = self.telemetry.start(trace[0] if trace else None)
        started = time.perf_counter()
        current, bound = bind_request(request_id)
        status, started_response = 500, False
        if self.metrics is not None:
            self.metrics.in_flight += 1

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = [*message.get("headers", []), *echoed]
            await send(message)

        try:
            if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
                error = GatewayError(431, "HEADERS_TOO_LARGE", "The request headers are too large.")
                await send_error(send_with_id, error, request_id)
            elif duplicated := _duplicated(scope["headers"]):
                error = GatewayError(
                    400, "DUPLICATE_HEADER", f"The {duplicated} header is sent more than once."
                )
                await send_error(send_with_id, error, request_id)
            elif self.is_draining() and scope["path"] not in OPEN_PATHS:
                await send_error(send_with_id, _shutting_down(), request_id)
            elif self._authorised(scope["path"], headers.get(SECRET_HEADER)):
                app = self.app
                if self.post_run and scope["method"] == "POST" and scope["path"] == "/run":
                    app = self.post_run
                await app(scope, receive, send_with_id)
            else:
                error = GatewayError(
                    401, "GATEWAY_UNAUTHORIZED", "Missing or wrong X-Gateway-Secret."
                )
                await send_error(send_with_id, error, request_id)
        except asyncio.CancelledError:
            # The server's graceful shutdown ran out: still answer in our envelope (never
            # uvicorn's plain-text 500 or an empty reply), then end quietly.
            if started_response:
                raise
            status = 503
            with contextlib.suppress(Exception):
                await send_error(send_with_id, _shutting_down(), request_id)
        except Exception as exc:
            mapped = translate(exc) if started_response else None
            if mapped is not None:
                # Databricks failed mid-stream: no status can change now, the caller sees the
                # stream cut (raising is what makes the server cut it). Not a bug of ours.
                log["error_code"] = mapped.code
                logger.warning(
                    "stream cut by a Databricks failure",
                    # The class only: an error's text may hold a presigned link's URL.
                    extra={
                        "request_id": request_id,
                        "code": mapped.code,
                        "sdk_error": type(exc).__name__,
                    },
                )
                raise logged_here(exc) from None
            # Unexpected errors are bugs: full detail in our log, a masked 500 for the caller.
            logger.exception("unhandled error", extra={"request_id": request_id})
            if started_response:
                raise
            await send_error(send_with_id, masked_internal_error(), request_id)
        finally:
            unbind_request(bound)
            elapsed = time.perf_counter() - started
            if span is not None:
                span.end(log, status)
            if self.metrics is not None:
                self.metrics.in_flight -= 1
                route = scope["path"] if scope["path"] in ROUTES else "other"
                self.metrics.observe(log["op"] or route, status, elapsed)
            if current.upstream_seconds:
                log["upstream_ms"] = round(current.upstream_seconds * 1000, 2)
            if logger.isEnabledFor(logging.INFO):  # the fields are built only when logged
                log_request(
                    {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        **log,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    }
                )

    def _authorised(self, path: str, presented: bytes | None) -> bool:
        if self.secret is None or path in OPEN_PATHS:
            return True
        return presented is not None and hmac.compare_digest(presented, self.secret)


def _shutting_down() -> GatewayError:
    error = GatewayError(503, "SHUTTING_DOWN", "The gateway is shutting down; retry shortly.")
    error.headers["Connection"] = "close"
    return error


def _duplicated(raw_headers: list[tuple[bytes, bytes]]) -> str | None:
    seen: set[bytes] = set()
    for name, _ in raw_headers:
        if name in SINGLE_HEADERS:
            if name in seen:
                return name.decode()
            seen.add(name)
    return None


async def send_error(send: Send, error: GatewayError, request_id: str) -> None:
    await JsonAnswer(orjson.dumps(error.body(request_id)), error.status, error.headers).send(send)


class JsonAnswer:
    """A JSON response as its two ASGI messages: what Starlette's Response does for POST /run's
    answers, without the work a fast call pays for nothing (header objects, background tasks)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
        self.body = body
        self.status = status
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send(send)

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        if self.headers:
            headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})
