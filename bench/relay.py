"""A bare relay for the files and per-op sections: the floor that any ASGI relay under uvicorn
starts from.

No framework, no checks, no deadlines, no error mapping: an ASGI app under uvicorn with the
gateway's server stack (uvloop, httptools, and the gateway's own protocol class, which writes a
short answer's head and body in one write). For files it copies a request body into a PUT to the
fake's Files API over a raw asyncio connection (in 2 MiB writes, joined as the gateway joins
them), and a GET's body back out the way the gateway reads one (2 MiB reads of a blocking socket
in a worker thread, each sent as it comes) but over a bare socket: no HTTP client, no checks, no
deadline. For `POST /run` with `me` or `list_catalogs` it makes the same GETs as the gateway's
lean path (one pooled aiohttp session, page after page; the same headers and query) and
answers `{"result": ...}` with the upstream's JSON as it came, untyped. What the gateway spends
above this is what its own layers cost.

    python relay.py FAKE_URL TOKEN PORT
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import uvicorn
from databricks.sdk.config import Config

from gateway import __version__
from gateway.serve import protocol_with_head_timeout

# The gateway's download read size and upload piece (files_api.DOWNLOAD_CHUNK_BYTES,
# app.UPLOAD_PIECE_BYTES).
PIECE = 2 * 1024 * 1024
OPS = {  # op: (path, the list's key or None for an object, the query the lean path sends)
    "me": ("/api/2.0/preview/scim/v2/Me", None, {}),
    "list_catalogs": ("/api/2.1/unity-catalog/catalogs", "catalogs", {"max_results": 0}),
}

Scope = dict[str, Any]


class Relay:
    def __init__(self, fake_url: str, token: str) -> None:
        split = urlsplit(fake_url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.url = fake_url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None  # made on the server's loop
        # The headers the gateway's lean path sends (its SDK Config's user agent, with the
        # gateway as its product, and the workspace id): the fake reads each request's headers,
        # so a relay sending fewer would make the fake answer it sooner than the gateway.
        config = Config(
            host=fake_url, token=token, product="databricks-gateway", product_version=__version__
        )
        self.headers = {
            "Accept": "application/json",
            "User-Agent": config.user_agent,
            "Authorization": f"Bearer {token}",
        }
        if config.workspace_id:
            self.headers["X-Databricks-Workspace-Id"] = config.workspace_id

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = parse_qs(scope["query_string"].decode()).get("path", [""])[0]
        if scope["path"] == "/download":
            await self.download(path, send)
        elif scope["path"] == "/upload":
            await self.upload(scope, path, receive, send)
        elif scope["path"] == "/run":
            await self.run(receive, send)
        else:
            await respond(send, 200, b"ok")

    async def download(self, path: str, send: Any) -> None:
        loop = asyncio.get_running_loop()
        sock, remaining, first = await loop.run_in_executor(None, self.open_download, path)
        try:
            length = str(remaining).encode()
            headers = [(b"content-length", length), (b"content-type", b"application/octet-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if not remaining:
                await send({"type": "http.response.body", "body": b""})
            data = first
            while remaining:
                if not data:
                    want = min(remaining, PIECE)
                    data = await loop.run_in_executor(None, sock.recv, want, socket.MSG_WAITALL)
                    if not data:
                        raise ConnectionError("the fake closed mid-body")
                remaining -= len(data)
                await send({"type": "http.response.body", "body": data, "more_body": remaining > 0})
                data = b""
        finally:
            sock.close()

    def open_download(self, path: str) -> tuple[socket.socket, int, bytes]:
        """A blocking connection that sent the GET: the socket, the body's length, and the body
        bytes that came with the head."""
        sock = socket.create_connection((self.host, self.port))
        request = f"GET /api/2.0/fs/files{path} HTTP/1.1\r\nHost: fake\r\n{self.auth}\r\n"
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("the fake closed before its head")
            head += more
        head, _, first = head.partition(b"\r\n\r\n")
        return sock, content_length(head), first

    async def run(self, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path, key, first_query = OPS[orjson.loads(body)["op"]]
        if self.session is None:
            self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        items: list[Any] = []
        query: dict[str, Any] = dict(first_query)
        while True:
            async with self.session.get(
                self.url + path, params=query, headers=self.headers
            ) as page:
                answer = orjson.loads(await page.read())
            if key is None:
                await respond(send, 200, orjson.dumps({"result": answer}))
                return
            items += answer.get(key, [])
            if not answer.get("next_page_token"):
                await respond(send, 200, orjson.dumps({"result": items}))
                return
            query["page_token"] = answer["next_page_token"]

    async def upload(self, scope: Scope, path: str, receive: Any, send: Any) -> None:
        size = dict(scope["headers"])[b"content-length"].decode()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=PIECE)
        try:
            writer.write(
                f"PUT /api/2.0/fs/files{path}?overwrite=true HTTP/1.1\r\nHost: fake\r\n{self.auth}"
                f"Content-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
            )
            pieces: list[bytes] = []
            size, more = 0, True
            while more:  # joined into PIECE-sized writes, as the gateway sends an upload
                message = await receive()
                pieces.append(message.get("body", b""))
                size += len(pieces[-1])
                more = message.get("more_body", False)
                if size >= PIECE or not more:
                    writer.write(b"".join(pieces))
                    await writer.drain()
                    pieces, size = [], 0
            status = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1]
        finally:
            writer.close()
        await respond(send, 200 if status == b"204" else 502, status)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("no Content-Length")


async def respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    fake_url, token, port = sys.argv[1:4]
    uvicorn.run(
        Relay(fake_url, token),
        host="127.0.0.1",
        port=int(port),
        http=protocol_with_head_timeout(5.0),
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
