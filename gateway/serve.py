"""Serving the app with uvicorn, as a sidecar needs it: one place for the server's settings.

Four things uvicorn does not do for us:
- **Slow headers.** uvicorn's httptools protocol waits forever for a request head, so a few
  hundred half-open connections hold file descriptors for as long as their peers like.
  `HeadTimeoutProtocol` closes a connection whose request head is not complete within
  `GATEWAY_HEADER_TIMEOUT_SECONDS` of its first read (or of the connection, if no byte comes).
- **One write per short answer.** uvicorn writes a response's head and its body separately: two
  syscalls, and two wake-ups of the caller, for one small JSON answer. `HeadWithBody` sends the
  head together with the first body piece when that piece comes in the same event-loop turn.
  It pays most when the machine's CPUs idle between calls: with the fake at 20 ms, a `me`
  answer's two writes were 1.2 ms apart (50 µs at 0 ms): the first one woke the caller, which
  took a CPU from the gateway before its body was written. (Removed once, in 668d081, on
  0 ms figures alone.)
- **Request bodies without copies.** uvicorn adds each parsed body piece to a bytearray and
  copies it out again for `receive()`: two copies of every uploaded byte. `_BodyPieces` keeps
  the pieces as httptools made them, and `receive()` gets the one piece that is nearly always
  there as it is (several are joined). Uploads of 512 MiB in 12 interleaved pairs against
  uvicorn's bytearray: the gateway's CPU per GiB 0.91x.
- **Draining.** `Server.shutdown` flips `Runtime.draining` first, so a request that still
  arrives on a kept-alive connection is refused with 503 `SHUTTING_DOWN` (the middleware), and
  lets the app cancel what runs on Databricks before the process goes.

And two ways to listen that uvicorn does its own way:
- **A unix-domain socket** (`GATEWAY_UDS`) instead of TCP, bound here with mode 0600 (uvicorn
  would make it 0666: any local user could connect).
- **Workers** (`GATEWAY_WORKERS`): the socket is bound once, here, and N spawned processes each
  run their own app and event loop on it; the kernel spreads connections among them. uvicorn's
  own supervisor would rebuild a plain `uvicorn.Server` from an import string, losing the
  draining and head-timeout behaviour above. If a worker dies the others are stopped and the
  gateway exits non-zero, so whatever supervises the sidecar restarts it whole.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.logs import logger, quiet_server_on_cut_streams
from gateway.memory import freeze_startup_objects
from gateway.runtime import Runtime
from gateway.settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 5  # then in-flight requests are cancelled (queries too)


class _BodyPieces:
    """A request body's bytes not yet received, as the pieces httptools parsed: what uvicorn's
    `on_body` and `receive()` do with their bytearray (`+=`, `len`, `bytes()`), without copying.
    """

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def __iadd__(self, piece: bytes) -> _BodyPieces:
        self.pieces.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


class HeadTimeoutProtocol(HttpToolsProtocol):
    head_timeout_seconds = 5.0
    _head_timer: asyncio.TimerHandle | None = None
    _head_open = False  # a request head has begun and is not complete yet

    def on_body(self, body: bytes) -> None:
        # receive() leaves a fresh bytearray behind each time: replaced before uvicorn adds to it.
        if not isinstance(self.cycle.body, _BodyPieces):
            self.cycle.body = _BodyPieces()  # type: ignore[assignment]
        super().on_body(body)

    # The signature of uvicorn's own override, which narrows asyncio's BaseTransport likewise.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Armed only for a head still open once its bytes so far are parsed: a head that comes
        # whole in one read (nearly every one) costs no timer.
        if self._head_open and self._head_timer is None:
            self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._disarm_head_timer()
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:  # a request to answer
            self.cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

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


class HeadWithBody:
    """The transport one response is written through: its first write (the head uvicorn builds
    from `http.response.start`) waits for the next write in the same event-loop turn, and both go
    out in one `writelines` (one writev). A head whose body is not ready in that turn (a stream
    waiting on Databricks) goes out alone at the end of the turn, so no caller waits for it.

    Measured against the fake, interleaved against uvicorn's two writes (12 pairs; c = 64: 6):
    sequential `me` p50 0.983x at 20 ms and 1.005x at 0 ms, `list_catalogs` 0.989x at 20 ms;
    gateway CPU per call 0.92x and 0.93x; `me` at c = 64 1.03x the req/s at 0.97x the CPU.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.writelines([head, data])
        elif self._first:
            self._first = False
            self._head = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info...: the transport's
        return getattr(self._transport, name)


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
        # The last request lines wait a moment to be written (logs.JsonLines); uvicorn ends
        # the process by re-raising the stopping signal, which runs no exit handler.
        for handler in logging.getLogger().handlers:
            handler.flush()


def server_for(app: Any, settings: Settings, **overrides: Any) -> Server:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        # Only Express on this machine calls us: X-Forwarded-* from it would mean nothing.
        "proxy_headers": False,
        "lifespan": "on",
        "http": protocol_with_head_timeout(settings.header_timeout_seconds),
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # Below the Node client's keep-alive so the client, not us, closes idle sockets first.
        "timeout_keep_alive": 30,
    }
    options.update(overrides)
    quiet_server_on_cut_streams()
    return Server(uvicorn.Config(app, **options), app.state.runtime)


# --- listening sockets and workers ----------------------------------------------------------


def bind(settings: Settings) -> socket.socket:
    """The listening socket: GATEWAY_UDS if set (mode 0600), else GATEWAY_HOST:GATEWAY_PORT."""
    if settings.uds is None:
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
    else:
        path = Path(settings.uds)
        if path.is_socket():  # left by a gateway that did not stop cleanly
            path.unlink()
        sock = socket.socket(socket.AF_UNIX)
        old_umask = os.umask(0o177)  # created 0600: no window where others may connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, app: Any) -> int:
    """Serve `app` on one bound socket, or GATEWAY_WORKERS spawned processes, each its own app
    (`app` then only proved the configuration starts)."""
    sock = bind(settings)
    try:
        if settings.workers == 1:
            freeze_startup_objects()
            server_for(app, settings).run(sockets=[sock])
            return 0
        return _supervise(settings, sock)
    finally:
        sock.close()
        if settings.uds is not None:
            Path(settings.uds).unlink(missing_ok=True)


def _supervise(settings: Settings, sock: socket.socket) -> int:
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_worker, args=(sock,)) for _ in range(settings.workers)]
    for worker in workers:
        worker.start()
    logger.info("serving with workers", extra={"workers": [w.pid for w in workers]})

    def stop(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    multiprocessing.connection.wait([w.sentinel for w in workers])  # the first one to end
    stop(signal.SIGTERM, None)
    for worker in workers:
        worker.join()
    # uvicorn ends a worker by re-raising the signal that stopped it: that is a clean stop.
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    return 0 if all(w.exitcode in clean for w in workers) else 1


def _worker(sock: socket.socket) -> None:
    # A spawned process starts from nothing: settings, logging and the app are its own.
    from gateway.startup import prepare  # here: startup imports the app, which is heavy

    settings, app = prepare()
    if app is None:
        sys.exit(2)
    freeze_startup_objects()
    server_for(app, settings).run(sockets=[sock])
