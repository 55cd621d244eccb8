"""A request's deadline, as the worker threads running its blocking SDK calls see it.

At its deadline a request is answered 504 and stops waiting; the worker thread of a blocking
SDK call cannot be stopped and runs on. One call ends within the SDK's own timeouts, but the
SDK's list iterators page on as long as the server sends a `next_page_token`: an upstream that
always sends one kept a thread busy, and its items growing, for as long as the process lived.
So an SDK client sends no request once the deadline of the request it serves has passed (a
ContextVar, which worker threads inherit): it raises instead. Checked before sending, so a
request sent is one whose answer is read (a statement submitted is known, and cancelled);
cancels are sent whatever the deadline (`lifted`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


class DeadlinePassed(Exception):
    """Raised in a worker thread whose request was already answered at its deadline."""


def deadline_in(seconds: float) -> contextlib.AbstractContextManager[None]:
    return _deadline_at(time.monotonic() + seconds)


def lifted() -> contextlib.AbstractContextManager[None]:
    """No deadline for what runs inside: a cancel must go out even after the request's end."""
    return _deadline_at(None)


@contextlib.contextmanager
def _deadline_at(when: float | None) -> Iterator[None]:
    token = _deadline.set(when)
    try:
        yield
    finally:
        _deadline.reset(token)


def bound_by_deadlines(client: WorkspaceClient) -> WorkspaceClient:
    """`client`, sending no request past the current request's deadline."""
    # The SDK's requests.Session (databricks-sdk < 0.200, as pinned): its `send` is where
    # every request of the SDK goes out, retries and pages included.
    session = client.api_client._api_client._session
    if not isinstance(session.send, _WithinDeadline):
        session.send = _WithinDeadline(session.send)  # type: ignore[method-assign]
    return client


class _WithinDeadline:
    def __init__(self, send: Callable[..., Any]) -> None:
        self._send = send

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        deadline = _deadline.get()
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlinePassed("the request this call served was answered at its deadline")
        return self._send(request, **kwargs)
