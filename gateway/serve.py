"""Serving the app with uvicorn, as a sidecar needs it: one place for the server's settings.

Two things uvicorn does not do for us:
- **Slow headers.** uvicorn's httptools protocol waits forever for a request head, so a few
  hundred half-open connections hold file descriptors for as long as their peers like.
  `HeadTimeoutProtocol` closes a connection whose request head is not complete within
  `GATEWAY_HEADER_TIMEOUT_SECONDS` of its first byte (or of the connection, if no byte comes).
- **Draining.** `Server.shutdown` flips `Runtime.draining` first, so a request that still
  arrives on a kept-alive connection is refused with 503 `SHUTTING_DOWN` (the middleware), and
  lets the app cancel what runs on Databricks before the process goes.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.logs import logger
from gateway.runtime import Runtime
from gateway.settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 5  # then in-flight requests are cancelled (queries too)


class HeadTimeoutProtocol(HttpToolsProtocol):
    head_timeout_seconds = 5.0
    _head_timer: asyncio.TimerHandle | None = None

    # The signature of uvicorn's own override, which narrows asyncio's BaseTransport likewise.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request is being served
            logger.info("closing a connection that sent no complete request head in time")
            self.transport.close()


def protocol_with_head_timeout(seconds: float) -> type[HeadTimeoutProtocol]:
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout_seconds": seconds})


class Server(uvicorn.Server):
    """uvicorn's server, telling the app it is draining before connections are shut."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.runtime.draining = True
        await super().shutdown(sockets)


def server_for(app: Any, settings: Settings, **overrides: Any) -> Server:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "http": protocol_with_head_timeout(settings.header_timeout_seconds),
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # Below the Node client's keep-alive so the client, not us, closes idle sockets first.
        "timeout_keep_alive": 30,
    }
    options.update(overrides)
    return Server(uvicorn.Config(app, **options), app.state.runtime)
