"""HTTP plumbing of the fake workspace: a threading server and a request handler with helpers.

The stdlib server is used on purpose: it lets the fake drop a connection, send a HEAD with no
body, and read chunked uploads chunk by chunk, exactly as a test needs.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import orjson

if TYPE_CHECKING:
    from gateway.testing.users import FakeUser

READ_CHUNK = 1024 * 1024


class Dispatcher(Protocol):
    """What a server hands each request to: the workspace, or the link host."""

    def handle(self, rq: Handler) -> None: ...


# How often serve_forever looks for shutdown(): the standard 0.5 s made every stop() (one per
# test, two servers each) wait up to a second.
POLL_SECONDS = 0.02


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], workspace: Dispatcher) -> None:
        super().__init__(address, Handler)
        self.workspace = workspace

    def serve_in_background(self, name: str) -> None:
        threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name=name,
            daemon=True,
        ).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller that hangs up mid-request (tests of callers leaving do it on purpose) is no
        error of the fake: no traceback on stderr for it. Anything else is printed as before."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address; typeshed allows bytes for others
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every response on a kept-alive connection.
    disable_nagle_algorithm = True
    server: Server
    user: FakeUser | None = None  # whose bearer token came, set by FakeWorkspace.handle

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the workspace keeps its own request record."""

    def _handle(self) -> None:
        split = urlsplit(self.path)
        self.raw_path = split.path
        self.query = dict(parse_qsl(split.query, keep_blank_values=True))
        self._body_consumed = self.headers.get("Content-Length") in (None, "0") and (
            "chunked" not in self.headers.get("Transfer-Encoding", "")
        )
        try:
            self.server.workspace.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if not self._body_consumed:
            # The handler answered without reading the body: the connection cannot be reused.
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    # --- reading ----------------------------------------------------------------------------

    def body_chunks(self) -> Iterator[bytes]:
        """The request body, chunk by chunk, for Content-Length and chunked encodings alike."""
        self._body_consumed = True
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            yield from self._chunked()
            return
        yield from self._exactly(int(self.headers.get("Content-Length") or 0))

    def _exactly(self, size: int) -> Iterator[bytes]:
        remaining = size
        while remaining > 0:
            data = self.rfile.read(min(READ_CHUNK, remaining))
            if not data:
                raise ConnectionResetError("client went away mid-body")
            remaining -= len(data)
            yield data

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionResetError("client went away mid-body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield from self._exactly(size)
            self.rfile.readline(3)

    def read_body(self) -> bytes:
        return b"".join(self.body_chunks())

    def json_body(self) -> dict[str, Any]:
        raw = self.read_body()
        if not raw:
            return {}
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else {}

    # --- writing ----------------------------------------------------------------------------

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204 and "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, orjson.dumps(value), headers, "application/json")

    def send_error_body(
        self,
        status: int,
        error_code: str | int,
        message: str,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if self.command == "HEAD":
            self.send(status, headers=headers)  # HEAD errors have no body
            return
        self.send_json(status, error_body(error_code, message, reason), headers)

    def send_page(self, key: str, items: list[Any], size: int) -> None:
        """`size` of `items` under `key`, from the offset the request's `page_token` names (the
        fake's tokens are offsets), and the next page's token while items remain. A token that
        is no offset of `items` gets Databricks' 400."""
        token = self.query.get("page_token")
        if token is not None and not (
            token.isascii() and token.isdigit() and int(token) <= len(items)
        ):
            self.send_error_body(400, "INVALID_PARAMETER_VALUE", f"Invalid page_token: {token!r}.")
            return
        start = int(token or 0)
        body: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            body["next_page_token"] = str(start + size)
        self.send_json(200, body)

    def drop(self) -> None:
        """Close the socket without answering, as a crashed load balancer would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def error_body(error_code: str | int, message: str, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error_code": error_code, "message": message}
    if isinstance(error_code, int):
        return body  # legacy auth errors carry no details
    details: list[dict[str, Any]] = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "filesystem.databricks.com",
                "metadata": {},
            }
        )
    details.append(
        {
            "@type": "type.googleapis.com/google.rpc.RequestInfo",
            "request_id": str(uuid.uuid4()),
            "serving_data": "",
        }
    )
    body["details"] = details
    return body
