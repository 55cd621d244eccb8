"""SQL statements on a warehouse: submit in the best shape it accepts, poll, cancel.

Raw JSON through the SDK's API client (its auth, retries and error classes), not the SDK's
dataclasses: those drop fields real warehouses send, such as an INLINE `attachment`.

Shapes (disposition + format) are tried in order of preference for what the caller asked:

    rows in a JSON answer   INLINE/JSON_ARRAY (byte_limit), INLINE/ARROW_STREAM,
                            EXTERNAL_LINKS/ARROW_STREAM, EXTERNAL_LINKS/JSON_ARRAY
    NDJSON or Arrow stream  EXTERNAL_LINKS/ARROW_STREAM, EXTERNAL_LINKS/JSON_ARRAY,
                            INLINE/JSON_ARRAY

A shape the warehouse refuses at submit (a 400/501 *class* of error: nothing ran) moves to the
next; the shape that worked is remembered per warehouse (bounded, an hour) and logged once. An
INLINE statement that FAILED with BAD_REQUEST and no SQLSTATE is the inline byte cap (a SQL
error always has a SQLSTATE): it runs again with EXTERNAL_LINKS.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.to_thread
import orjson
import requests
import urllib3
from cachetools import TTLCache
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as sdk_errors
from databricks.sdk.errors.base import DatabricksError

from gateway import answers
from gateway.deadlines import lifted
from gateway.errors import GatewayError, UpstreamBadResponse
from gateway.logs import logger
from gateway.retry_after import seconds_to_wait
from gateway.upstream import RetryBudget, Upstream

Want = Literal["rows", "stream"]
Cancel = Callable[[], Coroutine[Any, Any, None]]  # a running statement's cancel, for shutdown
INLINE_BYTE_CAP = 25 * 1024 * 1024  # Databricks aborts an INLINE result above this
ENDED = ("FAILED", "CANCELED", "CLOSED")  # terminal states other than SUCCEEDED
_TERMINAL = ("SUCCEEDED", *ENDED)


@dataclass(frozen=True)
class Shape:
    disposition: str
    format: str

    def __str__(self) -> str:
        return f"{self.disposition}/{self.format}"


INLINE_JSON = Shape("INLINE", "JSON_ARRAY")
INLINE_ARROW = Shape("INLINE", "ARROW_STREAM")
LINKS_ARROW = Shape("EXTERNAL_LINKS", "ARROW_STREAM")
LINKS_JSON = Shape("EXTERNAL_LINKS", "JSON_ARRAY")

PREFERENCES: dict[Want, tuple[Shape, ...]] = {
    "rows": (INLINE_JSON, INLINE_ARROW, LINKS_ARROW, LINKS_JSON),
    "stream": (LINKS_ARROW, LINKS_JSON, INLINE_JSON),
}


def shapes_for(want: Want, disposition: str | None) -> tuple[Shape, ...]:
    """The caller may pin the disposition; the format is still ours to choose."""
    shapes = PREFERENCES[want]
    if disposition is None:
        return shapes
    return tuple(s for s in shapes if s.disposition == disposition) or shapes


class StatementsApi:
    """The four Statement Execution calls, as JSON. Submitting and cancelling block (call them
    from a worker thread); the reads (a statement's state, a chunk's links) go through the
    `Upstream`: one pooled GET on the event loop on the lean path, where a poll through the SDK
    cost a worker-thread hop and `requests` each time."""

    def __init__(self, client: WorkspaceClient, upstream: Upstream) -> None:
        self._client = client
        self._api = client.api_client
        self._upstream = upstream
        self._budget = float(client.config.retry_timeout_seconds or 300)

    def execute(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit a statement, sending it again only when it cannot have run.

        The SDK's client sends a request again after a read timeout or a dropped connection;
        for a statement that may run it twice (an INSERT twice). So the body goes as a stream
        the SDK cannot rewind, which it sends once, and only a throttled answer (429/503 with
        Retry-After: nothing ran) or a connection never made is tried again, within the budget.
        """
        budget = RetryBudget(self._budget)
        while True:
            try:
                sent = self._api.do(
                    "POST",
                    "/api/2.0/sql/statements/",
                    headers={"Content-Type": "application/json"},
                    data=_SentOnce(orjson.dumps(body)),
                )
            except Exception as exc:
                time.sleep(budget.wait_after(exc, _resend_wait))
            else:
                return answers.submitted(sent)

    async def get(self, statement_id: str) -> dict[str, Any]:
        path = f"/api/2.0/sql/statements/{statement_id}"
        return answers.statement(await self._upstream.read(self._client, path), "a statement poll")

    async def chunk(self, statement_id: str, index: int) -> dict[str, Any]:
        path = f"/api/2.0/sql/statements/{statement_id}/result/chunks/{index}"
        return answers.chunk(await self._upstream.read(self._client, path), f"chunk {index}")

    def cancel(self, statement_id: str) -> None:
        self._api.do("POST", f"/api/2.0/sql/statements/{statement_id}/cancel", body={})


class _SentOnce(io.BytesIO):
    """A request body the SDK's client will not rewind, so it never sends it a second time
    (it retries a request only when it can replay the body). Its length gives Content-Length."""

    def seekable(self) -> bool:
        return False

    def __len__(self) -> int:
        return len(self.getbuffer())


def _resend_wait(exc: BaseException, attempt: int) -> float | None:
    """Seconds before sending a statement again, or None when it may already have run."""
    if isinstance(exc, DatabricksError) and exc.retry_after_secs is not None:
        return seconds_to_wait(exc.retry_after_secs) + random.random()  # noqa: S311 - nothing ran
    if _never_connected(exc):
        return min(10, attempt) + random.random()  # noqa: S311 - jitter
    return None


def _never_connected(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = (
        getattr(exc.args[0], "reason", None)
        if isinstance(exc, requests.ConnectionError) and exc.args
        else None
    )
    return isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


class ShapeMemory:
    """Which shape each warehouse accepted, so later statements skip the refusals."""

    def __init__(self) -> None:
        self._known: TTLCache[tuple[str, Want, str | None], Shape] = TTLCache(256, 3600)
        self._lock = threading.Lock()

    def order(self, warehouse: str, want: Want, disposition: str | None) -> list[Shape]:
        shapes = list(shapes_for(want, disposition))
        with self._lock:
            known = self._known.get((warehouse, want, disposition))
        return [known, *(s for s in shapes if s != known)] if known in shapes else shapes

    def accepted(
        self, warehouse: str, want: Want, disposition: str | None, shape: Shape, first: Shape
    ) -> None:
        key = (warehouse, want, disposition)
        with self._lock:
            new = self._known.get(key) != shape
            self._known[key] = shape
        if new and shape != first:
            logger.warning(
                "warehouse refused a result shape; using a fallback",
                extra={"warehouse_id": warehouse, "wanted": str(first), "using": str(shape)},
            )


class Execution:
    """One statement's life on the warehouse, cancelled unless it ends by itself."""

    def __init__(
        self,
        api: StatementsApi,
        running: dict[object, Cancel],
        memory: ShapeMemory,
    ) -> None:
        self.api = api
        self.running = running  # the runtime's registry, cancelled at shutdown
        self.memory = memory
        self.statement_id: str | None = None
        self.shape: Shape | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        self._cancelled = False

    async def run(
        self,
        submit: dict[str, Any],
        want: Want,
        disposition: str | None,
        seconds: float,
        inline_bytes: int,
    ) -> dict[str, Any]:
        with anyio.move_on_after(seconds) as scope:
            try:
                response = await self._run(submit, want, disposition, inline_bytes)
            except BaseException:
                await self.cancel()
                raise
        if scope.cancelled_caught:
            await self.cancel()
            raise GatewayError(
                504,
                "QUERY_TIMEOUT",
                f"The query did not finish within {seconds:g} s; it was cancelled. "
                "Use submit_query and fetch_result for longer queries.",
                {"statement_id": self.statement_id},
            )
        return response

    async def submit_only(self, submit: dict[str, Any], want: Want) -> dict[str, Any]:
        """Submit and return at once (submit_query): nobody waits, nobody cancels."""
        shapes = self.memory.order(str(submit["warehouse_id"]), want, None)
        response = await self._submit(submit, shapes, want, None, INLINE_BYTE_CAP)
        self.forget()
        return response

    async def _run(
        self, submit: dict[str, Any], want: Want, disposition: str | None, inline_bytes: int
    ) -> dict[str, Any]:
        warehouse = str(submit["warehouse_id"])
        shapes = self.memory.order(warehouse, want, disposition)
        response = await self._submit(submit, shapes, want, disposition, inline_bytes)
        response = await self._wait(response)
        if _inline_cap_hit(response, self.shape):
            logger.info("result over the inline cap; running again with external links")
            self.forget()
            self.statement_id, self._cancelled = None, False
            links = [s for s in shapes if s.disposition == "EXTERNAL_LINKS"]
            response = await self._submit(submit, links, want, disposition, inline_bytes)
            response = await self._wait(response)
        return self._finished(response)

    async def _submit(
        self,
        submit: dict[str, Any],
        shapes: list[Shape],
        want: Want,
        disposition: str | None,
        inline_bytes: int,
    ) -> dict[str, Any]:
        for i, shape in enumerate(shapes):
            body = {**submit, "disposition": shape.disposition, "format": shape.format}
            if shape.disposition == "INLINE":
                # Truncate (truncated: true) rather than abort at Databricks' 25 MiB cap.
                body["byte_limit"] = min(inline_bytes, INLINE_BYTE_CAP)
            try:
                response = await self._execute(body)
            # (Not `from ... import NotImplemented`: it would shadow the builtin dataclasses use.)
            except (sdk_errors.BadRequest, sdk_errors.NotImplemented):
                if i + 1 == len(shapes):
                    raise
                continue  # refused before anything ran: the next shape is safe to try
            self.shape = shape
            self.memory.accepted(str(submit["warehouse_id"]), want, disposition, shape, shapes[0])
            return response
        raise AssertionError("no shapes to try")

    async def _execute(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in body.items() if v is not None}
        # No server-side wait: the statement id must be ours at once, so a deadline, a client
        # leaving or a shutdown can cancel it immediately. Costs one poll on fast queries.
        body.update(wait_timeout="0s", on_wait_timeout="CONTINUE")

        def execute() -> dict[str, Any]:
            response = self.api.execute(body)
            with self._lock:  # a caller that gave up meanwhile still gets its statement cancelled
                self.statement_id = str(response.get("statement_id") or "") or None
                abandoned = self._abandoned
            if abandoned:
                self._cancel_now()
                self.forget()
            return response

        # Known from before the submit, so a shutdown can wait for the id and cancel it.
        self.running[self] = self.cancel
        try:
            return await anyio.to_thread.run_sync(execute, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            with self._lock:
                self._abandoned = True  # the thread, still submitting, cancels when it returns
            raise
        except BaseException:
            self.forget()
            raise

    async def _wait(self, response: dict[str, Any]) -> dict[str, Any]:
        # A short first delay, so a query of a fraction of a second is seen soon after it ends.
        delay = 0.01
        statement_id = self.statement_id
        assert statement_id is not None  # set by the submit that gave us `response`
        while _running(response):
            await anyio.sleep(delay)
            # Slow growth: a statement is seen at most ~10% after it ended (doubling the delay
            # saw a 0.45 s statement at 0.75 s; at 1.2x the polls after 1 s fell at 1.06, 1.28,
            # 1.55 s): 31 GETs in the first 2 s, 48 in 10 s (1.2x: 20, 30), then one a second.
            delay = min(delay * 1.1, 1.0)
            response = await self.api.get(statement_id)
        return response

    def _finished(self, response: dict[str, Any]) -> dict[str, Any]:
        state = state_of(response)
        if state == "SUCCEEDED":
            return response
        self.forget()
        raise statement_error(response, self.statement_id)

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
            with lifted():  # also past the request's deadline: that is when it matters most
                self.api.cancel(self.statement_id or "")
            logger.info("statement cancelled", extra={"statement_id": self.statement_id})
        except Exception as exc:  # best effort: the statement may have ended meanwhile
            logger.warning(
                "cancel failed",
                extra={"statement_id": self.statement_id, "error": type(exc).__name__},
            )

    def forget(self) -> None:
        self.running.pop(self, None)


def statement_error(response: dict[str, Any], statement_id: str | None) -> GatewayError:
    """The error for a statement that ended in anything but SUCCEEDED."""
    state = state_of(response)
    details: dict[str, Any] = {"statement_id": statement_id}
    if state == "FAILED":
        status = response.get("status") or {}
        error = status.get("error") or {}
        return GatewayError(
            400,
            "SQL_ERROR",
            str(error.get("message") or "The statement failed."),
            {**details, "sql_state": status.get("sql_state")},
            databricks_error_code=error.get("error_code"),
        )
    if state == "CANCELED":
        return GatewayError(409, "QUERY_CANCELED", "The statement was cancelled.", details)
    return GatewayError(
        410, "QUERY_CLOSED", "The statement's result is no longer available.", details
    )


def _running(response: dict[str, Any]) -> bool:
    """Whether the statement has yet to end: PENDING, RUNNING, or a state newer than this
    gateway (the API documents its four ends; one it adds is more likely a stage on the way
    than an end, and a statement polled past its deadline is cancelled). An answer with no
    state is a bad answer, not a closed statement."""
    state = state_of(response)
    if not state:
        raise UpstreamBadResponse("a statement answer names no state")
    return state not in _TERMINAL


def state_of(response: dict[str, Any]) -> str | None:
    """The statement's state in a Statement Execution answer (None when it has none)."""
    status = response.get("status")
    return status.get("state") if isinstance(status, dict) else None


def _inline_cap_hit(response: dict[str, Any], shape: Shape | None) -> bool:
    status = response.get("status") or {}
    error = status.get("error") or {}
    return (
        shape is not None
        and shape.disposition == "INLINE"
        and state_of(response) == "FAILED"
        and error.get("error_code") == "BAD_REQUEST"
        and not status.get("sql_state")
    )
